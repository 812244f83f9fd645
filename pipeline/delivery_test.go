package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/sinks"
)

// flaky puts a real file sink behind a switch: while down (or for its
// first failures writes) every write fails with a transient error that
// never reached the file; after that it delivers.
type flaky struct {
	*sinks.File
	failures atomic.Int64 // writes still to fail
	down     atomic.Bool
	calls    atomic.Int64
}

var errConnRefused = pipeline.WithCode("connection_refused", errors.New("dial tcp 127.0.0.1:9: connect: connection refused"))

func (f *flaky) Write(ctx context.Context, b *pipeline.Batch, recs []int32) error {
	f.calls.Add(1)
	if f.down.Load() || f.failures.Add(-1) >= 0 {
		return errConnRefused
	}
	return f.File.Write(ctx, b, recs)
}

func fileSink(t *testing.T, name string) (*sinks.File, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	s, err := sinks.NewFile(sinks.FileOptions{Name: name, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// lines returns the names written by a file sink, one per record.
func lines(t *testing.T, s *sinks.File, dir string) []string {
	t.Helper()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var out []string
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

// fastRetry is a real policy with short waits, so tests take milliseconds.
func fastRetry(t *testing.T, mutate func(*config.Retry)) *pipeline.Retrier {
	t.Helper()
	c := config.Retry{Initial: time.Millisecond, Multiplier: 2, MaxInterval: 5 * time.Millisecond,
		MaxAttempts: 20, MaxElapsed: 2 * time.Second,
		Budget:  config.RetryBudget{Ratio: 0.5, MinPerSecond: 100},
		Breaker: config.Breaker{Failures: 1000, OpenFor: 10 * time.Millisecond}}
	if mutate != nil {
		mutate(&c)
	}
	r, err := pipeline.NewRetrier(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func units(n, from int) []string {
	var u []string
	for i := range n {
		u = append(u, fmt.Sprintf("r%05d", from+i))
	}
	return u
}

// TestSinkFailingThenRecovering: a sink fails its first 5 writes, then
// recovers: every record is delivered exactly once, the retries counted,
// nothing in the DLQ.
func TestSinkFailingThenRecovering(t *testing.T) {
	d, dir := openDLQ(t)
	inner, out := fileSink(t, "flaky")
	s := &flaky{File: inner}
	s.failures.Store(5)
	retry := fastRetry(t, nil)
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 2, Stages: []pipeline.Stage{makeRecords{}}, Sinks: []pipeline.Sink{s},
		Delivery: []pipeline.SinkDelivery{{Retry: retry, Queue: 16}}, DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), Logger: quiet(),
	})
	var batches [][]string
	for i := range 10 {
		batches = append(batches, units(20, i*20))
	}
	feed(r, batches...)
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := lines(t, inner, out)
	seen := map[string]int{}
	for _, l := range got {
		seen[l]++
	}
	if len(got) != 200 || len(seen) != 200 {
		t.Fatalf("%d records written, %d distinct; want 200 once each", len(got), len(seen))
	}
	if es := entries(t, dir); len(es) != 0 {
		t.Fatalf("%d DLQ entries, want none", len(es))
	}
	st := r.SinkStats()[0]
	rs := retry.Stats.Snapshot()
	if st.Failed == 0 || st.Recovered != st.Failed || st.GaveUp != 0 || rs.Retries < 5 {
		t.Fatalf("sink stats %+v, retry stats %+v", st, rs)
	}
	if err := r.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
}

// TestSinkDownForGood: after the policy, every record the dead sink could
// not take is in the DLQ as sink_exhausted, and the healthy sink received
// everything meanwhile.
func TestSinkDownForGood(t *testing.T) {
	d, dir := openDLQ(t)
	inner, _ := fileSink(t, "dead")
	dead := &flaky{File: inner}
	dead.down.Store(true)
	good, goodDir := fileSink(t, "good")
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 2, Stages: []pipeline.Stage{makeRecords{}}, Sinks: []pipeline.Sink{dead, good},
		Delivery: []pipeline.SinkDelivery{{Retry: fastRetry(t, func(c *config.Retry) { c.MaxAttempts = 4 }), Queue: 4}},
		DLQ:      dlq.NewRecorder(d, dlq.RecorderOptions{}), Logger: quiet(),
	})
	var batches [][]string
	for i := range 12 {
		batches = append(batches, units(10, i*10))
	}
	feed(r, batches...)
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(lines(t, good, goodDir)); n != 120 {
		t.Fatalf("the healthy sink got %d records, want 120", n)
	}
	es := entries(t, dir)
	if len(es) != 120 {
		t.Fatalf("%d DLQ entries, want 120", len(es))
	}
	codes := map[string]int{}
	for _, e := range es {
		if e.Error.Class != "sink_exhausted" || e.Component != "dead" || e.Stage != "sink" {
			t.Fatalf("entry %+v", e)
		}
		codes[e.Error.Code]++
	}
	t.Logf("DLQ codes: %v (queue_full: the dead sink's queue was full, the batch went to the DLQ at once)", codes)
	st := r.SinkStats()[0]
	if st.GaveUp != 12 || st.Recovered != 0 || st.InFlight != 0 {
		t.Fatalf("sink stats %+v", st)
	}
	if err := r.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
}

// TestRetryStormStaysInBudget: a dead sink under load: the attempts stay
// within what the budget allows (ratio of first attempts + the per-second
// floor + the bucket's cap), whatever the attempt limit says.
func TestRetryStormStaysInBudget(t *testing.T) {
	d, _ := openDLQ(t)
	inner, _ := fileSink(t, "dead")
	dead := &flaky{File: inner}
	dead.down.Store(true)
	const ratio, perSecond = 0.1, 5.0
	retry := fastRetry(t, func(c *config.Retry) {
		c.MaxAttempts = 1000
		c.Budget = config.RetryBudget{Ratio: ratio, MinPerSecond: perSecond}
	})
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 4, Stages: []pipeline.Stage{makeRecords{}}, Sinks: []pipeline.Sink{dead},
		Delivery: []pipeline.SinkDelivery{{Retry: retry, Queue: 1000}}, DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), Logger: quiet(),
	})
	start := time.Now()
	var batches [][]string
	for i := range 300 {
		batches = append(batches, units(1, i))
	}
	feed(r, batches...)
	elapsed := time.Since(start)
	_ = d.Close(context.Background())
	rs := retry.Stats.Snapshot()
	// The bucket starts full at max(10, perSecond) tokens.
	bound := int64(ratio*300 + perSecond*elapsed.Seconds() + 10 + 1)
	t.Logf("300 first attempts, %d retries in %s (bound %d), %d denied by the budget", rs.Retries, elapsed.Round(time.Millisecond), bound, rs.BudgetDenied)
	if rs.Retries > bound {
		t.Fatalf("%d retries, the budget allows %d", rs.Retries, bound)
	}
	if calls := dead.calls.Load(); calls != 300+rs.Retries {
		t.Fatalf("%d writes reached the sink, want 300 first attempts + %d retries", calls, rs.Retries)
	}
	if err := r.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
}

