package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/gen"
)

// runConfig writes a `pipeline run` config following dir/logs/**/*.jsonl
// into dir/records, with fast timings so a test does not wait, and its
// telemetry endpoint on a free port (tests run at once; the port is
// logged); extra is appended (dedupe, windows).
func runConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	cfg := filepath.Join(dir, "c.yaml")
	y := fmt.Sprintf(`pipeline: {workers: 2, flush_every: 20ms}
sinks: [{name: records, type: file, file: {dir: %q}}]
dlq: {file: {dir: %q}}
run: {state_dir: %q, checkpoint_every: 50ms, shutdown_grace: 60s}
telemetry: {listen: "127.0.0.1:0"}
sources:
  - name: logs
    type: file
    file:
      include: [%q]
      scan_interval: 100ms
      poll_interval: 20ms
      partial_line_timeout: 300ms
      idle_timeout: 200ms
%s`, filepath.Join(dir, "records"), filepath.Join(dir, "dlq"), filepath.Join(dir, "state"),
		filepath.Join(dir, "logs", "**", "*.jsonl"), extra)
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// genLines returns n generated JSON lines (seeded) and their span ids.
func genLines(t *testing.T, n int64, seed uint64, malformed float64) ([]byte, []string) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := gen.Generate(&buf, gen.Options{Format: "jsonl", Records: n, Seed: seed, Malformed: malformed}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range spanIDRe.FindAllSubmatch(buf.Bytes(), -1) {
		ids = append(ids, string(m[1]))
	}
	return buf.Bytes(), ids
}

func appendFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writtenSpans counts the span ids in every whole line the file sink has
// written so far, finished files and the .part being written alike.
func writtenSpans(t *testing.T, dir string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		data, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			continue // renamed by the completer meanwhile: read at the next poll
		}
		if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
			data = data[:i+1]
		} else {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if m := spanIDRe.FindSubmatch(sc.Bytes()); m != nil {
				seen[string(m[1])]++
			}
		}
	}
	return seen
}

