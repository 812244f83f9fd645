package dlq

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Store is a DLQ as `pipeline dlq` reads and edits it; every backend has
// one.
type Store interface {
	// Scan calls fn with every entry, oldest first; fn may keep e.
	Scan(ctx context.Context, fn func(e *Entry) error) error
	// Get returns the entry with id, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (*Entry, error)
	// Delete removes the entries with these ids and says how many it
	// removed.
	Delete(ctx context.Context, ids []string) (int, error)
	Close() error
}

// ErrNotFound is wrapped by Store.Get for an unknown id.
var ErrNotFound = errors.New("dlq: no such entry")

// ErrLocked is wrapped by OpenFile and FileStore.Delete when another
// process holds the directory: a run writing to it.
var ErrLocked = errors.New("dlq: the directory is in use by another process (a run writing to it?)")

const lockName = ".lock"

// lockDir takes the directory's exclusive lock (flock on dir/.lock),
// without waiting: one writer per directory, and no purge under a writer.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dlq: lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("dlq: lock %s: %w", dir, err)
	}
	return f, nil
}

// FileStore is the Store of a file DLQ directory.
type FileStore struct {
	dir       string
	onCorrupt func(Corruption)
	lock      *os.File // held from Lock to Close
}

// OpenFileStore reads the file DLQ in dir; corrupt lines are reported to
// onCorrupt (nil ignores them).
func OpenFileStore(dir string, onCorrupt func(Corruption)) (*FileStore, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("dlq: %s is not a directory", dir)
	}
	return &FileStore{dir: dir, onCorrupt: onCorrupt}, nil
}

// Scan implements Store.
func (s *FileStore) Scan(ctx context.Context, fn func(*Entry) error) error {
	return Scan(s.dir, func(e *Entry, _ Position) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(e)
	}, s.onCorrupt)
}

// errFound stops a scan.
var errFound = errors.New("found")

// Get implements Store.
func (s *FileStore) Get(ctx context.Context, id string) (*Entry, error) {
	var found *Entry
	err := s.Scan(ctx, func(e *Entry) error {
		if e.ID == id {
			found = e
			return errFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, id, s.dir)
	}
	return found, nil
}

// Delete implements Store: every segment holding one of ids is rewritten
// without them (a new file, synced, renamed over the old one; a segment
// left empty is removed). It takes the directory's lock, so it fails with
// ErrLocked while a run writes to the DLQ. Corrupt lines are kept as they
// are: they are not entries and may be evidence.
func (s *FileStore) Delete(ctx context.Context, ids []string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	if s.lock == nil {
		lock, err := lockDir(s.dir)
		if err != nil {
			return 0, err
		}
		defer lock.Close()
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	// Entries a replay deleted in steps go too, and the tombstone file
	// after them.
	dead, err := readTombstones(s.dir)
	if err != nil {
		return 0, err
	}
	for id := range dead {
		want[id] = true
	}
	names, err := segmentNames(s.dir)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		n, err := s.rewrite(filepath.Join(s.dir, name), want, dead)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	if dead != nil {
		return removed, s.compactTombstones()
	}
	return removed, nil
}

// rewrite drops the lines of entries in want from one segment.
// Entries in dead (tombstoned earlier) are dropped without being counted:
// they were already deleted.
func (s *FileStore) rewrite(path string, want, dead map[string]bool) (int, error) {
	drop := map[int64]bool{}
	counted := 0
	r := bufio.NewReaderSize(nil, 64<<10)
	var line []byte
	err := scanSegment(path, r, &line, func(e *Entry, pos Position) error {
		if want[e.ID] {
			drop[pos.Offset] = true
			if !dead[e.ID] {
				counted++
			}
		}
		return nil
	}, func(Corruption) {})
	if err != nil || len(drop) == 0 {
		return 0, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("dlq: %w", err)
	}
	kept := make([]byte, 0, len(data))
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data) // a torn tail: kept as it is
		} else {
			end += off + 1
		}
		if !drop[int64(off)] {
			kept = append(kept, data[off:end]...)
		}
		off = end
	}
	if len(kept) == 0 {
		if err := os.Remove(path); err != nil {
			return 0, fmt.Errorf("dlq: %w", err)
		}
		return counted, nil
	}
	tmp := path + ".purge-" + time.Now().UTC().Format("20060102T150405.000000000")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("dlq: %w", err)
	}
	_, err = f.Write(kept)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("dlq: rewrite %s: %w", path, err)
	}
	return counted, nil
}

// Close implements Store.
func (s *FileStore) Close() error {
	if s.lock != nil {
		err := s.lock.Close()
		s.lock = nil
		return err
	}
	return nil
}

var _ Store = (*FileStore)(nil)
