package pipeline_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/sinks"
)

// windowAckLog is a WindowAcker that records its calls in order, as
// "ack 3" and "wack 3".
type windowAckLog struct {
	mu     sync.Mutex
	events []string
}

func (l *windowAckLog) Ack(seq uint64)       { l.add("ack", seq) }
func (l *windowAckLog) WindowAck(seq uint64) { l.add("wack", seq) }
func (l *windowAckLog) add(kind string, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf("%s %d", kind, seq))
}

func (l *windowAckLog) got() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// has reports whether event e was recorded.
func (l *windowAckLog) has(e string) bool { return slices.Contains(l.got(), e) }

// checkOrder fails unless every "wack n" comes after "ack n", at most once.
func (l *windowAckLog) checkOrder(t *testing.T) {
	t.Helper()
	ev := l.got()
	for i, e := range ev {
		seq, ok := strings.CutPrefix(e, "wack ")
		if !ok {
			continue
		}
		if !slices.Contains(ev[:i], "ack "+seq) {
			t.Errorf("events %q: WindowAck(%s) before its Ack", ev, seq)
		}
		if slices.Contains(ev[i+1:], e) {
			t.Errorf("events %q: WindowAck(%s) twice", ev, seq)
		}
	}
}

// holding is a stage that holds every batch's window ack, as the window
// stage does, and releases it when the test says (release/drop), or at
// once for batches named in now.
type holding struct {
	mu    sync.Mutex
	holds map[uint64]*pipeline.WindowHold
	now   map[uint64]bool
}

func (*holding) Name() string { return "holding" }
func (h *holding) Process(_ context.Context, b *pipeline.Batch) {
	wh := b.HoldWindowAck()
	if wh == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.now[b.Seq] {
		wh.Release()
		return
	}
	if h.holds == nil {
		h.holds = map[uint64]*pipeline.WindowHold{}
	}
	h.holds[b.Seq] = wh
}

func (h *holding) take(t *testing.T, seq uint64) *pipeline.WindowHold {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	wh := h.holds[seq]
	if wh == nil {
		t.Fatalf("batch %d is not held", seq)
	}
	delete(h.holds, seq)
	return wh
}

// handleSeq hands the runner one batch of src numbered seq.
func handleSeq(r *pipeline.Runner, src *pipeline.Origin, a pipeline.Acker, seq uint64, windowsOnly bool, units ...string) {
	b := pipeline.GetBatch()
	b.Origin, b.Seq, b.Acker, b.WindowsOnly = src, seq, a, windowsOnly
	for i, u := range units {
		b.AddUnit([]byte(u), int64(i), int64(i+1), int64(len(u)), 0)
	}
	r.Handle(context.Background(), b)
}

// TestWindowAckWithoutAWindowStage: with no stage holding batches, the
// barrier window-acks each batch right after its Ack, never before the
// barrier, and never a batch whose record the DLQ refused.
func TestWindowAckWithoutAWindowStage(t *testing.T) {
	file, _ := openDLQ(t)
	d := &refusing{File: file}
	acks := &windowAckLog{}
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 1, Stages: []pipeline.Stage{makeRecords{}, panicBatch{}}, Sinks: []pipeline.Sink{sinks.NewDiscard("d")},
		DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), FlushEvery: time.Hour, Logger: quiet(),
	})
	src := &pipeline.Origin{Kind: "file", Path: "mem.jsonl", Format: pipeline.FormatJSONL}
	handleSeq(r, src, acks, 1, false, "a", "b")
	handleSeq(r, src, acks, 2, false, "c")
	if ev := acks.got(); len(ev) != 0 {
		t.Fatalf("%q before any barrier", ev)
	}
	if err := r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ev := acks.got(); !slices.Equal(ev, []string{"ack 1", "wack 1", "ack 2", "wack 2"}) {
		t.Fatalf("events %q, want each WindowAck right after its Ack", ev)
	}
	d.refuse = true
	handleSeq(r, src, acks, 3, false, "explode") // its record goes to the DLQ, which refuses it: lost
	if err := r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if acks.has("ack 3") || acks.has("wack 3") {
		t.Fatalf("events %q: batch 3 lost a record and must be neither acked nor window-acked", acks.got())
	}
	if err := file.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestWindowAckWaitsForTheHoldingStage: a batch a stage holds is
