package app

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// TestRunJobRedisStream: `pipeline run` with a redis_stream source and a
// file sink on a real redis-server. Every entry of the stream is a record
// in the output files on disk; an entry left pending by a dead consumer
// with a delivery count over max_deliveries is not delivered but is in the
// file DLQ on disk (code max_deliveries, its stream id); nothing is left
// pending in the group after the run, and the report reconciles.
func TestRunJobRedisStream(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	// A poison entry first: delivered to a consumer that died, 10 times
	// already (RETRYCOUNT sets the count).
	poisonID := c.XAdd(ctx, &goredis.XAddArgs{Stream: "in", Values: []any{"record", `{"poison":true}`}}).Val()
	if err := c.XGroupCreate(ctx, "in", "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "g", Consumer: "dead", Streams: []string{"in", ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "XCLAIM", "in", "g", "dead", "0", poisonID, "RETRYCOUNT", "10").Err(); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	if _, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := range n {
			rec := fmt.Sprintf(`{"trace_id":"%032x","span_id":"%016x","service.name":"s","name":"op","time":"2026-01-01T00:00:00Z"}`, i+1, i+1)
			p.XAdd(ctx, &goredis.XAddArgs{Stream: "in", Values: []any{"record", rec}})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	y := fmt.Sprintf(`
pipeline: {flush_every: 20ms}
sinks: [{name: records, type: file, file: {dir: %[1]s/records}}]
dlq: {file: {dir: %[1]s/dlq}}
windows: {metrics: []}
run: {state_dir: %[1]s/state, checkpoint_every: 50ms}
sources:
  - name: rs
    type: redis_stream
    redis_stream: {addr: "%[2]s", stream: in, group: g, consumer: me, block: 20ms, claim_idle: 10ms, claim_every: 20ms, max_deliveries: 5}
`, dir, srv.Addr())
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := RunJob(runCtx, cfg, RunOptions{Logger: quietLogger()})
		done <- result{rep, err}
	}()
	dlqEntries := func() []*dlq.Entry {
		var out []*dlq.Entry
		_ = dlq.Scan(filepath.Join(dir, "dlq"), func(e *dlq.Entry, _ dlq.Position) error {
			out = append(out, e)
			return nil
		}, nil)
		return out
	}
	lines := func() int {
		n := 0
		parts, _ := filepath.Glob(filepath.Join(dir, "records", "*"))
		for _, p := range parts {
			data, _ := os.ReadFile(p)
			n += bytes.Count(data, []byte("\n"))
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if lines() >= n && len(dlqEntries()) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records written, %d DLQ entries", lines(), n, len(dlqEntries()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	r := <-done
	if r.err != nil || r.rep.RecordsIn != n || r.rep.RecordsOut != n || !r.rep.Reconciled {
		t.Fatalf("err %v, report %+v", r.err, r.rep)
	}
	recs := readOutput(t, filepath.Join(dir, "records"))
	seen := map[string]bool{}
	for _, rec := range recs {
		tid, _ := rec["trace_id"].(string)
		seen[tid] = true
	}
	if len(recs) != n || len(seen) != n {
		t.Fatalf("%d records, %d distinct, want %d", len(recs), len(seen), n)
	}
	es := dlqEntries()
	if len(es) != 1 || es[0].Source.StreamID != poisonID || es[0].Error.Code != "max_deliveries" || es[0].Payload != `{"poison":true}` {
		t.Fatalf("dlq entries %+v", es)
	}
	if p := c.XPending(ctx, "in", "g").Val(); p.Count != 0 {
		t.Fatalf("%d entries pending after the run", p.Count)
	}
}
