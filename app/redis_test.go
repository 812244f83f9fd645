package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// TestRedisKilledMidRun: records go to a Redis Stream sink and failures to
// a Redis DLQ on one real redis-server, which the test kills mid-run.
// Nothing is lost: what Redis took before is out, the rest is retried,
// given up and kept in the local file DLQ (the Redis DLQ's fallback), and
// in = out + dlq + filtered holds.
func TestRedisKilledMidRun(t *testing.T) {
	srv := testredis.Start(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	generate(t, in, "jsonl", 20000, false)
	y := fmt.Sprintf(`
input: {concurrency: 1}
pipeline: {workers: 2, batch_units: 256}
sinks:
  - name: stream
    type: redis_stream
    redis_stream: {addr: "%[1]s", stream: "records", timeout: 500ms}
    queue: 8
retry:
  initial: 5ms
  max_interval: 20ms
  max_elapsed: 300ms
  breaker: {failures: 3, open_for: 50ms}
dlq:
  type: redis
  redis: {addr: "%[1]s", stream: "dlq", timeout: 500ms}
  file: {dir: "%[2]s/dlq"}
`, srv.Addr(), dir)
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	client := srv.Client(t)
	done := make(chan struct{})
	var rep *Report
	var runErr error
	go func() {
		defer close(done)
		rep, runErr = Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger()})
	}()
	// Kill the server once the stream holds some records.
	killed := false
	for !killed {
		select {
		case <-done:
			t.Fatal("the run ended before the kill: make the input larger")
		default:
		}
		if n, err := client.XLen(context.Background(), "records").Result(); err == nil && n >= 500 {
			srv.Kill()
			killed = true
		}
		time.Sleep(time.Millisecond)
	}
	<-done
	if rep == nil {
		t.Fatalf("run: %v", runErr)
	}
	t.Logf("in %d, out %d, dlq %v, sinks %+v", rep.RecordsIn, rep.RecordsOut, rep.DLQ, rep.Sinks)
	if !rep.Reconciled || rep.DLQLost != 0 {
		t.Fatalf("not reconciled or entries lost: %+v (%v)", rep, runErr)
	}
	// (The stream may hold a little more than records_out: a batch cut
	// by the kill is partly in Redis and wholly in the DLQ. At least once;
	// dedupe makes a replay of it write each record once.)
	if rep.RecordsIn != 20000 || rep.RecordsOut == 0 || rep.DLQ["sink_exhausted"] == 0 {
		t.Fatalf("in %d out %d sink_exhausted %d: want 20000, some, some", rep.RecordsIn, rep.RecordsOut, rep.DLQ["sink_exhausted"])
	}
	// Every record the dead sink could not take is in the local file DLQ.
	var inFile int64
	if err := dlq.Scan(filepath.Join(dir, "dlq"), func(e *dlq.Entry, _ dlq.Position) error {
		if e.Error.Class == "sink_exhausted" {
			inFile++
		}
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	if inFile != rep.DLQ["sink_exhausted"] {
		t.Fatalf("%d sink_exhausted entries in the file DLQ, the report says %d", inFile, rep.DLQ["sink_exhausted"])
	}
}
