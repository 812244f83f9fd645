package tail

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/state"
	"github.com/tracepipe/tracepipe/pipeline"
)

// onDisk reads the source's checkpoint file as the next process would.
func onDisk(t *testing.T, st *state.Dir) (positions, state.Checkpoint) {
	t.Helper()
	data, err := os.ReadFile(st.File("test"))
	if err != nil {
		t.Fatal(err)
	}
	var cp state.Checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		t.Fatal(err)
	}
	p, err := decodePositions(cp.Positions)
	if err != nil {
		t.Fatal(err)
	}
	return p, cp
}

func openState(t *testing.T) *state.Dir {
	t.Helper()
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// heldBatches waits for n held batches and returns them in arrival order.
func (c *collector) heldBatches(t *testing.T, n int) []*pipeline.Batch {
	t.Helper()
	waitFor(t, "held batches", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.held) >= n
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*pipeline.Batch(nil), c.held...)
}

// TestCheckpointNeverPastGap: batches acked out of order move the committed
// position only to the end of the contiguous acked run, as read back from
// the checkpoint file; a commit with nothing new writes nothing.
func TestCheckpointNeverPastGap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	all := lines("gap", 0, 500)
	appendFile(t, path, joinLines(all))
	endOf := func(n int) int64 { return int64(len(joinLines(all[:n]))) }
	st := openState(t)
	c := newCollector(t)
	c.hold = true
	r := start(t, testCfg(filepath.Join(dir, "*.log")), c, st, func(o *Options) { o.BatchUnits = 100 })
	bs := c.heldBatches(t, 5)
	ctx := context.Background()
	check := func(step string, wantOff int64, wantLine int64) {
		t.Helper()
		if err := r.src.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		p, _ := onDisk(t, st)
		if len(p.Files) != 1 || p.Files[0].Offset != wantOff || p.Files[0].Line != wantLine || p.Files[0].Path != path {
			t.Fatalf("%s: checkpoint %+v, want offset %d line %d", step, p.Files, wantOff, wantLine)
		}
	}
	check("nothing acked", 0, 1)
	ackBoth(bs[1])
	ackBoth(bs[2])
	check("2 and 3 acked, 1 not", 0, 1)
	ackBoth(bs[0])
	check("1, 2, 3 acked", endOf(300), 301)
	ackBoth(bs[4])
	check("5 acked, 4 not", endOf(300), 301)
	_, before := onDisk(t, st)
	if err := r.src.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, after := onDisk(t, st); !after.Saved.Equal(before.Saved) {
		t.Errorf("a commit with nothing new rewrote the checkpoint")
	}
	ackBoth(bs[3])
	check("all acked", endOf(500), 501)
}

// TestRestartFromCheckpoint: a run that acked only part of what it sent
// stops; the next resumes at the committed position: everything after it
// is delivered again, nothing before.
func TestRestartFromCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	all := lines("restart", 0, 1000)
	appendFile(t, path, joinLines(all))
	st := openState(t)
	cfg := testCfg(filepath.Join(dir, "*.log"))

	c1 := newCollector(t)
	c1.hold = true
	r1 := start(t, cfg, c1, st, func(o *Options) { o.BatchUnits = 100 })
	bs := c1.heldBatches(t, 10)
	for _, b := range bs[:3] {
		ackBoth(b)
	}
	r1.stop()
	if err := r1.src.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}

	more := lines("restart", 1000, 100) // written while the pipeline was down
	appendFile(t, path, joinLines(more))
	c2 := newCollector(t)
	r2 := start(t, cfg, c2, st, nil)
	want := append(all[300:], more...)
	c2.waitLines(t, want)
	settle(r2)
	c2.exactlyOnce(t, want)
}

