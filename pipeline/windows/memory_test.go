package windows

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline"
)

// tableBytes is what a partial's key table holds after k distinct non-zero
// keys at precision p, by the growth rule of partial.add (a table of 8
// slots, doubled past 3/4 full; 2^p registers past 2^p keys).
func tableBytes(k int, p uint8) int64 {
	if k == 0 {
		return 0
	}
	if k > 1<<p {
		return 1 << p
	}
	slots := 1 << minTableBits
	for n := 1; n <= k; n++ {
		if n*4 > slots*3 {
			slots *= 2
		}
	}
	return int64(4 * slots)
}

// distinctKeys is the number of distinct non-zero sparse keys of values.
func distinctKeys(values []string, p uint8) int {
	seen := map[uint32]bool{}
	for _, v := range values {
		if k := encodeKey(HashValue([]byte(v)), p); k != 0 {
			seen[k] = true
		}
	}
	return len(seen)
}

// TestMemoryAccounting: the running estimate is exactly the sum of its
// parts (groups with their values, partials' tables, registers once dense,
// kept rows by their sketch's size), whatever order the groups grew in, and
// it goes back to zero when everything is written.
func TestMemoryAccounting(t *testing.T) {
	cfg := testConfig(
		config.Metric{Name: "traces", Count: "trace_id", GroupBy: []string{"service"}},
		config.Metric{Name: "users", Count: "attributes.user", GroupBy: []string{"service"}},
	)
	cfg.Precision = 8 // 256 registers: a partial turns dense past 256 keys
	cfg.LatePolicy = "update"
	cfg.AllowedLateness = time.Hour
	cfg.KeepClosedFor = 24 * time.Hour
	w, sink := newStage(t, cfg, 1)

	// Service i has 10*i+1 distinct traces (the one with 601 goes dense)
	// and 3 distinct users, all in minute 0; service "late" is in minute 1.
	var want, interned int64
	var recs []rec
	for i := range 61 {
		svc := fmt.Sprintf("svc-%d", i)
		var traces []string
		for j := range 10*i + 1 {
			tr := fmt.Sprintf("%s-trace-%d", svc, j)
			traces = append(traces, tr)
			recs = append(recs, rec{at: time.Duration(j) * time.Millisecond, service: svc, trace: tr, attrs: []string{"user", fmt.Sprint("u", j%3)}})
		}
		want += groupFixed + 2*partialFixed + stringFixed + int64(len(svc))
		interned += internFixed + int64(len(svc)) // the shard's table of values
		want += tableBytes(distinctKeys(traces, 8), 8) + tableBytes(distinctKeys([]string{"u0", "u1", "u2"}[:min(3, len(traces))], 8), 8)
	}
	// In batches of 97, shuffled: tables grow in some other order.
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	for i := 0; i < len(recs); i += 97 {
		pipeline.PutBatch(process(w, recs[i:min(i+97, len(recs))]...))
	}
	w.settleNow()
	if got := w.openBytes.Load(); got != want+interned {
		t.Fatalf("open state estimated at %d bytes, want %d + %d for the values table", got, want, interned)
	}
	if got := w.all[0].winBytes[w.window(t0.UnixNano())]; got != want {
		t.Fatalf("shard's bytes for minute 0: %d, want %d", got, want)
	}
	// (The peak can be higher: a table of 512 slots gave way to 256
	// registers.)
	if s := w.Stats.Snapshot(); s.StateBytes != want+interned || s.PeakStateBytes < want+interned {
		t.Errorf("stats say %d (peak %d), want %d", s.StateBytes, s.PeakStateBytes, want+interned)
	}

	// A record 2 hours on closes minute 0 (lateness 1h).
	pipeline.PutBatch(process(w, rec{at: 2 * time.Hour, service: "late", trace: "x"}))
	w.settleNow()
	interned = 0 // the values table stays
	for _, v := range w.all[0].intern {
		interned += internFixed + int64(len(v))
	}
	later := groupFixed + 2*partialFixed + stringFixed + int64(len("late")) + tableBytes(1, 8)
	if got := w.openBytes.Load(); got != later+interned || len(w.all[0].intern) != 62 {
		t.Errorf("after minute 0 closed: open state %d bytes, want %d (the group of 2h and %d values)", got, later+interned, len(w.all[0].intern))
	}
	// Minute 0's rows are kept for corrections (update), by their sketches.
	var kept int64
	for _, r := range sink.all {
		kept += keptFixed + int64(len(r.GroupValues[0])+stringFixed+len(r.Sketch))
	}
	if got := w.keptBytes.Load(); got != kept || w.keptByWin[w.window(t0.UnixNano())] != kept {
		t.Errorf("kept rows estimated at %d bytes (window: %d), want %d", got, w.keptByWin[w.window(t0.UnixNano())], kept)
	}
	closeStage(t, w)
	if o, k := w.openBytes.Load(), w.keptBytes.Load(); o != interned || k != 0 {
		t.Errorf("after Close: open %d, kept %d bytes estimated; want %d (the values table) and 0", o, k, interned)
	}
}

