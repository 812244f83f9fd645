package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runIn runs the CLI in dir and returns exit code, stdout and stderr.
func runIn(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	t.Chdir(dir)
	// go-redis logs from its own goroutines (dials) to the logger of the
	// command that set it: the buffers must take concurrent writes, as
	// os.Stderr does.
	var out, errb syncBuffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

const goodLine = `{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","service":"cart","msg":"ok","ts":1700000000123}`

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	f := func(want int, args ...string) {
		t.Helper()
		if code, _, stderr := runIn(t, dir, args...); code != want {
			t.Fatalf("%v: exit %d, want %d; stderr:\n%s", args, code, want, stderr)
		}
	}
	f(exitUsage)
	f(exitUsage, "frobnicate")
	f(exitUsage, "replay")
	f(exitUsage, "replay", "--no-such-flag", "x")
	f(exitUsage, "replay", "nothing-here-*.jsonl")
	write(t, filepath.Join(dir, "bad.yaml"), "sinks: [{type: discard}]\ninptu: {}\n")
	f(exitUsage, "replay", "-c", "bad.yaml", "x")
	f(exitUsage, "validate", "-c", "bad.yaml")
	f(exitUsage, "gen", "--format", "jsonl")
	f(exitUsage, "gen", "--format", "xml", "--records", "1")
	f(exitOK, "validate", "-q")
	f(exitOK, "version")
	// validate shows the effective values, built-in parser paths included.
	if code, out, _ := runIn(t, dir, "validate"); code != exitOK || !strings.Contains(out, "- traceId") || !strings.Contains(out, "max_line_bytes:\n        jsonl: 1MiB\n        otlp: 64MiB") || !strings.Contains(out, "missing_trace_id:\n        logs: keep\n        spans: invalid") {
		t.Fatalf("validate output:\n%s", out)
	}
}

func TestReplayExitCodesAndReport(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "logs", "good.jsonl"), goodLine+"\n"+goodLine+"\n")
	code, stdout, stderr := runIn(t, dir, "replay", "logs", "--report", "r.json", "--fail-on-dlq")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "records: 2 in = 2 out + 0 dlq + 0 filtered  [reconciled]") {
		t.Fatalf("summary:\n%s", stdout)
	}
	data, err := os.ReadFile(filepath.Join(dir, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"files", "files_failed", "bytes_in", "records_in", "records_out", "records_filtered", "dlq", "seconds"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	dlq := rep["dlq"].(map[string]any)
	for _, k := range []string{"total", "malformed", "invalid", "too_large", "file", "panic"} {
		if _, ok := dlq[k]; !ok {
			t.Errorf("report dlq lacks %q", k)
		}
	}

	// A bad line: exit 0 normally, 3 with --fail-on-dlq.
	write(t, filepath.Join(dir, "logs", "bad.jsonl"), "{not json\n")
	if code, out, _ := runIn(t, dir, "replay", "logs"); code != exitOK || !strings.Contains(out, "malformed 1") {
		t.Fatalf("exit %d, summary:\n%s", code, out)
	}
	if code, _, _ := runIn(t, dir, "replay", "--fail-on-dlq", "logs"); code != exitDLQEntries {
		t.Fatalf("exit %d, want %d", code, exitDLQEntries)
	}
}

func TestGenIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.jsonl", "b.jsonl"} {
		if code, _, stderr := runIn(t, dir, "gen", "--format", "otlp", "--records", "50", "--seed", "3", "-o", name); code != exitOK {
			t.Fatalf("gen: %d %s", code, stderr)
		}
	}
	a, _ := os.ReadFile(filepath.Join(dir, "a.jsonl"))
	b, _ := os.ReadFile(filepath.Join(dir, "b.jsonl"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatal("same flags, different output")
	}
	if code, _, stderr := runIn(t, dir, "gen", "--format", "zipkin", "--records", "50", "-o", "z.json.gz"); code != exitOK {
		t.Fatalf("gen gz: %d %s", code, stderr)
	}
	// The gzip output replays cleanly.
	if code, out, _ := runIn(t, dir, "replay", "z.json.gz"); code != exitOK || !strings.Contains(out, "50 out + 0 dlq") {
		t.Fatalf("replay of gen output: %d\n%s", code, out)
	}
}

