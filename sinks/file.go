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
// then one write per batch happens under the sink's mutex.
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
	return &File{opts: opts, stamp: time.Now().UTC().Format("20060102T150405Z") + fmt.Sprintf("-%d", os.Getpid())}, nil
}

// Name implements pipeline.Sink.
func (s *File) Name() string { return s.opts.Name }

// Write implements pipeline.Sink.
func (s *File) Write(_ context.Context, b *pipeline.Batch) error {
	out := b.Out[:0]
	for i := range b.Records {
		r := &b.Records[i]
		if r.Failed() || r.Filtered {
			continue
		}
		out = AppendRecord(out, r)
	}
	b.Out = out
	if len(out) == 0 {
		return nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.f == nil || s.size >= s.opts.RotateBytes {
		if err := s.rotate(); err != nil {
			s.err = err
			return err
		}
	}
	n, err := s.f.Write(out)
	s.size += int64(n)
	if err != nil {
		s.err = fmt.Errorf("file sink %s: write %s: %w", s.opts.Name, s.path, err)
		return s.err
	}
	return nil
}

// rotate completes the current file, if any, and opens the next. Called
// with mu held.
func (s *File) rotate() error {
	if err := s.complete(); err != nil {
		return err
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

// complete syncs, closes and renames the current file. Called with mu held.
func (s *File) complete() error {
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(s.path, strings.TrimSuffix(s.path, ".part"))
	}
	if err != nil {
		return fmt.Errorf("file sink %s: completing %s: %w", s.opts.Name, s.path, err)
	}
	return nil
}

// Close implements pipeline.Sink: the current file is synced and renamed.
func (s *File) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.complete(); err != nil {
		return err
	}
	return s.err
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