// budgetStage is a stage on one worker whose windows close only by
// max_memory (lateness a day, no cap on open windows), with per-window
// traffic of n groups "g-000".. of one record each.
func budgetStage(t *testing.T, policy string, budget int64) (*Windows, *memSink) {
	cfg := testConfig()
	cfg.LatePolicy = policy
	cfg.AllowedLateness = 24 * time.Hour
	cfg.KeepClosedFor = 24 * time.Hour
	cfg.MaxOpenWindows = 4096
	cfg.MaxMemory = config.ByteSize(budget)
	return newStage(t, cfg, 1)
}

func windowOf(minute, n int, prefix string) []rec {
	var rs []rec
	for i := range n {
		rs = append(rs, rec{at: time.Duration(minute)*time.Minute + time.Duration(i)*time.Millisecond, service: fmt.Sprintf("%s%03d", prefix, i), trace: "t"})
	}
	return rs
}

// oneGroup is the estimate of one group of windowOf: the default metric
// (one), a 5-byte value, one key in an 8-slot table; oneNew that of one
// with a value the shard had not seen (its entry in the values table).
const (
	oneGroup = groupFixed + partialFixed + stringFixed + 5 + 4<<minTableBits
	oneNew   = oneGroup + internFixed + 5
)

// TestMemoryBudgetClosesOldestWindowsEarly: past max_memory the oldest
// open windows close early, their rows written at once and counted; the
// newest stays open. Every decision is at a known point (a closer cycle
// after each batch), so the counts are exact.
func TestMemoryBudgetClosesOldestWindowsEarly(t *testing.T) {
	const groups = 100
	perWindow := int64(groups * oneGroup)
	w, sink := budgetStage(t, "dlq", perWindow*5/2) // room for two and a half windows
	for m := range 10 {
		pipeline.PutBatch(process(w, windowOf(m, groups, "g-")...))
		w.settleNow()
		// After minute m: minutes m-1 and m are open (three would be
		// past the budget, so the oldest closed early).
		wantEarly := max(0, m-1)
		if got := w.Stats.ClosedEarly.Load(); got != int64(wantEarly) {
			t.Fatalf("after minute %d: %d windows closed early, want %d", m, got, wantEarly)
		}
		if got := len(sink.all); got != wantEarly*groups {
			t.Fatalf("after minute %d: %d rows written, want %d", m, got, wantEarly*groups)
		}
		// (The 100 values are in the shard's table once: 100 x 53 bytes.)
		if got := w.openBytes.Load() - groups*(internFixed+5); got > w.maxMemory || got != int64(min(m+1, 2))*perWindow {
			t.Fatalf("after minute %d: windows' state %d bytes, budget %d, want %d", m, got, w.maxMemory, int64(min(m+1, 2))*perWindow)
		}
	}
	closeStage(t, w)
	if got := len(sink.all); got != 10*groups {
		t.Errorf("%d rows, want %d", got, 10*groups)
	}
	s := w.Stats.Snapshot()
	if s.ClosedEarly != 8 || s.WindowsClosed != 10 || s.WindowsForced != 0 || s.MemoryOverflow != 0 || s.Overflow != 0 {
		t.Errorf("stats %+v: want 8 of 10 windows closed early, nothing overflowed", s)
	}
	if s.PeakStateBytes != 3*perWindow+groups*(internFixed+5) {
		t.Errorf("peak estimate %d bytes, want three windows' %d and the values table", s.PeakStateBytes, 3*perWindow)
	}
}

