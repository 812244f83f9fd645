package sinks

import (
	"bytes"
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
	"syscall"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
)

// FileOptions configure a File sink.
type FileOptions struct {
	Name string // sink name, default "file"
	Dir  string // created 0750 if missing
	// RotateBytes starts a new file once the current one is past this size.
	RotateBytes int64
	// Logger gets what the sink recovered at open; default slog.Default().
	Logger *slog.Logger
	// Recovering, when set, is called with each .part a dead process left,
	// once it is cut to its last whole record and synced, before it is
	// renamed to its final name: what must know of its records (dedupe
	// marks) learns of them while the file still says "not finished", so a
	// process killed in between finds it again. An error fails NewFile and
	// leaves the .part as it is.
	Recovering func(part string) error
}

// File writes normalized records as JSON lines into a folder. A file being
// written is named *.jsonl.part and renamed to *.jsonl once complete (on
// rotation and on Close, after fsync), so a reader of the folder never sees
// a half-written file under its final name. Files are 0640.
//
// A file always ends with a whole record: when a write fails part way (a
// full disk), the file is cut back to the last record written whole, the
// records before it count as taken and the rest are returned as not taken
// (a *pipeline.PartialError; a full disk is retried, not permanent). The
// writer holds a lock on its .part file; a .part file nobody holds was left
// by a process that died: NewFile cuts it back to its last whole record and
// renames it, and says so.
//
// Workers encode their records without a lock into pooled buffers, then one
// write per batch happens under the sink's mutex. A rotated file is synced
// and renamed by a background completer, so workers do not wait for the
// disk; at most one file waits for it. Flush syncs the open file and waits
// for the completer: the durability barrier the runner calls on an
// interval.
type File struct {
	opts FileOptions
	log  *slog.Logger
	// stamp keeps names from different runs in one folder apart.
	stamp string

	mu   sync.Mutex
	f    *os.File
	path string // current .part path
	size int64  // bytes of whole records in the current file
	seq  int
	// err is sticky: a failed write whose torn tail could not be cut off
	// leaves the file unusable.
	err    error
	closed bool
	handed int64 // files handed to the completer, under mu

	compMu    sync.Mutex
	compCond  *sync.Cond // on compMu: a file was completed
	completed int64      // files the completer is done with, under compMu

	done      chan partFile // to the completer; capacity 1
	completer sync.WaitGroup
	cerrMu    sync.Mutex
	cerr      error // first completion error

	recovered []Recovered
}

// Recovered is a file a dead process left unfinished, as NewFile found it.
type Recovered struct {
	Path    string `json:"path"`    // the name it has now (.jsonl), "" if it held nothing and was removed
	Records int64  `json:"records"` // whole records kept
	Dropped int64  `json:"dropped"` // bytes of a torn last record cut off
}

// partFile is a written file waiting to be synced and renamed.
type partFile struct {
	f    *os.File
	path string
}

// NewFile creates the folder, recovers what dead writers left in it, and
// returns the sink; the first file is created on the first write.
func NewFile(opts FileOptions) (*File, error) {
	if opts.Name == "" {
		opts.Name = "file"
	}
	if opts.Dir == "" {
		return nil, errors.New("file sink: dir is not set")
	}
	if opts.RotateBytes <= 0 {
		opts.RotateBytes = 256 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("file sink %s: %w", opts.Name, err)
	}
	s := &File{
		opts:  opts,
		log:   opts.Logger,
		stamp: time.Now().UTC().Format("20060102T150405Z") + fmt.Sprintf("-%d", os.Getpid()),
		done:  make(chan partFile, 1),
	}
	s.compCond = sync.NewCond(&s.compMu)
	if err := s.recoverParts(); err != nil {
		return nil, err
	}
	done := s.done
	s.completer.Go(func() {
		for p := range done {
			if err := s.complete(p); err != nil {
				s.cerrMu.Lock()
				if s.cerr == nil {
					s.cerr = err
				}
				s.cerrMu.Unlock()
			}
			s.compMu.Lock()
			s.completed++
			s.compCond.Broadcast()
			s.compMu.Unlock()
		}
	})
	return s, nil
}

// Name implements pipeline.Sink.
func (s *File) Name() string { return s.opts.Name }

// Recovered lists the files a dead process had left unfinished in the
// folder, as NewFile recovered them.
func (s *File) Recovered() []Recovered { return s.recovered }

