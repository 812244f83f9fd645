package app

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tracepipe/tracepipe/config"
)

// syncBuffer is a log destination written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFailingSinkLoggedOncePerInterval: a replay of 4,000 records in 40
// batches to a Kafka sink whose broker does not exist (a real client
// getting real connection refusals): every batch is given up to the DLQ,
// and the failure is logged once, then once more with the count at the
// end, not once per batch nor per record; the count equals the report's.
func TestFailingSinkLoggedOncePerInterval(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	generate(t, in, "jsonl", 4000, false)
	y := fmt.Sprintf(`
input: {concurrency: 1}
pipeline: {workers: 2, batch_units: 100}
sinks: [{name: k, type: kafka, kafka: {brokers: ["127.0.0.1:1"], topic: t, timeout: 200ms}}]
retry: {initial: 5ms, max_interval: 10ms, max_elapsed: 50ms, breaker: {failures: 1, open_for: 1m}}
dlq: {file: {dir: "%[1]s/dlq"}}
windows: {metrics: []}
`, dir)
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Sinks) != 1 || rep.Sinks[0].GaveUp < 40 || rep.DLQ["total"] != 4000 {
		t.Fatalf("report: sinks %+v, dlq %v", rep.Sinks, rep.DLQ)
	}
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "sink gave up on a batch") {
			lines = append(lines, l)
		}
	}
	// The run takes well under the 10 s interval: the first line and the
	// count at the end.
	if len(lines) != 2 || strings.Contains(lines[0], "repeated") || !strings.Contains(lines[1], fmt.Sprintf("total=%d", rep.Sinks[0].GaveUp)) {
		t.Fatalf("%d lines for %d batches given up:\n%s", len(lines), rep.Sinks[0].GaveUp, strings.Join(lines, "\n"))
	}
	if !strings.Contains(lines[0], "sink=k") || !strings.Contains(lines[0], "class=sink_exhausted") {
		t.Fatalf("first line: %s", lines[0])
	}
}
