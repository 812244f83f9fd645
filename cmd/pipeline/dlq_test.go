package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/internal/testredis"
)

// dlqFixture replays the sample logs into a temp dir (20 DLQ entries: 8
// malformed, 12 invalid) and returns a config pointing at it.
func dlqFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	y := fmt.Sprintf("sinks: [{type: discard}]\ndlq: {file: {dir: %s/dlq}}\n", dir)
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	if code := run([]string{"replay", "-c", cfg, "--no-progress", "../../testdata/logs"}, &out, &errOut); code != exitOK {
		t.Fatalf("replay: %d %s", code, errOut.String())
	}
	return cfg
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut syncBuffer
	if code := run(args, &out, &errOut); code != exitOK {
		t.Fatalf("%v: exit %d: %s", args, code, errOut.String())
	}
	return out.String()
}

func TestDLQCommands(t *testing.T) {
	cfg := dlqFixture(t)

	var st dlqStatsDoc
	if err := json.Unmarshal([]byte(runOK(t, "dlq", "stats", "-c", cfg, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Total != 20 || st.ByClass["malformed"] != 8 || st.ByClass["invalid"] != 12 || st.ByStage["parse"] != 20 || st.Oldest == nil {
		t.Fatalf("stats: %+v", st)
	}

	lines := strings.Split(strings.TrimSpace(runOK(t, "dlq", "ls", "-c", cfg, "--class", "malformed", "--json")), "\n")
	if len(lines) != 8 {
		t.Fatalf("ls --class malformed: %d entries, want 8", len(lines))
	}
	var first struct {
		ID    string `json:"id"`
		Error struct {
			Class string `json:"class"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Error.Class != "malformed" {
		t.Fatalf("ls line: %v %s", err, lines[0])
	}
	if n := strings.Count(runOK(t, "dlq", "ls", "-c", cfg, "--limit", "3"), "\n"); n != 4 {
		t.Fatalf("ls --limit 3: %d lines, want a header and 3", n)
	}
	if out := runOK(t, "dlq", "ls", "-c", cfg, "--source", "checkout-api", "--class", "invalid"); !strings.Contains(out, "checkout-api.jsonl:") {
		t.Fatalf("ls --source: %s", out)
	}
	if out := runOK(t, "dlq", "ls", "-c", cfg, "--since", "1h", "--until", "2000-01-01"); !strings.Contains(out, "(no entries)") {
		t.Fatalf("empty range: %s", out)
	}

	show := runOK(t, "dlq", "show", "-c", cfg, first.ID)
	if !strings.Contains(show, first.ID) || !strings.Contains(show, "payload (") || !strings.Contains(show, `"stage": "parse"`) {
		t.Fatalf("show: %s", show)
	}
	var out, errOut syncBuffer
	if code := run([]string{"dlq", "show", "-c", cfg, "01NOSUCHENTRY"}, &out, &errOut); code != exitUsage {
		t.Fatalf("show unknown id: exit %d", code)
	}

	// purge: refused without a filter, asks, and deletes only on yes.
	if code := run([]string{"dlq", "purge", "-c", cfg}, &out, &errOut); code != exitUsage {
		t.Fatalf("purge without filter: exit %d", code)
	}
	stdin = strings.NewReader("n\n")
	if o := runOK(t, "dlq", "purge", "-c", cfg, "--class", "malformed"); !strings.Contains(o, "not deleted") {
		t.Fatalf("purge answered no: %s", o)
	}
	stdin = strings.NewReader("y\n")
	if o := runOK(t, "dlq", "purge", "-c", cfg, "--class", "malformed"); !strings.Contains(o, "deleted 8 entries") {
		t.Fatalf("purge answered yes: %s", o)
	}
	stdin = os.Stdin
	var after dlqStatsDoc
	if err := json.Unmarshal([]byte(runOK(t, "dlq", "stats", "-c", cfg, "--json")), &after); err != nil || after.Total != 12 || after.ByClass["malformed"] != 0 {
		t.Fatalf("after purge: %+v %v", after, err)
	}
	if o := runOK(t, "dlq", "purge", "-c", cfg, "--all", "--yes"); !strings.Contains(o, "deleted 12 entries") {
		t.Fatalf("purge --all --yes: %s", o)
	}
}

// TestDLQReplayAfterAFix: records whose trace id sits under a name the
// config does not know go to the DLQ (invalid, missing_trace_id: the
// one-value policy, since trace-less logs are kept by default); after
// the fix (parse.jsonl.trace_id gains that name) a DLQ replay delivers
// each once, marked with replay_count and the entry it came from, and
// empties the DLQ; a second replay delivers nothing new.
func TestDLQReplayAfterAFix(t *testing.T) {
	for _, backend := range []string{"file", "redis", "kafka"} {
		t.Run(backend, func(t *testing.T) { testDLQReplayAfterAFix(t, backend) })
	}
}

func testDLQReplayAfterAFix(t *testing.T, backend string) {
	dir := t.TempDir()
	dlqCfg := fmt.Sprintf("dlq: {file: {dir: %s/dlq}}\n", dir)
	switch backend {
	case "redis":
		srv := testredis.Start(t)
		dlqCfg = fmt.Sprintf("dlq: {type: redis, redis: {addr: %q, stream: dlq}, file: {dir: %s/dlq}}\n", srv.Addr(), dir)
	case "kafka":
		k := testkafka.Start(t)
		dlqCfg = fmt.Sprintf("dlq: {type: kafka, kafka: {brokers: [%q], topic: dlq}, file: {dir: %s/dlq}}\n", k.Addrs()[0], dir)
	}
	in := filepath.Join(dir, "in.jsonl")
	var lines []string
	for i := range 50 {
		lines = append(lines, fmt.Sprintf(`{"ts":"2026-01-01T00:00:%02dZ","tid":"%032x","span_id":"%016x","service.name":"cart","msg":"m%d"}`, i%60, i+1, i+1, i))
	}
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("sinks: [{name: out, type: file, file: {dir: %[1]s/out}}]\nwindows: {metrics: []}\n", dir) + dlqCfg
	before := filepath.Join(dir, "before.yaml")
	after := filepath.Join(dir, "after.yaml")
	if err := os.WriteFile(before, []byte(base+"parse: {missing_trace_id: invalid}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(after, []byte(base+"parse: {missing_trace_id: invalid, jsonl: {trace_id: [tid, trace_id]}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runOK(t, "replay", "-c", before, "--no-progress", in)
	var st dlqStatsDoc
	if err := json.Unmarshal([]byte(runOK(t, "dlq", "stats", "-c", before, "--json")), &st); err != nil || st.Total != 50 || st.ByClass["invalid"] != 50 {
		t.Fatalf("before the fix: %+v %v", st, err)
	}
	// A dry run says what would happen and changes nothing.
	if out := runOK(t, "dlq", "replay", "-c", after, "--dry-run"); !strings.Contains(out, "would replay 50: 50 delivered") {
		t.Fatalf("dry run: %s", out)
	}
	out := runOK(t, "dlq", "replay", "-c", after)
	if !strings.Contains(out, "replayed 50: 50 delivered") || !strings.Contains(out, "deleted from the DLQ: 50") {
		t.Fatalf("replay: %s", out)
	}
	records := readRecords(t, filepath.Join(dir, "out"))
	if len(records) != 50 {
		t.Fatalf("%d records delivered, want 50", len(records))
	}
	seen := map[string]bool{}
	for _, r := range records {
		id := r["trace_id"].(string)
		if seen[id] || r["replay_count"] != float64(1) || r["replayed_from"] == "" {
			t.Fatalf("record %v: delivered twice, or without replay_count/replayed_from", r)
		}
		seen[id] = true
	}
	if err := json.Unmarshal([]byte(runOK(t, "dlq", "stats", "-c", after, "--json")), &st); err != nil || st.Total != 0 {
		t.Fatalf("after the replay the DLQ holds %d entries", st.Total)
	}
	// Again: nothing to send, nothing new in the sink.
	if out := runOK(t, "dlq", "replay", "-c", after); !strings.Contains(out, "0 entries match") {
		t.Fatalf("second replay: %s", out)
	}
	if n := len(readRecords(t, filepath.Join(dir, "out"))); n != 50 {
		t.Fatalf("%d records after a second replay, want 50", n)
	}
}

func readRecords(t *testing.T, dir string) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var out []map[string]any
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
	}
	return out
}

// TestDLQReplayOfASinkFailureGoesToThatSinkOnly: a run where one of two
// sinks (a Redis Stream) is down puts the records it could not take in
// the DLQ, while the file sink took them all. Once Redis is back, a DLQ
// replay delivers them to the stream only: each record once in each sink.
func TestDLQReplayOfASinkFailureGoesToThatSinkOnly(t *testing.T) {
	srv := testredis.StartWith(t, testredis.Options{AOF: true})
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	var lines []string
	for i := range 40 {
		lines = append(lines, fmt.Sprintf(`{"ts":"2026-01-01T00:00:%02dZ","trace_id":"%032x","span_id":"%016x","service.name":"cart","msg":"m%d"}`, i%60, i+1, i+1, i))
	}
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	y := fmt.Sprintf(`sinks:
  - {name: files, type: file, file: {dir: %[1]s/out}}
  - {name: stream, type: redis_stream, redis_stream: {addr: %[2]q, stream: records, timeout: 300ms}}
retry: {initial: 1ms, max_interval: 2ms, max_attempts: 2, max_elapsed: 50ms}
dlq: {file: {dir: %[1]s/dlq}}
windows: {metrics: []}
`, dir, srv.Addr())
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	client := srv.Client(t)
	srv.Kill()
	var out, errOut syncBuffer
	run([]string{"replay", "-c", cfg, "--no-progress", in}, &out, &errOut) // the stream sink cannot connect
	var st dlqStatsDoc
	if err := json.Unmarshal([]byte(runOK(t, "dlq", "stats", "-c", cfg, "--json")), &st); err != nil || st.Total != 40 || st.ByClass["sink_exhausted"] != 40 {
		t.Fatalf("with Redis down: %+v %v\n%s%s", st, err, out.String(), errOut.String())
	}
	if n := len(readRecords(t, filepath.Join(dir, "out"))); n != 40 {
		t.Fatalf("the file sink took %d records while Redis was down, want 40", n)
	}
	srv.Restart()
	if o := runOK(t, "dlq", "replay", "-c", cfg); !strings.Contains(o, "replayed 40: 40 delivered") {
		t.Fatalf("replay: %s", o)
	}
	if n, err := client.XLen(context.Background(), "records").Result(); err != nil || n != 40 {
		t.Fatalf("the stream holds %d records (%v), want 40", n, err)
	}
	if n := len(readRecords(t, filepath.Join(dir, "out"))); n != 40 {
		t.Fatalf("the file sink holds %d records after the replay, want 40 (it had them already)", n)
	}
}
