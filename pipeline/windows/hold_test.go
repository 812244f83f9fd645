package windows

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// rowAcker is a pipeline.WindowAcker that records its calls in order and,
// at each WindowAck, checks that the rows the batch's counts went into are
// in the row file already: need[seq] lists (window start, revision) pairs
// that must be on disk then.
type rowAcker struct {
	tw *testWriter // the row writer (nil with another sink)

	mu     sync.Mutex
	events []string
	need   map[uint64][]rowAt
	errs   []string
}

type rowAt struct {
	start    time.Time
	revision int
}

func (a *rowAcker) Ack(seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, fmt.Sprintf("ack %d", seq))
}

func (a *rowAcker) WindowAck(seq uint64) {
	var data []byte
	var unflushed []rowAt
	if a.tw != nil {
		var err error
		if data, err = os.ReadFile(a.tw.Path()); err != nil {
			data = nil
		}
		unflushed = a.tw.notFlushed()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, fmt.Sprintf("wack %d", seq))
	for _, r := range a.need[seq] {
		if !hasRow(data, r) {
			a.errs = append(a.errs, fmt.Sprintf("WindowAck(%d) before the row of window %s revision %d was in the file", seq, r.start.Format(time.TimeOnly), r.revision))
		}
		if slices.Contains(unflushed, r) {
			a.errs = append(a.errs, fmt.Sprintf("WindowAck(%d) before the row of window %s revision %d was flushed", seq, r.start.Format(time.TimeOnly), r.revision))
		}
	}
}

// hasRow reports whether the row file holds a row of window r.start with
// revision r.revision.
func hasRow(data []byte, r rowAt) bool {
	start := fmt.Sprintf(`"window_start":"%s"`, r.start.UTC().Format(time.RFC3339Nano))
	rev := fmt.Sprintf(`"revision":%d,`, r.revision)
	for line := range strings.Lines(string(data)) {
		if strings.Contains(line, start) && strings.Contains(line, rev) {
			return true
		}
	}
	return false
}

func (a *rowAcker) expect(seq uint64, rows ...rowAt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.need == nil {
		a.need = map[uint64][]rowAt{}
	}
	a.need[seq] = append(a.need[seq], rows...)
}

func (a *rowAcker) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.events)
}

func (a *rowAcker) has(e string) bool { return slices.Contains(a.got(), e) }

// windowAcked returns the seqs window-acked so far, sorted.
func (a *rowAcker) windowAcked() []uint64 {
	var out []uint64
	for _, e := range a.got() {
		var seq uint64
		if _, err := fmt.Sscanf(e, "wack %d", &seq); err == nil {
			out = append(out, seq)
		}
	}
	slices.Sort(out)
	return out
}

