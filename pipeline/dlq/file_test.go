package dlq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var testClasses = []string{"malformed", "invalid", "too_large", "late", "panic"}

// testEntry returns a valid entry whose payload names i.
func testEntry(i int, class string) *Entry {
	now := time.Now().UTC()
	e := &Entry{
		ID: NewID(now), Time: now, Stage: "parse", Component: "jsonl", Host: "host-1", PipelineVersion: "test",
		Source:   Source{Kind: "file", Path: "/var/log/app.jsonl", Format: "jsonl", Offset: int64(i) * 100, Line: int64(i) + 1},
		Error:    Error{Class: class, Code: "json_syntax", Message: "unexpected end of input"},
		Attempts: 1, FirstFailure: now, LastFailure: now,
	}
	e.SetPayload(fmt.Appendf(nil, `{"trace_id":"%032x","i":%d,"msg":"a <b> & c","pad":"%s"}`, i, i, strings.Repeat("x", 100)), 0, 0)
	return e
}

// quietLogger discards logs; logTo captures them.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func logTo(b *syncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// openTest opens a File on opts (Dir defaults to a temp dir) and closes it
// at cleanup if the test did not.
func openTest(t *testing.T, opts FileOptions, hooks fileHooks) *File {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	f, err := openFile(opts, hooks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(context.Background()) })
	return f
}

type scanned struct {
	entries     []*Entry
	positions   []Position
	corruptions []Corruption
}

func scanAll(t *testing.T, dir string) scanned {
	t.Helper()
	var s scanned
	err := Scan(dir, func(e *Entry, pos Position) error {
		s.entries = append(s.entries, e)
		s.positions = append(s.positions, pos)
		return nil
	}, func(c Corruption) { s.corruptions = append(s.corruptions, c) })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// segmentsIn returns the segment paths in dir, oldest first, and their sizes.
func segmentsIn(t *testing.T, dir string) ([]string, int64) {
	t.Helper()
	names, err := segmentNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	var total int64
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, filepath.Join(dir, n))
		total += fi.Size()
	}
	return paths, total
}

