package windows

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
)

// TestFutureTimeIsInvalid: an event time more than max_future past the
// wall clock fails its record as invalid/future_time, is not counted, and
// does not move the watermark; one just inside the limit is counted.
func TestFutureTimeIsInvalid(t *testing.T) {
	cfg := testConfig()
	cfg.LatePolicy = "dlq"
	cfg.MaxFuture = 10 * time.Minute
	now := t0.Add(time.Hour)
	w, sink := newStage(t, cfg, 1)
	w.o.Now = func() time.Time { return now }

	b := batchOf(rec{at: 0, service: "a", trace: "t1"},
		rec{at: time.Hour + 9*time.Minute, service: "a", trace: "t2"}, // inside max_future
		rec{at: time.Hour + 11*time.Minute, service: "a", trace: "t3"},
		rec{at: 0, service: "a", trace: "t4"},
		rec{at: 0, service: "a", trace: "t5"})
	b.Records[3].Time = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	b.Records[4].Time = math.MaxInt64
	w.Process(context.Background(), b)
	for i, want := range []string{"", "", "future_time", "future_time", "future_time"} {
		r := &b.Records[i]
		if r.Failure.Code != want || (want != "" && (r.Failure.Class != pipeline.ClassInvalid || r.Failure.Stage != "window")) {
			t.Errorf("record %d: %+v, want code %q (class invalid, stage window)", i, r.Failure, want)
		}
	}
	if got := w.Stats.FutureTime.Load(); got != 3 {
		t.Errorf("future_time counted %d, want 3", got)
	}
	if got, want := w.maxEvent.Load(), t0.Add(time.Hour+9*time.Minute).UnixNano(); got != want {
		t.Errorf("highest event time %s, want %s: a future record moved it", time.Unix(0, got).UTC(), time.Unix(0, want).UTC())
	}
	pipeline.PutBatch(b)
	closeStage(t, w)
	rows := sink.latest()
	if r := estimate(t, rows, "traces", t0, `{"service":"a"}`); r.Records != 1 {
		t.Errorf("minute 0: %d records, want 1", r.Records)
	}
	if len(rows) != 2 {
		t.Errorf("%d rows, want 2 (minutes 0 and 69)", len(rows))
	}
	for _, r := range sink.all {
		if r.End.Before(r.Start) || r.Start.Year() != 2026 {
			t.Errorf("row [%s, %s): a future time made a window", r.Start, r.End)
		}
	}
}

// TestFutureTimeOffWhenZero: max_future 0 (only possible in code; config
// defaults it to 10m) checks nothing.
func TestFutureTimeOffWhenZero(t *testing.T) {
	w, _ := newStage(t, testConfig(), 1)
	b := process(w, rec{at: 100 * 365 * 24 * time.Hour, service: "a", trace: "x"})
	if b.Records[0].Failed() {
		t.Fatalf("max_future 0 failed a record: %+v", b.Records[0].Failure)
	}
}

// orderedBatches splits time-ordered records (one every 100 ms over
// 20 min) into numbered batches of one source, as a reader would.
func orderedBatches(n, per int) [][]rec {
	var out [][]rec
	for i := 0; i < n; i += per {
		var rs []rec
		for j := i; j < min(i+per, n); j++ {
			rs = append(rs, rec{at: time.Duration(j) * 100 * time.Millisecond, service: fmt.Sprint("s", j%3), trace: fmt.Sprint("t", j%997)})
		}
		out = append(out, rs)
	}
	return out
}

func seqBatch(src *pipeline.Origin, seq int, rs []rec) *pipeline.Batch {
	b := batchOf(rs...)
	b.Origin, b.Seq = src, uint64(seq)
	return b
}

// TestWatermarkWaitsForEarlierBatches: the batches of a time-ordered file
// finishing the window stage out of order (as they do on several workers)
// make nothing late: a batch's event times count for the watermark only
// once every earlier batch of its source is through. The rows are the ones
// of in-order processing, byte for byte. The closer runs a cycle after
// every batch, so a watermark that ran ahead would close windows at once.
func TestWatermarkWaitsForEarlierBatches(t *testing.T) {
	batches := orderedBatches(12000, 100) // 120 batches of 10 s each
	cfg := testConfig()
	cfg.LatePolicy = "dlq"
	cfg.AllowedLateness = 5 * time.Second

	run := func(order []int, workers int) ([]Row, Snapshot) {
		w, sink := newStage(t, cfg, workers)
		src := &pipeline.Origin{ID: 0, Kind: "file", Path: "ordered.jsonl"}
		w.ExpectSources(0)
		late := 0
		var mu sync.Mutex
		ch := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range ch {
					b := seqBatch(src, i+1, batches[i])
					w.Process(context.Background(), b)
					w.settleNow()
					mu.Lock()
					for j := range b.Records {
						if b.Records[j].Failed() {
							late++
						}
					}
					mu.Unlock()
					pipeline.PutBatch(b)
				}
			})
		}
		for _, i := range order {
			ch <- i
		}
		close(ch)
		wg.Wait()
		w.SourceDone(0, int64(len(batches)))
		closeStage(t, w)
		s := w.Stats.Snapshot()
		if late != 0 || s.LateDLQ != 0 {
			t.Errorf("order %v...: %d records failed, %d late", order[:8], late, s.LateDLQ)
		}
		return sink.all, s
	}
	inOrder := make([]int, len(batches))
	for i := range inOrder {
		inOrder[i] = i
	}
	want, ws := run(inOrder, 1)
	if ws.WindowsClosed != 20 || ws.Counted != 12000 {
		t.Fatalf("in order: %d windows, %d counted; want 20 and 12000", ws.WindowsClosed, ws.Counted)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 4 {
		// Shuffle within a sliding span of 16 batches: as far out of order
		// as a queue of 16 batches in flight can finish them.
		order := slices.Clone(inOrder)
		for i := range order {
			j := min(len(order)-1, i+rng.IntN(16))
			order[i], order[j] = order[j], order[i]
		}
		got, _ := run(order, 1+trial%3)
		if len(got) != len(want) {
			t.Fatalf("trial %d: %d rows, want %d", trial, len(got), len(want))
		}
		for i := range want {
			a, b := want[i], got[i]
			if !a.Start.Equal(b.Start) || a.GroupJSON() != b.GroupJSON() || a.Records != b.Records || a.Revision != b.Revision || !bytes.Equal(a.Sketch, b.Sketch) {
				t.Errorf("trial %d: row %d differs: %s %s %d rev %d vs %s %s %d rev %d", trial, i,
					a.Start.Format(time.TimeOnly), a.GroupJSON(), a.Records, a.Revision, b.Start.Format(time.TimeOnly), b.GroupJSON(), b.Records, b.Revision)
			}
		}
	}
}