// TestMemoryBudgetOverflowsAWindowAloneOverIt: a window alone past the
// budget takes no new groups: their records count into __overflow__
// (counted), existing groups go on counting, nothing is lost.
func TestMemoryBudgetOverflowsAWindowAloneOverIt(t *testing.T) {
	w, sink := budgetStage(t, "dlq", 150*oneNew)
	pipeline.PutBatch(process(w, windowOf(0, 200, "a-")...)) // 200 groups: past the budget, but below the backstop (225)
	w.settleNow()
	if got := w.fullWin.Load(); got != w.window(t0.UnixNano()) {
		t.Fatalf("window 0 alone is over the budget, but fullWin is %d", got)
	}
	// 100 new groups, and the 200 old ones again.
	b := process(w, append(windowOf(0, 100, "b-"), windowOf(0, 200, "a-")...)...)
	pipeline.PutBatch(b)
	closeStage(t, w)
	rows := sink.latest()
	if len(rows) != 201 {
		t.Errorf("%d rows, want the 200 groups and __overflow__", len(rows))
	}
	if o := estimate(t, rows, "traces", t0, `{"service":"__overflow__"}`); o.Records != 100 {
		t.Errorf("__overflow__ holds %d records, want 100", o.Records)
	}
	if r := estimate(t, rows, "traces", t0, `{"service":"a-007"}`); r.Records != 2 {
		t.Errorf("an existing group counted %d records, want 2", r.Records)
	}
	if s := w.Stats.Snapshot(); s.MemoryOverflow != 100 || s.Overflow != 100 || s.ClosedEarly != 0 {
		t.Errorf("stats %+v: want 100 records overflowed by memory, no window closed early", s)
	}
}

// TestMemoryBudgetBackstop: within one batch (the closer cannot act until
// it is through), new groups go to __overflow__ once the estimate is past
// one and a half budgets.
func TestMemoryBudgetBackstop(t *testing.T) {
	w, sink := budgetStage(t, "dlq", 100*oneNew)
	pipeline.PutBatch(process(w, windowOf(0, 1000, "g-")...))
	closeStage(t, w)
	// Groups are made while the estimate is at most 150 groups' worth:
	// 151 of them; the overflow group itself costs one more.
	rows := sink.latest()
	if len(rows) != 152 {
		t.Errorf("%d rows, want 151 groups and __overflow__", len(rows))
	}
	if o := estimate(t, rows, "traces", t0, `{"service":"__overflow__"}`); o.Records != 849 || w.Stats.MemoryOverflow.Load() != 849 {
		t.Errorf("__overflow__ holds %d records (stats %d), want 849", o.Records, w.Stats.MemoryOverflow.Load())
	}
}

// TestMemoryBudgetForgetsKeptWindowsFirst: under late_policy update the
// closed rows kept for corrections count too; past the budget the oldest
// are forgotten first (counted), and a late record for one of them is then
// window_expired rather than a correction.
func TestMemoryBudgetForgetsKeptWindowsFirst(t *testing.T) {
	cfg := testConfig()
	cfg.LatePolicy = "update"
	cfg.AllowedLateness = 0
	cfg.KeepClosedFor = 24 * time.Hour
	cfg.MaxOpenWindows = 4096
	w, sink := newStage(t, cfg, 1)
	// Without a budget: measure what one closed window of 100 rows keeps.
	pipeline.PutBatch(process(w, windowOf(0, 100, "g-")...))
	pipeline.PutBatch(process(w, windowOf(1, 1, "x-")...)) // closes minute 0
	w.settleNow()
	perKept := w.keptBytes.Load()
	if perKept == 0 || len(sink.all) != 100 {
		t.Fatalf("kept %d bytes for %d rows", perKept, len(sink.all))
	}
	closeStage(t, w)

	cfg.MaxMemory = config.ByteSize(perKept*3 + perKept/2) // three and a half closed windows
	w, _ = newStage(t, cfg, 1)
	for m := range 8 {
		pipeline.PutBatch(process(w, windowOf(m, 100, "g-")...))
		w.settleNow()
	}
	// Minutes 0..6 closed (7 is open); at most 3 of them still kept.
	if got := w.keptBytes.Load() + w.openBytes.Load(); got > int64(cfg.MaxMemory) {
		t.Errorf("state %d bytes, budget %d", got, cfg.MaxMemory)
	}
	if f := w.Stats.KeptForgotten.Load(); f < 3 {
		t.Errorf("%d kept windows forgotten, want at least 3", f)
	}
	if w.Stats.ClosedEarly.Load() != 0 {
		t.Errorf("%d windows closed early: forgetting kept ones was enough", w.Stats.ClosedEarly.Load())
	}
	b := process(w, rec{at: time.Second, service: "g-001", trace: "late"}, rec{at: 6*time.Minute + time.Second, service: "g-001", trace: "late"})
	if f := b.Records[0].Failure; f.Code != "window_expired" {
		t.Errorf("a late record for forgotten minute 0: %+v, want window_expired", f)
	}
	if f := b.Records[1].Failure; f.Code != "" {
		t.Errorf("a late record for kept minute 6: %+v, want a correction", f)
	}
}

