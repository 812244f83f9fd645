package tail

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/fsnotify/fsnotify"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sources/file"
)

// devIno is a file's device and inode.
type devIno struct{ dev, ino uint64 }

func (k devIno) ok() bool { return k != devIno{} }

// fileMark is what tells that a file that failed may have changed (its mode
// after a chmod, its size and time after a write): it is then tried again,
// quietly.
type fileMark struct {
	mode  fs.FileMode
	size  int64
	mtime int64
}

func markOf(fi fs.FileInfo) fileMark {
	return fileMark{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

// failMark is a file that failed, reported once.
type failMark struct{ mark fileMark }

// fileState is where a followed file is in its life.
type fileState uint8

const (
	// stateWaiting: not identified yet (shorter than fingerprint_bytes
	// and not quiet yet, or an archive still being written).
	stateWaiting fileState = iota
	stateFollowing
	stateArchive // read once, whole, through the replay reader
)

// pos is a position in a file: its offset, and the line number there. For
// an archive, Off is an offset in the decompressed stream: the units
// starting before it were delivered (Line is 0).
type pos struct{ Off, Line int64 }

// fpSize is how much of the SHA-256 of the first bytes a fingerprint
// keeps.
const fpSize = 16

// tfile is one followed file instance.
type tfile struct {
	key devIno

	// Written under Source.mu (Commit reads them).
	fp       [fpSize]byte
	fpLen    int // bytes fingerprinted; 0 until identified
	path     string
	tracker  *pipeline.AckTracker[pos] // delivered: acked after the barrier
	wtracker *pipeline.AckTracker[pos] // windowed: acked once the window rows are durable
	acker    fileAcker
	floor    pos   // delivered position at the start: the windows-only batches end before it
	rewindTo int64 // read only for the windows up to this offset (0: none)
	archive  bool
	done     bool // archive: read whole (or skipped)
	released bool

	// Run's own.
	finished   bool // OriginDone was told
	state      fileState
	origin     *pipeline.Origin
	first      bool // found by the first scan
	fh         *os.File
	slot       *slot
	st         file.LineState // where its reader is, while detached
	keep       []byte
	size       int64 // size when last looked at
	sizeSince  time.Time
	end        int64 // bytes read so far
	lastGrowth time.Time
	held       int64 // bytes of a last line held back
	atEnd      bool
	atEndSince time.Time
	idleSent   bool
	seq        uint64
	batches    int64
	sent       pos // after the last batch sent
	gone       bool
	queued     bool
	lastRead   uint64
	watched    bool      // its folder is watched: notifications tell its growth
	statAt     time.Time // when poll last fstat'ed it
	seen       uint64    // the last scan that found it
	found      string    // the path that scan found it at
	mark       fileMark
}

// scan matches the globs, starts following new files, notices renamed and
// vanished ones, and files that grew while closed.
func (s *Source) scan() {
	s.scanGen++
	now := s.o.Now()
	visited := map[string]bool{}
	pathKey := map[string]devIno{}
	seenKey := map[devIno]bool{}
	for _, g := range s.include {
		matches, _ := doublestar.FilepathGlob(g) // patterns were validated; I/O errors skip
		for _, m := range matches {
			m = filepath.Clean(m)
			if visited[m] || s.excluded(m) {
				continue
			}
			visited[m] = true
			fi, err := os.Stat(m)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					s.failOnce(m, devIno{}, fileMark{}, openCode(err), 0, 0, err)
				}
				continue
			}
			k, _ := identOf(fi)
			pathKey[m] = k
			if fi.IsDir() {
				if g == "**" || strings.HasSuffix(g, "/**") {
					continue // the glob names everything under a folder: its files are matched too
				}
				s.failOnce(m, k, markOf(fi), file.CodeIsDir, 0, 0, errors.New("a directory matches the glob: not read"))
				continue
			}
			if !fi.Mode().IsRegular() {
				s.failOnce(m, k, markOf(fi), file.CodeNotRegular, 0, 0, errors.New(fi.Mode().Type().String()+" is not a regular file: not read"))
				continue
			}
			if seenKey[k] {
				continue // one file at two matching paths: followed once
			}
			seenKey[k] = true
			if f := s.live[k]; f != nil {
				if f.seen != s.scanGen {
					f.seen, f.found = s.scanGen, m
				}
				s.rescanned(f, fi, now)
				continue
			}
			if fm, failed := s.failures[k]; failed {
				if fm.mark == markOf(fi) {
					continue
				}
				fm.mark = markOf(fi)
				s.failures[k] = fm // changed since: try again, quietly
			}
			s.discover(m, fi, k, now)
		}
	}
	for _, f := range s.live {
		switch {
		case f.released:
		case f.seen != s.scanGen:
			if !f.gone {
				f.gone = true
				s.log.Debug("file no longer matched (renamed away or deleted): reading it to its end", "path", f.path)
			}
		case f.found != f.path && pathKey[f.path] != f.key:
			s.rename(f, f.found)
		}
	}
	if !s.scanned {
		s.scanned = true
		s.mu.Lock()
		for _, e := range s.known {
			if e.Released.IsZero() {
				e.Released = now // in the checkpoint, not found: kept as released
			}
		}
		s.mu.Unlock()
	}
	s.watchStatic()
	s.scans.Add(1)
}

