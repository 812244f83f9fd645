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

	goredis "github.com/redis/go-redis/v9"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/internal/testredis"
)

// fleet runs `pipeline run` processes on one config that differ only in
// $TRACEPIPE_INSTANCE (their directories, window instance), records going
// to a file sink per process, dedupe, windows in one Redis.
type fleet struct {
	t        *testing.T
	bin, dir string
	cfg      string // the fleet's config
	cfgText  string
	redis    *testredis.Server
	procs    map[string]*runProc

	whole     string   // the corpus as one file, for the reference replay
	lines     [][]byte // its lines
	good, bad int64    // good records (spans) and malformed lines in it
}

// newFleet makes the corpus (three bursts of event time 70 s apart, so
// several windows; 1% malformed lines) and the config, whose sources
// block is source.
func newFleet(t *testing.T, srv *testredis.Server, source string) *fleet {
	t.Helper()
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, bin: bin, dir: t.TempDir(), redis: srv, procs: map[string]*runProc{}}
	var corpus bytes.Buffer
	for k := range 3 {
		st, err := gen.Generate(&corpus, gen.Options{Format: "jsonl", Records: 8000, Seed: uint64(31 + k), Malformed: 0.01,
			Start: gen.DefaultStart.Add(time.Duration(k) * 70 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		f.good, f.bad = f.good+st.Spans, f.bad+st.Malformed
	}
	f.whole = filepath.Join(f.dir, "whole.jsonl")
	if err := os.WriteFile(f.whole, corpus.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f.lines = bytes.Split(bytes.TrimSuffix(corpus.Bytes(), []byte("\n")), []byte("\n"))

	f.cfg = filepath.Join(f.dir, "fleet.yaml")
	f.cfgText = fmt.Sprintf(`pipeline: {flush_every: 50ms}
telemetry: {listen: "127.0.0.1:0"}
sinks: [{name: records, type: file, file: {dir: "%[1]s/${TRACEPIPE_INSTANCE}/records"}}]
dedupe: {enabled: true, store: redis, redis: {addr: "%[2]s", key_prefix: "dd:"}}
dlq: {file: {dir: "%[1]s/${TRACEPIPE_INSTANCE}/dlq"}}
windows:
  instance: ${TRACEPIPE_INSTANCE}
  metrics: [{name: traces_per_service, count: trace_id, group_by: [service]}]
  sink: {type: redis, redis: {addr: "%[2]s", key_prefix: "fleet:"}}
run: {state_dir: "%[1]s/${TRACEPIPE_INSTANCE}/state", checkpoint_every: 100ms}
sources:
%[3]s`, f.dir, srv.Addr(), source)
	if err := os.WriteFile(f.cfg, []byte(f.cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// start starts process name (its $TRACEPIPE_INSTANCE).
func (f *fleet) start(name string) {
	f.t.Helper()
	f.t.Setenv("TRACEPIPE_INSTANCE", name)
	f.procs[name] = startRun(f.t, f.bin, f.cfg)
}

// produce sends the corpus's lines in chunks of 500 with send, pausing
// between chunks (about 12k lines a second), and says when done.
func (f *fleet) produce(send func([][]byte) error) <-chan error {
	done := make(chan error, 1)
	go func() {
		for i := 0; i < len(f.lines); i += 500 {
			if err := send(f.lines[i:min(i+500, len(f.lines))]); err != nil {
				done <- err
				return
			}
			time.Sleep(40 * time.Millisecond)
		}
		done <- nil
	}()
	return done
}

// out is how many records the processes' output files hold.
func (f *fleet) out() int64 { return countLines(f.t, f.dir, "*/records/*") }

// kill9 kills name with SIGKILL once a third of the records are out.
func (f *fleet) kill9(name string) {
	t := f.t
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for f.out() < f.good/3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d records out after 60 s; %s stderr:\n%s", f.out(), name, f.procs[name].stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := f.procs[name].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-f.procs[name].done
	t.Logf("%s killed with %d of %d records out", name, f.out(), f.good)
}

// finish waits until every good record and every malformed line is out,
// stops the live processes with SIGTERM (each drains, exit 0), and checks
// on disk: every record exactly once in the outputs, the DLQs holding what
// one replay of the corpus dead-letters (once each), and the windows the
// fleet wrote answering as that replay's do.
// settled, when set, must also hold before they are stopped (the dead
// process's work taken over, not only its records out).
func (f *fleet) finish(settled func() bool, live ...string) {
	t := f.t
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for f.out() < f.good || countLines(t, f.dir, "p*/dlq/dlq-*.seg") < f.bad || (settled != nil && !settled()) {
		if time.Now().After(deadline) {
			t.Fatalf("records out %d of %d, DLQ %d of %d", f.out(), f.good, countLines(t, f.dir, "p*/dlq/dlq-*.seg"), f.bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, n := range live {
		_ = f.procs[n].cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range live {
		select {
		case err := <-f.procs[n].done:
			if err != nil {
				t.Fatalf("%s: %v\n%s", n, err, f.procs[n].stderr.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not drain", n)
		}
	}
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for n := range f.procs {
			if !yield(n) {
				return
			}
		}
	}) {
		t.Logf("%s: %d records out", n, countLines(t, f.dir, n+"/records/*"))
	}

	seen := map[string]int{}
	for _, p := range globAll(t, f.dir, "*/records/*") {
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
	if int64(len(seen)) != f.good || dups != 0 {
		t.Errorf("records out: %d distinct of %d good, %d twice or more", len(seen), f.good, dups)
	}

	refCfg := filepath.Join(f.dir, "ref.yaml")
	ref := fmt.Sprintf(`sinks: [{type: discard}]
dlq: {file: {dir: "%[1]s/ref/dlq"}}
windows:
  instance: ref
  metrics: [{name: traces_per_service, count: trace_id, group_by: [service]}]
  sink: {type: redis, redis: {addr: "%[2]s", key_prefix: "ref:"}}
`, f.dir, f.redis.Addr())
	if err := os.WriteFile(refCfg, []byte(ref), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(f.bin, "replay", "-c", refCfg, "--no-progress", f.whole).CombinedOutput(); err != nil {
		t.Fatalf("reference replay: %v\n%s", err, out)
	}
	var fleetDLQ []string
	for _, d := range globAll(t, f.dir, "p*/dlq") {
		fleetDLQ = append(fleetDLQ, dlqPayloads(t, d)...)
	}
	sort.Strings(fleetDLQ)
	if refDLQ := dlqPayloads(t, filepath.Join(f.dir, "ref", "dlq")); int64(len(refDLQ)) != f.bad || !slices.Equal(fleetDLQ, refDLQ) {
		t.Errorf("DLQ: the fleet's %d entries differ from one replay's %d (%d malformed lines)", len(fleetDLQ), len(refDLQ), f.bad)
	}

	queryCfg := filepath.Join(f.dir, "query.yaml")
	if err := os.WriteFile(queryCfg, []byte(strings.ReplaceAll(f.cfgText, "${TRACEPIPE_INSTANCE}", "query")), 0o644); err != nil {
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

// TestKafkaFleetKill9: one topic of 6 partitions, three `pipeline run`
// processes in one consumer group, records produced while they run. One
// process is killed with SIGKILL mid-way and a fourth started; the dead
// one's partitions go to the others. With dedupe in one Redis, the outputs
// hold every good record exactly once and the DLQs every malformed line
// once; the fleet's windows answer as one replay of the corpus does.
func TestKafkaFleetKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes and waits out a group session timeout")
	}
	kc := testkafka.StartWith(t, testkafka.Options{Topics: []string{"spans"}, Partitions: 6})
	f := newFleet(t, testredis.Start(t), fmt.Sprintf(`  - name: spans
    type: kafka
    kafka:
      brokers: [%s]
      topics: [spans]
      group: fleet
      session_timeout: 6s
      heartbeat_interval: 500ms
      rebalance_timeout: 10s
      max_wait: 100ms
`, strings.Join(kc.Addrs(), ", ")))
	for _, n := range []string{"p1", "p2", "p3"} {
		f.start(n)
	}
	w := &kafkago.Writer{Addr: kafkago.TCP(kc.Addrs()...), Topic: "spans", Balancer: &kafkago.RoundRobin{},
		Transport: kc.Transport(), BatchSize: 500, BatchTimeout: time.Millisecond, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	produced := f.produce(func(lines [][]byte) error {
		msgs := make([]kafkago.Message, len(lines))
		for i, l := range lines {
			msgs[i].Value = l
		}
		return w.WriteMessages(context.Background(), msgs...)
	})
	f.kill9("p1")
	f.start("p4")
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	f.finish(nil, "p2", "p3", "p4")
}

// TestRedisStreamFleetKill9: three `pipeline run` processes in one Redis
// Stream consumer group, each with a name of its own (the default: unique
// per process), entries added while they run. One is killed with SIGKILL
// mid-way, leaving entries pending that nobody else was given; the others
// claim them once idle for claim_idle, and take over its windows markers.
// With dedupe, every record once, the DLQs as one replay's, the windows as
// one replay's, and nothing left pending in the group.
func TestRedisStreamFleetKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes and waits out claim_idle")
	}
	srv := testredis.Start(t)
	f := newFleet(t, srv, fmt.Sprintf(`  - name: spans
    type: redis_stream
    redis_stream: {addr: "%s", stream: spans, group: fleet, block: 100ms, claim_idle: 2s, claim_every: 200ms}
`, srv.Addr()))
	for _, n := range []string{"p1", "p2", "p3"} {
		f.start(n)
	}
	client := srv.Client(t)
	produced := f.produce(func(lines [][]byte) error {
		pipe := client.Pipeline()
		for _, l := range lines {
			pipe.XAdd(context.Background(), &goredis.XAddArgs{Stream: "spans", Values: []any{"record", l}})
		}
		_, err := pipe.Exec(context.Background())
		return err
	})
	f.kill9("p1")
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	// The dead consumer's records may all be out (it wrote them before it
	// died) while its entries are still pending and its windows markers
	// not taken over: stop the others only once that is done too.
	f.finish(func() bool {
		pending, err := client.XPending(context.Background(), "spans", "fleet").Result()
		markers, err2 := client.HLen(context.Background(), "spans:tracepipe:fleet:windows").Result()
		return err == nil && err2 == nil && pending.Count == 0 && markers <= 2
	}, "p2", "p3")
	// The dead consumer's work was taken over, not just left: its pending
	// entries claimed, its windows range re-read.
	logs := f.procs["p2"].stderr.String() + f.procs["p3"].stderr.String()
	for _, want := range []string{"took over entries another consumer left pending", "re-reading for the windows what a gone consumer delivered"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no process logged %q:\n%s", want, logs)
		}
	}
	pending, err := client.XPending(context.Background(), "spans", "fleet").Result()
	if err != nil {
		t.Fatal(err)
	}
	if pending.Count != 0 {
		t.Errorf("%d entries still pending in the group: %+v", pending.Count, pending)
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