// encoded is one batch's records as JSON lines, with where each ends.
type encoded struct {
	buf  []byte
	ends []int
}

var encodedPool = sync.Pool{New: func() any { return new(encoded) }}

// Write implements pipeline.Sink.
func (s *File) Write(_ context.Context, b *pipeline.Batch, recs []int32) error {
	if len(recs) == 0 {
		return nil
	}
	enc := encodedPool.Get().(*encoded)
	defer func() {
		if cap(enc.buf) <= maxScratch {
			encodedPool.Put(enc)
		}
	}()
	enc.buf, enc.ends = enc.buf[:0], enc.ends[:0]
	for _, i := range recs {
		enc.buf = AppendRecord(enc.buf, &b.Records[i], b.Buf)
		enc.ends = append(enc.ends, len(enc.buf))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return pipeline.Permanent(fmt.Errorf("file sink %s: write after Close", s.opts.Name))
	}
	if s.err == nil {
		s.err = s.completionErr()
	}
	if s.err != nil {
		return pipeline.Permanent(s.err)
	}
	if s.f == nil || s.size >= s.opts.RotateBytes {
		if err := s.rotate(); err != nil {
			return s.classify(err)
		}
	}
	n, err := s.f.Write(enc.buf)
	if err == nil {
		s.size += int64(n)
		return nil
	}
	// Keep the records written whole; cut off the torn one.
	taken := 0
	for taken < len(enc.ends) && enc.ends[taken] <= n {
		taken++
	}
	keep := 0
	if taken > 0 {
		keep = enc.ends[taken-1]
	}
	werr := fmt.Errorf("file sink %s: write %s: %w", s.opts.Name, s.path, err)
	if n > keep {
		if terr := s.f.Truncate(s.size + int64(keep)); terr != nil {
			s.err = fmt.Errorf("%w; cutting off the torn record failed too: %w", werr, terr)
			return &pipeline.PartialError{Failed: slices.Clone(recs[taken:]), Err: pipeline.Permanent(s.err)}
		}
	}
	s.size += int64(keep)
	if taken == 0 {
		return s.classify(werr)
	}
	return &pipeline.PartialError{Failed: slices.Clone(recs[taken:]), Err: s.classify(werr)}
}

// classify marks err: a full disk or quota may pass (retried, with the
// code no_space); anything else will not.
func (s *File) classify(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return pipeline.WithCode("no_space", err)
	}
	return pipeline.Permanent(err)
}

// rotate hands the current file, if any, to the completer and opens the
// next. Called with mu held.
func (s *File) rotate() error {
	if s.f != nil {
		s.done <- partFile{s.f, s.path}
		s.handed++
		s.f = nil
	}
	s.seq++
	s.path = filepath.Join(s.opts.Dir, fmt.Sprintf("records-%s-%06d.jsonl.part", s.stamp, s.seq))
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("file sink %s: %w", s.opts.Name, err)
	}
	// The lock says "a live process writes this file" to the recovery of
	// other processes; it goes with the descriptor.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("file sink %s: lock %s: %w", s.opts.Name, s.path, err)
	}
	s.f, s.size = f, 0
	return nil
}

// Reopen finishes the file being written (synced, renamed to its final
// name by the completer) so the next write starts a new one: what SIGHUP
// asks of `pipeline run`, the logrotate habit. A sink with no open file,
// or one written nothing yet, is left as it is.
func (s *File) Reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("file sink %s: reopen after Close", s.opts.Name)
	}
	if s.f == nil || s.size == 0 {
		return nil
	}
	s.done <- partFile{s.f, s.path}
	s.handed++
	s.f = nil
	return nil
}

// complete syncs, closes and renames a written file.
func (s *File) complete(p partFile) error {
	err := p.f.Sync()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p.path, strings.TrimSuffix(p.path, ".part"))
	}
	if err != nil {
		return fmt.Errorf("file sink %s: completing %s: %w", s.opts.Name, p.path, err)
	}
	return nil
}

func (s *File) completionErr() error {
	s.cerrMu.Lock()
	defer s.cerrMu.Unlock()
	return s.cerr
}