// waitSpans waits until every id in want is in the sink's output.
func waitSpans(t *testing.T, dir string, want []string, p *exec.Cmd, stderr fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := writtenSpans(t, dir)
		missing := 0
		for _, id := range want {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records never reached the sink\nstderr:\n%s", missing, len(want), stderr)
		}
		if p != nil && p.ProcessState != nil {
			t.Fatalf("pipeline run exited early: %v\n%s", p.ProcessState, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer a test may read while a child process's
// output is copied into it.
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

// Bytes returns a copy of what was written.
func (s *syncBuffer) Bytes() []byte { return []byte(s.String()) }

type runProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	stdout *syncBuffer
	done   chan error
}

// startRun starts `pipeline run -c cfg`, with more flags if given.
func startRun(t testing.TB, bin, cfg string, flags ...string) *runProc {
	t.Helper()
	p := &runProc{cmd: exec.Command(bin, append([]string{"run", "-c", cfg}, flags...)...), stderr: &syncBuffer{}, stdout: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stop sends sig and waits for the exit, returning its code.
func (p *runProc) stop(t testing.TB, sig syscall.Signal) int {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("pipeline run did not exit after %v\nstderr:\n%s", sig, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestRunFollowsDrainsAndResumes: a real `pipeline run` follows the files
// of a glob (one there at start, one appearing later in a subfolder, lines
// appended to the first), drains on SIGTERM (exit 0, every record in a
// finished file, the checkpoint written), and a second process resumes
// from the checkpoint: with no dedupe, a record delivered twice or never
// shows in the output.
func TestRunFollowsDrainsAndResumes(t *testing.T) {
	t.Parallel()
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := runConfig(t, dir, "")
	out := filepath.Join(dir, "records")
	a, idsA := genLines(t, 2000, 1, 0)
	appendFile(t, filepath.Join(dir, "logs", "a.jsonl"), a)

	p := startRun(t, bin, cfg)
	waitSpans(t, out, idsA, p.cmd, p.stderr)
	b, idsB := genLines(t, 1000, 2, 0)
	appendFile(t, filepath.Join(dir, "logs", "sub", "b.jsonl"), b)
	waitSpans(t, out, append(idsA, idsB...), p.cmd, p.stderr)
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, p.stderr)
	}
	seen, parts := outputSpans(t, out)
	if len(parts) != 0 {
		t.Fatalf(".part files after a drain: %v", parts)
	}
	for _, id := range append(idsA, idsB...) {
		if seen[id] != 1 {
			t.Fatalf("span %s written %d times after the first run", id, seen[id])
		}
	}
	if !strings.Contains(p.stdout.String(), "3000 in = 3000 out") || !strings.Contains(p.stdout.String(), "run: 2 files") {
		t.Errorf("summary:\n%s", p.stdout)
	}
	ls := exec.Command(bin, "state", "ls", "-c", cfg)
	if o, err := ls.CombinedOutput(); err != nil || !strings.Contains(string(o), "logs") {
		t.Fatalf("state ls: %v\n%s", err, o)
	}

	// Run 2: resumes; lines appended while it was down are read once.
	c, idsC := genLines(t, 500, 3, 0)
	appendFile(t, filepath.Join(dir, "logs", "a.jsonl"), c)
	p2 := startRun(t, bin, cfg)
	waitSpans(t, out, idsC, p2.cmd, p2.stderr)
	if code := p2.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d after SIGINT\n%s", code, p2.stderr)
	}
	seen, _ = outputSpans(t, out)
	all := append(append(idsA, idsB...), idsC...)
	for _, id := range all {
		if seen[id] != 1 {
			t.Fatalf("span %s written %d times after the restart", id, seen[id])
		}
	}
	if len(seen) != len(all) {
		t.Fatalf("%d distinct spans written, want %d", len(seen), len(all))
	}
	if !strings.Contains(p2.stdout.String(), "500 in = 500 out") {
		t.Errorf("second summary (this process's life only):\n%s", p2.stdout)
	}

	// state reset while nothing runs: the source starts afresh.
	if o, err := exec.Command(bin, "state", "reset", "-c", cfg, "logs").CombinedOutput(); err != nil {
		t.Fatalf("state reset: %v\n%s", err, o)
	}
	if o, _ := exec.Command(bin, "state", "ls", "-c", cfg).CombinedOutput(); !strings.Contains(string(o), "no checkpoints") {
		t.Fatalf("state ls after reset:\n%s", o)
	}
}

// TestRunSIGHUPReopens: SIGHUP makes the file sink finish its file (a log
// rotator finds it complete under its final name) and go on in a new one.
func TestRunSIGHUPReopens(t *testing.T) {
	t.Parallel()
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := runConfig(t, dir, "")
	out := filepath.Join(dir, "records")
	a, idsA := genLines(t, 300, 4, 0)
	appendFile(t, filepath.Join(dir, "logs", "a.jsonl"), a)
	p := startRun(t, bin, cfg)
	waitSpans(t, out, idsA, p.cmd, p.stderr)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		done, _ := filepath.Glob(filepath.Join(out, "records-*.jsonl"))
		if len(done) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished file after SIGHUP: %v\n%s", done, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, idsB := genLines(t, 300, 5, 0)
	appendFile(t, filepath.Join(dir, "logs", "a.jsonl"), b)
	waitSpans(t, out, idsB, p.cmd, p.stderr)
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}
	done, _ := filepath.Glob(filepath.Join(out, "records-*.jsonl"))
	if len(done) != 2 {
		t.Fatalf("want the file before SIGHUP and the one after, got %v", done)
	}
	seen, _ := outputSpans(t, out)
	for _, id := range append(idsA, idsB...) {
		if seen[id] != 1 {
			t.Fatalf("span %s written %d times", id, seen[id])
		}
	}
}

// TestRunDrainBoundedByGrace: a sink that cannot take anything (a Kafka
// broker that refuses connections) would keep the drain retrying for
// retry.max_elapsed; run.shutdown_grace ends it: exit 1, saying so, and
// the checkpoint holds nothing that was not acked (here: nothing).
func TestRunDrainBoundedByGrace(t *testing.T) {
	t.Parallel()
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	y := fmt.Sprintf(`pipeline: {flush_every: 20ms}
sinks: [{name: k, type: kafka, kafka: {brokers: ["127.0.0.1:1"], topic: t, timeout: 1s}}]
retry: {max_elapsed: 10m, max_attempts: 1000}
dlq: {file: {dir: %q}}
run: {state_dir: %q, checkpoint_every: 50ms, shutdown_grace: 1s}
telemetry: {listen: "127.0.0.1:0"}
sources: [{name: logs, type: file, file: {include: [%q], poll_interval: 20ms}}]
`, filepath.Join(dir, "dlq"), filepath.Join(dir, "state"), filepath.Join(dir, "logs", "*.jsonl"))
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	a, _ := genLines(t, 5000, 6, 0)
	appendFile(t, filepath.Join(dir, "logs", "a.jsonl"), a)
	p := startRun(t, bin, cfg)
	waitRead(t, p, int64(len(a)))
	if code := p.stop(t, syscall.SIGTERM); code != exitFailed || !strings.Contains(p.stderr.String(), "shutdown_grace") {
		t.Fatalf("exit %d, want %d after the grace\n%s", code, exitFailed, p.stderr)
	}
	out, _ := exec.Command(bin, "state", "ls", "--json", "-c", cfg).Output()
	if committedPast(out, 1) {
		t.Fatalf("a position past what no sink took was committed:\n%s", out)
	}
}

// TestRunSecondSignal: a second SIGTERM during a drain that waits on a
// sink (Kafka refusing connections, grace far away) ends the process at
// once; the checkpoint holds nothing that was not acked, so the next
// start, with a sink that works, delivers every record.
func TestRunSecondSignal(t *testing.T) {
	t.Parallel()
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	head := `pipeline: {flush_every: 20ms}
retry: {max_elapsed: 10m, max_attempts: 1000}
`
	tail := fmt.Sprintf(`dlq: {file: {dir: %q}}
run: {state_dir: %q, checkpoint_every: 50ms, shutdown_grace: 10m}
telemetry: {listen: "127.0.0.1:0"}
sources: [{name: logs, type: file, file: {include: [%q], poll_interval: 20ms}}]
`, filepath.Join(dir, "dlq"), filepath.Join(dir, "state"), filepath.Join(dir, "logs", "*.jsonl"))
	down := head + "sinks: [{name: k, type: kafka, kafka: {brokers: [\"127.0.0.1:1\"], topic: t, timeout: 1s}}]\n" + tail
	if err := os.WriteFile(cfg, []byte(down), 0o644); err != nil {
		t.Fatal(err)
	}
	a, ids := genLines(t, 5000, 7, 0)
	appendFile(t, filepath.Join(dir, "logs", "a.jsonl"), a)
	p := startRun(t, bin, cfg)
	waitRead(t, p, int64(len(a)))
	deadline := time.Now().Add(30 * time.Second)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	for !strings.Contains(p.stderr.String(), "a second signal exits at once") {
		if time.Now().After(deadline) {
			t.Fatalf("the first signal was not taken:\n%s", p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.stop(t, syscall.SIGTERM)
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("not ended by the second signal: %v\n%s", p.cmd.ProcessState, p.stderr)
	}

	out := filepath.Join(dir, "records")
	up := head + fmt.Sprintf("sinks: [{name: records, type: file, file: {dir: %q}}]\n", out) + tail
	if err := os.WriteFile(cfg, []byte(up), 0o644); err != nil {
		t.Fatal(err)
	}
	p2 := startRun(t, bin, cfg)
	waitSpans(t, out, ids, p2.cmd, p2.stderr)
	if code := p2.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, p2.stderr)
	}
}

// waitRead waits until process p has read at least n bytes (its rchar in
// /proc: the source has read the input, whatever the sinks do with it).
func waitRead(t *testing.T, p *runProc, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", p.cmd.Process.Pid))
		var rchar int64
		if _, err := fmt.Sscanf(string(data), "rchar: %d", &rchar); err == nil && rchar >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the input (%d bytes) was never read (rchar %d):\n%s", n, rchar, p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
