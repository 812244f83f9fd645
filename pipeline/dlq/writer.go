package dlq

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// writeBuffer is the writer's buffer in front of the open segment.
const writeBuffer = 256 << 10

// segInfo is one segment the writer knows of.
type segInfo struct {
	path    string
	size    int64
	entries int64 // -1 when unknown (left by an earlier run)

	// What the last good sync made durable: a failed write or sync cuts
	// the open segment back to it, so the entries counted as failed are
	// not on disk either (no torn last line, no entry both lost and kept).
	syncedSize, syncedEntries int64
}

// writer is the state of the one goroutine that writes segments. Nothing
// else touches it after OpenFile.
type writer struct {
	f     *File
	hooks fileHooks

	segs  []segInfo // oldest first; while out != nil the last is the open one
	total int64     // bytes of all segments in segs
	out   segmentFile
	bw    *bufio.Writer

	runID   string
	nextSeq int

	unsynced     bool               // bytes written since the last sync
	pending      map[EntryKey]int64 // entries written since the last sync, by key
	pendingN     int64
	pendingBytes int64
	lastSync     time.Time

	broken error // the first write or sync failure; nothing is written after
	full   bool  // Full() is closed
}

// run takes items until the queue is closed, then syncs and closes. Lines
// go through a buffer: they reach the OS when it fills, and disk at the
// next sync (SyncEvery, rotation, Sync, Close).
func (w *writer) run() {
	defer close(w.f.done)
	defer w.f.lock.Close() // releases the directory lock
	tick := time.NewTicker(w.f.opts.SyncEvery)
	defer tick.Stop()
	for {
		select {
		case it, ok := <-w.f.queue:
			if !ok {
				w.finish()
				return
			}
			w.handle(it)
		case <-tick.C:
			w.sync()
		}
	}
}

// handle writes one item, or answers a sync barrier.
func (w *writer) handle(it *item) {
	if it.done != nil {
		it.done <- w.sync()
		return
	}
	defer putItem(it)
	if w.hooks.beforeWrite != nil {
		w.hooks.beforeWrite()
	}
	if w.broken != nil {
		w.f.addFailed(1)
		return
	}
	n := int64(len(it.line))
	if w.out != nil {
		if cur := w.segs[len(w.segs)-1].size; cur > 0 && cur+n > w.f.opts.SegmentBytes {
			if err := w.closeSegment(); err != nil {
				w.fail(err, 1)
				return
			}
		}
	}
	w.makeRoom(n)
	if w.out == nil {
		if err := w.openSegment(); err != nil {
			w.fail(err, 1)
			return
		}
	}
	if _, err := w.bw.Write(it.line); err != nil {
		w.fail(fmt.Errorf("dlq: write %s: %w", w.curPath(), err), 1)
		return
	}
	seg := &w.segs[len(w.segs)-1]
	seg.size += n
	seg.entries++
	w.total += n
	w.unsynced = true
	w.pending[it.key]++
	w.pendingN++
	w.pendingBytes += n
	if time.Since(w.lastSync) >= w.f.opts.SyncEvery {
		w.sync()
	}
}

// makeRoom applies the overflow policy before n more bytes are written.
func (w *writer) makeRoom(n int64) {
	limit := w.f.opts.MaxBytes
	if w.total+n <= limit {
		return
	}
	if w.f.opts.Overflow == OverflowFail {
		if !w.full {
			w.setFull()
		}
		return
	}
	// Evict whole segments, oldest first, never the open one. Rotation has
	// run first, so an open segment plus n fits in SegmentBytes <= MaxBytes.
	for w.total+n > limit && len(w.segs) > 0 && (w.out == nil || len(w.segs) > 1) {
		w.evictOldest()
	}
	if w.total+n > limit {
		w.f.log.Error("dlq: one entry is larger than the size cap; writing it anyway",
			"dir", w.f.opts.Dir, "entry_bytes", n, "max_bytes", limit)
	}
}

// setFull closes Full() and says so.
func (w *writer) setFull() {
	w.full = true
	close(w.f.full)
	w.f.log.Error("dlq: size cap reached (overflow: fail): input should stop; entries in flight are still written",
		"dir", w.f.opts.Dir, "bytes", w.total, "max_bytes", w.f.opts.MaxBytes)
}

// evictOldest deletes the oldest segment and counts its entries.
func (w *writer) evictOldest() {
	s := w.segs[0]
	w.segs = w.segs[1:]
	w.total -= s.size
	if s.entries < 0 {
		n, err := countLines(s.path)
		if err != nil {
			w.f.log.Error("dlq: cannot count the entries of a segment to evict", "segment", s.path, "err", err)
		}
		s.entries = n
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("dlq: evict %s: %w", s.path, err)
		w.f.recordErr(err)
		w.f.log.Error("dlq: cannot evict a segment; the size cap will be exceeded by it",
			"segment", s.path, "bytes", s.size, "err", err)
		return
	}
	w.f.statsMu.Lock()
	w.f.stats.Evicted += s.entries
	w.f.stats.EvictedSegments++
	w.f.statsMu.Unlock()
	w.f.log.Error("dlq: size cap reached (overflow: drop_oldest): evicted the oldest segment, its entries are lost",
		"segment", s.path, "entries", s.entries, "bytes", s.size, "max_bytes", w.f.opts.MaxBytes)
}