// Flush implements pipeline.Sink: every record taken before it is on disk
// (the open file synced, rotated ones completed) when it returns nil.
func (s *File) Flush(context.Context) error {
	s.mu.Lock()
	f, handed := s.f, s.handed
	s.mu.Unlock()
	s.waitCompleted(handed)
	if f != nil {
		if err := f.Sync(); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("file sink %s: sync: %w", s.opts.Name, err)
			}
			// Rotated meanwhile: the completer syncs it.
			s.mu.Lock()
			handed = s.handed
			s.mu.Unlock()
			s.waitCompleted(handed)
		}
	}
	return s.completionErr()
}

// waitCompleted waits until the completer is done with the first n files
// handed to it.
func (s *File) waitCompleted(n int64) {
	s.compMu.Lock()
	for s.completed < n {
		s.compCond.Wait()
	}
	s.compMu.Unlock()
}

// Close implements pipeline.Sink: every file is synced and renamed before
// it returns. Write must not be called after Close.
func (s *File) Close(context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.Join(s.err, s.completionErr())
	}
	s.closed = true
	if s.f != nil {
		s.done <- partFile{s.f, s.path}
		s.handed++
		s.f = nil
	}
	close(s.done)
	s.mu.Unlock()
	s.completer.Wait()
	return errors.Join(s.err, s.completionErr())
}

// recoverParts finishes the .part files of dead writers in the folder:
// each is cut back to its last whole record, synced and renamed to its
// final name (removed when nothing whole is left). A .part file whose lock
// is held belongs to a live process and is left alone.
func (s *File) recoverParts() error {
	parts, err := filepath.Glob(filepath.Join(s.opts.Dir, "*.jsonl.part"))
	if err != nil {
		return fmt.Errorf("file sink %s: %w", s.opts.Name, err)
	}
	for _, p := range parts {
		r, err := recoverPart(p, s.opts.Recovering)
		if errors.Is(err, errPartLive) {
			continue
		}
		if err != nil {
			return fmt.Errorf("file sink %s: recovering %s, left by a process that died: %w", s.opts.Name, p, err)
		}
		s.recovered = append(s.recovered, r)
		s.log.Warn("file sink: recovered a file left unfinished by a process that died (a records file it had not completed); "+
			"its whole records are kept: a replay of the same input writes them again unless dedupe is on",
			"sink", s.opts.Name, "file", p, "now", r.Path, "records", r.Records, "torn_bytes_dropped", r.Dropped)
	}
	return nil
}

var errPartLive = errors.New("held by a live writer")

// recoverPart recovers one .part file (see recoverParts).
func recoverPart(path string, recovering func(string) error) (Recovered, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return Recovered{}, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return Recovered{}, errPartLive
		}
		return Recovered{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		return Recovered{}, err
	}
	size := fi.Size()
	// Count the lines and find the end of the last one.
	var lines, lastEnd int64
	buf := make([]byte, 256<<10)
	for off := int64(0); off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
			lastEnd = off + int64(i) + 1
		}
		off += int64(n)
		if err != nil && err != io.EOF {
			return Recovered{}, err
		}
		if n == 0 {
			break
		}
	}
	r := Recovered{Records: lines, Dropped: size - lastEnd}
	if lastEnd < size {
		if err := f.Truncate(lastEnd); err != nil {
			return Recovered{}, err
		}
	}
	if lines == 0 {
		return r, os.Remove(path)
	}
	if err := f.Sync(); err != nil {
		return Recovered{}, err
	}
	if recovering != nil {
		if err := recovering(path); err != nil {
			return Recovered{}, err
		}
	}
	r.Path = strings.TrimSuffix(path, ".part")
	if err := os.Rename(path, r.Path); err != nil {
		return Recovered{}, err
	}
	syncDir(filepath.Dir(path))
	return r, nil
}

// syncDir makes a rename durable; errors are ignored (not every file
// system can sync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// Discard counts records and throws them away; for benchmarks.
type Discard struct{ name string }

// NewDiscard returns a discard sink.
func NewDiscard(name string) *Discard {
	if name == "" {
		name = "discard"
	}
	return &Discard{name: name}
}

// Name implements pipeline.Sink.
func (d *Discard) Name() string { return d.name }

// Write implements pipeline.Sink.
func (d *Discard) Write(context.Context, *pipeline.Batch, []int32) error { return nil }

// Flush implements pipeline.Sink.
func (d *Discard) Flush(context.Context) error { return nil }

// Close implements pipeline.Sink.
func (d *Discard) Close(context.Context) error { return nil }