// TestMemoryEstimateTracksTheHeap: the estimate is within a small factor
// of the heap the state really holds (runtime.MemStats.HeapInuse), so a
// budget in bytes means something.
func TestMemoryEstimateTracksTheHeap(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory skews the heap")
	}
	cfg := testConfig(config.Metric{Name: "traces", Count: "trace_id", GroupBy: []string{"attributes.host"}},
		config.Metric{Name: "users", Count: "attributes.user", GroupBy: []string{"attributes.host"}})
	cfg.AllowedLateness = 24 * time.Hour
	cfg.MaxOpenWindows = 4096
	cfg.MaxGroups = 1 << 20
	w, _ := newStage(t, cfg, 2)
	recs := make([]rec, 0, 1000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 200_000 {
		// 20 windows of 10,000 hosts with 1 to 30 distinct traces and users.
		recs = append(recs, rec{at: time.Duration(i/10000) * time.Minute, service: "a", trace: fmt.Sprint(i % 30),
			attrs: []string{"host", fmt.Sprintf("host-%05d", i%10000), "user", fmt.Sprint(i % 7)}})
		if len(recs) == cap(recs) {
			pipeline.PutBatch(process(w, recs...))
			recs = recs[:0]
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	est := w.openBytes.Load()
	t.Logf("estimate %d KiB, heap grew %d KiB (ratio %.2f)", est>>10, heap>>10, float64(heap)/float64(est))
	if heap > 2*est || heap < est/2 {
		t.Errorf("estimate %d KiB is not within a factor of 2 of the heap's growth, %d KiB", est>>10, heap>>10)
	}
	closeStage(t, w)
}

// hostile feeds the workload that took 6.1 GB: a million distinct group
// values, 10,000 per window over 100 windows, in random time order within
// a lateness that keeps them all open, on workers workers (so a value is
// in up to that many shards: the multiplier that made 6.1 GB on a large
// host's default of two workers per CPU), late_policy update, two metrics. Rows go to a file store
// in dir. It returns the highest HeapInuse growth seen after a GC every
// 16 batches of 2,048 records.
func hostile(t testing.TB, budget config.ByteSize, records, workers int, dir string) (peak int64, w *Windows) {
	cfg := testConfig(config.Metric{Name: "traces", Count: "trace_id", GroupBy: []string{"attributes.hostile"}},
		config.Metric{Name: "users", Count: "attributes.user", GroupBy: []string{"attributes.hostile"}})
	cfg.AllowedLateness = 2 * time.Hour
	cfg.KeepClosedFor = 10 * time.Minute
	cfg.MaxMemory = budget
	sink, err := OpenFileWriter(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	w, err = New(Options{Config: cfg, Workers: workers, Sink: sink, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	ch := make(chan []rec, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for rs := range ch {
				pipeline.PutBatch(process(w, rs...))
			}
		})
	}
	rng := rand.New(rand.NewPCG(5, 6))
	const batch = 2048
	var ms runtime.MemStats
	for i := 0; i < records; i += batch {
		rs := make([]rec, 0, batch)
		for j := i; j < min(i+batch, records); j++ {
			v := rng.IntN(1_000_000) // window v/10000, value v
			rs = append(rs, rec{at: time.Duration(v/10000)*time.Minute + time.Duration(rng.IntN(60_000))*time.Millisecond, service: "a",
				trace: fmt.Sprint(rng.IntN(50)), attrs: []string{"hostile", fmt.Sprint("v", v), "user", fmt.Sprint(rng.IntN(20))}})
		}
		ch <- rs
		if (i/batch)%16 == 0 {
			runtime.GC() // what is live, not what awaits collection
			runtime.ReadMemStats(&ms)
			peak = max(peak, int64(ms.HeapInuse)-int64(base.HeapInuse))
		}
	}
	close(ch)
	wg.Wait()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	peak = max(peak, int64(ms.HeapInuse)-int64(base.HeapInuse))
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	return peak, w
}

// TestMemoryBudgetBoundsTheHeap: the hostile workload on 4 workers stays
// within a generous bound of a 32 MiB budget, and every record counted is
// in the rows written.
func TestMemoryBudgetBoundsTheHeap(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("a heap measure, a million records: not under -race or -short")
	}
	const budget = 32 << 20
	const n = 1_000_000
	dir := t.TempDir()
	peak, w := hostile(t, budget, n, 4, dir)
	s := w.Stats.Snapshot()
	t.Logf("budget %d MiB: heap grew at most %d MiB; estimate peaked at %d MiB; %d windows closed early, %d kept windows forgotten, %d (record, group set) overflowed by memory, %d late updated, %d late expired",
		budget>>20, peak>>20, s.PeakStateBytes>>20, s.ClosedEarly, s.KeptForgotten, s.MemoryOverflow, s.LateUpdated, s.LateExpired)
	// Without a budget the same run grows the heap by about 300 MiB (and
	// by GBs on more workers: BenchmarkHostileGroups). The slack covers
	// what the estimate leaves out: pooled tables and groups, the rows of
	// a cycle being written, the batches' own failure messages.
	if peak > 4*budget+48<<20 {
		t.Errorf("heap grew %d MiB with a %d MiB budget", peak>>20, budget>>20)
	}
	if s.ClosedEarly == 0 || s.KeptForgotten == 0 {
		t.Error("nothing closed early or forgotten: the workload did not press on the budget")
	}
	// Every record is counted (into both metrics: both have values) or
	// expired; the rows hold every counted record.
	if s.Counted+s.LateExpired != n {
		t.Errorf("counted %d + expired %d != %d records", s.Counted, s.LateExpired, n)
	}
	latest := map[string]*Row{}
	err := OpenFileReader(dir, func(msg string) { t.Error(msg) }).ReadRows(context.Background(), "traces", time.Time{}, time.Time{}, func(r *Row) error {
		k := r.Start.String() + r.GroupJSON()
		if o := latest[k]; o == nil || r.Revision > o.Revision {
			latest[k] = r
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var inRows int64
	for _, r := range latest {
		inRows += r.Records
	}
	if inRows != s.Counted {
		t.Errorf("rows of metric traces hold %d records, %d were counted", inRows, s.Counted)
	}
}

// BenchmarkHostileGroups reports the heap growth of the hostile workload
// (2 million records) on 16 workers under the default budget, and with
// TRACEPIPE_BENCH_UNBOUNDED=1 also without one. It takes a minute or more
// a run, so it runs only with TRACEPIPE_BENCH_HOSTILE=1:
//
//	TRACEPIPE_BENCH_HOSTILE=1 TRACEPIPE_BENCH_UNBOUNDED=1 go test -run XXX -bench HostileGroups -benchtime 1x ./pipeline/windows/
func BenchmarkHostileGroups(b *testing.B) {
	if os.Getenv("TRACEPIPE_BENCH_HOSTILE") != "1" {
		b.Skip("set TRACEPIPE_BENCH_HOSTILE=1 to run (minutes, GBs without a budget)")
	}
	budgets := []config.ByteSize{256 << 20}
	if os.Getenv("TRACEPIPE_BENCH_UNBOUNDED") == "1" {
		budgets = append(budgets, 0)
	}
	for _, budget := range budgets {
		b.Run(fmt.Sprintf("max_memory=%dMiB", budget>>20), func(b *testing.B) {
			for b.Loop() {
				peak, w := hostile(b, budget, 2_000_000, 16, b.TempDir())
				s := w.Stats.Snapshot()
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(s.PeakStateBytes)/(1<<20), "peak-estimate-MiB")
				b.ReportMetric(float64(s.ClosedEarly), "closed-early")
			}
		})
	}
}
