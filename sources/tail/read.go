package tail

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sources/file"
)

// slot is a framing buffer lent to one file at a time.
type slot struct {
	lines *file.Lines
	owner *tfile
	cr    countReader
}

// countReader counts the bytes read from a file.
type countReader struct {
	src *os.File
	n   *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.src.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// quantumBatches is how many full batches a file may send before the next
// file in the ready queue has its turn.
const quantumBatches = 8

// serve gives f one turn: reads what it has (up to a quantum), sends it.
func (s *Source) serve(f *tfile) {
	if f.released {
		return
	}
	now := s.o.Now()
	switch f.state {
	case stateWaiting:
		s.identify(f, now)
		return
	case stateArchive:
		s.serveArchive(f)
		return
	}
	if !s.open(f) {
		return
	}
	fi, err := f.fh.Stat()
	if err != nil {
		s.failOnce(f.path, f.key, f.mark, file.CodeStat, f.end, 0, err)
		s.release(f, "cannot stat")
		return
	}
	if _, nlink := identOf(fi); nlink == 0 && !f.gone {
		f.gone = true
		s.log.Debug("file deleted: reading it to its end", "path", f.path)
	}
	f.size = fi.Size()
	if f.size < f.end {
		s.truncated(f)
		return
	}
	if int64(f.fpLen) < int64(s.cfg.FingerprintBytes) && f.size >= int64(s.cfg.FingerprintBytes) && !s.rekey(f) {
		s.truncated(f)
		return
	}
	l := s.attach(f)
	if l == nil {
		return
	}
	var b *pipeline.Batch
	var last pos
	sent, more := 0, false
	for {
		u, ok := l.Next()
		if !ok {
			break
		}
		if b != nil && len(b.Buf)+len(u.Data) > s.o.BatchBytes {
			if !s.send(f, b, last) {
				return
			}
			b, sent = nil, sent+1
			if sent >= quantumBatches {
				more = true
			}
		}
		if b != nil && b.WindowsOnly && u.Offset >= f.rewindTo {
			// The windows-only part ends exactly at the delivered position.
			if !s.send(f, b, last) {
				return
			}
			b = nil
		}
		if b == nil {
			b = s.newBatch(f)
			s.markRewind(f, b, u.Offset)
		}
		b.AddUnit(u.Data, u.Offset, u.Line, u.Size, u.Flags)
		last.Off, last.Line = l.Pos()
		if len(b.Units) >= s.o.BatchUnits || len(b.Buf) >= s.o.BatchBytes {
			if !s.send(f, b, last) {
				return
			}
			b, sent = nil, sent+1
			if sent >= quantumBatches {
				more = true
			}
		}
		if more && b == nil {
			break // the turn ends on a full batch, not a 1-unit one
		}
	}
	if more {
		if b != nil && !s.send(f, b, last) {
			return
		}
		f.end = max(f.end, l.Scanned())
		f.lastGrowth, f.atEnd, f.lastRead = now, false, s.tick()
		s.enqueue(f) // its turn is over; the others go first
		return
	}
	if err := l.Err(); err != nil {
		if b != nil && !s.send(f, b, last) {
			return
		}
		s.failOnce(f.path, f.key, f.mark, file.CodeRead, l.Scanned(), 0, err)
		s.release(f, "read error")
		return
	}
	if e := l.Scanned(); e > f.end {
		f.end, f.lastGrowth = e, now
		f.atEnd, f.atEndSince = true, now
	} else if !f.atEnd {
		f.atEnd, f.atEndSince = true, now
	}
	f.held = l.Held()
	if f.held > 0 && now.Sub(f.lastGrowth) >= s.cfg.PartialLineTimeout {
		if u, ok := l.TakePartial(); ok {
			if b != nil && len(b.Buf)+len(u.Data) > s.o.BatchBytes {
				if !s.send(f, b, last) {
					return
				}
				b = nil
			}
			if b != nil && b.WindowsOnly && u.Offset >= f.rewindTo {
				if !s.send(f, b, last) {
					return
				}
				b = nil
			}
			if b == nil {
				b = s.newBatch(f)
				s.markRewind(f, b, u.Offset)
			}
			b.AddUnit(u.Data, u.Offset, u.Line, u.Size, u.Flags)
		}
		last.Off, last.Line = l.Pos()
		f.held = 0
	}
	if b != nil {
		s.send(f, b, last)
	}
	f.lastRead = s.tick()
}

// markRewind makes b, whose first unit starts at off, a windows-only
// batch while f is read again below its delivered position after a
// restart: its records go to the windows (rebuilding the windows that were
// open at the crash) but not to the sinks or the DLQ, which have them.
func (s *Source) markRewind(f *tfile, b *pipeline.Batch, off int64) {
	if f.rewindTo == 0 {
		return
	}
	if off < f.rewindTo {
		b.WindowsOnly = true
		return
	}
	s.rewound(f, off) // the region ended between units (a blank line)
}

// rewound notes that f was read again for the windows up to its delivered
// position: from off on its units are delivered as usual.
func (s *Source) rewound(f *tfile, off int64) {
	f.rewindTo = 0
	s.log.Info("read again up to the delivered position for the windows; delivering from here", "path", f.path, "offset", off)
}

// fileAcker is a followed file's Acker: Ack moves its delivered position,
// WindowAck its windowed one.
type fileAcker struct{ d, w *pipeline.AckTracker[pos] }

func (a *fileAcker) Ack(seq uint64)       { a.d.Ack(seq) }
func (a *fileAcker) WindowAck(seq uint64) { a.w.Ack(seq) }

func (s *Source) tick() uint64 {
	s.readTick++
	return s.readTick
}

// newBatch returns an empty batch of f's origin.
func (s *Source) newBatch(f *tfile) *pipeline.Batch {
	b := pipeline.GetBatch()
	b.Origin = f.origin
	if cap(b.Buf) < s.o.BatchBytes && f.size-f.end > int64(s.o.BatchBytes) {
		b.Buf = make([]byte, 0, s.o.BatchBytes) // catching up: batches will be full
	}
	return b
}

// send issues b as f's next batch, ending at p, and sends it. It returns
// false, with b back in the pool, if ctx was cancelled first.
func (s *Source) send(f *tfile, b *pipeline.Batch, p pos) bool {
	if f.origin.Format == pipeline.FormatAuto {
		ft := s.o.Detect(b)
		if ft == pipeline.FormatAuto {
			ft = pipeline.FormatJSONL
		}
		f.origin.Format = ft // before its first batch goes: no one else sees it yet
	}
	f.seq++
	b.Seq, b.Acker = f.seq, &f.acker
	f.tracker.Issue(f.seq, p)
	f.wtracker.Issue(f.seq, p)
	windowsOnly := b.WindowsOnly // b is the runner's once sent
	select {
	case s.out <- b:
		f.batches++
		f.sent = p
		f.idleSent = false
		if windowsOnly && p.Off >= f.rewindTo {
			s.rewound(f, p.Off)
		}
		return true
	case <-s.ctx.Done():
		pipeline.PutBatch(b)
		return false
	}
}

// serveArchive reads a rotated archive once, whole, through the replay
// reader, resuming past what a checkpoint says was delivered.
func (s *Source) serveArchive(f *tfile) {
	if f.done || !s.open(f) {
		return
	}
	_, skip := f.tracker.Acked()
	onSend := func(b *pipeline.Batch) {
		f.seq = b.Seq
		b.Acker = &f.acker
		p := pos{Off: b.Units[len(b.Units)-1].Offset + 1}
		f.tracker.Issue(b.Seq, p)
		f.wtracker.Issue(b.Seq, p)
		f.batches++
		f.sent = p
	}
	_, fe, failed := s.reader.ReadOne(s.ctx, f.fh, f.path, f.origin, skip.Off, onSend, s.out)
	if s.ctx.Err() != nil {
		return // read again, past what was acked, next time
	}
	if failed {
		s.failOnce(f.path, f.key, f.mark, fe.Code, fe.Offset, fe.Line, fe.Err)
	}
	s.log.Info("archive read whole", "path", f.path, "batches", f.batches)
	s.mu.Lock()
	f.done = true
	s.mu.Unlock()
	s.closeFile(f)
	s.originDone(f)
}

// originDone tells the job f's origin sent its last batch, once.
func (s *Source) originDone(f *tfile) {
	if f.origin == nil || f.finished {
		return
	}
	f.finished = true
	if s.o.Events.OriginDone != nil {
		s.o.Events.OriginDone(f.origin.ID, f.batches)
	}
}

// open makes sure f has a descriptor, within max_open_files: the open file
// read least recently gives its up if needed. A file reopened is checked
// to be the one fingerprinted; if not, it was truncated or replaced. false:
// f cannot be read now (and was dealt with).
func (s *Source) open(f *tfile) bool {
	if f.fh != nil {
		return true
	}
	if s.openCount >= s.cfg.MaxOpenFiles {
		s.evict(f)
	}
	fh, err := os.OpenFile(f.path, openFlags, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.release(f, "vanished while closed")
			return false
		}
		s.failOnce(f.path, f.key, f.mark, openCode(err), 0, 0, err)
		s.release(f, "cannot open")
		return false
	}
	fi, err := fh.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		_ = fh.Close()
		s.release(f, "not the file it was")
		return false
	}
	if k, _ := identOf(fi); k != f.key {
		_ = fh.Close()
		s.release(f, "renamed away or replaced while closed")
		return false
	}
	f.fh = fh
	s.openCount++
	s.filesOpen.Add(1)
	if f.fpLen > 0 && !s.fingerprintOK(f) {
		s.truncated(f)
		return false
	}
	return true
}

