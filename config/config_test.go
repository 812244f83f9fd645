package config

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestShippedConfigIsTheEmbeddedDefault(t *testing.T) {
	shipped, err := os.ReadFile("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shipped, Default) {
		t.Fatal("config.yaml and config/default.yaml differ: edit one, copy it to the other")
	}
	cfg, err := Load("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Input.MaxLineBytes.JSONL != 1<<20 || cfg.Input.MaxLineBytes.OTLP != 64<<20 || cfg.DLQ.File.Dir != "out/dlq" || cfg.Sinks[0].File.Dir != "out/records" {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if cfg.Pipeline.Workers <= 0 || cfg.Pipeline.Queue != cfg.Pipeline.Workers {
		t.Fatalf("workers %d queue %d", cfg.Pipeline.Workers, cfg.Pipeline.Queue)
	}
	if cfg.DLQ.File.SyncEvery != time.Second || cfg.DLQ.KeepBytes != 64<<10 {
		t.Fatalf("dlq %+v", cfg.DLQ)
	}
}

func TestEmptyConfigNeedsASink(t *testing.T) {
	_, err := Decode(nil, "x.yaml", env(nil))
	if err == nil || !strings.Contains(err.Error(), "sinks: at least one sink") {
		t.Fatalf("err = %v", err)
	}
}

func TestErrors(t *testing.T) {
	f := func(yaml string, vars map[string]string, want ...string) {
		t.Helper()
		_, err := Decode([]byte(yaml), "c.yaml", env(vars))
		if err == nil {
			t.Fatalf("no error for:\n%s", yaml)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("error %q does not contain %q", err, w)
			}
		}
	}
	const sink = "sinks: [{type: discard}]\n"
	f(sink+"input:\n  max_line_byte: 10\n", nil, `c.yaml:3: unknown key "max_line_byte" in input (did you mean "max_line_bytes"?)`)
	f(sink+"inptu: {}\n", nil, `c.yaml:2: unknown key "inptu" in the top level (did you mean "input"?)`)
	f("sinks:\n  - type: file\n    file: {dir: x, rotat: 1}\n", nil, `c.yaml:3: unknown key "rotat" in sinks[0].file`)
	f(sink+"input: {format: xml}\n", nil, `c.yaml: input.format: "xml" is not one of auto, jsonl, otlp, zipkin`)
	f(sink+"input: {max_line_bytes: 12 parsecs}\n", nil, `c.yaml:2: "12 parsecs" is not a size`)
	f(sink+"pipeline: {workers: -1}\n", nil, "pipeline.workers: must be positive")
	f("sinks: [{type: file}]\n", nil, "sinks[0].file.dir: must be set")
	f("sinks: [{type: discard}, {type: discard}]\n", nil, `sinks[1].name: "discard" is used twice`)
	f(sink+"dlq: {file: {overflow: shrug}}\n", nil, `dlq.file.overflow: "shrug" is not one of fail, drop_oldest`)
	f(sink+"dlq:\n  file:\n    dir: ${DLQ_DIR}\n", nil, "c.yaml:4: environment variable DLQ_DIR is not set")
	// Problems come sorted by line, each with the file name.
	f(sink+"dlq:\n  file:\n    dir: ${NOPE}\npipeline:\n  wrokers: 3\n", nil,
		"c.yaml:4: environment variable NOPE is not set (write ${NOPE:-default} for a default)\nc.yaml:6: unknown key \"wrokers\" in pipeline (did you mean \"workers\"?)")
	f("sinks: [\n", nil, "c.yaml:1: did not find expected node content")
	// Two problems at once are both reported.
	f(sink+"input: {format: xml}\nparse: {invalid_utf8: maybe}\n", nil, "input.format", "parse.invalid_utf8")
}