// TestValidateNeverPrintsPasswords: the effective config shows that a
// password is set, never what it is (dedupe.redis.password included).
func TestValidateNeverPrintsPasswords(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	y := `sinks:
  - type: kafka
    kafka: {brokers: [127.0.0.1:9092], topic: t, sasl: {mechanism: plain, username: u, password: "${TP_TEST_SECRET}"}}
  - type: redis_stream
    redis_stream: {password: "${TP_TEST_SECRET}"}
dedupe:
  enabled: true
  store: redis
  redis: {password: "${TP_TEST_SECRET}"}
dlq:
  type: redis
  redis: {password: "${TP_TEST_SECRET}"}
windows:
  metrics: [{name: m, count: trace_id}]
  sink:
    type: redis
    redis:
      password: "${TP_TEST_SECRET}"
`
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TP_TEST_SECRET", "hunter2-very-secret")
	var out, errOut syncBuffer
	if code := run([]string{"validate", "-c", cfg}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if strings.Contains(out.String()+errOut.String(), "hunter2") {
		t.Fatalf("validate printed the password:\n%s", out.String())
	}
	if strings.Count(out.String(), "<redacted>") != 5 {
		t.Fatalf("validate does not say a password is set:\n%s", out.String())
	}
}

// TestUnexpectedArguments: every command refuses a positional argument it
// does not take (exit 2, with the usage), and takes the ones it does.
func TestUnexpectedArguments(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "logs", "a.jsonl"), goodLine+"\n")
	for _, c := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"version", "extra"}, `version: unexpected argument "extra"`},
		{[]string{"help", "replay"}, `help: unexpected argument "replay"`},
		{[]string{"gen", "--records", "1", "out.jsonl"}, `gen: unexpected argument "out.jsonl"`},
		{[]string{"gen", "out.jsonl", "--records", "1"}, `gen: unexpected argument "out.jsonl"`},
		{[]string{"validate", "a.yaml", "b.yaml"}, `validate: unexpected argument "b.yaml"`},
		{[]string{"query", "extra"}, `query: unexpected argument "extra"`},
		{[]string{"dlq", "ls", "extra"}, `dlq ls: unexpected argument "extra"`},
		{[]string{"dlq", "stats", "extra"}, `dlq stats: unexpected argument "extra"`},
		{[]string{"dlq", "purge", "--all", "--yes", "extra"}, `dlq purge: unexpected argument "extra"`},
		{[]string{"dlq", "replay", "extra"}, `dlq replay: unexpected argument "extra"`},
		{[]string{"dlq", "show", "id1", "id2"}, "dlq show: give exactly one entry ID"},
		{[]string{"dlq", "show"}, "dlq show: give exactly one entry ID"},
		{[]string{"replay"}, "replay: no PATH given"},
	} {
		code, out, stderr := runIn(t, dir, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s", c.args, code, out, stderr)
		}
	}
	// The usage comes with the complaint.
	if _, _, stderr := runIn(t, dir, "gen", "x"); !strings.Contains(stderr, "-records") {
		t.Errorf("gen: no usage in:\n%s", stderr)
	}
	if _, _, stderr := runIn(t, dir, "version", "x"); !strings.Contains(stderr, "Usage:") {
		t.Errorf("version: no usage in:\n%s", stderr)
	}
	// What the commands do take.
	if code, out, _ := runIn(t, dir, "version"); code != exitOK || out == "" {
		t.Errorf("version: exit %d", code)
	}
	if code, _, stderr := runIn(t, dir, "gen", "--records", "3", "-o", "g.jsonl"); code != exitOK {
		t.Errorf("gen: exit %d: %s", code, stderr)
	}
	if code, out, stderr := runIn(t, dir, "replay", "logs", "g.jsonl"); code != exitOK || !strings.Contains(out, "4 in = 4 out") {
		t.Errorf("replay of two paths: exit %d\n%s%s", code, out, stderr)
	}
}
