package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// writeTIDLines writes n lines whose trace id is under "tid", a key the
// default config does not read (so each is an invalid record) and the
// "fixed" config does: DLQ entries that a replay after the fix delivers.
func writeTIDLines(t *testing.T, path string, n int) {
	t.Helper()
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"ts":"2026-01-01T00:%02d:%02dZ","tid":"%032x","span_id":"%016x","service.name":"cart","msg":"m%d %s"}`+"\n",
			(i/60)%60, i%60, i+1, i+1, i, strings.Repeat("p", 200))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dlqStatsOf runs `dlq stats --json`.
func dlqStatsOf(t *testing.T, cfg string) dlqStatsDoc {
	t.Helper()
	var st dlqStatsDoc
	if err := json.Unmarshal([]byte(runOK(t, "dlq", "stats", "-c", cfg, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestDLQEntryNamesEverySinkThatLacksIt: two sinks (two redis-servers)
// both down. Each entry names both, and once they are back a DLQ replay
// delivers every record to both, once.
func TestDLQEntryNamesEverySinkThatLacksIt(t *testing.T) {
	t.Parallel()
	a := testredis.StartWith(t, testredis.Options{AOF: true})
	b := testredis.StartWith(t, testredis.Options{AOF: true})
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	var lines []string
	for i := range 60 {
		lines = append(lines, fmt.Sprintf(`{"ts":"2026-01-01T00:00:%02dZ","trace_id":"%032x","span_id":"%016x","service.name":"cart"}`, i%60, i+1, i+1))
	}
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `sinks:
  - {name: a, type: redis_stream, redis_stream: {addr: %q, stream: records, timeout: 300ms}}
  - {name: b, type: redis_stream, redis_stream: {addr: %q, stream: records, timeout: 300ms}}
retry: {initial: 1ms, max_interval: 2ms, max_attempts: 2, max_elapsed: 50ms}
dlq: {file: {dir: %s/dlq}}
windows: {metrics: []}
`, a.Addr(), b.Addr(), dir), 0o644); err != nil {
		t.Fatal(err)
	}
	ca, cb := a.Client(t), b.Client(t)
	a.Kill()
	b.Kill()
	var out, errOut syncBuffer
	run([]string{"replay", "-c", cfg, "--no-progress", in}, &out, &errOut)
	n := 0
	if err := dlq.Scan(filepath.Join(dir, "dlq"), func(e *dlq.Entry, _ dlq.Position) error {
		n++
		if strings.Join(e.Sinks, ",") != "a,b" {
			return fmt.Errorf("entry %s names sinks %v, want a and b", e.ID, e.Sinks)
		}
		return nil
	}, nil); err != nil || n != 60 {
		t.Fatalf("%d entries (%v)\n%s", n, err, errOut.String())
	}
	a.Restart()
	b.Restart()
	if o := runOK(t, "dlq", "replay", "-c", cfg); !strings.Contains(o, "replayed 60: 60 delivered") {
		t.Fatalf("replay: %s", o)
	}
	for name, xlen := range map[string]func() (int64, error){
		"a": func() (int64, error) { return ca.XLen(context.Background(), "records").Result() },
		"b": func() (int64, error) { return cb.XLen(context.Background(), "records").Result() },
	} {
		if n, err := xlen(); err != nil || n != 60 {
			t.Fatalf("sink %s holds %d records (%v), want 60", name, n, err)
		}
	}
	if st := dlqStatsOf(t, cfg); st.Total != 0 {
		t.Fatalf("%d entries left in the DLQ", st.Total)
	}
}

// TestDLQReplayKilledMidwayResumes: a real `pipeline dlq replay` process
// killed with SIGKILL midway, then run again. Afterwards the DLQ is empty,
// every record is in the sink, and with dedupe on each once, except at
// most the batches in flight at the kill (written, not yet marked).
// Between the runs, no record is both acknowledged as delivered and still
// in the DLQ beyond those in-flight batches.
func TestDLQReplayKilledMidwayResumes(t *testing.T) {
	t.Parallel()
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	const n = 30000
	writeTIDLines(t, in, n)
	base := fmt.Sprintf(`sinks: [{name: out, type: file, file: {dir: %[1]s/out}}]
