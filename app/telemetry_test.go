package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/internal/telemetry"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// startTelemetry serves a telemetry endpoint on a free loopback port for
// the test's life.
func startTelemetry(t *testing.T) *telemetry.Server {
	t.Helper()
	srv, err := telemetry.Start(telemetry.Options{Listen: "127.0.0.1:0", Version: "test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	return srv
}

// metrics is one scrape of /metrics, parsed by the Prometheus text parser.
type metrics map[string]*dto.MetricFamily

func scrape(t *testing.T, addr string) metrics {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mf
}

// value is the sample of name whose labels include labels (name=value
// pairs); -1 when there is none.
func (m metrics) value(name string, labels ...string) float64 {
	f := m[name]
	if f == nil {
		return -1
	}
next:
	for _, s := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case s.Counter != nil:
			return s.GetCounter().GetValue()
		case s.Gauge != nil:
			return s.GetGauge().GetValue()
		}
	}
	return -1
}

// sum is the sum of the samples of name whose labels include labels (a
// counter split by more attributes than the caller names); -1 when there
// is none.
func (m metrics) sum(name string, labels ...string) float64 {
	f := m[name]
	if f == nil {
		return -1
	}
	total, found := 0.0, false
next:
	for _, s := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		found = true
		total += s.GetCounter().GetValue() + s.GetGauge().GetValue()
	}
	if !found {
		return -1
	}
	return total
}