// evict closes the open file read least recently (not except), preferring
// one still at a matching path (a file renamed away or deleted cannot be
// reopened: evicting it releases it).
func (s *Source) evict(except *tfile) {
	var victim *tfile
	for _, f := range s.live {
		if f == except || f.fh == nil {
			continue
		}
		if victim == nil || (victim.gone && !f.gone) || (victim.gone == f.gone && f.lastRead < victim.lastRead) {
			victim = f
		}
	}
	if victim == nil {
		return
	}
	if victim.gone {
		s.log.Warn("max_open_files reached: releasing a rotated or deleted file before its end", "path", victim.path)
		s.release(victim, "evicted")
		return
	}
	s.closeFile(victim)
	if victim.state == stateFollowing && (victim.size > victim.end || victim.held > 0) {
		s.enqueue(victim)
	}
}

// attach lends f a framing buffer positioned where it was.
func (s *Source) attach(f *tfile) *file.Lines {
	if f.slot != nil {
		return f.slot.lines
	}
	var sl *slot
	for _, c := range s.slots {
		if c.owner == nil {
			sl = c
			break
		}
		if sl == nil || c.owner.lastRead < sl.owner.lastRead {
			sl = c
		}
	}
	if sl.owner != nil {
		s.detach(sl.owner)
	}
	if _, err := f.fh.Seek(f.st.Offset, io.SeekStart); err != nil {
		s.failOnce(f.path, f.key, f.mark, file.CodeRead, f.st.Offset, 0, err)
		s.release(f, "cannot seek")
		return nil
	}
	sl.cr = countReader{src: f.fh, n: &s.bytesRead}
	sl.lines.Reset(&sl.cr, f.st)
	sl.owner, f.slot = f, sl
	return sl.lines
}

