# tracepipe: `make test` is what CI runs; `make replay` runs the main job on
# the shipped config and sample logs.

GO        ?= go
BIN       := bin/pipeline
PKGS      := ./...
BENCHTIME ?= 1s
# The benchmark corpus (generated, not committed).
CORPUS    ?= bench/corpus/jsonl-1GiB.jsonl
CORPUS_SIZE ?= 1GiB

.PHONY: all build test test-short vet fuzz bench bench-e2e bench-run corpus replay clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/pipeline

vet:
	$(GO) vet $(PKGS)

# go vet; the allocation, memory and HLL accuracy tests without the race
# detector (under -race sync.Pool drops objects at random, and counting
# millions of values takes minutes, so they skip themselves there); then
# the whole suite under the race detector. Tests that need a real
# redis-server get one from scripts/ensure-redis; with
# TRACEPIPE_REQUIRE_REDIS=1 a missing server fails them instead of skipping.
# deploy/'s test runs systemd-analyze verify on the unit: the same holds for
# scripts/ensure-systemd-analyze and TRACEPIPE_REQUIRE_TOOLS=1, and for
# cmd/pipeline's test of `pipeline top` in a tmux pane and scripts/ensure-tmux.
test: vet
	./scripts/ensure-redis
	./scripts/ensure-systemd-analyze
	./scripts/ensure-tmux
	TRACEPIPE_REQUIRE_REDIS=1 $(GO) test -count=1 -run 'Alloc|Accuracy|Memory' $(PKGS)
	TRACEPIPE_REQUIRE_REDIS=1 TRACEPIPE_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -timeout 15m $(PKGS)

test-short:
	$(GO) test -count=1 $(PKGS)

# A short run of every fuzz target (FUZZTIME each).
FUZZTIME ?= 30s
fuzz:
	@for t in FuzzStrict FuzzJSONL FuzzJSONLSinglePass FuzzOTLP FuzzZipkin; do \
		$(GO) test -run XXX -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) ./parsers/ || exit 1; done
	$(GO) test -run XXX -fuzz="^FuzzSplit\$$" -fuzztime=$(FUZZTIME) ./sources/file/
	$(GO) test -run XXX -fuzz="^FuzzLines\$$" -fuzztime=$(FUZZTIME) ./sources/file/
	$(GO) test -run XXX -fuzz="^FuzzResync\$$" -fuzztime=$(FUZZTIME) ./sources/file/
	$(GO) test -run XXX -fuzz="^FuzzDecodePositions\$$" -fuzztime=$(FUZZTIME) ./sources/tail/
	$(GO) test -run XXX -fuzz="^FuzzAckTracker\$$" -fuzztime=$(FUZZTIME) ./pipeline/
	$(GO) test -run XXX -fuzz="^FuzzScan\$$" -fuzztime=$(FUZZTIME) ./pipeline/dlq/
	$(GO) test -run XXX -fuzz="^FuzzAppendEntry\$$" -fuzztime=$(FUZZTIME) ./pipeline/dlq/
	$(GO) test -run XXX -fuzz="^FuzzDecode\$$" -fuzztime=$(FUZZTIME) ./config/
	$(GO) test -run XXX -fuzz="^FuzzAppend\$$" -fuzztime=$(FUZZTIME) ./internal/jsonstr/
	$(GO) test -run XXX -fuzz="^FuzzEncodeParsed\$$" -fuzztime=$(FUZZTIME) ./sinks/
	$(GO) test -run XXX -fuzz="^FuzzParseRow\$$" -fuzztime=$(FUZZTIME) ./pipeline/windows/
	$(GO) test -run XXX -fuzz="^FuzzRedact\$$" -fuzztime=$(FUZZTIME) ./pipeline/dlq/

# Micro-benchmarks beside the code (parsers with their encoding/json
# baseline, the reader, the encoder, the DLQ).
bench:
	$(GO) test -run XXX -bench . -benchmem -benchtime $(BENCHTIME) ./parsers/ ./sources/... ./sinks/ ./pipeline/... ./gen/ ./internal/...

corpus: $(CORPUS)
$(CORPUS):
	@mkdir -p $(dir $(CORPUS))
	$(GO) run ./cmd/pipeline gen --format jsonl --size $(CORPUS_SIZE) --seed 1 -o $(CORPUS)

# End-to-end replay throughput and peak memory on the generated corpus.
bench-e2e: build corpus
	./bench/e2e.sh $(BIN) $(CORPUS)

# pipeline run against replay on the corpus (catching up), and idle.
bench-run: build corpus
	./bench/run.sh $(BIN) $(CORPUS)

# The main job on the embedded default config: testdata/logs in, out/ out.
replay:
	$(GO) run ./cmd/pipeline replay testdata/logs

clean:
	rm -rf bin out bench/corpus