// openSegment creates the next segment and makes it the open one.
func (w *writer) openSegment() error {
	for tries := 0; ; tries++ {
		path := filepath.Join(w.f.opts.Dir, segmentName(time.Now(), w.nextSeq, w.runID))
		w.nextSeq++
		out, err := w.hooks.openSegment(path)
		if errors.Is(err, os.ErrExist) && tries < 10 {
			continue
		}
		if err != nil {
			return fmt.Errorf("dlq: create segment %s: %w", path, err)
		}
		syncDir(w.f.opts.Dir)
		w.out = out
		if w.bw == nil {
			w.bw = bufio.NewWriterSize(out, writeBuffer)
		} else {
			w.bw.Reset(out)
		}
		w.segs = append(w.segs, segInfo{path: path})
		return nil
	}
}

// syncDir makes a new directory entry durable. Errors are ignored: some
// platforms and file systems cannot sync a directory, and the file's own
// sync still covers its content.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// curPath names the open segment, or the directory when none is open.
func (w *writer) curPath() string {
	if w.out != nil {
		return w.segs[len(w.segs)-1].path
	}
	return w.f.opts.Dir
}

// sync flushes and syncs the open segment, then counts what was written
// since the last sync as durable.
func (w *writer) sync() error {
	if w.broken != nil {
		return w.broken
	}
	if w.out != nil && w.unsynced {
		if err := w.bw.Flush(); err != nil {
			return w.fail(fmt.Errorf("dlq: write %s: %w", w.curPath(), err), 0)
		}
		if err := w.out.Sync(); err != nil {
			return w.fail(fmt.Errorf("dlq: sync %s: %w", w.curPath(), err), 0)
		}
		w.unsynced = false
		seg := &w.segs[len(w.segs)-1]
		seg.syncedSize, seg.syncedEntries = seg.size, seg.entries
	}
	if w.pendingN > 0 {
		f := w.f
		f.statsMu.Lock()
		for k, n := range w.pending {
			f.stats.count(k, n)
		}
		f.stats.Bytes += w.pendingBytes
		f.statsMu.Unlock()
		w.clearPending()
	}
	w.f.size.Store(w.total)
	w.lastSync = time.Now()
	return nil
}

// closeSegment syncs and closes the open segment. It returns the sync's
// error (the writer is then broken); a close error after a good sync loses
// nothing, so it is only recorded for Close and logged.
func (w *writer) closeSegment() error {
	err := w.sync()
	path := w.curPath()
	if cerr := w.out.Close(); cerr != nil && err == nil {
		w.f.recordErr(fmt.Errorf("dlq: close %s: %w", path, cerr))
		w.f.log.Error("dlq: closing a synced segment failed", "segment", path, "err", cerr)
	}
	w.out = nil
	return err
}

// finish syncs and closes what is open once the queue is drained.
func (w *writer) finish() {
	if w.out != nil {
		_ = w.closeSegment() // a failure is recorded and counted by fail
	}
}

// fail marks the writer broken by err: the entries written since the last
// sync and extra more count as failed, and so does every later one; Put
// refuses from now on. It returns err.
func (w *writer) fail(err error, extra int64) error {
	lost := w.pendingN + extra
	w.clearPending()
	w.f.addFailed(lost)
	if w.broken != nil {
		return w.broken
	}
	w.broken = err
	w.f.broken.Store(&err)
	w.f.recordErr(err)
	w.cutBack()
	w.f.log.Error("dlq: write failed: the DLQ takes no more entries, input stops; unsynced ones are counted as failed",
		"dir", w.f.opts.Dir, "failed", lost, "err", err)
	if !w.full {
		// Like a DLQ at its cap: stop reading input rather than lose
		// every record that fails from now on.
		w.full = true
		close(w.f.full)
	}
	return err
}

// cutBack truncates the open segment to what the last good sync made
// durable (best effort: on a full disk truncating frees space, so it
// works).
func (w *writer) cutBack() {
	if w.out == nil {
		return
	}
	seg := &w.segs[len(w.segs)-1]
	t, ok := w.out.(interface{ Truncate(int64) error })
	if !ok {
		return
	}
	w.bw.Reset(io.Discard) // what is buffered is counted as failed
	if err := t.Truncate(seg.syncedSize); err != nil {
		w.f.log.Error("dlq: cutting a failed segment back to its last sync failed: its last line may be torn",
			"segment", seg.path, "err", err)
		return
	}
	_ = w.out.Sync()
	w.total -= seg.size - seg.syncedSize
	seg.size, seg.entries = seg.syncedSize, seg.syncedEntries
}

func (w *writer) clearPending() {
	clear(w.pending)
	w.pendingN, w.pendingBytes = 0, 0
}

// addFailed counts n entries that could not be written.
func (f *File) addFailed(n int64) {
	if n == 0 {
		return
	}
	f.statsMu.Lock()
	f.stats.Failed += n
	f.statsMu.Unlock()
}

// countLines counts the newline-terminated lines of a file.
func countLines(path string) (int64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := fh.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("dlq: read %s: %w", path, err)
		}
	}
}