// detach takes f's framing buffer back, keeping where it was.
func (s *Source) detach(f *tfile) {
	sl := f.slot
	f.st = sl.lines.State(f.keep[:0])
	if f.st.Skip {
		f.keep = f.st.Keep
	}
	sl.owner, f.slot = nil, nil
	sl.cr.src = nil
}

// closeFile closes f's descriptor (f stays followed).
func (s *Source) closeFile(f *tfile) {
	if f.slot != nil {
		s.detach(f)
	}
	if f.fh != nil {
		_ = f.fh.Close()
		f.fh = nil
		s.openCount--
		s.filesOpen.Add(-1)
	}
}

// release lets f go: closed, no longer followed; its position stays in the
// checkpoint until its batches are acked. Its origin is done.
func (s *Source) release(f *tfile, why string) {
	if f.released {
		return
	}
	s.closeFile(f)
	s.mu.Lock()
	f.released = true
	if s.live[f.key] == f {
		delete(s.live, f.key)
	}
	if f.tracker != nil {
		s.draining = append(s.draining, f)
	}
	s.mu.Unlock()
	if s.byPath[f.path] == f {
		delete(s.byPath, f.path)
	}
	s.followed.Add(-1)
	s.log.Info("file released", "path", f.path, "why", why, "batches", f.batches)
	s.originDone(f)
}

// truncated handles a file found shorter than what was read of it, or
// whose first bytes changed (copytruncate, or rewritten in place): this
// instance is released and the file read again from its start as a new
// one.
func (s *Source) truncated(f *tfile) {
	path, key := f.path, f.key
	s.log.Warn("file truncated or rewritten: reading it again from its start", "path", path, "read", f.end, "size", f.size)
	s.release(f, "truncated")
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	if k, _ := identOf(fi); k != key || !fi.Mode().IsRegular() || s.excluded(path) {
		return // the scan will find what is there
	}
	t := s.o.Now()
	nf := &tfile{key: key, path: path, size: fi.Size(), sizeSince: t, lastGrowth: t, seen: s.scanGen, found: path, mark: markOf(fi)}
	s.mu.Lock()
	s.live[key] = nf
	s.mu.Unlock()
	s.byPath[path] = nf
	s.followed.Add(1)
	nf.watched = s.watchDir(filepath.Dir(path))
	s.identify(nf, t)
}