// TestStartAtIgnoredWithCheckpoint: a file with a checkpoint resumes there
// whatever start_at says.
func TestStartAtIgnoredWithCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	first := lines("cp", 0, 100)
	appendFile(t, path, joinLines(first))
	st := openState(t)
	cfg := testCfg(filepath.Join(dir, "*.log"))
	c1 := newCollector(t)
	r1 := start(t, cfg, c1, st, nil)
	c1.waitLines(t, first)
	r1.stop()
	if err := r1.src.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := lines("cp", 100, 100)
	appendFile(t, path, joinLines(second))
	cfg.StartAt = "end"
	c2 := newCollector(t)
	r2 := start(t, cfg, c2, st, nil)
	c2.waitLines(t, second)
	settle(r2)
	c2.exactlyOnce(t, second)
}

// TestRenamedBackNotReread: a file renamed out of the globs is released;
// once its batches are acked and committed its position is remembered, so
// renamed back in (in this run or the next) it is not read again.
func TestRenamedBackNotReread(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "app.log"), filepath.Join(dir, "app.old")
	first := lines("back", 0, 200)
	appendFile(t, in, joinLines(first))
	st := openState(t)
	cfg := testCfg(filepath.Join(dir, "*.log"))
	cfg.PartialLineTimeout = 20 * time.Millisecond
	c := newCollector(t)
	r := start(t, cfg, c, st, nil)
	c.waitLines(t, first)
	if err := os.Rename(in, out); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renamed file released", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.done) == 1
	})
	if err := r.src.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, _ := onDisk(t, st)
	if len(p.Files) != 0 || len(p.Released) != 1 || p.Released[0].Offset != int64(len(joinLines(first))) {
		t.Fatalf("checkpoint %+v, want the file in released at its end", p)
	}
	if err := os.Rename(out, in); err != nil {
		t.Fatal(err)
	}
	second := lines("back", 200, 10)
	appendFile(t, in, joinLines(second))
	c.waitLines(t, second)
	settle(r)
	c.exactlyOnce(t, append(first, second...))

	// And in the next run, after it went away and came back again.
	r.stop()
	if err := r.src.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(in, out); err != nil {
		t.Fatal(err)
	}
	c2 := newCollector(t)
	r2 := start(t, cfg, c2, st, nil)
	settle(r2)
	if err := os.Rename(out, in); err != nil {
		t.Fatal(err)
	}
	third := lines("back", 210, 10)
	appendFile(t, in, joinLines(third))
	c2.waitLines(t, third)
	settle(r2)
	c2.exactlyOnce(t, third)
}

func gzipLines(t *testing.T, ls []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(joinLines(ls))
	w.Close()
	return buf.Bytes()
}

// TestArchive: a rotated .gz that appears is read once, whole; renamed, or
// after a restart, it is not read again; excluded, it is not read at all.
func TestArchive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := openState(t)
	cfg := testCfg(filepath.Join(dir, "*.log"), filepath.Join(dir, "*.gz"))
	cfg.PartialLineTimeout = 20 * time.Millisecond // an archive is read once quiet this long
	cfg.Exclude = []string{"skip-*.gz"}
	c := newCollector(t)
	r := start(t, cfg, c, st, nil)
	want := lines("gz", 0, 3000)
	if err := os.WriteFile(filepath.Join(dir, "app.log.1.gz"), gzipLines(t, want), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "skip-app.log.1.gz"), gzipLines(t, lines("skip", 0, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.waitLines(t, want)
	waitFor(t, "the archive done", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.done) == 1
	})
	if err := os.Rename(filepath.Join(dir, "app.log.1.gz"), filepath.Join(dir, "app.log.2.gz")); err != nil {
		t.Fatal(err)
	}
	// Another archive, read and then deleted: let go without a second
	// OriginDone (the collector flags one).
	other := lines("gz-other", 0, 10)
	if err := os.WriteFile(filepath.Join(dir, "other.log.1.gz"), gzipLines(t, other), 0o644); err != nil {
		t.Fatal(err)
	}
	c.waitLines(t, other)
	waitFor(t, "the other archive done", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.done) == 2
	})
	if err := os.Remove(filepath.Join(dir, "other.log.1.gz")); err != nil {
		t.Fatal(err)
	}
	want = append(want, other...)
	waitFor(t, "the deleted archive let go", func() bool { return r.src.FilesFollowed() == 1 })
	settle(r)
	r.stop()
	if err := r.src.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.exactlyOnce(t, want)
	c2 := newCollector(t)
	r2 := start(t, cfg, c2, st, nil)
	settle(r2)
	if n := c2.total(); n != 0 {
		t.Errorf("the archive was read again after a restart: %d units", n)
	}
}