// window-acked by the last of the runner's Ack and the stage's Release,
// whichever comes first; a dropped hold, or a batch with a lost record,
// is never window-acked.
func TestWindowAckWaitsForTheHoldingStage(t *testing.T) {
	file, _ := openDLQ(t)
	d := &refusing{File: file}
	acks := &windowAckLog{}
	st := &holding{now: map[uint64]bool{3: true}}
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 1, Stages: []pipeline.Stage{makeRecords{}, panicBatch{}, st}, Sinks: []pipeline.Sink{sinks.NewDiscard("d")},
		DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), FlushEvery: time.Hour, Logger: quiet(),
	})
	src := &pipeline.Origin{Kind: "file", Path: "mem.jsonl", Format: pipeline.FormatJSONL}
	handleSeq(r, src, acks, 1, false, "a")
	handleSeq(r, src, acks, 2, false, "b")
	handleSeq(r, src, acks, 3, false, "c") // released by the stage at once
	if err := r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ev := acks.got(); !slices.Equal(ev, []string{"ack 1", "ack 2", "ack 3", "wack 3"}) {
		t.Fatalf("events %q: 1 and 2 are held by the stage, 3 is not", ev)
	}
	st.take(t, 2).Release()
	if !acks.has("wack 2") || acks.has("wack 1") {
		t.Fatalf("events %q: releasing 2 after its Ack window-acks it, and only it", acks.got())
	}
	// Released by the stage before the runner acked it: window-acked by
	// the barrier, after its Ack.
	handleSeq(r, src, acks, 4, false, "d")
	st.take(t, 4).Release()
	if acks.has("ack 4") || acks.has("wack 4") {
		t.Fatalf("events %q: batch 4 acked before a barrier", acks.got())
	}
	if err := r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !acks.has("wack 4") {
		t.Fatalf("events %q: batch 4 not window-acked by the barrier", acks.got())
	}
	// A hold the stage drops: acked, never window-acked.
	handleSeq(r, src, acks, 5, false, "e")
	st.take(t, 5).Drop()
	// A held batch that loses a record: neither, even once the stage
	// releases it.
	d.refuse = true
	handleSeq(r, src, acks, 6, false, "explode")
	st.take(t, 6).Release()
	if err := r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if !acks.has("ack 5") || acks.has("wack 5") {
		t.Fatalf("events %q: 5 (dropped by the stage) must be acked and never window-acked", acks.got())
	}
	if acks.has("ack 6") || acks.has("wack 6") {
		t.Fatalf("events %q: 6 lost a record", acks.got())
	}
	st.take(t, 1).Release()
	if !acks.has("wack 1") {
		t.Fatalf("events %q: batch 1 released at last", acks.got())
	}
	acks.checkOrder(t)
	if err := file.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// skipNamed is a filter stage: records named "skip" are filtered.
type skipNamed struct{}

func (skipNamed) Name() string { return "skip" }
func (skipNamed) Process(_ context.Context, b *pipeline.Batch) {
	for i := range b.Records {
		if string(b.Records[i].Name) == "skip" {
			b.Records[i].Filtered = true
		}
	}
}