// TestPermanentErrorsSkipRetries: a permanent error goes to the DLQ as
// sink_permanent with no retry.
func TestPermanentErrorsSkipRetries(t *testing.T) {
	d, dir := openDLQ(t)
	s := &rejecting{}
	retry := fastRetry(t, nil)
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 1, Stages: []pipeline.Stage{makeRecords{}}, Sinks: []pipeline.Sink{s},
		Delivery: []pipeline.SinkDelivery{{Retry: retry}}, DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), Logger: quiet(),
	})
	feed(r, units(3, 0))
	_ = d.Close(context.Background())
	es := entries(t, dir)
	if len(es) != 3 || es[0].Error.Class != "sink_permanent" || es[0].Error.Code != "message_too_large" {
		t.Fatalf("entries %+v", es)
	}
	if s.calls.Load() != 1 || retry.Stats.Snapshot().Retries != 0 {
		t.Fatalf("%d writes, %d retries: want one and none", s.calls.Load(), retry.Stats.Snapshot().Retries)
	}
}

type rejecting struct{ calls atomic.Int64 }

func (s *rejecting) Name() string                { return "rejecting" }
func (s *rejecting) Close(context.Context) error { return nil }
func (s *rejecting) Flush(context.Context) error { return nil }
func (s *rejecting) Write(context.Context, *pipeline.Batch, []int32) error {
	s.calls.Add(1)
	return pipeline.Permanent(pipeline.WithCode("message_too_large", errors.New("message too large for the broker")))
}

// BenchmarkRetryOnTheHappyPath runs batches of 512 records through the
// runner to a sink that always succeeds, with and without a retry policy:
// the policy's cost when nothing fails (bench/README.md).
func BenchmarkRetryOnTheHappyPath(b *testing.B) {
	for _, withRetry := range []bool{false, true} {
		name := "no-retry"
		if withRetry {
			name = "retry"
		}
		b.Run(name, func(b *testing.B) {
			d, err := dlq.OpenFile(dlq.FileOptions{Dir: filepath.Join(b.TempDir(), "dlq")})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close(context.Background())
			var del []pipeline.SinkDelivery
			if withRetry {
				r, err := pipeline.NewRetrier(config.Retry{Initial: time.Millisecond, Multiplier: 2, MaxInterval: time.Second,
					MaxAttempts: 5, MaxElapsed: time.Minute, Budget: config.RetryBudget{Ratio: 0.1, MinPerSecond: 10},
					Breaker: config.Breaker{Failures: 5, OpenFor: time.Second}})
				if err != nil {
					b.Fatal(err)
				}
				del = []pipeline.SinkDelivery{{Retry: r}}
			}
			r := pipeline.NewRunner(pipeline.RunnerOptions{Workers: 1, Stages: []pipeline.Stage{makeRecords{}},
				Sinks: []pipeline.Sink{sinks.NewDiscard("discard")}, Delivery: del, DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), Logger: quiet()})
			defer r.Close()
			src := &pipeline.Origin{Kind: "file", Path: "mem", Format: pipeline.FormatJSONL}
			u := units(512, 0)
			b.ReportAllocs()
			for b.Loop() {
				batch := pipeline.GetBatch()
				batch.Origin = src
				for i, x := range u {
					batch.AddUnit([]byte(x), int64(i), int64(i+1), int64(len(x)), 0)
				}
				r.Handle(context.Background(), batch)
			}
		})
	}
}
