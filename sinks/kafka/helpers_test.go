package kafka_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
)

// genLines returns n generated good jsonl lines drawn from traces trace ids.
func genLines(t testing.TB, n int64, traces int) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := gen.Generate(&buf, gen.Options{Format: "jsonl", Records: n, Seed: 7, Traces: traces}); err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
}

var (
	parseOnce  sync.Once
	parseStage *parsers.Stage
)

func parser(t testing.TB) *parsers.Stage {
	parseOnce.Do(func() {
		opts := parsers.DefaultOptions()
		if err := opts.Prepare(); err != nil {
			t.Fatal(err)
		}
		parseStage = parsers.NewStage(&opts)
	})
	return parseStage
}

var jsonlSource = &pipeline.Origin{Kind: "file", Path: "gen.jsonl", Format: pipeline.FormatJSONL}

// parsedBatch returns a batch holding lines, parsed: real records with views
// into the batch's buffers.
func parsedBatch(t testing.TB, lines [][]byte) *pipeline.Batch {
	t.Helper()
	b := pipeline.GetBatch()
	b.Origin = jsonlSource
	for i, l := range lines {
		b.AddUnit(l, int64(i), int64(i+1), int64(len(l)), 0)
	}
	parser(t).Process(context.Background(), b)
	for i := range b.Records {
		if b.Records[i].Failed() {
			t.Fatalf("generated line %d failed to parse: %+v", i, b.Records[i].Failure)
		}
	}
	return b
}

// logBuffer collects log output (all levels) for inspection.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func sinkConfig(addrs []string, topic string) config.KafkaSink {
	return config.KafkaSink{
		Kafka:        config.Kafka{Brokers: addrs, ClientID: "test", Timeout: 10 * time.Second},
		Topic:        topic,
		Compression:  "snappy",
		RequiredAcks: "all",
		BatchSize:    1000,
		BatchBytes:   1 << 20,
		Linger:       time.Millisecond,
	}
}
