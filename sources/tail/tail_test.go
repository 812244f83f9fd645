package tail

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
)

// modes runs f with fsnotify (auto) and with polling only.
func modes(t *testing.T, f func(t *testing.T, watch string)) {
	for _, w := range []string{"auto", "poll"} {
		t.Run(w, func(t *testing.T) {
			t.Parallel()
			f(t, w)
		})
	}
}

func TestAppend(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, watch string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "app.log")
		want := lines("app", 0, 100)
		appendFile(t, path, joinLines(want))
		cfg := testCfg(filepath.Join(dir, "*.log"))
		cfg.Watch = watch
		c := newCollector(t)
		r := start(t, cfg, c, nil, nil)
		c.waitLines(t, want)
		for i := range 20 {
			more := lines("app", 100+i*50, 50)
			appendFile(t, path, joinLines(more))
			want = append(want, more...)
		}
		c.waitLines(t, want)
		settle(r)
		c.exactlyOnce(t, want)
		if r.src.BytesRead() != int64(len(joinLines(want))) || r.src.FilesFollowed() != 1 || r.src.LagBytes() != 0 {
			t.Errorf("bytes read %d of %d, files followed %d, lag %d", r.src.BytesRead(), len(joinLines(want)), r.src.FilesFollowed(), r.src.LagBytes())
		}
	})
}

func TestNewFileAppears(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, watch string) {
		dir := t.TempDir()
		cfg := testCfg(filepath.Join(dir, "**", "*.log"))
		cfg.Watch = watch
		cfg.ReadExisting = new(bool) // files appearing later are read from their start anyway
		c := newCollector(t)
		r := start(t, cfg, c, nil, nil)
		settle(r)
		sub := mkdir(t, dir, "a", "b")
		want := lines("new", 0, 300)
		appendFile(t, filepath.Join(sub, "new.log"), joinLines(want))
		appendFile(t, filepath.Join(sub, "other.txt"), joinLines(lines("skip", 0, 5)))
		c.waitLines(t, want)
		settle(r)
		c.exactlyOnce(t, want)
	})
}

// TestRotateRename: a writer appends while its file is renamed away (out of
// the glob) and a new one takes its name, the way a logger rotates; it
// keeps writing to the old file for a while before it reopens, as loggers
// do. Every line is delivered once; the old file's origin is done.
func TestRotateRename(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, watch string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "app.log")
		cfg := testCfg(filepath.Join(dir, "*.log"))
		cfg.Watch = watch
		// The writer's grace after a rename: longer than a goroutine is
		// ever descheduled under -race on a busy machine.
		cfg.PartialLineTimeout = 300 * time.Millisecond
		c := newCollector(t)
		r := start(t, cfg, c, nil, nil)
		var want []string
		var wmu sync.Mutex
		var wg sync.WaitGroup
		wg.Go(func() {
			n := 0
			for gen := range 4 {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
				if err != nil {
					t.Error(err)
					return
				}
				for i := range 400 {
					if i == 300 { // rotate; write on to the old file until reopening
						// A file renamed away before any scan saw it is
						// never seen: rotate only once this one was.
						last := want[len(want)-1]
						waitFor(t, "the current file seen", func() bool { return c.count(last) > 0 })
						if err := os.Rename(path, filepath.Join(dir, "app.log."+string(rune('1'+gen)))); err != nil {
							t.Error(err)
						}
					}
					l := lines("rot", n, 1)[0]
					n++
					if _, err := f.WriteString(l + "\n"); err != nil {
						t.Error(err)
					}
					wmu.Lock()
					want = append(want, l)
					wmu.Unlock()
					if i%50 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				f.Close()
			}
		})
		wg.Wait()
		c.waitLines(t, want)
		waitFor(t, "the 4 rotated files released", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return len(c.done) >= 4
		})
		settle(r)
		c.exactlyOnce(t, want)
	})
}

// TestCopyTruncate: the file is copied away and truncated in place; what
// is written after is read from the start of the file.
func TestCopyTruncate(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, watch string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "app.log")
		first := lines("before", 0, 500)
		appendFile(t, path, joinLines(first))
		cfg := testCfg(filepath.Join(dir, "*.log"))
		cfg.Watch = watch
		c := newCollector(t)
		r := start(t, cfg, c, nil, nil)
		c.waitLines(t, first)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "app.log.1"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		// Wait until the truncation is seen before writing again: a file
		// truncated and refilled past the old size between two looks
		// cannot be told from one that grew (every tail has this window).
		waitFor(t, "the truncated instance released", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return len(c.done) == 1
		})
		second := lines("after", 0, 100)
		appendFile(t, path, joinLines(second))
		c.waitLines(t, second)
		settle(r)
		c.exactlyOnce(t, append(first, second...))
	})
}

