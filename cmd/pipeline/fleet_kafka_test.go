package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/internal/testredis"
)

// TestKafkaFleetKill9: one topic of 6 partitions, three `pipeline run`
// processes in one consumer group, records produced while they run. One
// process is killed with SIGKILL mid-way and a fourth started; its
// partitions go to the others after the session timeout. With dedupe in
// one Redis, the records out (the lines of every process's output files)
// hold every good record exactly once, and the DLQs every malformed line
// exactly once; the windows the fleet wrote to Redis answer as one replay
// of the whole corpus does.
func TestKafkaFleetKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes and waits out a group session timeout")
	}
	kc := testkafka.StartWith(t, testkafka.Options{Topics: []string{"spans"}, Partitions: 6})
	srv := testredis.Start(t)
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	// The corpus: three bursts of event time, 70 s apart (several
	// windows), 1% malformed lines.
	var corpus bytes.Buffer
	var good, bad int64
	for k := range 3 {
		st, err := gen.Generate(&corpus, gen.Options{Format: "jsonl", Records: 8000, Seed: uint64(31 + k), Malformed: 0.01,
			Start: gen.DefaultStart.Add(time.Duration(k) * 70 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		good, bad = good+st.Spans, bad+st.Malformed
	}
	whole := filepath.Join(dir, "whole.jsonl")
	if err := os.WriteFile(whole, corpus.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(corpus.Bytes(), []byte("\n")), []byte("\n"))

	cfg := filepath.Join(dir, "fleet.yaml")
	y := fmt.Sprintf(`pipeline: {flush_every: 50ms}
sinks: [{name: records, type: file, file: {dir: "%[1]s/${TRACEPIPE_INSTANCE}/records"}}]
dedupe: {enabled: true, store: redis, redis: {addr: "%[2]s", key_prefix: "dd:"}}
dlq: {file: {dir: "%[1]s/${TRACEPIPE_INSTANCE}/dlq"}}
windows:
  instance: ${TRACEPIPE_INSTANCE}
  metrics: [{name: traces_per_service, count: trace_id, group_by: [service]}]
  sink: {type: redis, redis: {addr: "%[2]s", key_prefix: "fleet:"}}
run: {state_dir: "%[1]s/${TRACEPIPE_INSTANCE}/state", checkpoint_every: 100ms}
sources:
  - name: spans
    type: kafka
    kafka:
      brokers: [%[3]s]
      topics: [spans]
      group: fleet
      session_timeout: 6s
      heartbeat_interval: 500ms
      rebalance_timeout: 10s
      max_wait: 100ms
`, dir, srv.Addr(), strings.Join(kc.Addrs(), ", "))
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(name string) *runProc {
		t.Helper()
		p := &runProc{cmd: exec.Command(bin, "run", "-c", cfg), stderr: &syncBuffer{}, stdout: &syncBuffer{}, done: make(chan error, 1)}
		p.cmd.Env = append(os.Environ(), "TRACEPIPE_INSTANCE="+name)
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
	procs := map[string]*runProc{}
	for _, n := range []string{"p1", "p2", "p3"} {
		procs[n] = start(n)
	}

	// Produce while they run, in batches, about 12k lines a second.
	w := &kafkago.Writer{Addr: kafkago.TCP(kc.Addrs()...), Topic: "spans", Balancer: &kafkago.RoundRobin{},
		Transport: kc.Transport(), BatchSize: 500, BatchTimeout: time.Millisecond, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	produced := make(chan error, 1)
	go func() {
		for i := 0; i < len(lines); i += 500 {
			var msgs []kafkago.Message
			for _, l := range lines[i:min(i+500, len(lines))] {
				msgs = append(msgs, kafkago.Message{Value: l})
			}
			if err := w.WriteMessages(context.Background(), msgs...); err != nil {
				produced <- err
				return
			}
			time.Sleep(40 * time.Millisecond)
		}
		produced <- nil
	}()

	// Kill p1 once a third of the records are out, and start p4.
	deadline := time.Now().Add(60 * time.Second)
	for countLines(t, dir, "*/records/*") < good/3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d records out after 60 s; p1 stderr:\n%s", countLines(t, dir, "*/records/*"), procs["p1"].stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := procs["p1"].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-procs["p1"].done
	t.Logf("p1 killed with %d of %d records out", countLines(t, dir, "*/records/*"), good)
	procs["p4"] = start("p4")
	if err := <-produced; err != nil {
		t.Fatal(err)
	}

	// Everything out: every good record and every malformed line.
	deadline = time.Now().Add(90 * time.Second)
	for countLines(t, dir, "*/records/*") < good || countDLQ(t, dir) < bad {
		if time.Now().After(deadline) {
			t.Fatalf("records out %d of %d, DLQ %d of %d", countLines(t, dir, "*/records/*"), good, countDLQ(t, dir), bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, n := range []string{"p2", "p3", "p4"} {
		_ = procs[n].cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range []string{"p2", "p3", "p4"} {
		select {
		case err := <-procs[n].done:
			if err != nil {
				t.Fatalf("%s: %v\n%s", n, err, procs[n].stderr.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not drain", n)
		}
	}

	for _, n := range []string{"p1", "p2", "p3", "p4"} {
		t.Logf("%s: %d records out", n, countLines(t, dir, n+"/records/*"))
	}

	// Exactly once, on disk.
	seen := map[string]int{}
	for _, p := range globAll(t, dir, "*/records/*") {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			var r struct {
				TraceID string `json:"trace_id"`
				SpanID  string `json:"span_id"`
			}
			if err := json.Unmarshal(l, &r); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			seen[r.TraceID+"/"+r.SpanID]++
		}
	}
	dups := 0
	for _, n := range seen {
		if n > 1 {
			dups++
		}
	}
	if int64(len(seen)) != good || dups != 0 {
		t.Errorf("records out: %d distinct of %d good, %d twice or more", len(seen), good, dups)
	}
	// The fleet's windows answer as one replay does.
	refCfg := filepath.Join(dir, "ref.yaml")
	ref := fmt.Sprintf(`sinks: [{type: discard}]
dlq: {file: {dir: "%[1]s/ref/dlq"}}
windows:
  instance: ref
  metrics: [{name: traces_per_service, count: trace_id, group_by: [service]}]
  sink: {type: redis, redis: {addr: "%[2]s", key_prefix: "ref:"}}
`, dir, srv.Addr())
	if err := os.WriteFile(refCfg, []byte(ref), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "replay", "-c", refCfg, "--no-progress", whole).CombinedOutput(); err != nil {
		t.Fatalf("reference replay: %v\n%s", err, out)
	}
	// The DLQs hold what one replay dead-letters, once each.
	var fleetDLQ []string
	for _, d := range globAll(t, dir, "p*/dlq") {
		fleetDLQ = append(fleetDLQ, dlqPayloads(t, d)...)
	}
	sort.Strings(fleetDLQ)
	if refDLQ := dlqPayloads(t, filepath.Join(dir, "ref", "dlq")); int64(len(refDLQ)) != bad || !slices.Equal(fleetDLQ, refDLQ) {
		t.Errorf("DLQ: the fleet's %d entries differ from one replay's %d (%d malformed lines)", len(fleetDLQ), len(refDLQ), bad)
	}
	queryCfg := filepath.Join(dir, "query.yaml")
	if err := os.WriteFile(queryCfg, []byte(strings.ReplaceAll(strings.ReplaceAll(y, "${TRACEPIPE_INSTANCE}", "query"), "query/", "q/")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, q := range [][]string{
		{"--metric", "traces_per_service", "--by", "service", "--per-window"},
		{"--metric", "traces_per_service"},
	} {
		fleet, one := queryJSON(t, queryCfg, q...), queryJSON(t, refCfg, q...)
		if fleet != one {
			t.Errorf("query %v: the fleet\n%s\none replay\n%s", q, fleet, one)
		}
	}
}

func globAll(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// countLines counts the lines of the files matching pattern under dir.
func countLines(t *testing.T, dir, pattern string) int64 {
	t.Helper()
	var n int64
	for _, p := range globAll(t, dir, pattern) {
		data, _ := os.ReadFile(p)
		n += int64(bytes.Count(data, []byte("\n")))
	}
	return n
}

// countDLQ counts the entries of every process's file DLQ (segment lines).
func countDLQ(t *testing.T, dir string) int64 {
	t.Helper()
	return countLines(t, dir, "p*/dlq/dlq-*.seg")
}