// TestSourcePrefix: the source's maximum is over its contiguous prefix of
// numbered batches; batches done ahead wait, unnumbered ones count at once.
func TestSourcePrefix(t *testing.T) {
	st := &source{max: math.MinInt64, total: -1, next: 1}
	steps := []struct {
		seq       uint64
		maxT, max int64
	}{
		{3, 300, math.MinInt64}, // ahead of 1 and 2
		{2, 200, math.MinInt64},
		{1, 100, 300}, // fills the gap: 1, 2, 3 count
		{5, 500, 300},
		{4, math.MinInt64, 500}, // a batch without event times still fills its place
		{0, 50, 500},            // unnumbered: at once
		{6, 600, 600},
	}
	for i, s := range steps {
		st.done(s.seq, s.maxT)
		if st.max != s.max {
			t.Fatalf("step %d (seq %d): max %d, want %d", i, s.seq, st.max, s.max)
		}
	}
	if len(st.held) != 0 || st.next != 7 {
		t.Errorf("held %v next %d, want none and 7", st.held, st.next)
	}
}

// TestUnnumberedBatchesKeepTodaysWatermark: with Seq 0 a batch's times
// count as it finishes (nothing to wait for).
func TestUnnumberedBatchesKeepTodaysWatermark(t *testing.T) {
	cfg := testConfig()
	cfg.LatePolicy = "dlq"
	w, _ := newStage(t, cfg, 1)
	src := &pipeline.Origin{ID: 0}
	b := seqBatch(src, 0, []rec{{at: 10 * time.Minute, service: "a", trace: "x"}})
	w.Process(context.Background(), b)
	w.settleNow()
	if got := w.closedBefore.Load(); got != w.window(t0.Add(10*time.Minute-30*time.Second).UnixNano()) {
		t.Errorf("closed before window %d: an unnumbered batch did not move the watermark", got)
	}
	// A numbered batch 2 alone does not.
	w2, _ := newStage(t, cfg, 1)
	b = seqBatch(src, 2, []rec{{at: 10 * time.Minute, service: "a", trace: "x"}})
	w2.Process(context.Background(), b)
	w2.settleNow()
	if wm, ok := w2.watermark(); ok {
		t.Errorf("watermark %s from batch 2 while batch 1 is not through", time.Unix(0, wm).UTC())
	}
}

// TestGapDoesNotForceWindowsClosed: batches done ahead of an earlier one
// still in flight open windows past max_open_windows without closing the
// windows the earlier batch fills; once it is through, the cap applies.
func TestGapDoesNotForceWindowsClosed(t *testing.T) {
	cfg := testConfig()
	cfg.LatePolicy = "dlq"
	cfg.MaxOpenWindows = 2
	w, sink := newStage(t, cfg, 1)
	w.ExpectSources(0)
	src := &pipeline.Origin{ID: 0}
	for seq := 2; seq <= 8; seq++ { // minutes 1..7, while batch 1 (minute 0) is in flight
		pipeline.PutBatch(w.processSettled(seqBatch(src, seq, []rec{{at: time.Duration(seq-1) * time.Minute, service: "a", trace: "x"}})))
	}
	if f := w.Stats.WindowsForced.Load(); f != 0 || len(sink.all) != 0 {
		t.Fatalf("%d windows forced closed, %d rows, while batch 1 is in flight", f, len(sink.all))
	}
	b := w.processSettled(seqBatch(src, 1, []rec{{at: 10 * time.Second, service: "a", trace: "y"}}))
	if b.Records[0].Failed() {
		t.Fatalf("the record of the batch that was in flight: %+v", b.Records[0].Failure)
	}
	// Now the prefix reaches minute 7: the watermark (6:30) closes
	// minutes 0..5, and the cap has nothing left to force.
	if got := w.closedBefore.Load(); got != w.window(t0.Add(6*time.Minute).UnixNano()) {
		t.Errorf("closed before window %d, want minute 6's", got)
	}
	closeStage(t, w)
	if r := estimate(t, sink.latest(), "traces", t0, `{"service":"a"}`); r.Records != 1 {
		t.Errorf("minute 0: %d records, want 1", r.Records)
	}
}

// processSettled processes b and lets the closer run a cycle.
func (w *Windows) processSettled(b *pipeline.Batch) *pipeline.Batch {
	w.Process(context.Background(), b)
	w.settleNow()
	return b
}
