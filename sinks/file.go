package sinks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
)

// FileOptions configure a File sink.
type FileOptions struct {
	Name string // sink name, default "file"
	Dir  string // created 0750 if missing
	// RotateBytes starts a new file once the current one is past this size.
	RotateBytes int64
}

// File writes normalized records as JSON lines into a folder. A file being
// written is named *.jsonl.part and renamed to *.jsonl once complete (on
// rotation and on Close, after fsync), so a reader of the folder never sees
// a half-written file under its final name. Files are 0640.
//
// Workers encode their batch into the batch's own Out buffer without a lock,
// then one write per batch happens under the sink's mutex. A rotated file
// is synced and renamed by a background completer, so workers do not wait
// for the disk; at most one file waits for it (a slow disk then slows
// rotation down, never memory up).
type File struct {
	opts FileOptions
	// stamp keeps names from different runs in one folder apart.
	stamp string

	mu   sync.Mutex
	f    *os.File
	path string // current .part path
	size int64
	seq  int
	err  error // sticky: once a write failed, the sink stays failed

	done      chan partFile // to the completer; capacity 1
	completer sync.WaitGroup
	cerrMu    sync.Mutex
	cerr      error // first completion error
}

// partFile is a written file waiting to be synced and renamed.
type partFile struct {
	f    *os.File
	path string
}

// NewFile creates the folder and returns the sink; the first file is created
// on the first write.
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
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("file sink %s: %w", opts.Name, err)
	}
	s := &File{
		opts:  opts,
		stamp: time.Now().UTC().Format("20060102T150405Z") + fmt.Sprintf("-%d", os.Getpid()),
		done:  make(chan partFile, 1),
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
		}
	})
	return s, nil
}

// Name implements pipeline.Sink.
func (s *File) Name() string { return s.opts.Name }

// Write implements pipeline.Sink.
func (s *File) Write(_ context.Context, b *pipeline.Batch) error {
	buf := GetScratch()
	defer PutScratch(buf)
	out := (*buf)[:0]
	for i := range b.Records {
		r := &b.Records[i]
		if r.Failed() || r.Filtered {
			continue
		}
		out = AppendRecord(out, r, b.Buf)
	}
	*buf = out
	if len(out) == 0 {
		return nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return fmt.Errorf("file sink %s: write after Close", s.opts.Name)
	}
	if s.err == nil {
		s.err = s.completionErr()
	}
	// A failed write may have left part of a batch in the file: the sink
	// stops there for good (errors are permanent, not retried) rather than
	// write records twice or out of line.
	if s.err != nil {
		return pipeline.Permanent(s.err)
	}
	if s.f == nil || s.size >= s.opts.RotateBytes {
		if err := s.rotate(); err != nil {
			s.err = err
			return pipeline.Permanent(err)
		}
	}
	n, err := s.f.Write(out)
	s.size += int64(n)
	if err != nil {
		s.err = fmt.Errorf("file sink %s: write %s: %w", s.opts.Name, s.path, err)
		return pipeline.Permanent(s.err)
	}
	return nil
}

// rotate hands the current file, if any, to the completer and opens the
// next. Called with mu held.
func (s *File) rotate() error {
	if s.f != nil {
		s.done <- partFile{s.f, s.path}
		s.f = nil
	}
	s.seq++
	s.path = filepath.Join(s.opts.Dir, fmt.Sprintf("records-%s-%06d.jsonl.part", s.stamp, s.seq))
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("file sink %s: %w", s.opts.Name, err)
	}
	s.f, s.size = f, 0
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

// Close implements pipeline.Sink: every file is synced and renamed before
// it returns. Write must not be called after Close.
func (s *File) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return s.err // closed already
	}
	if s.f != nil {
		s.done <- partFile{s.f, s.path}
		s.f = nil
	}
	close(s.done)
	s.done = nil
	s.completer.Wait()
	return errors.Join(s.err, s.completionErr())
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
func (d *Discard) Write(context.Context, *pipeline.Batch) error { return nil }

// Close implements pipeline.Sink.
func (d *Discard) Close(context.Context) error { return nil }
