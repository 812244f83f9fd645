package windows

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline"
)

// memSink keeps the rows written to it, latest revision per key, and every
// row in order.
type memSink struct {
	mu   sync.Mutex
	all  []Row
	fail error
}

func (m *memSink) Name() string                { return "mem" }
func (m *memSink) Close() error                { return nil }
func (m *memSink) Flush(context.Context) error { return nil }
func (m *memSink) WriteRows(_ context.Context, rows []Row) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.all = append(m.all, rows...)
	return nil
}

// latest returns the highest revision of each (metric, window, group).
func (m *memSink) latest() map[string]Row {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Row{}
	for _, r := range m.all {
		k := fmt.Sprintf("%s %s %s", r.Metric, r.Start.Format(time.RFC3339), r.GroupJSON())
		if o, ok := out[k]; !ok || r.Revision > o.Revision {
			out[k] = r
		}
	}
	return out
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testConfig(metrics ...config.Metric) config.Windows {
	cfg := config.Windows{Size: time.Minute, AllowedLateness: 30 * time.Second, Precision: 14,
		LatePolicy: "update", KeepClosedFor: 10 * time.Minute, UpdateEvery: time.Hour,
		MaxOpenWindows: 64, MaxGroups: 10000, Instance: "test", Metrics: metrics}
	if len(metrics) == 0 {
		cfg.Metrics = []config.Metric{{Name: "traces", Count: "trace_id", GroupBy: []string{"service"}}}
	}
	return cfg
}

func newStage(t testing.TB, cfg config.Windows, workers int) (*Windows, *memSink) {
	t.Helper()
	sink := &memSink{}
	w, err := New(Options{Config: cfg, Workers: workers, Sink: sink,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w, sink
}

// rec is a test record: event time offset from t0, service, trace id and
// attributes as key, value pairs.
type rec struct {
	at      time.Duration
	service string
	trace   string
	attrs   []string
}

func batchOf(recs ...rec) *pipeline.Batch {
	b := pipeline.GetBatch()
	u := b.AddUnit([]byte("{}"), 0, 1, 2, 0)
	for _, x := range recs {
		r := b.NewRecord(u)
		r.Signal = pipeline.SignalSpan
		r.Time = t0.Add(x.at).UnixNano()
		r.Service = b.CopyString(x.service)
		r.TraceID = b.CopyString(x.trace)
		for i := 0; i+1 < len(x.attrs); i += 2 {
			r.Attrs = append(r.Attrs, pipeline.Attr{Key: b.CopyString(x.attrs[i]), Value: b.CopyString(x.attrs[i+1]), Type: pipeline.AttrString})
		}
	}
	return b
}

func process(w *Windows, recs ...rec) *pipeline.Batch {
	b := batchOf(recs...)
	w.Process(context.Background(), b)
	return b
}

func closeStage(t testing.TB, w *Windows) {
	t.Helper()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func estimate(t testing.TB, rows map[string]Row, metric string, start time.Time, group string) Row {
	t.Helper()
	k := fmt.Sprintf("%s %s %s", metric, start.Format(time.RFC3339), group)
	r, ok := rows[k]
	if !ok {
		keys := make([]string, 0, len(rows))
		for k := range rows {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		t.Fatalf("no row %q; rows: %q", k, keys)
	}
	return r
}

func TestCountsPerGroupAndWindow(t *testing.T) {
	cfg := testConfig(
		config.Metric{Name: "traces", Count: "trace_id", GroupBy: []string{"service"}},
		config.Metric{Name: "users", Count: "attributes.user.id", GroupBy: []string{"service"}},
		config.Metric{Name: "errors", Count: "trace_id", GroupBy: []string{"service", "attributes.route"},
			Where: []config.Condition{{Field: "attributes.code", In: []string{"500", "503"}}}},
	)
	w, sink := newStage(t, cfg, 2)
	var recs []rec
	for i := range 300 {
		svc := []string{"api", "db"}[i%2]
		recs = append(recs, rec{at: time.Duration(i) * 100 * time.Millisecond, service: svc, trace: fmt.Sprintf("t%03d", i/3),
			attrs: []string{"user.id", fmt.Sprintf("u%d", i%7), "route", "/x", "code", []string{"200", "500"}[i%3/2]}})
	}
	process(w, recs[:150]...)
	process(w, recs[150:]...)
	closeStage(t, w)
	rows := sink.latest()
	// 300 records over 30 s: one window. Traces t000..t099, each on both
	// services (i/3 spans i%2 both ways).
	if r := estimate(t, rows, "traces", t0, `{"service":"api"}`); r.Estimate != 100 || r.Records != 150 || r.Revision != 1 {
		t.Errorf("traces api: %+v", r)
	}
	if r := estimate(t, rows, "users", t0, `{"service":"db"}`); r.Estimate != 7 {
		t.Errorf("users db: estimate %d, want 7", r.Estimate)
	}
	// code 500 when i%3 == 2: i = 2, 5, 8, ...: 100 records, traces i/3 = 0..99, services alternate.
	e1 := estimate(t, rows, "errors", t0, `{"service":"api","attributes.route":"/x"}`)
	e2 := estimate(t, rows, "errors", t0, `{"service":"db","attributes.route":"/x"}`)
	if e1.Estimate+e2.Estimate != 100 || e1.Records+e2.Records != 100 {
		t.Errorf("errors: %d + %d distinct, %d + %d records; want 100 and 100", e1.Estimate, e2.Estimate, e1.Records, e2.Records)
	}
	if got := w.Stats.Counted.Load(); got != 300 {
		t.Errorf("counted %d, want 300", got)
	}
}

// TestWatermarkAndLateness: out-of-order records within the allowed
// lateness land in their window; later ones follow each policy.
func TestWatermarkAndLateness(t *testing.T) {
	for _, policy := range []string{"update", "dlq", "drop"} {
		t.Run(policy, func(t *testing.T) {
			cfg := testConfig()
			cfg.LatePolicy = policy
			w, sink := newStage(t, cfg, 1)
			// Window 0 [0,60s), window 1 [60s,120s).
			process(w, rec{at: 10 * time.Second, service: "a", trace: "t1"},
				rec{at: 70 * time.Second, service: "a", trace: "t2"})
			// The watermark is 40 s: window 0 is open, 50 s is on time.
			b := process(w, rec{at: 50 * time.Second, service: "a", trace: "t3"})
			if b.Records[0].Failed() || b.Records[0].Filtered {
				t.Fatalf("record inside the lateness was judged late: %+v", b.Records[0].Failure)
			}
			pipeline.PutBatch(b)
			// 95 s: the watermark passes 60 s, window 0 closes.
			process(w, rec{at: 95 * time.Second, service: "a", trace: "t4"})
			waitFor(t, func() bool { return w.closedBefore.Load() > w.window(t0.UnixNano()) })
			// A record for window 0 is now late.
			b = process(w, rec{at: 20 * time.Second, service: "a", trace: "t5"})
			r := &b.Records[0]
			switch policy {
			case "dlq":
				if r.Failure.Class != pipeline.ClassLate || r.Failure.Code != "late" {
					t.Fatalf("late record under dlq: %+v", r.Failure)
				}
			case "drop":
				if !r.Filtered || r.Failed() {
					t.Fatalf("late record under drop: filtered %v failure %+v", r.Filtered, r.Failure)
				}
			case "update":
				if r.Failed() || r.Filtered {
					t.Fatalf("late record under update: %+v", r.Failure)
				}
			}
			closeStage(t, w)
			rows := sink.latest()
			w0 := estimate(t, rows, "traces", t0, `{"service":"a"}`)
			w1 := estimate(t, rows, "traces", t0.Add(time.Minute), `{"service":"a"}`)
			want0, rev0 := uint64(2), 1 // t1, t3
			if policy == "update" {
				want0, rev0 = 3, 2 // and t5, as a correction
			}
			if w0.Estimate != want0 || w0.Revision != rev0 {
				t.Errorf("window 0: estimate %d revision %d, want %d and %d", w0.Estimate, w0.Revision, want0, rev0)
			}
			if w1.Estimate != 2 || w1.Revision != 1 {
				t.Errorf("window 1: estimate %d revision %d, want 2 and 1", w1.Estimate, w1.Revision)
			}
			s := w.Stats.Snapshot()
			late := map[string]int64{"dlq": s.LateDLQ, "drop": s.LateDropped, "update": s.LateUpdated}
			if late[policy] != 1 || s.LateDLQ+s.LateDropped+s.LateUpdated != 1 {
				t.Errorf("late counters %+v, want one under %s", s, policy)
			}
		})
	}
}

// TestUpdateExpires: under update, a record later than keep_closed_for
// goes to the DLQ instead of correcting a forgotten window.
func TestUpdateExpires(t *testing.T) {
	cfg := testConfig()
	cfg.KeepClosedFor = 2 * time.Minute
	w, _ := newStage(t, cfg, 1)
	process(w, rec{at: 0, service: "a", trace: "t1"})
	process(w, rec{at: 10 * time.Minute, service: "a", trace: "t2"})
	// closedBefore = window(9.5 min) = 9, evictBefore = 9 - 2.
	waitFor(t, func() bool { return w.evictBefore.Load() >= w.window(t0.Add(7*time.Minute).UnixNano()) })
	b := process(w, rec{at: time.Second, service: "a", trace: "t3"},
		rec{at: 8*time.Minute + time.Second, service: "a", trace: "t4"})
	if f := b.Records[0].Failure; f.Class != pipeline.ClassLate || f.Code != "window_expired" {
		t.Errorf("record 10 min late: %+v, want late/window_expired", f)
	}
	if b.Records[1].Failed() {
		t.Errorf("record within keep_closed_for failed: %+v", b.Records[1].Failure)
	}
}

// waitFor polls a condition the closer goroutine makes true; the test's
// own timeout bounds it.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for !cond() {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// TestSameRowsWhateverTheWorkerSpread: the rows (sketch bytes included)
// do not depend on how records were spread over workers and batches.
func TestSameRowsWhateverTheWorkerSpread(t *testing.T) {
	var recs []rec
	for i := range 100000 {
		// 4 services with 500, 5,000, 12,000 and 50,000 distinct traces:
		// sparse, sparse with a long list, dense by the list's size, dense
		// by a worker's partial.
		// (Moduli coprime with 4 and 7919, so each service's values are
		// min(records, modulus) distinct.)
		svc, mod := []string{"s", "m", "x", "l"}[i%4], []int{499, 4999, 11987, 49999}[i%4]
		recs = append(recs, rec{at: time.Duration(i) * 500 * time.Microsecond, service: svc, trace: fmt.Sprint("t", (i*7919)%mod)})
	}
	run := func(workers, batch int) []Row {
		w, sink := newStage(t, testConfig(), workers)
		var wg sync.WaitGroup
		ch := make(chan []rec)
		for range workers {
			wg.Go(func() {
				for rs := range ch {
					pipeline.PutBatch(process(w, rs...))
				}
			})
		}
		for i := 0; i < len(recs); i += batch {
			ch <- recs[i:min(i+batch, len(recs))]
		}
		close(ch)
		wg.Wait()
		closeStage(t, w)
		return sink.all
	}
	one := run(1, len(recs))
	// And every row is the library's own sketch of its values.
	lib := map[string]*hyperloglog.Sketch{}
	for _, r := range recs {
		k := fmt.Sprint(r.at/time.Minute, r.service)
		if lib[k] == nil {
			lib[k], _ = NewSketch(14)
		}
		lib[k].Insert([]byte(r.trace))
	}
	for _, row := range one {
		_, want, _ := Encode(lib[fmt.Sprint(row.Start.Sub(t0)/time.Minute, row.GroupValues[0])])
		if !bytes.Equal(row.Sketch, want) {
			t.Errorf("service %s: the row's sketch (estimate %d, %d bytes) is not the library's sketch of the same values (%d bytes)", row.GroupValues[0], row.Estimate, len(row.Sketch), len(want))
		}
	}
	for _, c := range [][2]int{{2, 97}, {4, 1000}, {3, 7}} {
		got := run(c[0], c[1])
		if len(got) != len(one) {
			t.Fatalf("%d workers: %d rows, want %d", c[0], len(got), len(one))
		}
		for i := range one {
			a, b := one[i], got[i]
			if a.GroupJSON() != b.GroupJSON() || a.Estimate != b.Estimate || !bytes.Equal(a.Sketch, b.Sketch) || a.Records != b.Records {
				t.Errorf("%d workers, batches of %d: row %d differs: %s %d vs %s %d", c[0], c[1], i, a.GroupJSON(), a.Estimate, b.GroupJSON(), b.Estimate)
			}
		}
	}
}

// TestOverflowKeepsMemoryBounded: a group field with a million distinct
// values fills max_groups, then counts into __overflow__; the heap stays
// bounded by the cap, not by the values.
func TestOverflowKeepsMemoryBounded(t *testing.T) {
	cfg := testConfig(config.Metric{Name: "traces", Count: "trace_id", GroupBy: []string{"attributes.hostile"}})
	cfg.MaxGroups = 1000
	w, sink := newStage(t, cfg, 2)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 1_000_000
	recs := make([]rec, 0, 4096)
	for i := range n {
		recs = append(recs, rec{at: time.Duration(i) * 10 * time.Microsecond, service: "a", trace: fmt.Sprint(i % 5000),
			attrs: []string{"hostile", fmt.Sprint("v", i)}})
		if len(recs) == cap(recs) || i == n-1 {
			pipeline.PutBatch(process(w, recs...))
			recs = recs[:0]
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	groups := 0
	for _, s := range w.all {
		groups += len(s.groups)
	}
	if groups > 2*(cfg.MaxGroups+1) {
		t.Errorf("%d groups held over 2 workers, cap %d each", groups, cfg.MaxGroups)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew %d KiB for %d distinct group values (cap %d groups)", grown>>10, n, cfg.MaxGroups)
	if grown > 64<<20 {
		t.Errorf("heap grew %d MiB: not bounded by the group cap", grown>>20)
	}
	closeStage(t, w)
	rows := sink.latest()
	if len(rows) != cfg.MaxGroups+1 {
		t.Errorf("%d rows, want %d groups and the overflow group", len(rows), cfg.MaxGroups+1)
	}
	o := estimate(t, rows, "traces", t0, `{"attributes.hostile":"__overflow__"}`)
	if o.Records != n-int64(cfg.MaxGroups) || w.Stats.Overflow.Load() != o.Records {
		t.Errorf("overflow row: %d records, stats %d; want %d", o.Records, w.Stats.Overflow.Load(), n-cfg.MaxGroups)
	}
	if o.Estimate < 4900 || o.Estimate > 5100 {
		t.Errorf("overflow row estimate %d, want ~5000 distinct traces", o.Estimate)
	}
}

// TestMaxOpenWindows: records spread far ahead close the oldest windows
// early, counted.
func TestMaxOpenWindows(t *testing.T) {
	cfg := testConfig()
	cfg.MaxOpenWindows = 2
	cfg.AllowedLateness = time.Hour
	w, sink := newStage(t, cfg, 1)
	for i := range 5 {
		process(w, rec{at: time.Duration(i) * time.Minute, service: "a", trace: fmt.Sprint(i)})
	}
	waitFor(t, func() bool { return w.closedBefore.Load() >= w.window(t0.Add(3*time.Minute).UnixNano()) })
	if open := w.Stats.OpenWindows.Load(); open > 2 {
		t.Errorf("%d open windows, cap 2", open)
	}
	closeStage(t, w)
	if f := w.Stats.WindowsForced.Load(); f != 3 {
		t.Errorf("%d windows forced closed, want 3", f)
	}
	if n := len(sink.latest()); n != 5 {
		t.Errorf("%d rows, want 5", n)
	}
}

// TestRowsTheSinkRefusesAreHandedOver: nothing is lost when the windows
// sink fails.
func TestRowsTheSinkRefusesAreHandedOver(t *testing.T) {
	sink := &memSink{fail: fmt.Errorf("store down")}
	var got []Row
	w, err := New(Options{Config: testConfig(), Workers: 1, Sink: sink,
		RowsFailed: func(_ context.Context, rows []Row, _ error) { got = append(got, rows...) },
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	process(w, rec{at: 0, service: "a", trace: "1"}, rec{at: 0, service: "b", trace: "1"})
	closeStage(t, w)
	if len(got) != 2 || w.Stats.RowsFailed.Load() != 2 {
		t.Fatalf("handed over %d rows (stats %d), want 2", len(got), w.Stats.RowsFailed.Load())
	}
}

func TestNoTimeAndMissingValues(t *testing.T) {
	w, sink := newStage(t, testConfig(), 1)
	b := batchOf(rec{at: 0, service: "a", trace: ""}, rec{at: 0, service: "a", trace: "x"})
	b.Records[1].Time = 0
	w.Process(context.Background(), b)
	closeStage(t, w)
	if w.Stats.MissingValue.Load() != 1 || w.Stats.NoTime.Load() != 1 || len(sink.all) != 0 {
		t.Errorf("missing %d no_time %d rows %d; want 1, 1, 0", w.Stats.MissingValue.Load(), w.Stats.NoTime.Load(), len(sink.all))
	}
}

// TestNegativeTimesFloor: windows before 1970 are numbered by floor.
func TestNegativeTimesFloor(t *testing.T) {
	w := &Windows{size: int64(time.Minute)}
	for _, c := range []struct{ t, win int64 }{{0, 0}, {-1, -1}, {int64(time.Minute), 1}, {-int64(time.Minute), -1}, {-int64(time.Minute) - 1, -2}, {math.MaxInt64, math.MaxInt64 / int64(time.Minute)}} {
		if got := w.window(c.t); got != c.win {
			t.Errorf("window(%d) = %d, want %d", c.t, got, c.win)
		}
	}
}

func TestMetricFieldOrderMatchesConfig(t *testing.T) {
	r := &pipeline.Record{TraceID: []byte("1"), SpanID: []byte("2"), ParentID: []byte("3"), Service: []byte("4"),
		Name: []byte("5"), Kind: []byte("6"), Status: []byte("7"), Severity: []byte("8"), Signal: pipeline.SignalLog}
	want := []string{"1", "2", "3", "4", "5", "6", "7", "8", "log"}
	for i, name := range config.MetricFields {
		c := compile([]config.Metric{{Name: "m", Count: name}})
		if got := string(c.metrics[0].count.get(r, nil)); got != want[i] {
			t.Errorf("field %s reads %q, want %q", name, got, want[i])
		}
	}
}

// TestSparseBytesIsTheLibrarysListSize ties sparseBytes to the library:
// a sparse sketch turns dense at Encode exactly when its keys' list is
// past 2^p bytes (a dense encoding is the 2^p registers and 8 bytes).
func TestSparseBytesIsTheLibrarysListSize(t *testing.T) {
	const p = 10
	var keys []uint32
	sk, _ := NewSketch(p)
	for i := uint32(1); i < 5000; i++ {
		k := encodeKey(HashValue([]byte(fmt.Sprint(i))), p)
		keys = append(keys, k)
		sk.InsertHash(synth(k))
		slices.Sort(keys)
		keys = slices.Compact(keys)
		_, b, _ := Encode(sk.Clone())
		over := sparseBytes(keys) > 1<<p
		if dense := len(b) == 1<<p+8; dense != over {
			t.Fatalf("%d keys, list %d bytes (limit %d): library dense %v", len(keys), sparseBytes(keys), 1<<p, dense)
		}
		if over {
			return
		}
	}
	t.Fatal("never went dense")
}

// TestWatermarkIsTheSlowestSource: a source far ahead does not close the
// windows a slower one is still filling; an expected source that has not
// started holds everything; a finished source stops holding.
func TestWatermarkIsTheSlowestSource(t *testing.T) {
	cfg := testConfig()
	cfg.LatePolicy = "dlq"
	w, sink := newStage(t, cfg, 2)
	w.ExpectSources(0, 1, 2)
	on := func(id int, recs ...rec) *pipeline.Batch {
		b := batchOf(recs...)
		b.Origin = &pipeline.Origin{ID: id, Kind: "file", Path: fmt.Sprint("f", id)}
		w.Process(context.Background(), b)
		return b
	}
	// Source 0 is years ahead; source 1 is at minute 0; 2 has not started.
	on(0, rec{at: 24 * 365 * time.Hour, service: "a", trace: "future"})
	on(1, rec{at: 10 * time.Second, service: "a", trace: "t1"})
	// Source 1 moves on to minute 5: nothing may close while 2 waits.
	on(1, rec{at: 5 * time.Minute, service: "a", trace: "t2"})
	if wm, ok := w.watermark(); ok {
		t.Fatalf("watermark %s while source 2 has not started", time.Unix(0, wm).UTC())
	}
	if b := on(1, rec{at: 20 * time.Second, service: "a", trace: "t3"}); b.Records[0].Failed() {
		t.Fatalf("a record of minute 0 was late while source 2 had not started: %+v", b.Records[0].Failure)
	}
	// Source 2 starts at minute 0 and ends; then the watermark is source 1's.
	on(2, rec{at: 30 * time.Second, service: "a", trace: "t4"})
	w.SourceDone(2, 1)
	waitFor(t, func() bool { return w.closedBefore.Load() >= w.window(t0.Add(4*time.Minute).UnixNano()) })
	if got, want := w.closedBefore.Load(), w.window(t0.Add(5*time.Minute-30*time.Second).UnixNano()); got != want {
		t.Fatalf("closed before window %d, want %d (source 1's watermark, not source 0's)", got, want)
	}
	if b := on(1, rec{at: 50 * time.Second, service: "a", trace: "t5"}); b.Records[0].Failure.Class != pipeline.ClassLate {
		t.Fatalf("a record of a closed window was not late: %+v", b.Records[0].Failure)
	}
	// Source 1 finishes: only source 0 is left, years ahead.
	w.SourceDone(1, 4)
	waitFor(t, func() bool { return w.closedBefore.Load() > w.window(t0.Add(time.Hour).UnixNano()) })
	closeStage(t, w)
	rows := sink.latest()
	if r := estimate(t, rows, "traces", t0, `{"service":"a"}`); r.Estimate != 3 { // t1, t3, t4
		t.Errorf("minute 0: %d distinct, want 3", r.Estimate)
	}
}

// TestIdleSourceStopsHolding: a followed file that went quiet (SourceIdle)
// stops holding the watermark once its batches are through, so the busy
// source's windows close; its next batch makes it count again.
func TestIdleSourceStopsHolding(t *testing.T) {
	cfg := testConfig()
	cfg.LatePolicy = "dlq"
	w, _ := newStage(t, cfg, 2)
	w.ExpectSources(0, 1)
	on := func(id int, recs ...rec) *pipeline.Batch {
		b := batchOf(recs...)
		b.Origin = &pipeline.Origin{ID: id, Kind: "file", Path: fmt.Sprint("f", id)}
		w.Process(context.Background(), b)
		return b
	}
	on(0, rec{at: 10 * time.Second, service: "a", trace: "quiet"})
	on(1, rec{at: 10 * time.Minute, service: "a", trace: "busy"})
	// Source 0 holds everything at minute 0.
	if wm, ok := w.watermark(); !ok || wm > t0.Add(10*time.Second).UnixNano() {
		t.Fatalf("watermark %v ok=%v past the quiet source", time.Unix(0, wm).UTC(), ok)
	}
	// Idle after 2 batches, but only 1 went through: it still holds.
	w.SourceIdle(0, 2)
	if wm, _ := w.watermark(); wm > t0.Add(10*time.Second).UnixNano() {
		t.Fatal("an idle source with a batch still to come stopped holding")
	}
	w.SourceIdle(0, 1)
	waitFor(t, func() bool { return w.closedBefore.Load() >= w.window(t0.Add(9*time.Minute).UnixNano()) })
	// Its next batch counts again, and what it brings for a closed window
	// is late.
	if b := on(0, rec{at: 20 * time.Second, service: "a", trace: "again"}); b.Records[0].Failure.Class != pipeline.ClassLate {
		t.Fatalf("record of a closed window from a source back from idle: %+v", b.Records[0].Failure)
	}
	if wm, _ := w.watermark(); wm > t0.Add(20*time.Second).UnixNano() {
		t.Fatal("a source back from idle does not hold the watermark")
	}
	closeStage(t, w)
}