// TestDeletedWhileRead: a file deleted while the source is part way
// through it (held back by a slow consumer) is read to its end, then
// released.
func TestDeletedWhileRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	want := lines("del", 0, 20000)
	appendFile(t, path, joinLines(want))
	c := newCollector(t)
	c.mu.Lock() // the consumer is stuck: the source blocks on out
	cfg := testCfg(filepath.Join(dir, "*.log"))
	cfg.PartialLineTimeout = 50 * time.Millisecond // the grace after which a deleted file at its end is let go
	r := start(t, cfg, c, nil, func(o *Options) { o.BatchUnits = 100 })
	waitFor(t, "the file open", func() bool { return r.src.FilesOpen() == 1 })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c.mu.Unlock()
	c.waitLines(t, want)
	waitFor(t, "the deleted file released", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.done) == 1
	})
	settle(r)
	c.exactlyOnce(t, want)
	if r.src.FilesOpen() != 0 || r.src.FilesFollowed() != 0 {
		t.Errorf("open %d, followed %d after release", r.src.FilesOpen(), r.src.FilesFollowed())
	}
}

// TestPartialLineCompleted: a last line written in two pieces is one unit.
func TestPartialLineCompleted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	c := newCollector(t)
	r := start(t, testCfg(filepath.Join(dir, "*.log")), c, nil, nil) // partial_line_timeout: an hour
	appendFile(t, path, []byte(`{"a":1,"pad":"0123456789"}`+"\n"+`{"b":`))
	c.waitLines(t, []string{`{"a":1,"pad":"0123456789"}`})
	settle(r)
	appendFile(t, path, []byte("2}\n"))
	c.waitLines(t, []string{`{"b":2}`})
	settle(r)
	c.exactlyOnce(t, []string{`{"a":1,"pad":"0123456789"}`, `{"b":2}`})
}

// TestPartialLineTimeout: a last line never completed is taken as it is
// once partial_line_timeout has passed; what is appended to it later is a
// unit of its own.
func TestPartialLineTimeout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	cfg := testCfg(filepath.Join(dir, "*.log"))
	cfg.PartialLineTimeout = 30 * time.Millisecond
	c := newCollector(t)
	r := start(t, cfg, c, nil, nil)
	appendFile(t, path, []byte(`{"a":1,"pad":"0123456789"}`+"\n"+`{"never":"completed"`))
	c.waitLines(t, []string{`{"a":1,"pad":"0123456789"}`, `{"never":"completed"`})
	appendFile(t, path, []byte("}\n"+`{"c":3}`+"\n"))
	c.waitLines(t, []string{`{"c":3}`})
	settle(r)
	c.exactlyOnce(t, []string{`{"a":1,"pad":"0123456789"}`, `{"never":"completed"`, "}", `{"c":3}`})
}

// TestRenamedNotReread: a file renamed within the globs is followed on
// under its new name, not read again.
func TestRenamedNotReread(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, watch string) {
		dir := t.TempDir()
		a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
		want := lines("ren", 0, 200)
		appendFile(t, a, joinLines(want))
		cfg := testCfg(filepath.Join(dir, "*.log"))
		cfg.Watch = watch
		c := newCollector(t)
		r := start(t, cfg, c, nil, nil)
		c.waitLines(t, want)
		if err := os.Rename(a, b); err != nil {
			t.Fatal(err)
		}
		settle(r)
		more := lines("ren", 200, 50)
		appendFile(t, b, joinLines(more))
		want = append(want, more...)
		c.waitLines(t, want)
		settle(r)
		c.exactlyOnce(t, want)
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.done) != 0 || len(c.seq) != 1 {
			t.Errorf("origins done %v, origins %v: want one origin, still followed", c.done, c.seq)
		}
	})
}