func TestExpansion(t *testing.T) {
	yaml := "sinks:\n  - type: file\n    file:\n      dir: ${OUT:-out}/records\n      rotate_bytes: ${ROT}\n" +
		"dlq:\n  file:\n    dir: \"$${literal}\"\n"
	cfg, err := Decode([]byte(yaml), "c.yaml", env(map[string]string{"ROT": "2MiB"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Sinks[0].File.Dir; got != "out/records" {
		t.Fatalf("dir = %q", got)
	}
	if cfg.Sinks[0].File.RotateBytes != 2<<20 {
		t.Fatalf("rotate = %d", cfg.Sinks[0].File.RotateBytes)
	}
	if cfg.DLQ.File.Dir != "${literal}" {
		t.Fatalf("escaped = %q", cfg.DLQ.File.Dir)
	}
	// Expanded numbers resolve to numbers.
	cfg, err = Decode([]byte("sinks: [{type: discard}]\ninput:\n  concurrency: ${C}\n"), "c.yaml", env(map[string]string{"C": "7"}))
	if err != nil || cfg.Input.Concurrency != 7 {
		t.Fatalf("cfg %v err %v", cfg, err)
	}
}

func TestExpandedValuesNeverAppearInErrors(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	for _, yaml := range []string{
		"sinks: [{type: discard}]\ninput:\n  concurrency: ${SECRET}\n",
		"sinks: [{type: discard}]\ninput:\n  max_line_bytes: ${SECRET}\n",
	} {
		_, err := Decode([]byte(yaml), "c.yaml", env(map[string]string{"SECRET": secret}))
		if err == nil {
			t.Fatalf("no error for %q", yaml)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("secret leaked: %v", err)
		}
	}
}

func TestByteSize(t *testing.T) {
	f := func(in string, want ByteSize) {
		t.Helper()
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Fatalf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	f("0", 0)
	f("4096", 4096)
	f("512KiB", 512<<10)
	f("1MiB", 1<<20)
	f("2 GiB", 2<<30)
	f("10MB", 10e6)
	f("7B", 7)
	for _, bad := range []string{"", "-1", "1.5MiB", "MiB", "1PiB", "99999999999TiB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Fatalf("ParseByteSize(%q) accepted", bad)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Fatalf("String = %q", s)
	}
	if s := ByteSize(2 << 40).String(); s != "2TiB" {
		t.Fatalf("String = %q", s)
	}
}

// FuzzDecode: any bytes give a config or an error, never a panic, and a
// config that decodes is one that validates.
func FuzzDecode(f *testing.F) {
	f.Add(Default)
	f.Add([]byte("sinks: [{type: discard}]\ninput: {max_line_bytes: ${X:-1MiB}}\n"))
	f.Add([]byte("sinks:\n  - type: file\n    file: {dir: x, rotate_bytes: 1GiB}\n"))
	f.Add([]byte("a: [b, {c: d}]\n&x y: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Decode(data, "fuzz.yaml", env(map[string]string{"X": "2MiB"}))
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("decoded config does not validate: %v", verr)
			}
		}
	})
}

// TestExpandedValuesAreNamedNotQuoted: a value from ${VAR} that fails
// validation (a secret put in the wrong key, say) is reported with its key
// and its variable, never its text, wherever it lands: directly, through a
// default copied from another key, through an alias, in a list.
func TestExpandedValuesAreNamedNotQuoted(t *testing.T) {
	const secret = "hunter2..S3cr3t!pw"
	vars := env(map[string]string{"SECRET": secret, "W": "100000000", "FMT": "jsonl"})
	cases := []struct {
		yaml string
		want []string
	}{
		{"sinks: [{type: discard}]\ninput: {format: \"${SECRET}\"}\n",
			[]string{"input.format: the value of ${SECRET} (not shown) is not one of auto, jsonl, otlp, zipkin"}},
		{"sinks: [{type: \"${SECRET}\"}]\n",
			[]string{"sinks[0].type: the value of ${SECRET} (not shown) is not one of", "sinks[0].name: the value of ${SECRET} (not shown) must be"}},
		{"sinks: [{type: discard, name: \"x-${SECRET}\"}, {type: discard, name: \"x-${SECRET}\"}]\n",
			[]string{"sinks[1].name: the value of ${SECRET} (not shown) is used twice"}},
		{"sinks: [{type: discard}]\ndlq: {file: {overflow: \"${SECRET}\"}}\n",
			[]string{"dlq.file.overflow: the value of ${SECRET} (not shown)"}},
		{"sinks: [{type: discard}]\nparse: {jsonl: {trace_id: [a, \"${SECRET}\"]}}\n",
			[]string{"parse.jsonl.trace_id[1]: path the value of ${SECRET} (not shown) has an empty segment"}},
		{"sinks: [{type: discard}]\nretry: {codes: {\"500\": \"${SECRET}\"}}\n",
			[]string{"retry.codes.500: the value of ${SECRET} (not shown) is not one of retry, permanent"}},
		{"sinks: [{type: discard}]\nwindows: {metrics: [{name: m, count: \"${SECRET}\", group_by: [\"${SECRET}\"]}]}\n",
			[]string{"windows.metrics[0].count: the value of ${SECRET} (not shown)", "windows.metrics[0].group_by[0]: the value of ${SECRET}"}},
		{"x: &s \"${SECRET}\"\n", nil}, // an unknown key: refused before any value is looked at
		{"sinks: [{type: discard}]\nparse: {time_unit: &s \"${SECRET}\", invalid_utf8: *s}\n",
			[]string{"parse.time_unit: the value of ${SECRET}", "parse.invalid_utf8: the value of ${SECRET}"}},
		{"sinks: [{type: discard}]\ninput: {format: \"${FMT}-${SECRET}\"}\n",
			[]string{"input.format: the value of ${FMT}${SECRET} (not shown)"}},
		// A type error on an expanded line.
		{"sinks: [{type: discard}]\npipeline:\n  workers: ${SECRET}\n", []string{"c.yaml:3: the value expanded from the environment has the wrong type"}},
		// A number from the environment above its limit, and the queue that
		// defaults to it.
		{"sinks: [{type: discard}]\npipeline: {workers: \"${W}\"}\n",
			[]string{"pipeline.workers: the value of ${W} (not shown) is above the limit 1024", "pipeline.queue: the value of ${W} (not shown) is above the limit 65536"}},
	}
	for _, c := range cases {
		_, err := Decode([]byte(c.yaml), "c.yaml", vars)
		if err == nil {
			t.Fatalf("no error for %q", c.yaml)
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "S3cr3t") || strings.Contains(err.Error(), "100000000") {
			t.Fatalf("%q: the value leaked: %v", c.yaml, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error\n%v\ndoes not contain %q", c.yaml, err, w)
			}
		}
	}
	// A value from a ${VAR:-default} left to its default is the file's own
	// text, and is shown.
	_, err := Decode([]byte("sinks: [{type: discard}]\ninput: {format: \"${NOPE:-xml}\"}\n"), "c.yaml", vars)
	if err == nil || !strings.Contains(err.Error(), `input.format: "xml" is not one of`) {
		t.Fatalf("err = %v", err)
	}
}

func TestHideExpanded(t *testing.T) {
	cfg, err := Decode([]byte("sinks: [{type: file, file: {dir: \"${DIR}\"}}]\ndlq: {file: {dir: \"${T}/dlq\"}}\n"), "c.yaml",
		env(map[string]string{"DIR": "/srv/s3cr3t\tdir", "T": "tmp"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.FromEnv("sinks[0].file.dir"); len(got) != 1 || got[0] != "DIR" {
		t.Fatalf("FromEnv = %v", got)
	}
	if got := cfg.FromEnv("dlq.file.segment_bytes"); got != nil {
		t.Fatalf("FromEnv = %v", got)
	}
	for in, want := range map[string]string{
		`open "/srv/s3cr3t\tdir": denied`:       `open ${DIR}: denied`,
		"open /srv/s3cr3t\tdir/x: denied":       "open ${DIR}/x: denied",
		"tmp/dlq: full; attempt tmpfs; tmp2":    "${T}/dlq: full; attempt tmpfs; tmp2",
		"nothing to hide in template temp tmp_": "nothing to hide in template temp tmp_",
	} {
		if got := cfg.HideExpanded(in); got != want {
			t.Errorf("HideExpanded(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLimits: every knob that sizes memory, goroutines or files is refused
// above its limit, naming the key, the value and the limit; at the limit it
// is accepted.
func TestLimits(t *testing.T) {
	const base = "sinks: [{type: discard}]\n"
	cases := []struct {
		name, ok, bad, want string
	}{
		{"workers", "pipeline: {workers: 1024, batch_bytes: 1MiB}", "pipeline: {workers: 100000000}", "pipeline.workers: 100000000 is above the limit 1024"},
		{"queue", "pipeline: {queue: 65536, batch_bytes: 64KiB}", "pipeline: {queue: 65537}", "pipeline.queue: 65537 is above the limit 65536"},
		{"batch_units", "pipeline: {batch_units: 1048576}", "pipeline: {batch_units: 1048577}", "pipeline.batch_units: 1048577 is above the limit 1048576"},
		{"batch_bytes", "pipeline: {batch_bytes: 256MiB, workers: 2, queue: 2}\nsinks: [{type: discard, queue: 1}]", "pipeline: {batch_bytes: 257MiB}", "pipeline.batch_bytes: 257MiB is above the limit 256MiB"},
		{"in flight", "pipeline: {workers: 32, queue: 32, batch_bytes: 64MiB}\nsinks: [{type: discard, queue: 64}]",
			"pipeline: {workers: 64, queue: 64, batch_bytes: 64MiB}\nsinks: [{type: discard, queue: 64}]",
			"pipeline: (workers 64 + queue 64 + sinks' queues 64) x batch_bytes 64MiB = 12GiB of batches in flight is above the limit 8GiB"},
		{"max_line_bytes", "input: {max_line_bytes: 256MiB}", "input: {max_line_bytes: 1GiB}", "input.max_line_bytes: 1GiB is above the limit 256MiB"},
		{"max_document_bytes", "input: {max_document_bytes: 1GiB}", "input: {max_document_bytes: 2GiB}", "input.max_document_bytes: 2GiB is above the limit 1GiB"},
		{"concurrency", "input: {concurrency: 8, max_document_bytes: 1GiB}", "input: {concurrency: 257}", "input.concurrency: 257 is above the limit 256"},
		{"documents at once", "input: {concurrency: 8, max_document_bytes: 1GiB}", "input: {concurrency: 9, max_document_bytes: 1GiB}",
			"input: concurrency 9 x max_document_bytes 1GiB = 9GiB of documents held at once is above the limit 8GiB"},
		{"sink queue", "sinks: [{type: discard, queue: 65536}]\npipeline: {batch_bytes: 64KiB}", "sinks: [{type: discard, queue: 65537}]", "sinks[0].queue: 65537 is above the limit 65536"},
		{"rotate_bytes", "sinks: [{type: file, file: {dir: d, rotate_bytes: 1TiB}}]", "sinks: [{type: file, file: {dir: d, rotate_bytes: 2TiB}}]", "sinks[0].file.rotate_bytes: 2TiB is above the limit 1TiB"},
		{"kafka batch_size", "sinks: [{type: kafka, kafka: {brokers: [b], topic: t, batch_size: 1048576}}]", "sinks: [{type: kafka, kafka: {brokers: [b], topic: t, batch_size: 2000000}}]",
			"sinks[0].kafka.batch_size: 2000000 is above the limit 1048576"},
		{"kafka batch_bytes", "sinks: [{type: kafka, kafka: {brokers: [b], topic: t, batch_bytes: 256MiB}}]", "sinks: [{type: kafka, kafka: {brokers: [b], topic: t, batch_bytes: 1GiB}}]",
			"sinks[0].kafka.batch_bytes: 1GiB is above the limit 256MiB"},
		{"max_attempts", "retry: {max_attempts: 1000}", "retry: {max_attempts: 1001}", "retry.max_attempts: 1001 is above the limit 1000"},
		{"sink max_attempts", "sinks: [{type: discard, retry: {max_attempts: 1000}}]", "sinks: [{type: discard, retry: {max_attempts: 5000}}]", "sinks[0].retry.max_attempts: 5000 is above the limit 1000"},
		{"dedupe max_keys", "dedupe: {max_keys: 50000000}", "dedupe: {max_keys: 50000001}", "dedupe.max_keys: 50000001 is above the limit 50000000"},
		{"keep_bytes", "dlq: {keep_bytes: 16MiB, file: {queue: 512}}", "dlq: {keep_bytes: 17MiB}", "dlq.keep_bytes: 17MiB is above the limit 16MiB"},
		{"dlq queue", "dlq: {file: {queue: 65536}}", "dlq: {file: {queue: 65537}}", "dlq.file.queue: 65537 is above the limit 65536"},
		{"dlq entries waiting", "dlq: {keep_bytes: 16MiB, file: {queue: 512}}", "dlq: {keep_bytes: 16MiB, file: {queue: 1024}}",
			"dlq: file.queue 1024 x keep_bytes 16MiB = 16GiB of entries waiting for the writer is above the limit 8GiB"},
		{"segment_bytes", "dlq: {file: {segment_bytes: 4GiB, max_bytes: 4GiB}}", "dlq: {file: {segment_bytes: 5GiB, max_bytes: 5GiB}}", "dlq.file.segment_bytes: 5GiB is above the limit 4GiB"},
		{"dlq max_bytes", "dlq: {file: {max_bytes: 1TiB}}", "dlq: {file: {max_bytes: 2TiB}}", "dlq.file.max_bytes: 2TiB is above the limit 1TiB"},
		{"max_open_windows", "windows: {max_open_windows: 4096}", "windows: {max_open_windows: 4097}", "windows.max_open_windows: 4097 is above the limit 4096"},
		{"max_groups", "windows: {max_groups: 1048576}", "windows: {max_groups: 10000000}", "windows.max_groups: 10000000 is above the limit 1048576"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, bad := c.ok, c.bad
			if !strings.HasPrefix(ok, "sinks:") && !strings.Contains(ok, "\nsinks:") {
				ok = base + ok
			}
			if !strings.HasPrefix(bad, "sinks:") && !strings.Contains(bad, "\nsinks:") {
				bad = base + bad
			}
			if _, err := Decode([]byte(ok+"\n"), "c.yaml", env(nil)); err != nil {
				t.Fatalf("at the limit, refused: %v", err)
			}
			_, err := Decode([]byte(bad+"\n"), "c.yaml", env(nil))
			if err == nil || !strings.Contains(err.Error(), "c.yaml: "+c.want) {
				t.Fatalf("error %v\nwant %q", err, c.want)
			}
		})
	}
}

func TestSinkNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"records": true, "a": true, "K1_kafka.eu-west": true, "9": true, strings.Repeat("x", 64): true,
		strings.Repeat("x", 65): false, "a,b": false, "-x": false, ".x": false, "_x": false, "a b": false,
		"a:b": false, "a/b": false, "é": false, "a\n": false,
	} {
		y := fmt.Sprintf("sinks: [{type: discard, name: %q}]\n", name)
		_, err := Decode([]byte(y), "c.yaml", env(nil))
		if ok != (err == nil) {
			t.Errorf("name %q: err = %v", name, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "sinks[0].name: ")) {
			t.Errorf("name %q: err = %v", name, err)
		}
	}
	// The default name, the type, is valid.
	if _, err := Decode([]byte("sinks: [{type: redis_stream, redis_stream: {}}]\n"), "c.yaml", env(nil)); err != nil {
		t.Fatal(err)
	}
}

// TestLogFormatAuto: the default log format is auto (text on a terminal,
// JSON otherwise, decided by the command), the three spellings are taken,
// and anything else is refused, naming the key and the allowed values.
func TestLogFormatAuto(t *testing.T) {
	const sink = "sinks: [{type: discard}]\n"
	cfg, err := Decode([]byte(sink), "c.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Format != "auto" {
		t.Fatalf("default log.format %q, want auto", cfg.Log.Format)
	}
	for _, f := range []string{"auto", "text", "json"} {
		cfg, err := Decode([]byte(sink+"log: {format: "+f+"}\n"), "c.yaml", env(nil))
		if err != nil || cfg.Log.Format != f {
			t.Fatalf("log.format %s: %v %+v", f, err, cfg)
		}
	}
	for _, f := range []string{"Auto", "color", `""`} {
		_, err := Decode([]byte(sink+"log: {format: "+f+"}\n"), "c.yaml", env(nil))
		if f == `""` {
			// An empty value is a key left out: the default.
			if err != nil {
				t.Fatalf("log.format empty: %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "log.format") || !strings.Contains(err.Error(), "auto, text, json") {
			t.Fatalf("log.format %s: err = %v", f, err)
		}
	}
}
