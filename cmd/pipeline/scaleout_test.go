package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/internal/testredis"
)

// buildPipeline builds the command once per test binary run, for tests
// that need real processes.
var buildPipeline = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tracepipe-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "pipeline")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// scaleConfig writes a config whose windows go to Redis under prefix, with
// the instance from $TRACEPIPE_INSTANCE.
func scaleConfig(t *testing.T, dir, addr, prefix string) string {
	t.Helper()
	cfg := fmt.Sprintf(`sinks: [{type: discard}]
dlq:
  file:
    dir: "%s/dlq-${TRACEPIPE_INSTANCE:-query}"
windows:
  instance: ${TRACEPIPE_INSTANCE:-query}
  metrics:
    - {name: traces_per_service, count: trace_id, group_by: [service]}
    - {name: users_per_route, count: attributes.user.id, group_by: [service, attributes.http.route]}
  sink:
    type: redis
    redis: {addr: "%s", key_prefix: "%s"}
`, dir, addr, prefix)
	path := filepath.Join(dir, strings.TrimSuffix(prefix, ":")+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// queryJSON runs `pipeline query --json` in process and returns its output.
func queryJSON(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	var out, errOut syncBuffer
	if code := run(append([]string{"query", "-c", cfg, "--json"}, args...), &out, &errOut); code != exitOK {
		t.Fatalf("query %v: exit %d: %s", args, code, errOut.String())
	}
	// Instances differ between the runs compared; the counts must not.
	var doc struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range doc.Results {
		lines = append(lines, fmt.Sprintf("%v %v %v", r["window_start"], r["group"], r["distinct"]))
	}
	if len(lines) == 0 {
		t.Fatalf("query %v: no results", args)
	}
	return strings.Join(lines, "\n")
}

// TestScaleOutThreeProcessesOneRedis splits one input across three
// `pipeline replay` processes writing the same metrics to one real
// redis-server, and checks `pipeline query` gives what one process over
// the whole input gives: per window and group, and over the whole range.
// Replaying the whole input a second time changes nothing (idempotency).
func TestScaleOutThreeProcessesOneRedis(t *testing.T) {
	srv := testredis.Start(t)
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.jsonl")
	f, err := os.Create(whole)
	if err != nil {
		t.Fatal(err)
	}
	// Four bursts of ~10 s of event time, 70 s apart: several windows.
	for k := range 4 {
		start := gen.DefaultStart.Add(time.Duration(k) * 70 * time.Second)
		if _, err := gen.Generate(f, gen.Options{Format: "jsonl", Records: 10000, Seed: uint64(11 + k), Malformed: 0.01, Start: start}); err != nil {
			t.Fatal(err)
		}
	}
	_ = f.Close()
	// Split by line, round robin: every process sees every window.
	parts := make([]*bufio.Writer, 3)
	for i := range parts {
		pf, err := os.Create(filepath.Join(dir, fmt.Sprintf("part%d.jsonl", i)))
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		parts[i] = bufio.NewWriter(pf)
	}
	data, err := os.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range bytes.SplitAfter(data, []byte("\n")) {
		_, _ = parts[i%3].Write(line)
	}
	for _, p := range parts {
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	replay := func(cfg, instance string, paths ...string) *exec.Cmd {
		cmd := exec.CommandContext(t.Context(), bin, append([]string{"replay", "-c", cfg, "--no-progress"}, paths...)...)
		cmd.Env = append(os.Environ(), "TRACEPIPE_INSTANCE="+instance)
		cmd.Dir = dir
		return cmd
	}
	splitCfg := scaleConfig(t, dir, srv.Addr(), "split:")
	var wg sync.WaitGroup
	errs := make([]error, 3)
	outs := make([][]byte, 3)
	for i := range 3 {
		wg.Go(func() {
			outs[i], errs[i] = replay(splitCfg, fmt.Sprintf("p%d", i), filepath.Join(dir, fmt.Sprintf("part%d.jsonl", i))).CombinedOutput()
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, outs[i])
		}
	}
	wholeCfg := scaleConfig(t, dir, srv.Addr(), "whole:")
	if out, err := replay(wholeCfg, "one", whole).CombinedOutput(); err != nil {
		t.Fatalf("one process: %v\n%s", err, out)
	}

	for _, q := range [][]string{
		{"--metric", "traces_per_service", "--by", "service", "--per-window"},
		{"--metric", "traces_per_service", "--by", "service"},
		{"--metric", "traces_per_service"},
		{"--metric", "users_per_route", "--by", "service,attributes.http.route"},
		{"--metric", "users_per_route", "--where", "service=frontend", "--per-window"},
	} {
		split, one := queryJSON(t, splitCfg, q...), queryJSON(t, wholeCfg, q...)
		if split != one {
			t.Errorf("query %v: three processes\n%s\none process\n%s", q, split, one)
		}
	}

	// Idempotency: the same input again, same instance: same answers.
	before := queryJSON(t, wholeCfg, "--metric", "traces_per_service", "--by", "service", "--per-window")
	if out, err := replay(wholeCfg, "one", whole).CombinedOutput(); err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if after := queryJSON(t, wholeCfg, "--metric", "traces_per_service", "--by", "service", "--per-window"); after != before {
		t.Errorf("replaying the same input changed the counts:\nbefore\n%s\nafter\n%s", before, after)
	}
}

// TestReplayTwiceIntoTheFileStore: the embedded default's file store, the
// same file replayed twice: every estimate is unchanged.
func TestReplayTwiceIntoTheFileStore(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Generate(f, gen.Options{Format: "jsonl", Records: 20000, Seed: 12}); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	cfg := filepath.Join(dir, "config.yaml")
	y := fmt.Sprintf(`sinks: [{type: discard}]
dlq: {file: {dir: %[1]s/dlq}}
windows:
  metrics:
    - {name: traces_per_service, count: trace_id, group_by: [service]}
    - {name: users_per_service, count: attributes.user.id, group_by: [service]}
  sink: {type: file, file: {dir: %[1]s/windows}}
`, dir)
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	replay := func() {
		var out, errOut syncBuffer
		if code := run([]string{"replay", "-c", cfg, "--no-progress", in}, &out, &errOut); code != exitOK {
			t.Fatalf("replay: exit %d: %s", code, errOut.String())
		}
	}
	replay()
	var first []string
	for _, m := range []string{"traces_per_service", "users_per_service"} {
		first = append(first, queryJSON(t, cfg, "--metric", m, "--by", "service", "--per-window"))
	}
	replay()
	for i, m := range []string{"traces_per_service", "users_per_service"} {
		if got := queryJSON(t, cfg, "--metric", m, "--by", "service", "--per-window"); got != first[i] {
			t.Errorf("%s after a second replay:\n%s\nfirst:\n%s", m, got, first[i])
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "windows", "*.jsonl"))
	if len(files) != 2 {
		t.Errorf("%d windows files, want one per run", len(files))
	}
}