// TestNewFileAtOldPath: a file removed and another created at its path is
// read from its start, even if it begins with the same bytes.
func TestNewFileAtOldPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	first := lines("same-start", 0, 100)
	appendFile(t, path, joinLines(first))
	cfg := testCfg(filepath.Join(dir, "*.log"))
	c := newCollector(t)
	r := start(t, cfg, c, nil, nil)
	c.waitLines(t, first)
	// Keep the old inode alive (a hard link out of the globs), so the new
	// file cannot reuse it: it must be told apart by inode.
	if err := os.Link(path, filepath.Join(dir, "keep.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// Its first fingerprint_bytes are those of the old file.
	second := append([]string{`{"f":"same-start","i":0,"pad":"","again":true}`}, lines("second", 0, 100)...)
	appendFile(t, path, joinLines(second))
	c.waitLines(t, second)
	settle(r)
	c.exactlyOnce(t, append(first, second...))
}

// TestSameFirstBytes: two files with the same first bytes (longer than the
// fingerprint) are two files.
func TestSameFirstBytes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	head := `{"header":"the same first bytes in both files, longer than fingerprint_bytes"}`
	a := append([]string{head}, lines("a", 0, 100)...)
	b := append([]string{head}, lines("b", 0, 100)...)
	appendFile(t, filepath.Join(dir, "a.log"), joinLines(a))
	appendFile(t, filepath.Join(dir, "b.log"), joinLines(b))
	c := newCollector(t)
	r := start(t, testCfg(filepath.Join(dir, "*.log")), c, nil, nil)
	c.waitLines(t, append(a[1:], b[1:]...))
	settle(r)
	if n := c.count(head); n != 2 {
		t.Errorf("shared first line delivered %d times, want 2 (once per file)", n)
	}
	c.mu.Lock()
	delete(c.seen, head)
	c.mu.Unlock()
	c.exactlyOnce(t, append(a[1:], b[1:]...))
}

func TestStartAtEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		startAt string
		read    bool
	}{{"start_at_end", "end", true}, {"read_existing_false", "beginning", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			old := filepath.Join(dir, "old.log")
			appendFile(t, old, append(joinLines(lines("old", 0, 100)), `{"half":`...))
			cfg := testCfg(filepath.Join(dir, "*.log"))
			cfg.StartAt, cfg.ReadExisting = tc.startAt, &tc.read
			c := newCollector(t)
			r := start(t, cfg, c, nil, nil)
			settle(r)
			appendFile(t, old, []byte(`"line"}`+"\n"))
			more := lines("old-more", 0, 10)
			appendFile(t, old, joinLines(more))
			fresh := lines("fresh", 0, 10)
			appendFile(t, filepath.Join(dir, "fresh.log"), joinLines(fresh))
			want := append(append([]string{`{"half":"line"}`}, more...), fresh...)
			c.waitLines(t, want)
			settle(r)
			c.exactlyOnce(t, want)
		})
	}
}

// TestMaxOpenFiles: ten files growing at once through two descriptors are
// all delivered, and no more than two are ever open.
func TestMaxOpenFiles(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, watch string) {
		dir := t.TempDir()
		cfg := testCfg(filepath.Join(dir, "*.log"))
		cfg.Watch = watch
		cfg.MaxOpenFiles = 2
		c := newCollector(t)
		r := start(t, cfg, c, nil, func(o *Options) { o.BatchUnits = 50; o.Readers = 1 })
		var want []string
		var wmu sync.Mutex
		var wg sync.WaitGroup
		stop, sampled := make(chan struct{}), make(chan struct{})
		maxOpen := int64(0)
		go func() {
			defer close(sampled)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if n := r.src.FilesOpen(); n > maxOpen {
					maxOpen = n
				}
				time.Sleep(100 * time.Microsecond)
			}
		}()
		for i := range 10 {
			name := string(rune('a'+i)) + ".log"
			wg.Go(func() {
				for j := range 20 {
					ls := lines(name, j*100, 100)
					appendFile(t, filepath.Join(dir, name), joinLines(ls))
					wmu.Lock()
					want = append(want, ls...)
					wmu.Unlock()
				}
			})
		}
		wg.Wait()
		c.waitLines(t, want)
		close(stop)
		<-sampled
		settle(r)
		c.exactlyOnce(t, want)
		if maxOpen > 2 {
			t.Errorf("%d files open at once, max_open_files is 2", maxOpen)
		}
	})
}