// rescanned updates a followed file the scan found again.
func (s *Source) rescanned(f *tfile, fi fs.FileInfo, now time.Time) {
	if f.gone {
		f.gone = false // renamed back
	}
	switch f.state {
	case stateWaiting:
		if fi.Size() != f.size {
			f.size, f.sizeSince = fi.Size(), now
		}
	case stateFollowing:
		if f.fh == nil && fi.Size() != f.end {
			f.size = fi.Size()
			s.enqueue(f)
		}
	}
}

// rename records that f is now at path.
func (s *Source) rename(f *tfile, path string) {
	s.log.Info("file renamed: followed under its new name, not read again", "from", f.path, "to", path)
	if s.byPath[f.path] == f {
		delete(s.byPath, f.path)
	}
	s.byPath[path] = f
	s.mu.Lock()
	f.path = path
	s.mu.Unlock()
	if f.origin != nil {
		o := *f.origin // batches in flight keep the old one
		o.Path = path
		f.origin = &o
	}
	f.watched = s.watchDir(filepath.Dir(path))
}

// discover starts tracking a file the scan found.
func (s *Source) discover(path string, fi fs.FileInfo, k devIno, now time.Time) {
	f := &tfile{key: k, path: path, size: fi.Size(), sizeSince: now, lastGrowth: now, first: !s.scanned, seen: s.scanGen, found: path, mark: markOf(fi)}
	s.mu.Lock()
	s.live[k] = f
	s.mu.Unlock()
	s.byPath[path] = f
	s.followed.Add(1)
	f.watched = s.watchDir(filepath.Dir(path))
	s.identify(f, now)
}

// identify fingerprints f once it has fingerprint_bytes, or has been quiet
// for partial_line_timeout, and decides where it starts.
func (s *Source) identify(f *tfile, now time.Time) {
	fb := int64(s.cfg.FingerprintBytes)
	quiet := now.Sub(f.sizeSince) >= s.cfg.PartialLineTimeout
	if f.size == 0 || (f.size < fb && !quiet) {
		return // poll looks again
	}
	if !s.open(f) {
		return
	}
	head := make([]byte, min(f.size, fb))
	n, err := f.fh.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		s.failOnce(f.path, f.key, f.mark, file.CodeRead, 0, 0, err)
		s.release(f, "unreadable")
		return
	}
	head = head[:n]
	if n == 0 {
		s.closeFile(f) // emptied meanwhile
		return
	}
	archive := compressed(head)
	if archive && !quiet {
		s.closeFile(f) // gzip may still be writing it
		return
	}
	sum := sha256.Sum256(head)
	start, wstart, done := s.startOf(f, head, archive)
	s.mu.Lock()
	copy(f.fp[:], sum[:fpSize])
	f.fpLen = n
	f.archive, f.done = archive, done
	f.tracker = pipeline.NewAckTracker(wstart)
	f.wtracker = pipeline.NewAckTracker(wstart)
	f.acker = fileAcker{f.tracker, f.wtracker}
	f.floor = start
	s.mu.Unlock()
	if wstart.Off < start.Off {
		f.rewindTo = start.Off
		s.log.Info("resuming before the delivered position to rebuild open windows: those records go to the windows only",
			"path", f.path, "from", wstart.Off, "delivered", start.Off)
	}
	start = wstart
	f.origin = s.newOrigin(f.path)
	// The DLQ's dedupe knows the file by this across renames and restarts.
	f.origin.Key = fmt.Sprintf("file:%d:%d:%x", f.key.dev, f.key.ino, f.fp)
	f.sent = start
	if archive {
		f.state = stateArchive
		if done {
			f.finished = true // nothing will be sent
			s.closeFile(f)
			return
		}
		f.st.Offset = start.Off
		s.enqueue(f)
		return
	}
	f.state = stateFollowing
	f.st = file.LineState{Offset: start.Off, Line: start.Line, Started: start.Off > 0}
	f.end = start.Off
	if f.size > start.Off {
		s.enqueue(f)
	} else {
		f.atEnd, f.atEndSince = true, now
	}
}

// newOrigin returns the origin of a new file instance at path.
func (s *Source) newOrigin(path string) *pipeline.Origin {
	o := s.o.Origin
	o.ID = s.o.IDs.Next()
	o.Kind = "file"
	o.Path = path
	return &o
}