// TestWindowsOnlyBatchReachesNoSinkNorDLQ: a WindowsOnly batch goes
// through every stage but reaches no sink and no DLQ, even with a failed
// record; its records count as rewindowed only, so in = out + dlq +
// filtered still holds; it is acked and window-acked like the others.
func TestWindowsOnlyBatchReachesNoSinkNorDLQ(t *testing.T) {
	d, dlqDir := openDLQ(t)
	sink, out := fileSink(t, "out")
	acks := &windowAckLog{}
	after := &seen{}
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 2, Stages: []pipeline.Stage{makeRecords{}, panicOn{}, skipNamed{}, after},
		Sinks: []pipeline.Sink{sink}, DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), FlushEvery: time.Hour, Logger: quiet(),
	})
	src := &pipeline.Origin{Kind: "file", Path: "mem.jsonl", Format: pipeline.FormatJSONL}
	handleSeq(r, src, acks, 1, true, "x", "boom", "skip", "y") // re-read: windows only
	handleSeq(r, src, acks, 2, false, "a", "boom", "skip")     // read for the first time
	handleSeq(r, src, acks, 3, true, "z")                      // windows only again
	if err := r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if n := after.n.Load(); n != 3 {
		t.Fatalf("the last stage saw %d of 3 batches: WindowsOnly batches must go through the stages", n)
	}
	got := lines(t, sink, out)
	if len(got) != 1 || !strings.Contains(got[0], `"a"`) {
		t.Fatalf("sink got %q, want the one deliverable record of batch 2", got)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	es := entries(t, dlqDir)
	if len(es) != 1 || es[0].Source.Line != 2 || es[0].Error.Class != "panic" {
		t.Fatalf("DLQ entries %+v, want only batch 2's boom", es)
	}
	a := r.Accounting()
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	if in, o, f, re := a.RecordsIn.Load(), a.RecordsOut.Load(), a.RecordsFiltered.Load(), a.RecordsRewindowed.Load(); in != 3 || o != 1 || f != 1 || re != 5 {
		t.Fatalf("in %d out %d filtered %d rewindowed %d, want 3 1 1 5", in, o, f, re)
	}
	if s := a.Sources(); len(s) != 1 || s[0].Rewindowed != 5 || s[0].In != 3 {
		t.Fatalf("per source %+v", s)
	}
	for _, e := range []string{"ack 1", "wack 1", "ack 2", "wack 2", "ack 3", "wack 3"} {
		if !acks.has(e) {
			t.Errorf("events %q: no %q", acks.got(), e)
		}
	}
	acks.checkOrder(t)
}

// countAcks is a WindowAcker that only counts (allocation tests).
type countAcks struct{ acks, wacks atomic.Int64 }

func (c *countAcks) Ack(uint64)       { c.acks.Add(1) }
func (c *countAcks) WindowAck(uint64) { c.wacks.Add(1) }

// onlyAcks is a plain Acker, for comparison.
type onlyAcks struct{ n atomic.Int64 }

func (c *onlyAcks) Ack(uint64) { c.n.Add(1) }

// TestWindowHoldAllocatesNothing: a held batch's round trip (the stage
// takes a hold and releases it, the runner acks and window-acks it)
// allocates nothing more than a batch with a plain Acker: holds are
// pooled. (The barrier itself allocates in the DLQ's Sync, once per
// barrier, the same with or without holds.)
func TestWindowHoldAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops objects)")
	}
	d, _ := openDLQ(t)
	st := &holding{now: map[uint64]bool{1: true}} // every batch is seq 1 here: held, then released by the stage
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 1, Stages: []pipeline.Stage{makeRecords{}, st}, Sinks: []pipeline.Sink{sinks.NewDiscard("d")},
		DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), FlushEvery: time.Hour, Logger: quiet(),
	})
	defer r.Close()
	src := &pipeline.Origin{Kind: "file", Path: "mem.jsonl", Format: pipeline.FormatJSONL}
	ctx := context.Background()
	round := func(a pipeline.Acker) func() {
		return func() {
			for range 8 {
				b := pipeline.GetBatch()
				b.Origin, b.Seq, b.Acker = src, 1, a
				b.AddUnit([]byte("a"), 0, 1, 1, 0)
				r.Handle(ctx, b)
			}
			_ = r.Barrier(ctx)
		}
	}
	plain, held := &onlyAcks{}, &countAcks{}
	for range 10 {
		round(plain)()
		round(held)()
	}
	base := testing.AllocsPerRun(200, round(plain))
	with := testing.AllocsPerRun(200, round(held))
	if with != base {
		t.Errorf("%v allocations per barrier of 8 held batches, %v with a plain Acker: holding must add none", with, base)
	}
	if a, w := held.acks.Load(), held.wacks.Load(); a != w || a < 200*8 {
		t.Fatalf("%d acks, %d window acks", a, w)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