// TestFailedFiles: a directory and a FIFO matching the globs are one
// failure each, not retried in a loop; the other files go on.
func TestFailedFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mkdir(t, dir, "folder.log")
	if err := mkfifo(filepath.Join(dir, "pipe.log")); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	wantFailed := 2
	if os.Geteuid() != 0 { // root reads whatever the mode says
		appendFile(t, filepath.Join(dir, "locked.log"), joinLines(lines("locked", 0, 3)))
		if err := os.Chmod(filepath.Join(dir, "locked.log"), 0); err != nil {
			t.Fatal(err)
		}
		wantFailed++
	}
	want := lines("ok", 0, 10)
	appendFile(t, filepath.Join(dir, "ok.log"), joinLines(want))
	c := newCollector(t)
	r := start(t, testCfg(filepath.Join(dir, "*.log")), c, nil, nil)
	c.waitLines(t, want)
	settle(r)
	settle(r)
	c.exactlyOnce(t, want)
	c.mu.Lock()
	defer c.mu.Unlock()
	codes := map[string]int{}
	for _, f := range c.failed {
		codes[filepath.Base(f.Path)+":"+f.Code]++
	}
	if len(c.failed) != wantFailed || codes["folder.log:is_dir"] != 1 || codes["pipe.log:not_regular"] != 1 ||
		(wantFailed == 3 && codes["locked.log:permission"] != 1) {
		t.Errorf("failures %v, want one is_dir, one not_regular (and one permission unless root)", codes)
	}
}

// TestShortFile: a file shorter than fingerprint_bytes is read once it has
// been quiet for partial_line_timeout, then followed on as it grows past
// fingerprint_bytes (re-keyed, not read again).
func TestShortFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "s.log")
	cfg := testCfg(filepath.Join(dir, "*.log"))
	cfg.FingerprintBytes = 64
	cfg.PartialLineTimeout = 20 * time.Millisecond
	c := newCollector(t)
	r := start(t, cfg, c, nil, nil)
	appendFile(t, path, []byte(`{"s":1}`+"\n"))
	c.waitLines(t, []string{`{"s":1}`})
	more := lines("s", 0, 20)
	appendFile(t, path, joinLines(more))
	c.waitLines(t, more)
	settle(r)
	c.exactlyOnce(t, append([]string{`{"s":1}`}, more...))
}

// TestIdle: a file at its end with nothing in flight for idle_timeout is
// told idle, once.
func TestIdle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testCfg(filepath.Join(dir, "*.log"))
	cfg.IdleTimeout = 20 * time.Millisecond
	c := newCollector(t)
	r := start(t, cfg, c, nil, nil)
	appendFile(t, filepath.Join(dir, "a.log"), joinLines(lines("idle", 0, 10)))
	waitFor(t, "idle", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.idle[0] == 1
	})
	settle(r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle[0] != 1 {
		t.Errorf("idle told %d times", c.idle[0])
	}
}

// TestBatchLimits: lines that fill batches by bytes before units, and
// files long enough to use up their turn (quantum) and wait for the next,
// lose nothing; an over-long line is one too-large unit.
func TestBatchLimits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var want []string
	for f := range 3 {
		var ls []string
		for i := range 300 {
			ls = append(ls, fmt.Sprintf(`{"f":%d,"i":%d,"pad":"%s"}`, f, i, strings.Repeat("p", 1000+i*37%5000)))
		}
		appendFile(t, filepath.Join(dir, fmt.Sprintf("%d.log", f)), joinLines(ls))
		want = append(want, ls...)
	}
	long := `{"long":"` + strings.Repeat("L", 20000) + `"}`
	appendFile(t, filepath.Join(dir, "0.log"), []byte(long+"\n"+`{"after":"long"}`+"\n"))
	want = append(want, long[:100], `{"after":"long"}`)
	c := newCollector(t)
	r := start(t, testCfg(filepath.Join(dir, "*.log")), c, nil, func(o *Options) {
		o.BatchBytes, o.BatchUnits, o.MaxLineBytes, o.KeepBytes, o.ReadBufferBytes, o.Readers = 16<<10, 1000, 16<<10, 100, 4<<10, 2
	})
	c.waitLines(t, want)
	settle(r)
	c.exactlyOnce(t, want)
}

// TestCancel: Run blocked on a consumer that takes nothing returns nil
// once ctx is cancelled; nothing is sent after.
func TestCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	appendFile(t, filepath.Join(dir, "a.log"), joinLines(lines("cancel", 0, 20000)))
	src, err := New("test", testCfg(filepath.Join(dir, "*.log")), Options{
		Origin: pipeline.Origin{Format: pipeline.FormatJSONL}, IDs: &pipeline.OriginIDs{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *pipeline.Batch) // nobody reads: Run blocks on its first send
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- src.Run(ctx, out) }()
	waitFor(t, "the file open", func() bool { return src.FilesOpen() == 1 })
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	select {
	case b := <-out:
		t.Fatalf("a batch sent after Run returned: %d units", len(b.Units))
	default:
	}
	if src.FilesOpen() != 0 {
		t.Errorf("%d files left open", src.FilesOpen())
	}
}