// startOf decides where f starts: at its checkpoint position (or that of a
// released instance of it), else by start_at and read_existing. done is
// true for an archive to leave alone.
//
// wstart is where reading starts: start (the delivered position), or
// before it where the checkpoint's windowed position is behind (records
// between the two are read again for the windows only).
func (s *Source) startOf(f *tfile, head []byte, archive bool) (start, wstart pos, done bool) {
	if e := s.match(f, head); e != nil {
		switch {
		case e.Archive:
			return pos{Off: e.Offset}, pos{Off: e.Offset}, e.Done
		case e.Offset > f.size:
			s.log.Warn("file shorter than its checkpoint: truncated since, read from its start", "path", f.path, "checkpoint", e.Offset, "size", f.size)
			return pos{Line: 1}, pos{Line: 1}, false
		}
		start = pos{Off: e.Offset, Line: e.Line}
		if w := e.Windowed; w != nil && w.Offset < e.Offset {
			return start, pos{Off: w.Offset, Line: w.Line}, false
		}
		return start, start, false
	}
	existing := f.first && (!s.readExisting || s.cfg.StartAt == "end")
	switch {
	case archive:
		return pos{}, pos{}, existing
	case existing:
		e := s.endOf(f)
		return e, e, false
	}
	return pos{Line: 1}, pos{Line: 1}, false
}

// endOf returns the position past f's last complete line, and its line
// number, counting the lines (it reads the file once).
func (s *Source) endOf(f *tfile) pos {
	if s.countBuf == nil {
		s.countBuf = make([]byte, 256<<10)
	}
	var p pos
	p.Line = 1
	for off := int64(0); off < f.size; {
		n, err := f.fh.ReadAt(s.countBuf[:min(int64(len(s.countBuf)), f.size-off)], off)
		b := s.countBuf[:n]
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			p.Off = off + int64(i) + 1
			p.Line += int64(bytes.Count(b, []byte{'\n'}))
		}
		off += int64(n)
		if err != nil || n == 0 {
			break
		}
	}
	return p
}

// compressed reports whether head starts like a gzip or zstd stream.
func compressed(head []byte) bool {
	return bytes.HasPrefix(head, []byte{0x1f, 0x8b}) || bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd})
}

// fingerprintOK reports whether f's first fpLen bytes are still the ones
// fingerprinted.
func (s *Source) fingerprintOK(f *tfile) bool {
	head := make([]byte, f.fpLen)
	n, _ := f.fh.ReadAt(head, 0)
	if n < f.fpLen {
		return false
	}
	sum := sha256.Sum256(head)
	return bytes.Equal(sum[:fpSize], f.fp[:])
}

// rekey extends a short fingerprint to fingerprint_bytes once f has them;
// false if its first bytes changed (rewritten).
func (s *Source) rekey(f *tfile) bool {
	head := make([]byte, s.cfg.FingerprintBytes)
	n, _ := f.fh.ReadAt(head, 0)
	if n < f.fpLen {
		return false
	}
	short := sha256.Sum256(head[:f.fpLen])
	if !bytes.Equal(short[:fpSize], f.fp[:]) {
		return false
	}
	sum := sha256.Sum256(head[:n])
	s.mu.Lock()
	copy(f.fp[:], sum[:fpSize])
	f.fpLen = n
	s.mu.Unlock()
	return true
}

// openCode classifies an error from opening or stat'ing a path.
func openCode(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return file.CodeNotFound
	case errors.Is(err, fs.ErrPermission):
		return file.CodePermission
	case errors.Is(err, syscall.EISDIR):
		return file.CodeIsDir
	}
	return file.CodeOpen
}

// watchStatic watches the folders the include globs' static prefixes name
// (those that exist; the others are tried again at each scan).
func (s *Source) watchStatic() {
	for _, g := range s.include {
		base, _ := doublestar.SplitPattern(g)
		s.watchDir(filepath.FromSlash(base))
	}
}

// watchDir adds a folder to the watcher, once, and reports whether it is
// watched.
func (s *Source) watchDir(dir string) bool {
	if s.watch == nil || s.watched[dir] {
		return s.watched[dir]
	}
	if s.watchFull {
		return false
	}
	err := s.watch.Add(dir)
	switch {
	case err == nil:
		s.watched[dir] = true
		return true
	case errors.Is(err, fs.ErrNotExist):
	default:
		s.watchFull = true
		s.log.Warn("cannot watch more folders: polling covers the others", "dir", dir, "err", err)
	}
	return false
}

// onEvent handles a notification: a file created, renamed or removed makes
// a scan due (at the next poll); a write makes the file read.
func (s *Source) onEvent(ev fsnotify.Event) {
	if ev.Op&(fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
		s.scanDue = true
	}
	if ev.Op&fsnotify.Write == 0 {
		return
	}
	f := s.byPath[filepath.Clean(ev.Name)]
	if f == nil || f.state != stateFollowing {
		return
	}
	if f.fh != nil {
		s.enqueue(f)
		return
	}
	if fi, err := os.Stat(f.path); err == nil && fi.Size() != f.end {
		f.size = fi.Size()
		s.enqueue(f)
	}
}

// onWatchError handles a watcher error: on an overflow, events were lost,
// so everything is looked at again.
func (s *Source) onWatchError(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		s.scanDue = true
		for _, f := range s.live {
			if f.fh != nil && f.state == stateFollowing {
				s.enqueue(f)
			}
		}
	}
	s.log.Debug("file watcher", "err", err)
}