pipeline: {workers: 2, batch_units: 256, flush_every: 20ms}
windows: {metrics: []}
dedupe: {enabled: true, path: %[1]s/dedupe.db}
dlq: {file: {dir: %[1]s/dlq}}
`, dir)
	before, after := filepath.Join(dir, "before.yaml"), filepath.Join(dir, "after.yaml")
	if err := os.WriteFile(before, []byte(base+"parse: {missing_trace_id: invalid}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(after, []byte(base+"parse: {missing_trace_id: invalid, jsonl: {trace_id: [tid, trace_id]}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runOK(t, "replay", "-c", before, "--no-progress", in)
	if st := dlqStatsOf(t, before); st.Total != n {
		t.Fatalf("before the fix: %d entries, want %d", st.Total, n)
	}

	cmd := exec.Command(bin, "dlq", "replay", "-c", after)
	cmd.Stderr = &bytes.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if tomb, err := os.Stat(filepath.Join(dir, "dlq", "deleted.ids")); err == nil && tomb.Size() > 27*n/4 {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("the dlq replay ended before it could be killed: %s", cmd.Stderr)
	}
	left := dlqStatsOf(t, after).Total
	mid := outputTraceIDs(t, filepath.Join(dir, "out"))
	t.Logf("killed: %d entries left, %d records in the sink", left, len(mid))
	if int64(len(mid))+left < n {
		t.Fatalf("records lost by the kill: %d in the sink + %d in the DLQ < %d", len(mid), left, n)
	}
	// Delivered but not yet deleted: the batches since the last barrier
	// (flush_every) and those the deleter had not reached. Deletion goes
	// in steps, so that is a small part of what was delivered.
	const inFlight = 2 * 3 * 256 // workers and queue, batch_units each
	both := int64(len(mid)) + left - n
	t.Logf("%d records both delivered and still in the DLQ at the kill", both)
	if both > int64(len(mid))/4+inFlight {
		t.Fatalf("%d of the %d delivered records are still in the DLQ: not deleted in steps", both, len(mid))
	}

	out := runOK(t, "dlq", "replay", "-c", after)
	if st := dlqStatsOf(t, after); st.Total != 0 {
		t.Fatalf("the rerun left %d entries: %s", st.Total, out)
	}
	seen := outputTraceIDs(t, filepath.Join(dir, "out"))
	twice := 0
	for _, c := range seen {
		if c > 1 {
			twice++
		}
	}
	t.Logf("rerun: %s; %d distinct records in the sink, %d twice", strings.TrimSpace(out), len(seen), twice)
	if len(seen) != n {
		t.Fatalf("%d distinct records in the sink, want %d", len(seen), n)
	}
	if twice > inFlight {
		t.Fatalf("%d records written twice", twice)
	}
}

// outputTraceIDs counts the records of a file sink's folder by trace id,
// in finished files and in a dead run's unfinished ones (whole lines).
func outputTraceIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.LastIndexByte(data, '\n'); strings.HasSuffix(f, ".part") {
			data = data[:i+1] // a torn tail is not a record
		}
		for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			var r struct {
				TraceID string `json:"trace_id"`
			}
			if err := json.Unmarshal(l, &r); err != nil || r.TraceID == "" {
				t.Fatalf("%s: not a record: %.100q", f, l)
			}
			seen[r.TraceID]++
		}
	}
	return seen
}

// TestDLQPurgeRefusesWhileAWriterRuns: a run writing to a file DLQ holds
// its lock; purge must refuse, not delete what it scanned.
func TestDLQPurgeRefusesWhileAWriterRuns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "dlq"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "sinks: [{type: discard}]\ndlq: {file: {dir: %s/dlq}}\n", dir), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := dlq.OpenFile(dlq.FileOptions{Dir: filepath.Join(dir, "dlq")})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		e := &dlq.Entry{Source: dlq.Source{Kind: "file"}, Stage: "parse", Error: dlq.Error{Class: "malformed"}}
		p := fmt.Appendf(nil, "bad %d", i)
		e.SetPayload(p, int64(len(p)), 1024)
		if err := w.Put(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	code := run([]string{"dlq", "purge", "-c", cfg, "--all", "--yes"}, &out, &errOut)
	if code == exitOK || !strings.Contains(errOut.String(), "in use") {
		t.Fatalf("purge under a writer: exit %d: %s%s", code, out.String(), errOut.String())
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := dlqStatsOf(t, cfg); st.Total != 10 {
		t.Fatalf("%d entries after a refused purge, want 10", st.Total)
	}
	if o := runOK(t, "dlq", "purge", "-c", cfg, "--all", "--yes"); !strings.Contains(o, "deleted 10") {
		t.Fatalf("purge after the writer: %s", o)
	}
}

// TestRemoteDLQIncludesItsFallback: a Redis DLQ whose server is down when
// the run fails records: the entries go to the local fallback. `dlq stats`
// on the Redis DLQ counts them, and `dlq replay` (after the fix) drains
// them from the fallback.
func TestRemoteDLQIncludesItsFallback(t *testing.T) {
	t.Parallel()
	srv := testredis.StartWith(t, testredis.Options{AOF: true})
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	const n = 300
	writeTIDLines(t, in, n)
	base := fmt.Sprintf(`sinks: [{name: out, type: file, file: {dir: %[1]s/out}}]
windows: {metrics: []}
dlq: {type: redis, redis: {addr: %[2]q, stream: dlq, timeout: 2s}, file: {dir: %[1]s/fallback}}
`, dir, srv.Addr())
	before, after := filepath.Join(dir, "before.yaml"), filepath.Join(dir, "after.yaml")
	if err := os.WriteFile(before, []byte(base+"parse: {missing_trace_id: invalid}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(after, []byte(base+"parse: {missing_trace_id: invalid, jsonl: {trace_id: [tid, trace_id]}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	var out, errOut syncBuffer
	run([]string{"replay", "-c", before, "--no-progress", in}, &out, &errOut)
	inFallback := 0
	if err := dlq.Scan(filepath.Join(dir, "fallback"), func(*dlq.Entry, dlq.Position) error { inFallback++; return nil }, nil); err != nil || inFallback != n {
		t.Fatalf("%d entries in the fallback (%v), want %d\n%s", inFallback, err, n, errOut.String())
	}
	srv.Restart()
	if st := dlqStatsOf(t, before); st.Total != n {
		t.Fatalf("dlq stats on the Redis DLQ counts %d entries, want the %d in its fallback", st.Total, n)
	}
	if o := runOK(t, "dlq", "replay", "-c", after); !strings.Contains(o, fmt.Sprintf("replayed %d: %d delivered", n, n)) {
		t.Fatalf("replay: %s", o)
	}
	if st := dlqStatsOf(t, after); st.Total != 0 {
		t.Fatalf("%d entries left after the replay", st.Total)
	}
	if got := len(outputTraceIDs(t, filepath.Join(dir, "out"))); got != n {
		t.Fatalf("%d records in the sink, want %d", got, n)
	}
}
