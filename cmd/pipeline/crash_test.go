package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/app"
	"github.com/tracepipe/tracepipe/gen"
)

var spanIDRe = regexp.MustCompile(`"span_id":"([0-9a-f]+)"`)

// processTestInput builds the command (once) and writes records generated
// spans to a new temp dir: the binary, the dir, the input file and its
// bytes.
func processTestInput(t *testing.T, records int64, seed uint64) (bin, dir, input string, data []byte) {
	t.Helper()
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	input = filepath.Join(dir, "spans.jsonl")
	var buf bytes.Buffer
	if _, err := gen.Generate(&buf, gen.Options{Format: "jsonl", Records: records, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(input, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return bin, dir, input, buf.Bytes()
}

// outputSpans reads the finished files of a file sink's folder: span id ->
// times seen. It fails on a torn line; it returns the .part files left.
func outputSpans(t *testing.T, dir string) (map[string]int, []string) {
	t.Helper()
	seen := map[string]int{}
	var parts []string
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if strings.HasSuffix(de.Name(), ".part") {
			parts = append(parts, de.Name())
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s ends in a torn line", de.Name())
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			m := spanIDRe.FindSubmatch(sc.Bytes())
			if m == nil || !json.Valid(sc.Bytes()) {
				t.Errorf("%s: not a whole record: %.100q", de.Name(), sc.Bytes())
				continue
			}
			seen[string(m[1])]++
		}
	}
	return seen, parts
}

// TestKill9DuringReplay kills a real `pipeline replay` process with
// SIGKILL while it writes, then runs the replay again. The dead run's
// unfinished file is recovered (whole records kept, a torn tail cut,
// renamed so readers see it) and the second run's report says so; no
// record of the input is missing afterwards; with dedupe on, records the
// first run had made durable are not written twice.
func TestKill9DuringReplay(t *testing.T) {
	t.Parallel()
	bin, dir, input, data := processTestInput(t, 60000, 5)
	want := map[string]bool{}
	for _, m := range spanIDRe.FindAllSubmatch(data, -1) {
		want[string(m[1])] = true
	}
	out := filepath.Join(dir, "records")
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `
pipeline:
  workers: 2
  flush_every: 20ms
sinks:
  - name: records
    type: file
    file: {dir: %q, rotate_bytes: 4MiB}
dedupe:
  enabled: true
  path: %q
dlq:
  file: {dir: %q}
`, out, filepath.Join(dir, "dedupe.db"), filepath.Join(dir, "dlq")), 0o644); err != nil {
		t.Fatal(err)
	}

	// Run 1: killed once it has written a few MiB (some files finished,
	// one open).
	cmd := exec.Command(bin, "replay", "-c", cfg, "--no-progress", input)
	cmd.Stderr = &bytes.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var total int64
		var part bool
		des, _ := os.ReadDir(out)
		for _, de := range des {
			if fi, err := de.Info(); err == nil {
				total += fi.Size()
				part = part || (strings.HasSuffix(de.Name(), ".part") && fi.Size() > 0)
			}
		}
		if part && total > 6<<20 {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	werr := cmd.Wait()
	if !killed {
		t.Fatalf("the replay ended before it could be killed (%v): make the input larger", werr)
	}
	before, parts := outputSpans(t, out)
	if len(parts) == 0 {
		t.Fatal("the dead run left no .part file: the test tests nothing")
	}
	t.Logf("killed: %d records in finished files, .part files %v", len(before), parts)

	// Run 2: recovers, says so, delivers the rest.
	report := filepath.Join(dir, "report.json")
	var stderr bytes.Buffer
	cmd = exec.Command(bin, "replay", "-c", cfg, "--no-progress", "--report", report, input)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("rerun: %v\n%s", err, stderr.String())
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep app.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	var kept int64
	for _, r := range rep.Recovered {
		kept += r.Records
	}
	if len(rep.Recovered) != len(parts) || kept == 0 || !strings.Contains(stderr.String(), "recovered") {
		t.Fatalf("the rerun did not say what it recovered: %+v\n%s", rep.Recovered, stderr.String())
	}
	after, parts := outputSpans(t, out)
	if len(parts) != 0 {
		t.Fatalf(".part files left after a clean run: %v", parts)
	}
	missing, dup := 0, 0
	for id := range want {
		switch n := after[id]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	t.Logf("rerun: %d records out, %d deduplicated; %d distinct in the output, %d written twice (recovered after the last barrier)",
		rep.RecordsOut, len(want)-int(rep.RecordsOut), len(after), dup)
	if missing > 0 || len(after) != len(want) {
		t.Fatalf("%d input records missing from the output after the rerun", missing)
	}
	// Dedupe marks are made durable at each barrier, after the sink's
	// fsync: only what was written after the last barrier (flush_every,
	// 20 ms here) can be written twice.
	if dup > len(want)/4 {
		t.Fatalf("%d records written twice: dedupe did not hold what the first run made durable", dup)
	}
}

// TestSecondSignalExitsAtOnce: a replay whose only sink is down waits for
// it (retries up to max_elapsed, a minute here) after a first SIGINT, as a
// clean stop finishes what was read; a second SIGINT ends it at once.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	bin, dir, input, _ := processTestInput(t, 2000, 3)
	cfg := filepath.Join(dir, "c.yaml")
	// Port 1 on loopback: nothing listens, every write is refused.
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `
sinks:
  - {name: stream, type: redis_stream, redis_stream: {addr: "127.0.0.1:1", stream: records, timeout: 200ms}}
retry: {initial: 50ms, max_interval: 200ms, max_attempts: 1000, max_elapsed: 1m, breaker: {failures: 3, open_for: 100ms}}
dlq: {file: {dir: %q}}
`, filepath.Join(dir, "dlq")), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "replay", "-c", cfg, "--no-progress", input)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	time.Sleep(time.Second)
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		t.Fatalf("the first signal ended the run at once (%v), without finishing what was read:\n%s", err, stderr.String())
	case <-time.After(time.Second):
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err == nil {
			t.Fatal("exit 0 after a second signal")
		}
		if !strings.Contains(stderr.String(), "a second signal exits at once") {
			t.Fatalf("the first signal was not acknowledged:\n%s", stderr.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("a second signal did not end the run:\n%s", stderr.String())
	}
}