func mustPut(t *testing.T, f *File, e *Entry) {
	t.Helper()
	if err := f.Put(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func mustClose(t *testing.T, f *File) {
	t.Helper()
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	f := openTest(t, FileOptions{SegmentBytes: 32 << 10, QueueSize: 16}, fileHooks{})
	const workers, per = 8, 500
	type sent struct {
		class   string
		payload string
	}
	var mu sync.Mutex
	want := map[string]sent{}
	wantByClass := map[string]int64{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				n := w*per + i
				e := testEntry(n, testClasses[n%len(testClasses)])
				s := sent{e.Error.Class, e.Payload}
				mu.Lock()
				want[e.ID] = s
				wantByClass[s.class]++
				mu.Unlock()
				if err := f.Put(context.Background(), e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	mustClose(t, f)

	s := scanAll(t, f.Dir())
	if len(s.corruptions) > 0 {
		t.Fatalf("corruptions in a clean run: %v", s.corruptions)
	}
	seen := map[string]bool{}
	for _, e := range s.entries {
		w, ok := want[e.ID]
		if !ok || seen[e.ID] {
			t.Fatalf("entry %s: unexpected or seen twice", e.ID)
		}
		seen[e.ID] = true
		if e.Version != SchemaVersion || e.Error.Class != w.class || e.Payload != w.payload || e.Source.Path != "/var/log/app.jsonl" {
			t.Fatalf("entry %s came back different: %+v", e.ID, e)
		}
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != workers*per {
		t.Fatalf("scanned %d entries, want %d", len(seen), workers*per)
	}
	st := f.Stats()
	_, bytesOnDisk := segmentsIn(t, f.Dir())
	if st.Total != workers*per || st.Failed != 0 || st.Evicted != 0 || st.Bytes != bytesOnDisk {
		t.Fatalf("stats %+v, want total %d and bytes %d", st, workers*per, bytesOnDisk)
	}
	for c, n := range wantByClass {
		if st.Written[c] != n {
			t.Fatalf("stats written[%s] = %d, want %d", c, st.Written[c], n)
		}
	}
	// One writer: each goroutine's entries come back in the order it put them.
	last := map[string]string{}
	for _, e := range s.entries {
		src := fmt.Sprint(e.Source.Offset / 100 / per)
		if e.ID <= last[src] {
			t.Fatalf("entries of worker %s out of order", src)
		}
		last[src] = e.ID
	}
}

func TestLineFormatIsCutAndJQFriendly(t *testing.T) {
	f := openTest(t, FileOptions{}, fileHooks{})
	mustPut(t, f, testEntry(1, "malformed"))
	mustClose(t, f)
	paths, _ := segmentsIn(t, f.Dir())
	if len(paths) != 1 {
		t.Fatalf("want one segment, got %v", paths)
	}
	name := filepath.Base(paths[0])
	if !strings.HasPrefix(name, "dlq-") || !strings.HasSuffix(name, ".seg") || len(name) != len("dlq-20060102T150405Z-000001-abcdef01.seg") {
		t.Fatalf("segment name %q", name)
	}
	data, _ := os.ReadFile(paths[0])
	if len(data) < 11 || data[8] != ' ' || data[len(data)-1] != '\n' || bytes.Count(data, []byte{'\n'}) != 1 {
		t.Fatalf("line %q is not '<crc> <json>\\n'", data)
	}
	if !isLowerHex(string(data[:8]), 8) {
		t.Fatalf("checksum %q is not 8 lowercase hex digits", data[:8])
	}
	// cut -c10- leaves the JSON, compact, with <, > and & as they are.
	js := data[9 : len(data)-1]
	if !bytes.HasPrefix(js, []byte(`{"v":2,"id":"`)) || !bytes.Contains(js, []byte(`a <b> & c`)) {
		t.Fatalf("json %s", js)
	}
}

func TestRotationBySegmentBytes(t *testing.T) {
	const segBytes = 4 << 10
	f := openTest(t, FileOptions{SegmentBytes: segBytes}, fileHooks{})
	const n = 200
	var ids []string
	for i := range n {
		e := testEntry(i, "invalid")
		mustPut(t, f, e)
		ids = append(ids, e.ID)
	}
	mustClose(t, f)
	paths, total := segmentsIn(t, f.Dir())
	if least := total / segBytes; int64(len(paths)) < least {
		t.Fatalf("%d segments for %d bytes with segment_bytes %d", len(paths), total, segBytes)
	}
	for _, p := range paths {
		fi, _ := os.Stat(p)
		if fi.Size() > segBytes || fi.Size() == 0 {
			t.Fatalf("segment %s has %d bytes, want 1..%d", p, fi.Size(), segBytes)
		}
	}
	// Names sort by creation: a scan gives back the put order.
	s := scanAll(t, f.Dir())
	if len(s.entries) != n {
		t.Fatalf("scanned %d, want %d", len(s.entries), n)
	}
	for i, e := range s.entries {
		if e.ID != ids[i] {
			t.Fatalf("entry %d is %s, want %s", i, e.ID, ids[i])
		}
	}
}

func TestOversizedLineGetsItsOwnSegment(t *testing.T) {
	f := openTest(t, FileOptions{SegmentBytes: 1 << 10}, fileHooks{})
	mustPut(t, f, testEntry(0, "invalid"))
	big := testEntry(1, "too_large")
	big.SetPayload(bytes.Repeat([]byte("y"), 4<<10), 0, 0)
	mustPut(t, f, big)
	mustPut(t, f, testEntry(2, "invalid"))
	mustClose(t, f)
	if paths, _ := segmentsIn(t, f.Dir()); len(paths) != 3 {
		t.Fatalf("want 3 segments, got %d", len(paths))
	}
	if s := scanAll(t, f.Dir()); len(s.entries) != 3 {
		t.Fatalf("scanned %d, want 3", len(s.entries))
	}
}

func TestDropOldest(t *testing.T) {
	const segBytes, maxBytes = 4 << 10, 16 << 10
	var logs syncBuffer
	f := openTest(t, FileOptions{SegmentBytes: segBytes, MaxBytes: maxBytes, Overflow: OverflowDropOldest, Logger: logTo(&logs)}, fileHooks{})
	const n = 1000
	var ids []string
	for i := range n {
		e := testEntry(i, "late")
		mustPut(t, f, e)
		ids = append(ids, e.ID)
	}
	mustClose(t, f)
	select {
	case <-f.Full():
		t.Fatal("Full() closed under drop_oldest")
	default:
	}
	st := f.Stats()
	s := scanAll(t, f.Dir())
	_, total := segmentsIn(t, f.Dir())
	if st.Total != n || st.Evicted == 0 || st.EvictedSegments == 0 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	if int64(len(s.entries))+st.Evicted != n {
		t.Fatalf("%d kept + %d evicted != %d written", len(s.entries), st.Evicted, n)
	}
	if total > maxBytes {
		t.Fatalf("%d bytes on disk, over the cap %d", total, maxBytes)
	}
	// The newest are kept: what is left is the tail of what was put.
	tail := ids[n-len(s.entries):]
	for i, e := range s.entries {
		if e.ID != tail[i] {
			t.Fatalf("kept entry %d is %s, want %s (the newest)", i, e.ID, tail[i])
		}
	}
	if got := strings.Count(logs.String(), "evicted the oldest segment"); int64(got) != st.EvictedSegments {
		t.Fatalf("%d eviction logs for %d evicted segments:\n%s", got, st.EvictedSegments, logs.String())
	}
}

func TestDropOldestCountsEntriesOfEarlierRuns(t *testing.T) {
	dir := t.TempDir()
	first := openTest(t, FileOptions{Dir: dir, SegmentBytes: 2 << 10}, fileHooks{})
	for i := range 30 {
		mustPut(t, first, testEntry(i, "invalid"))
	}
	mustClose(t, first)
	_, before := segmentsIn(t, dir)

	// The second run's cap is under what the first left: its first entry
	// evicts old segments, whose entries are counted by their lines.
	second := openTest(t, FileOptions{Dir: dir, SegmentBytes: 2 << 10, MaxBytes: 4 << 10, Overflow: OverflowDropOldest}, fileHooks{})
	for i := range 5 {
		mustPut(t, second, testEntry(100+i, "invalid"))
	}
	mustClose(t, second)
	st := second.Stats()
	s := scanAll(t, dir)
	if st.Evicted == 0 || int64(len(s.entries))+st.Evicted != 35 {
		t.Fatalf("stats %+v with %d kept; the first run left %d bytes", st, len(s.entries), before)
	}
	last := s.entries[len(s.entries)-1]
	if last.Source.Line != 105 {
		t.Fatalf("newest entry is line %d, want 105", last.Source.Line)
	}
	// Segment names go on from the earlier run's sequence.
	paths, _ := segmentsIn(t, dir)
	if seq, _ := segmentSeq(filepath.Base(paths[len(paths)-1])); seq <= 5 {
		t.Fatalf("newest segment %s: sequence did not go on from the first run", paths[len(paths)-1])
	}
}

func TestOverflowFail(t *testing.T) {
	const segBytes = 4 << 10
	var logs syncBuffer
	f := openTest(t, FileOptions{SegmentBytes: segBytes, MaxBytes: segBytes, Logger: logTo(&logs)}, fileHooks{})
	accepted := 0
	full := false
	for i := 0; i < 10_000 && !full; i++ {
		mustPut(t, f, testEntry(i, "malformed"))
		accepted++
		select {
		case <-f.Full():
			full = true
		default:
			if i%10 == 9 { // let the writer catch up now and then
				if err := f.Sync(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if !full {
		t.Fatal("Full() never closed")
	}
	// Entries in flight when input stops are still taken and written.
	for i := range 20 {
		mustPut(t, f, testEntry(100_000+i, "malformed"))
		accepted++
	}
	mustClose(t, f)
	st := f.Stats()
	s := scanAll(t, f.Dir())
	if st.Total != int64(accepted) || len(s.entries) != accepted || st.Evicted != 0 || st.Failed != 0 {
		t.Fatalf("accepted %d, scanned %d, stats %+v", accepted, len(s.entries), st)
	}
	if _, total := segmentsIn(t, f.Dir()); total <= segBytes {
		t.Fatalf("%d bytes: in-flight entries should have taken the soft cap past %d", total, segBytes)
	}
	if !strings.Contains(logs.String(), "size cap reached (overflow: fail)") {
		t.Fatalf("no log for the cap:\n%s", logs.String())
	}

	// A run that starts over the cap is full at once.
	again := openTest(t, FileOptions{Dir: f.Dir(), SegmentBytes: segBytes, MaxBytes: segBytes}, fileHooks{})
	select {
	case <-again.Full():
	default:
		t.Fatal("Full() not closed when the directory starts over the cap")
	}
}

func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "dlq")
	f := openTest(t, FileOptions{Dir: dir, SegmentBytes: 2 << 10}, fileHooks{})
	for i := range 40 {
		mustPut(t, f, testEntry(i, "invalid"))
	}
	mustClose(t, f)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, want 0700", fi.Mode().Perm())
	}
	paths, _ := segmentsIn(t, dir)
	if len(paths) < 2 {
		t.Fatalf("want several segments, got %d", len(paths))
	}
	for _, p := range paths {
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	// Nothing but segments and the lock file is left behind (the
	// writability probe is gone); the lock file is 0600 too.
	des, _ := os.ReadDir(dir)
	if len(des) != len(paths)+1 {
		t.Fatalf("%d files in %s, %d segments and the lock", len(des), dir, len(paths))
	}
	if fi, err := os.Stat(filepath.Join(dir, lockName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v %v", fi, err)
	}
}

func TestNoEntriesNoSegment(t *testing.T) {
	f := openTest(t, FileOptions{}, fileHooks{})
	mustClose(t, f)
	if paths, _ := segmentsIn(t, f.Dir()); len(paths) != 0 {
		t.Fatalf("segments %v after a run without entries", paths)
	}
}

// pausedWriter returns hooks whose writer blocks on its first entry until
// release is closed; started is closed when it is blocked.
func pausedWriter() (h fileHooks, started, release chan struct{}) {
	started, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.beforeWrite = func() { once.Do(func() { close(started); <-release }) }
	return h, started, release
}

func TestCloseDrainsAFullQueue(t *testing.T) {
	hooks, started, release := pausedWriter()
	const queue = 4
	f := openTest(t, FileOptions{QueueSize: queue, SyncEvery: time.Hour}, hooks)
	ctx := context.Background()
	mustPut(t, f, testEntry(0, "invalid"))
	<-started // the writer holds entry 0
	for i := 1; i <= queue; i++ {
		mustPut(t, f, testEntry(i, "invalid"))
	}
	// The queue is full: Put blocks, and gives up with its context.
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	err := f.Put(tctx, testEntry(99, "invalid"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put on a full queue with a deadline: %v", err)
	}
	// Ten more block on the full queue; Close begins while they wait.
	var blocked sync.WaitGroup
	var accepted atomic.Int64
	for i := range 10 {
		blocked.Go(func() {
			if err := f.Put(ctx, testEntry(10+i, "invalid")); err != nil {
				t.Errorf("blocked Put: %v", err)
				return
			}
			accepted.Add(1)
		})
	}
	for f.blocked.Load() != 10 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- f.Close(ctx) }()
	for !f.isClosed.Load() {
		time.Sleep(time.Millisecond)
	}
	if err := f.Put(ctx, testEntry(98, "invalid")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the queue drained", err)
	case <-time.After(30 * time.Millisecond):
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	blocked.Wait()
	want := 1 + queue + int(accepted.Load())
	if accepted.Load() != 10 {
		t.Fatalf("%d of the 10 Puts blocked before Close got in", accepted.Load())
	}
	st := f.Stats()
	if s := scanAll(t, f.Dir()); len(s.entries) != want || st.Total != int64(want) {
		t.Fatalf("scanned %d, stats total %d, want %d", len(s.entries), st.Total, want)
	}
}

func TestCloseContextEndsWhileDraining(t *testing.T) {
	hooks, started, release := pausedWriter()
	f := openTest(t, FileOptions{QueueSize: 8}, hooks)
	for i := range 5 {
		mustPut(t, f, testEntry(i, "invalid"))
	}
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := f.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a stuck writer: %v", err)
	}
	close(release)
	mustClose(t, f) // waits again, and nothing is lost
	if st := f.Stats(); st.Total != 5 {
		t.Fatalf("stats %+v, want 5 written", st)
	}
}

func TestPutAfterClose(t *testing.T) {
	f := openTest(t, FileOptions{}, fileHooks{})
	mustPut(t, f, testEntry(0, "invalid"))
	mustClose(t, f)
	mustClose(t, f) // twice is fine
	if err := f.Put(context.Background(), testEntry(1, "invalid")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if err := f.Sync(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
	if st := f.Stats(); st.Total != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPutRefusesWithoutQueueing(t *testing.T) {
	f := openTest(t, FileOptions{}, fileHooks{})
	ctx := context.Background()
	bad := testEntry(0, "")
	if err := f.Put(ctx, bad); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("Put of an invalid entry: %v", err)
	}
	if err := f.Put(ctx, nil); err == nil {
		t.Fatal("Put(nil) accepted")
	}
	lowerMaxLine(t, 64<<10)
	huge := testEntry(1, "too_large")
	huge.SetPayload(bytes.Repeat([]byte{0}, 64<<10/6+1), 0, 0) // \u0000 is 6 bytes in JSON
	if err := f.Put(ctx, huge); err == nil || !strings.Contains(err.Error(), "MaxLineBytes") {
		t.Fatalf("Put of an entry over MaxLineBytes: %v", err)
	}
	// Zero version, id and time are filled in.
	e := testEntry(2, "invalid")
	e.Version, e.ID, e.Time = 0, "", time.Time{}
	mustPut(t, f, e)
	if e.Version != SchemaVersion || !validID(e.ID) || e.Time.IsZero() {
		t.Fatalf("Put did not fill version, id and time: %d %q %v", e.Version, e.ID, e.Time)
	}
	mustClose(t, f)
	if st := f.Stats(); st.Total != 1 {
		t.Fatalf("stats %+v, want only the good entry", st)
	}
}

func TestSyncMakesStatsCurrent(t *testing.T) {
	f := openTest(t, FileOptions{SyncEvery: time.Hour}, fileHooks{})
	for i := range 10 {
		mustPut(t, f, testEntry(i, "late"))
	}
	if err := f.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Total != 10 || st.Written["late"] != 10 {
		t.Fatalf("after Sync: %+v", st)
	}
}

func TestSyncEveryWhileRunning(t *testing.T) {
	f := openTest(t, FileOptions{SyncEvery: 10 * time.Millisecond}, fileHooks{})
	mustPut(t, f, testEntry(0, "late"))
	deadline := time.Now().Add(5 * time.Second)
	for f.Stats().Total != 1 {
		if time.Now().After(deadline) {
			t.Fatal("an idle writer did not sync within SyncEvery")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failingFile fails its writes with ENOSPC once left bytes are used up.
type failingFile struct {
	*os.File
	left int
}

func (ff *failingFile) Write(p []byte) (int, error) {
	if len(p) > ff.left {
		n, _ := ff.File.Write(p[:ff.left])
		ff.left = 0
		return n, syscall.ENOSPC
	}
	ff.left -= len(p)
	return ff.File.Write(p)
}

func TestWriteFailure(t *testing.T) {
	var logs syncBuffer
	hooks := fileHooks{openSegment: func(path string) (segmentFile, error) {
		fh, err := createSegment(path)
		if err != nil {
			return nil, err
		}
		return &failingFile{File: fh.(*os.File), left: 10 << 10}, nil
	}}
	f := openTest(t, FileOptions{SyncEvery: time.Hour, Logger: logTo(&logs)}, hooks)
	ctx := context.Background()
	var accepted int64
	var putErr error
	for i := range 500 {
		if err := f.Put(ctx, testEntry(i, "invalid")); err != nil {
			putErr = err
			break
		}
		accepted++
		if i%10 == 9 {
			f.Sync(ctx)
		}
	}
	if putErr == nil || !errors.Is(putErr, syscall.ENOSPC) {
		t.Fatalf("Put after a failed write: %v, want the write's error", putErr)
	}
	err := f.Close(ctx)
	if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), f.Dir()) || !strings.Contains(err.Error(), ".seg") {
		t.Fatalf("Close after a failed write: %v, want ENOSPC naming the segment", err)
	}
	st := f.Stats()
	if st.Total == 0 || st.Failed == 0 || st.Total+st.Failed != accepted {
		t.Fatalf("stats %+v: written + failed should be the %d accepted", st, accepted)
	}
	s := scanAll(t, f.Dir())
	if int64(len(s.entries)) < st.Total {
		t.Fatalf("scanned %d, fewer than the %d counted as written", len(s.entries), st.Total)
	}
	if !strings.Contains(logs.String(), "write failed") {
		t.Fatalf("no log for the failure:\n%s", logs.String())
	}
}

func TestConcurrentPutStatsSyncClose(t *testing.T) {
	f := openTest(t, FileOptions{SegmentBytes: 16 << 10, QueueSize: 8, SyncEvery: time.Millisecond}, fileHooks{})
	ctx := context.Background()
	var accepted atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				err := f.Put(ctx, testEntry(w*1_000_000+i, testClasses[i%len(testClasses)]))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				accepted.Add(1)
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			st := f.Stats()
			var sum int64
			for _, n := range st.Written {
				sum += n
			}
			if sum != st.Total {
				t.Errorf("stats by class sum to %d, total %d", sum, st.Total)
			}
			if err := f.Sync(ctx); err != nil && !errors.Is(err, ErrClosed) {
				t.Error(err)
			}
		}
	})
	time.Sleep(200 * time.Millisecond)
	var closers sync.WaitGroup
	for range 2 {
		closers.Go(func() {
			if err := f.Close(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	closers.Wait()
	close(stop)
	wg.Wait()
	st := f.Stats()
	s := scanAll(t, f.Dir())
	if n := accepted.Load(); n == 0 || st.Total != n || int64(len(s.entries)) != n {
		t.Fatalf("accepted %d, stats total %d, scanned %d", n, st.Total, len(s.entries))
	}
}

func TestParseOverflowPolicy(t *testing.T) {
	f := func(in string, want OverflowPolicy, wantErr bool) {
		t.Helper()
		got, err := ParseOverflowPolicy(in)
		if got != want || (err != nil) != wantErr {
			t.Errorf("ParseOverflowPolicy(%q) = %q, %v", in, got, err)
		}
	}
	f("", OverflowFail, false)
	f("fail", OverflowFail, false)
	f("drop_oldest", OverflowDropOldest, false)
	f("Fail", "", true)
	f("drop-oldest", "", true)
	f("block", "", true)

	var p OverflowPolicy
	if err := p.UnmarshalText([]byte("drop_oldest")); err != nil || p != OverflowDropOldest {
		t.Errorf("UnmarshalText: %q %v", p, err)
	}
	if err := p.UnmarshalText([]byte("x")); err == nil {
		t.Error("UnmarshalText accepted x")
	}
}

func TestOpenFileOptions(t *testing.T) {
	dir := t.TempDir()
	f := func(o FileOptions, want string) {
		t.Helper()
		fl, err := OpenFile(o)
		if err == nil {
			fl.Close(context.Background())
			t.Errorf("OpenFile(%+v) succeeded, want an error with %q", o, want)
			return
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("OpenFile(%+v): %v, want %q", o, err, want)
		}
	}
	f(FileOptions{}, "dir is empty")
	f(FileOptions{Dir: dir, SegmentBytes: -1}, "negative")
	f(FileOptions{Dir: dir, SegmentBytes: 10 << 20, MaxBytes: 1 << 20}, "less than segment_bytes")
	f(FileOptions{Dir: dir, QueueSize: -1}, "negative")
	f(FileOptions{Dir: dir, SyncEvery: -time.Second}, "negative")
	f(FileOptions{Dir: dir, Overflow: "block"}, "unknown overflow policy")
	file := filepath.Join(dir, "plain")
	os.WriteFile(file, nil, 0o600)
	f(FileOptions{Dir: file}, file)

	fl, err := OpenFile(FileOptions{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close(context.Background())
	o := fl.opts
	if o.SegmentBytes != DefaultSegmentBytes || o.MaxBytes != DefaultMaxBytes || o.QueueSize != DefaultQueueSize ||
		o.SyncEvery != DefaultSyncEvery || o.Overflow != OverflowFail || cap(fl.queue) != DefaultQueueSize {
		t.Fatalf("defaults not applied: %+v", o)
	}
}

// lowerMaxLine sets the line limit to n for one test.
func lowerMaxLine(t *testing.T, n int64) {
	old := maxLine
	maxLine = n
	t.Cleanup(func() { maxLine = old })
}

func TestLineAtTheLimitRoundTrips(t *testing.T) {
	e := testEntry(1, "too_large")
	e.Version = SchemaVersion
	it, err := encodeItem(e)
	if err != nil {
		t.Fatal(err)
	}
	lowerMaxLine(t, int64(len(it.line)))
	f := openTest(t, FileOptions{}, fileHooks{})
	mustPut(t, f, e)
	over := *e
	over.ID = NewID(e.Time)
	over.Host += "x" // one byte more
	if err := f.Put(context.Background(), &over); err == nil {
		t.Fatal("an entry one byte over the limit was taken")
	}
	mustClose(t, f)
	if s := scanAll(t, f.Dir()); len(s.entries) != 1 || len(s.corruptions) != 0 {
		t.Fatalf("entries %d, corruptions %v", len(s.entries), s.corruptions)
	}
}

// TestTornWriteReportedAtOpen: a crash mid-write leaves a segment whose last
// line has no newline; the next OpenFile says so, naming segment and offset,
// and goes on.
func TestTornWriteReportedAtOpen(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenFile(FileOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := f.Put(context.Background(), testEntry(i, "malformed")); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	data, _ := os.ReadFile(segs[0])
	lastStart := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	if err := os.WriteFile(segs[0], data[:len(data)-7], 0o600); err != nil { // tear the last line
		t.Fatal(err)
	}
	var logs bytes.Buffer
	f, err = OpenFile(FileOptions{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close(context.Background())
	want := fmt.Sprintf("offset=%d", lastStart)
	if !strings.Contains(logs.String(), "torn write") || !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), filepath.Base(segs[0])) {
		t.Fatalf("no torn-write warning with %s in:\n%s", want, logs.String())
	}
}