// TestArchiveResumed: an archive whose batches were partly acked when the
// process stopped is resumed past them, not read from its start.
func TestArchiveResumed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := openState(t)
	cfg := testCfg(filepath.Join(dir, "*.gz"))
	cfg.PartialLineTimeout = 20 * time.Millisecond
	all := lines("gzr", 0, 1000)
	if err := os.WriteFile(filepath.Join(dir, "a.log.1.gz"), gzipLines(t, all), 0o644); err != nil {
		t.Fatal(err)
	}
	c1 := newCollector(t)
	c1.hold = true
	r1 := start(t, cfg, c1, st, func(o *Options) { o.BatchUnits = 100 })
	bs := c1.heldBatches(t, 4)
	for _, b := range bs[:4] {
		ackBoth(b)
	}
	r1.stop()
	if err := r1.src.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	c2 := newCollector(t)
	r2 := start(t, cfg, c2, st, nil)
	c2.waitLines(t, all[400:])
	settle(r2)
	c2.exactlyOnce(t, all[400:])
}

func FuzzDecodePositions(f *testing.F) {
	good := positions{
		Files:    []position{{FP: "00112233445566778899aabbccddeeff", FPLen: 1024, Dev: 1, Ino: 2, Path: "/a.log", Offset: 10, Line: 3}},
		Released: []position{{FP: "ffeeddccbbaa99887766554433221100", FPLen: 16, Path: "/b.gz", Offset: 5, Archive: true, Done: true, Released: time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)}},
	}
	raw, _ := json.Marshal(good)
	f.Add(raw)
	f.Add([]byte(`{"files":[],"released":[]}`))
	f.Add([]byte(`{"files":[{"fp":"zz","fp_len":0,"dev":0,"ino":0,"path":"","offset":-1,"line":0}]}`))
	f.Add([]byte(`{"files":null}{}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := decodePositions(raw)
		if err != nil {
			return
		}
		for _, l := range [][]position{p.Files, p.Released} {
			for _, e := range l {
				if e.Offset < 0 || e.FPLen < 1 || e.FPLen > maxFPLen || len(e.FP) != 2*fpSize || e.Path == "" {
					t.Fatalf("accepted %+v", e)
				}
			}
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := decodePositions(again)
		if err != nil {
			t.Fatalf("re-encoded positions refused: %v", err)
		}
		if !reflect.DeepEqual(normal(p), normal(p2)) {
			t.Fatalf("round trip changed the positions:\n%+v\n%+v", p, p2)
		}
	})
}

// normal makes nil and empty lists, and time zones, compare equal.
func normal(p positions) positions {
	var n positions
	for _, e := range p.Files {
		e.Released = e.Released.UTC()
		n.Files = append(n.Files, e)
	}
	for _, e := range p.Released {
		e.Released = e.Released.UTC()
		n.Released = append(n.Released, e)
	}
	return n
}

// TestRestartRebuildsOpenWindows: batches acked (durable in the sinks and
// the DLQ) but not window-acked (their window rows not yet durable) when
// the process stops are read again at the restart as WindowsOnly batches,
// ending exactly at the delivered position; what follows is delivered as
// usual. The checkpoint on disk holds both positions.
func TestRestartRebuildsOpenWindows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	all := lines("win", 0, 1000)
	appendFile(t, path, joinLines(all))
	endOf := func(n int) int64 { return int64(len(joinLines(all[:n]))) }
	st := openState(t)
	cfg := testCfg(filepath.Join(dir, "*.log"))

	c1 := newCollector(t)
	c1.hold = true
	r1 := start(t, cfg, c1, st, func(o *Options) { o.BatchUnits = 100 })
	bs := c1.heldBatches(t, 10)
	for i, b := range bs[:6] {
		b.Acker.Ack(b.Seq)
		if i < 2 {
			b.Acker.(pipeline.WindowAcker).WindowAck(b.Seq)
		}
	}
	r1.stop()
	if err := r1.src.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, _ := onDisk(t, st)
	if len(p.Files) != 1 || p.Files[0].Offset != endOf(600) || p.Files[0].Line != 601 ||
		p.Files[0].Windowed == nil || p.Files[0].Windowed.Offset != endOf(200) || p.Files[0].Windowed.Line != 201 {
		t.Fatalf("checkpoint %+v (windowed %+v), want offset %d, windowed %d", p.Files, p.Files[0].Windowed, endOf(600), endOf(200))
	}

	c2 := newCollector(t)
	r2 := start(t, cfg, c2, st, func(o *Options) { o.BatchUnits = 15 }) // batches no longer line up with the old ones, and the rewind takes several turns
	c2.waitLines(t, all[200:])
	settle(r2)
	c2.exactlyOnce(t, all[200:])
	c2.mu.Lock()
	defer c2.mu.Unlock()
	for i, l := range all[200:] {
		if got, want := c2.windowsOnly[l], b2i(i < 400); got != want {
			t.Fatalf("line %d: in a windows-only batch %d times, want %d", 200+i, got, want)
		}
	}
	// Once everything is acked both ways, the checkpoint has one position.
	if err := r2.src.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, _ := onDisk(t, st); len(p.Files) != 1 || p.Files[0].Offset != endOf(1000) || p.Files[0].Windowed != nil {
		t.Fatalf("after the restart: %+v", p.Files)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRewindToTheEnd: everything was delivered but nothing window-acked
// (the windows were all still open): the restart reads the whole file for
// the windows only, says when it is through, and delivers what comes next.
func TestRewindToTheEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	all := lines("end", 0, 1000)
	appendFile(t, path, joinLines(all))
	st := openState(t)
	cfg := testCfg(filepath.Join(dir, "*.log"))
	c1 := newCollector(t)
	c1.hold = true
	r1 := start(t, cfg, c1, st, func(o *Options) { o.BatchUnits = 100 })
	for _, b := range c1.heldBatches(t, 10) {
		b.Acker.Ack(b.Seq)
	}
	r1.stop()
	if err := r1.src.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	var logs syncLog
	c2 := newCollector(t)
	r2 := start(t, cfg, c2, st, func(o *Options) {
		o.BatchUnits = 7
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	c2.waitLines(t, all)
	// Through before anything new comes: the last windows-only batch
	// ends at the delivered position.
	for i := 0; !strings.Contains(logs.String(), "read again up to the delivered position"); i++ {
		if i > 3000 {
			t.Fatalf("no 'read again' log once the file was read again:\n%s", logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	more := lines("end", 1000, 10)
	appendFile(t, path, joinLines(more))
	c2.waitLines(t, more)
	settle(r2)
	c2.mu.Lock()
	for _, l := range all {
		if c2.windowsOnly[l] != 1 {
			t.Errorf("%q: windows-only %d times", l, c2.windowsOnly[l])
		}
	}
	for _, l := range more {
		if c2.windowsOnly[l] != 0 {
			t.Errorf("%q, appended after the restart, came windows-only", l)
		}
	}
	c2.mu.Unlock()
	if n := strings.Count(logs.String(), "read again up to the delivered position"); n != 1 {
		t.Fatalf("%d 'read again' logs, want 1:\n%s", n, logs.String())
	}
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