// readyz returns /readyz's status code and its components.
func readyz(t *testing.T, addr string) (int, map[string]telemetry.Status) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var h struct {
		Components map[string]telemetry.Status `json:"components"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return resp.StatusCode, h.Components
}

// TestReplayMetricsMatchReport: a replay with telemetry, scraped over
// real HTTP while it runs and after: the counters only grow while it
// runs, and at the end every one equals the report's figure, record for
// record (in, out, filtered, DLQ by class, lost, bytes, sink records,
// windows closed and late).
func TestReplayMetricsMatchReport(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Generate(f, gen.Options{Format: "jsonl", Records: 40000, Seed: 11, Malformed: 0.02}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`
input: {concurrency: 1}
pipeline: {workers: 2, batch_units: 256}
filter: {exclude_services: [frontend]}
sinks: [{name: out, type: file, file: {dir: %[1]s/records}}]
dlq: {file: {dir: %[1]s/dlq}}
windows:
  size: 1m
  late_policy: dlq
  allowed_lateness: 0s
  metrics: [{name: traces, count: trace_id, group_by: [service]}]
  sink: {type: file, file: {dir: %[1]s/windows}}
`, dir)
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	srv := startTelemetry(t)
	done := make(chan struct{})
	var rep *Report
	var runErr error
	go func() {
		defer close(done)
		rep, runErr = Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger(), Telemetry: srv})
	}()
	// While it runs: every scrape parses and no counter goes back.
	var last float64
	scrapes := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		m := scrape(t, srv.Addr())
		if n := m.sum("tracepipe_records_in_total"); n >= 0 {
			if n < last {
				t.Fatalf("records in went back from %v to %v", last, n)
			}
			last = n
			scrapes++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rep == nil || runErr != nil || !rep.Reconciled {
		t.Fatalf("run: %v %+v", runErr, rep)
	}
	t.Logf("%d scrapes during the run; report: in %d out %d filtered %d dlq %v", scrapes, rep.RecordsIn, rep.RecordsOut, rep.RecordsFiltered, rep.DLQ)
	if rep.RecordsFiltered == 0 || rep.DLQ["malformed"] == 0 || rep.Windows == nil || rep.Windows.WindowsClosed == 0 {
		t.Fatalf("the input should give filtered records, malformed lines and closed windows: %+v", rep)
	}

	m := scrape(t, srv.Addr())
	eq := func(name string, want int64, labels ...string) {
		t.Helper()
		if got := m.sum(name, labels...); got != float64(want) {
			t.Errorf("%s%v = %v, the report says %d", name, labels, got, want)
		}
	}
	// The records are counted by source and format: a replay's files are
	// source "file", this one's content JSON lines, and no other series
	// exists, so it alone holds the report's counts.
	eq("tracepipe_records_in_total", rep.RecordsIn)
	eq("tracepipe_records_out_total", rep.RecordsOut)
	eq("tracepipe_records_filtered_total", rep.RecordsFiltered)
	for _, name := range []string{"tracepipe_records_in_total", "tracepipe_records_out_total", "tracepipe_records_filtered_total"} {
		if n := len(m[name].GetMetric()); n != 1 {
			t.Errorf("%s: %d series, want 1 (source file, format jsonl)", name, n)
		}
	}
	eq("tracepipe_records_in_total", rep.RecordsIn, "source", "file", "format", "jsonl")
	eq("tracepipe_records_out_total", rep.RecordsOut, "source", "file", "format", "jsonl")
	eq("tracepipe_records_filtered_total", rep.RecordsFiltered, "source", "file", "format", "jsonl")
	eq("tracepipe_units_read_total", rep.Units)
	var total int64
	for _, c := range pipeline.Classes {
		eq("tracepipe_dlq_entries_total", rep.DLQ[string(c)], "class", string(c))
		total += rep.DLQ[string(c)]
	}
	if total != rep.DLQ["total"] {
		t.Errorf("DLQ classes sum to %d, total %d", total, rep.DLQ["total"])
	}
	// By code, stage and sink: each key's series holds as many entries as
	// the DLQ's files hold under it, and there is no other non-zero one.
	byKey := map[dlq.EntryKey]int64{}
	for _, e := range readDLQ(t, filepath.Join(dir, "dlq")) {
		byKey[dlq.EntryKey{Class: e.Error.Class, Code: e.Error.Code, Stage: e.Stage, Sink: strings.Join(e.Sinks, ",")}]++
	}
	if len(byKey) < 2 {
		t.Fatalf("the DLQ should hold entries of several codes (malformed lines, late records): %v", byKey)
	}
	for k, n := range byKey {
		eq("tracepipe_dlq_entries_total", n, "class", k.Class, "code", k.Code, "stage", k.Stage, "sink", k.Sink)
	}
	nonZero := 0
	for _, s := range m["tracepipe_dlq_entries_total"].GetMetric() {
		if s.GetCounter().GetValue() != 0 {
			nonZero++
		}
	}
	if nonZero != len(byKey) {
		t.Errorf("%d non-zero DLQ series, the DLQ holds %d keys: %v", nonZero, len(byKey), byKey)
	}
	eq("tracepipe_dlq_lost_total", rep.DLQLost)
	eq("tracepipe_dlq_evicted_total", rep.DLQEvicted)
	eq("tracepipe_bytes_read_total", rep.BytesRead)
	eq("tracepipe_bytes_in_total", rep.BytesIn)
	eq("tracepipe_sink_records_total", rep.Sinks[0].Records, "sink", "out")
	eq("tracepipe_sink_batches_total", rep.Sinks[0].Batches, "sink", "out")
	eq("tracepipe_sink_given_up_total", rep.Sinks[0].GaveUp, "sink", "out")
	eq("tracepipe_sink_breaker_state", 0, "sink", "out")
	eq("tracepipe_window_closed_total", rep.Windows.WindowsClosed)
	eq("tracepipe_window_late_total", rep.Windows.LateDLQ, "policy", "dlq")
	eq("tracepipe_window_overflow_total", rep.Windows.Overflow)
	eq("tracepipe_window_open", rep.Windows.OpenWindows)
	eq("tracepipe_dlq_size_limit_bytes", int64(cfg.DLQ.File.MaxBytes))
	if got := m.value("tracepipe_dlq_size_bytes"); got <= 0 {
		t.Errorf("tracepipe_dlq_size_bytes = %v with %d entries written", got, rep.DLQ["total"])
	}
	if m.value("tracepipe_build_info", "version", "test") != 1 {
		t.Error("no tracepipe_build_info{version=test}")
	}
	// Finished: the job no longer takes work.
	if code, comps := readyz(t, srv.Addr()); code != http.StatusServiceUnavailable || comps["job"].State != "stopped" || comps["source/replay"].State != "done" {
		t.Errorf("/readyz after the replay: %d %+v", code, comps)
	}
}

// TestReadyzFollowsRedisDLQ: a `run` job whose DLQ is a real Redis is
// ready while Redis answers, not ready (503, the DLQ unreachable) once
// the server is killed, and ready again when it is back.
func TestReadyzFollowsRedisDLQ(t *testing.T) {
	rs := testredis.Start(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	generate(t, filepath.Join(dir, "logs", "a.jsonl"), "jsonl", 2000, false)
	y := fmt.Sprintf(`
pipeline: {flush_every: 20ms}
sinks: [{name: d, type: discard}]
dlq:
  type: redis
  redis: {addr: "%[2]s", stream: "dlq", timeout: 300ms}
  file: {dir: "%[1]s/dlq"}
windows: {metrics: []}
run: {state_dir: "%[1]s/state", checkpoint_every: 50ms}
sources: [{name: logs, type: file, file: {include: ["%[1]s/logs/*.jsonl"], poll_interval: 10ms}}]
`, dir, rs.Addr())
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	srv := startTelemetry(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := RunJob(ctx, cfg, RunOptions{Logger: quietLogger(), Telemetry: srv})
		done <- result{rep, err}
	}()
	waitReady := func(want int, dlqState string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, comps := readyz(t, srv.Addr())
			if code == want && comps["dlq"].State == dlqState {
				if want == http.StatusServiceUnavailable && comps["dlq"].Error == "" {
					t.Fatalf("the DLQ is not ready and says not why: %+v", comps["dlq"])
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz never became %d with the DLQ %s: %d %+v", want, dlqState, code, comps)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitReady(http.StatusOK, "writable")
	rs.Kill()
	waitReady(http.StatusServiceUnavailable, "unreachable")
	rs.Restart()
	waitReady(http.StatusOK, "writable")

	// The sources and the sink were fine all along.
	_, comps := readyz(t, srv.Addr())
	if !comps["source/logs"].Ready || !comps["sink/d"].Ready || comps["job"].State != "running" {
		t.Fatalf("components: %+v", comps)
	}
	cancel()
	r := <-done
	if r.err != nil || r.rep == nil || !r.rep.Reconciled || r.rep.RecordsIn != 2000 {
		t.Fatalf("run: %v %+v", r.err, r.rep)
	}
	if code, comps := readyz(t, srv.Addr()); code != http.StatusServiceUnavailable || comps["job"].State != "stopped" {
		t.Fatalf("/readyz after the drain: %d %+v", code, comps)
	}
}

// TestReadyzSinkBreakerPastGrace: a sink whose breaker stays open longer
// than ready_grace makes the process not ready, naming the sink.
func TestReadyzSinkBreakerPastGrace(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	generate(t, filepath.Join(dir, "logs", "a.jsonl"), "jsonl", 200, false)
	y := fmt.Sprintf(`
pipeline: {flush_every: 20ms}
sinks: [{name: k, type: kafka, kafka: {brokers: ["127.0.0.1:1"], topic: t, timeout: 200ms}}]
retry: {initial: 10ms, max_interval: 50ms, max_elapsed: 2s, breaker: {failures: 1, open_for: 100ms}}
dlq: {file: {dir: "%[1]s/dlq"}}
windows: {metrics: []}
run: {state_dir: "%[1]s/state", checkpoint_every: 50ms}
telemetry: {ready_grace: 300ms}
sources: [{name: logs, type: file, file: {include: ["%[1]s/logs/*.jsonl"], poll_interval: 10ms}}]
`, dir)
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	srv := startTelemetry(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := RunJob(ctx, cfg, RunOptions{Logger: quietLogger(), Telemetry: srv})
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, comps := readyz(t, srv.Addr())
		if code == http.StatusServiceUnavailable && !comps["sink/k"].Ready && strings.Contains(comps["sink/k"].Error, "ready_grace") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never said the sink's breaker was open past ready_grace: %d %+v", code, comps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := scrape(t, srv.Addr()); m.value("tracepipe_sink_breaker_state", "sink", "k") < 1 {
		t.Errorf("breaker state %v, want open (1) or half-open (2)", m.value("tracepipe_sink_breaker_state", "sink", "k"))
	}
	cancel()
	<-done
}
