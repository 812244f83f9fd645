package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
)

// TestRunJobPerSourceMapping: two sources in one job, one whose lines name
// their ids the default way and one with its own parse.jsonl mapping
// (tid/sid): both are parsed right, none dead-lettered, and each record
// carries its own ids in the output.
func TestRunJobPerSourceMapping(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var a, b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&a, `{"trace_id":"%032x","span_id":"%016x","service.name":"a","name":"x","time":"2026-01-01T00:00:00Z"}`+"\n", i+1, i+1)
		fmt.Fprintf(&b, `{"tid":"%032x","sid":"%016x","service.name":"b","name":"y","time":"2026-01-01T00:00:00Z"}`+"\n", 1000+i, 1000+i)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "x.jsonl"), []byte(a.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b", "y.jsonl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`
pipeline: {flush_every: 20ms}
sinks: [{name: records, type: file, file: {dir: %[1]s/records}}]
dlq: {file: {dir: %[1]s/dlq}}
windows: {metrics: []}
run: {state_dir: %[1]s/state, checkpoint_every: 50ms}
sources:
  - {name: a, type: file, file: {include: ["%[1]s/a/*.jsonl"], poll_interval: 10ms}}
  - name: b
    type: file
    parse: {jsonl: {trace_id: [tid], span_id: [sid]}}
    file: {include: ["%[1]s/b/*.jsonl"], poll_interval: 10ms}
`, dir)
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := RunJob(ctx, cfg, RunOptions{Logger: quietLogger()})
		done <- result{rep, err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		parts, _ := filepath.Glob(filepath.Join(dir, "records", "*"))
		for _, p := range parts {
			data, _ := os.ReadFile(p)
			n += strings.Count(string(data), "\n")
		}
		if n >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 100 records written", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	r := <-done
	if r.err != nil || r.rep.RecordsIn != 100 || r.rep.RecordsOut != 100 || r.rep.DLQ["total"] != 0 || !r.rep.Reconciled {
		t.Fatalf("err %v, report %+v", r.err, r.rep)
	}
	recs := readOutput(t, filepath.Join(dir, "records"))
	byService := map[string]int{}
	for _, rec := range recs {
		svc, _ := rec["service"].(string)
		tid, _ := rec["trace_id"].(string)
		if tid == "" {
			t.Fatalf("record without a trace id: %v", rec)
		}
		if svc == "b" && !strings.HasPrefix(tid, "0000000000000000000000000000") {
			t.Fatalf("source b's trace id %q is not its tid", tid)
		}
		byService[svc]++
	}
	if byService["a"] != 50 || byService["b"] != 50 {
		t.Fatalf("records by service: %v", byService)
	}
}