// check fails on a WindowAck that came before its rows were on disk, or
// before its Ack, or twice.
func (a *rowAcker) check(t *testing.T) {
	t.Helper()
	a.mu.Lock()
	errs := slices.Clone(a.errs)
	a.mu.Unlock()
	for _, e := range errs {
		t.Error(e)
	}
	ev := a.got()
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

// holdRig is the window stage behind a real runner (no record sink, a
// file DLQ), writing rows with a real row writer.
type holdRig struct {
	w    *Windows
	r    *pipeline.Runner
	acks *rowAcker
	src  *pipeline.Origin
	dlq  *dlq.File
	seq  uint64
	// noSettle: handle does not wait for a closer cycle (the closer may
	// be blocked in a gated write).
	noSettle bool
}

// newHoldRig builds the rig; sink nil means a testWriter (a FileWriter
// in a temp dir).
func newHoldRig(t *testing.T, cfg config.Windows, sink RowWriter) *holdRig {
	t.Helper()
	acks := &rowAcker{}
	if sink == nil {
		sink = newTestWriter(t)
	}
	if tw, ok := sink.(*testWriter); ok {
		acks.tw = tw
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := New(Options{Config: cfg, Workers: 1, Sink: sink, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	d, err := dlq.OpenFile(dlq.FileOptions{Dir: filepath.Join(t.TempDir(), "dlq")})
	if err != nil {
		t.Fatal(err)
	}
	r := pipeline.NewRunner(pipeline.RunnerOptions{Workers: 1, Stages: []pipeline.Stage{w},
		DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), FlushEvery: time.Hour, Logger: log})
	g := &holdRig{w: w, r: r, acks: acks, src: &pipeline.Origin{ID: 1, Kind: "file", Path: "mem.jsonl"}, dlq: d}
	t.Cleanup(func() {
		r.Close()
		_ = w.Close(context.Background())
		_ = d.Close(context.Background())
	})
	if acks.tw != nil {
		t.Cleanup(acks.tw.open) // before the stage closes: a test that failed may have left the closer at the gate
	}
	return g
}

// handle runs the next batch of the source through the runner (the
// window stage counts it) and lets the closer act on it; edit, when set,
// changes the records first. It returns the batch's seq.
func (g *holdRig) handle(edit func(b *pipeline.Batch), recs ...rec) uint64 {
	g.seq++
	b := batchOf(recs...)
	b.Origin, b.Seq, b.Acker = g.src, g.seq, g.acks
	if edit != nil {
		edit(b)
	}
	g.r.Handle(context.Background(), b)
	if !g.noSettle {
		g.w.settleNow()
	}
	return g.seq
}

func (g *holdRig) barrier(t *testing.T) {
	t.Helper()
	if err := g.r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestWindowAckWaitsForTheDurableRow: a batch counted into an open window
// is acked by the runner's barrier but not window-acked; once the window
// closes, its row is written and flushed to the file, and only then is
// the batch window-acked.
func TestWindowAckWaitsForTheDurableRow(t *testing.T) {
	g := newHoldRig(t, testConfig(), nil)
	s1 := g.handle(nil, rec{at: 10 * time.Second, service: "a", trace: "t1"}, rec{at: 20 * time.Second, service: "b", trace: "t2"})
	g.acks.expect(s1, rowAt{t0, 1})
	g.barrier(t)
	if ev := g.acks.got(); !slices.Equal(ev, []string{"ack 1"}) {
		t.Fatalf("events %q: batch 1 is durable in the sinks but its window is open", ev)
	}
	if n := g.w.Stats.Holds.Load(); n != 1 {
		t.Fatalf("%d holds, want 1", n)
	}
	// Two minutes on: the watermark (2m - 30s) passes window 0's end.
	s2 := g.handle(nil, rec{at: 2 * time.Minute, service: "a", trace: "t3"})
	g.acks.expect(s2, rowAt{t0.Add(2 * time.Minute), 1})
	if !g.acks.has("wack 1") {
		t.Fatalf("events %q: window 0 closed and its row is written, batch 1 not window-acked", g.acks.got())
	}
	g.barrier(t)
	if g.acks.has("wack 2") {
		t.Fatalf("events %q: batch 2's window is open", g.acks.got())
	}
	closeStage(t, g.w)
	if !g.acks.has("wack 2") {
		t.Fatalf("events %q: Close wrote batch 2's window and did not window-ack it", g.acks.got())
	}
	if n := g.w.Stats.Holds.Load(); n != 0 {
		t.Fatalf("%d holds after Close", n)
	}
	g.acks.check(t)
}

// TestBatchTouchingNoWindowIsWindowAckedWithItsAck: a batch none of whose
// records went into a window (failed, filtered, no event time, no metric
// matched, late and dropped or dead-lettered) holds nothing: the barrier
// window-acks it right after its Ack, while another batch's window stays
// open.
func TestBatchTouchingNoWindowIsWindowAckedWithItsAck(t *testing.T) {
	failAll := func(b *pipeline.Batch) {
		for i := range b.Records {
			b.Records[i].Fail("parse", pipeline.ClassInvalid, "test", "failed before the windows")
		}
	}
	filterAll := func(b *pipeline.Batch) {
		for i := range b.Records {
			b.Records[i].Filtered = true
		}
	}
	noTime := func(b *pipeline.Batch) {
		for i := range b.Records {
			b.Records[i].Time = 0
		}
	}
	for _, policy := range []string{"update", "drop", "dlq"} {
		t.Run(policy, func(t *testing.T) {
			cfg := testConfig()
			cfg.LatePolicy = policy
			g := newHoldRig(t, cfg, nil)
			open := g.handle(nil, rec{at: 2 * time.Minute, service: "a", trace: "t0"}) // closes window 0; window 2 stays open
			g.barrier(t)
			cases := map[uint64]string{
				g.handle(failAll, rec{at: 2 * time.Minute, service: "a", trace: "t1"}):   "failed",
				g.handle(filterAll, rec{at: 2 * time.Minute, service: "a", trace: "t2"}): "filtered",
				g.handle(noTime, rec{at: 2 * time.Minute, service: "a", trace: "t3"}):    "no time",
				g.handle(nil, rec{at: 2 * time.Minute, service: "a", trace: ""}):         "no value to count",
			}
			if policy != "update" {
				cases[g.handle(nil, rec{at: 10 * time.Second, service: "a", trace: "late"})] = "late"
			}
			g.barrier(t)
			ev := g.acks.got()
			for seq, why := range cases {
				i := slices.Index(ev, fmt.Sprintf("ack %d", seq))
				if i < 0 || i+1 == len(ev) || ev[i+1] != fmt.Sprintf("wack %d", seq) {
					t.Errorf("%s: events %q, want wack %d right after ack %d", why, ev, seq, seq)
				}
			}
			if g.acks.has(fmt.Sprintf("wack %d", open)) {
				t.Errorf("events %q: batch %d's window is open", ev, open)
			}
			if n := g.w.Stats.Holds.Load(); n != 1 {
				t.Errorf("%d holds, want 1 (batch %d)", n, open)
			}
			g.acks.check(t)
		})
	}
}

// testWriter is the real file row writer with two additions: it keeps
// which rows it wrote since its last Flush (so the acker can tell a row in
// the file from a row made durable), and a gate the test can shut to hold
// the closer inside WriteRows.
type testWriter struct {
	*FileWriter
	mu        sync.Mutex
	unflushed []rowAt
	gate      chan struct{} // nil: open
	entered   chan struct{} // closed when a write reaches the shut gate
}

func newTestWriter(t *testing.T) *testWriter {
	t.Helper()
	fw, err := OpenFileWriter(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	tw := &testWriter{FileWriter: fw}
	t.Cleanup(func() { tw.open(); _ = fw.Close() })
	return tw
}

func (g *testWriter) shut() (entered <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.entered = make(chan struct{}), make(chan struct{})
	return g.entered
}

func (g *testWriter) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
}

func (g *testWriter) WriteRows(ctx context.Context, rows []Row) error {
	g.mu.Lock()
	gate := g.gate
	if gate != nil && g.entered != nil {
		close(g.entered)
		g.entered = nil
	}
	g.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if err := g.FileWriter.WriteRows(ctx, rows); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range rows {
		g.unflushed = append(g.unflushed, rowAt{rows[i].Start, rows[i].Revision})
	}
	return nil
}

func (g *testWriter) Flush(ctx context.Context) error {
	if err := g.FileWriter.Flush(ctx); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.unflushed = g.unflushed[:0]
	return nil
}

func (g *testWriter) notFlushed() []rowAt {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.unflushed)
}

// TestLateUpdateIsWindowAckedAfterTheCorrection: under late_policy
// update, a batch that corrected a closed window is window-acked once the
// correction (the row's next revision) is on disk: not while the closer
// is still writing it, though the runner acked the batch already.
func TestLateUpdateIsWindowAckedAfterTheCorrection(t *testing.T) {
	g := newHoldRig(t, testConfig(), nil)
	gw := g.acks.tw
	g.handle(nil, rec{at: 10 * time.Second, service: "a", trace: "t1"})
	g.handle(nil, rec{at: 2 * time.Minute, service: "a", trace: "t2"}) // window 0 closes: revision 1
	g.barrier(t)
	if !g.acks.has("wack 1") {
		t.Fatalf("events %q: batch 1 not window-acked after window 0 closed", g.acks.got())
	}
	entered := gw.shut()
	g.noSettle = true
	g.acks.expect(3, rowAt{t0, 2})
	late := g.handle(nil, rec{at: 15 * time.Second, service: "a", trace: "t-late"}) // its poke starts the correction cycle
	if g.w.Stats.LateUpdated.Load() != 1 {
		t.Fatalf("the late record did not update window 0: %+v", g.w.Stats.Snapshot())
	}
	<-entered // the closer is writing the correction
	g.barrier(t)
	if !g.acks.has(fmt.Sprintf("ack %d", late)) || g.acks.has(fmt.Sprintf("wack %d", late)) {
		t.Fatalf("events %q: batch %d must be acked, and not window-acked while its correction is being written", g.acks.got(), late)
	}
	gw.open()
	waitFor(t, func() bool { return g.acks.has(fmt.Sprintf("wack %d", late)) })
	if g.acks.has("wack 2") {
		t.Fatalf("events %q: batch 2's window is open", g.acks.got())
	}
	closeStage(t, g.w)
	g.acks.check(t)
}

// TestCloseWindowAcksEverything: Close writes every open window, flushes,
// and window-acks every batch counted into them, one spanning two windows
// included.
func TestCloseWindowAcksEverything(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedLateness = time.Hour // nothing closes before Close
	g := newHoldRig(t, cfg, nil)
	w0, w1, w2 := rowAt{t0, 1}, rowAt{t0.Add(time.Minute), 1}, rowAt{t0.Add(2 * time.Minute), 1}
	g.acks.expect(1, w0)
	g.acks.expect(2, w0, w1)
	g.acks.expect(3, w2)
	g.acks.expect(4, w1)
	g.handle(nil, rec{at: 5 * time.Second, service: "a", trace: "t1"})
	g.handle(nil, rec{at: 50 * time.Second, service: "a", trace: "t2"}, rec{at: 70 * time.Second, service: "b", trace: "t3"})
	g.handle(nil, rec{at: 130 * time.Second, service: "a", trace: "t4"})
	g.handle(nil, rec{at: 75 * time.Second, service: "a", trace: "t5"})
	g.barrier(t)
	if got := g.acks.windowAcked(); len(got) != 0 {
		t.Fatalf("window-acked %v with every window open", got)
	}
	if n := g.w.Stats.Holds.Load(); n != 4 {
		t.Fatalf("%d holds, want 4", n)
	}
	closeStage(t, g.w)
	if got := g.acks.windowAcked(); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("after Close window-acked %v, want 1..4", got)
	}
	g.acks.check(t)
}

// TestHoldsReleasedInWindowOrder: as the watermark passes one window after
// another, the batches counted into them are window-acked in that order,
// each once its window's row is on disk, and the holds left are those of
// the open window only.
func TestHoldsReleasedInWindowOrder(t *testing.T) {
	g := newHoldRig(t, testConfig(), nil)
	for k := uint64(1); k <= 5; k++ {
		// Batch k in window k-1, at 45 s into it: the watermark (15 s into
		// window k-1) closes window k-2, batch k-1's.
		at := time.Duration(k-1)*time.Minute + 45*time.Second
		g.acks.expect(k, rowAt{t0.Add(time.Duration(k-1) * time.Minute), 1})
		g.handle(nil, rec{at: at, service: "a", trace: fmt.Sprint("t", k)})
		g.barrier(t)
		var want []uint64
		for j := uint64(1); j < k; j++ {
			want = append(want, j)
		}
		if got := g.acks.windowAcked(); !slices.Equal(got, want) {
			t.Fatalf("after batch %d: window-acked %v, want %v", k, got, want)
		}
		if n := g.w.Stats.Holds.Load(); n != 1 {
			t.Fatalf("after batch %d: %d holds, want 1", k, n)
		}
	}
	closeStage(t, g.w)
	g.acks.check(t)
}

// TestRefusedRowsAreNeverWindowAcked: when the windows sink refuses rows,
// the batches counted into them are never window-acked, including one
// whose other window is written fine later; batches of later windows are.
func TestRefusedRowsAreNeverWindowAcked(t *testing.T) {
	sink := &memSink{}
	g := newHoldRig(t, testConfig(), sink)
	sink.mu.Lock()
	sink.fail = errors.New("store down")
	sink.mu.Unlock()
	g.handle(nil, rec{at: 10 * time.Second, service: "a", trace: "t1"})                                                       // window 0
	g.handle(nil, rec{at: 50 * time.Second, service: "a", trace: "t2"}, rec{at: 70 * time.Second, service: "a", trace: "t3"}) // windows 0 and 1
	g.handle(nil, rec{at: 125 * time.Second, service: "a", trace: "t4"})                                                      // closes window 0 only
	g.barrier(t)
	if g.w.Stats.RowsFailed.Load() == 0 {
		t.Fatal("the sink refused nothing")
	}
	sink.mu.Lock()
	sink.fail = nil
	sink.mu.Unlock()
	closeStage(t, g.w)
	if got := g.acks.windowAcked(); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("window-acked %v, want only 3 (1 and 2 have counts in refused rows)", got)
	}
	if n := g.w.Stats.HoldsDropped.Load(); n != 2 {
		t.Fatalf("%d holds dropped, want 2", n)
	}
	g.acks.check(t)
}
