package dlq

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// StepStore is a Store a DLQ replay can delete from in small steps while
// it runs (as each batch of replayed entries is durably delivered), so a
// replay killed midway and run again sends only what was not delivered.
// Every backend's store is one.
type StepStore interface {
	Store
	// ScanKeys is Scan, giving each entry's key for DeleteKeys.
	ScanKeys(ctx context.Context, fn func(key string, e *Entry) error) error
	// DeleteKeys removes the entries with these keys (from ScanKeys)
	// durably, without scanning: cheap enough to call once per batch.
	// Keys already gone are not an error.
	DeleteKeys(ctx context.Context, keys []string) error
}

// tombName is the file of a file DLQ that lists deleted entry ids, one per
// line: a replay deletes in steps by appending to it (an append is cheap
// and needs no lock, so it works while the replay's own run writes new
// entries), readers skip the ids it lists, and a Delete under the lock
// (dlq purge) compacts it away.
const tombName = "deleted.ids"

// readTombstones returns the ids listed in dir's tombstone file (none if
// it does not exist). A torn last line (a crash mid-append) is ignored:
// its entry was not deleted.
func readTombstones(dir string) (map[string]bool, error) {
	f, err := os.Open(filepath.Join(dir, tombName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	defer f.Close()
	ids := map[string]bool{}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("dlq: read %s: %w", tombName, err)
			}
			return ids, nil
		}
		if id := strings.TrimSuffix(line, "\n"); validID(id) {
			ids[id] = true
		}
	}
}

// ScanKeys implements StepStore: the key is the entry id.
func (s *FileStore) ScanKeys(ctx context.Context, fn func(string, *Entry) error) error {
	return s.Scan(ctx, func(e *Entry) error { return fn(e.ID, e) })
}

// DeleteKeys implements StepStore: it appends the ids to the tombstone
// file and syncs it. O_APPEND writes of whole lines do not interleave, so
// this is safe beside a writer and other deleters.
func (s *FileStore) DeleteKeys(_ context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	var b strings.Builder
	path := filepath.Join(s.dir, tombName)
	st, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("dlq: %w", err)
	}
	// A process killed while appending leaves a torn last id with no
	// newline: end it first (readers skip it as invalid), or the first
	// id written now would join it and never count as deleted.
	if statErr == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, rerr := f.ReadAt(last, st.Size()-1); rerr == nil && last[0] != '\n' {
			b.WriteByte('\n')
		}
	}
	for _, id := range ids {
		b.WriteString(id)
		b.WriteByte('\n')
	}
	_, err = f.WriteString(b.String())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("dlq: delete %d entries: %w", len(ids), err)
	}
	if statErr != nil {
		syncDir(s.dir) // a new file: make its name durable too
	}
	return nil
}

// Lock takes the directory's lock and holds it until Close, so that what
// a purge scans is what it deletes: it fails with ErrLocked while a run
// writes to the DLQ.
func (s *FileStore) Lock() error {
	if s.lock != nil {
		return nil
	}
	l, err := lockDir(s.dir)
	if err != nil {
		return err
	}
	s.lock = l
	return nil
}

// compactTombstones drops the tombstone file once every segment was
// rewritten without its ids (the caller holds the lock).
func (s *FileStore) compactTombstones() error {
	err := os.Remove(filepath.Join(s.dir, tombName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dlq: %w", err)
	}
	syncDir(s.dir)
	return nil
}

// Multi is the store of a remote DLQ together with its local fallback
// (the file DLQ that took entries while the server was down): ls, stats,
// replay and purge see both. Keys of the fallback's entries carry a
// prefix that routes DeleteKeys.
type Multi struct {
	Remote   StepStore
	Fallback *FileStore // nil: none
}

const fallbackKey = "fallback:"

// Scan implements Store: the remote entries, then the fallback's.
func (m *Multi) Scan(ctx context.Context, fn func(*Entry) error) error {
	return m.ScanKeys(ctx, func(_ string, e *Entry) error { return fn(e) })
}

// ScanKeys implements StepStore.
func (m *Multi) ScanKeys(ctx context.Context, fn func(string, *Entry) error) error {
	if err := m.Remote.ScanKeys(ctx, fn); err != nil {
		return err
	}
	if m.Fallback == nil {
		return nil
	}
	return m.Fallback.ScanKeys(ctx, func(k string, e *Entry) error { return fn(fallbackKey+k, e) })
}

// DeleteKeys implements StepStore.
func (m *Multi) DeleteKeys(ctx context.Context, keys []string) error {
	var remote, local []string
	for _, k := range keys {
		if rest, ok := strings.CutPrefix(k, fallbackKey); ok {
			local = append(local, rest)
		} else {
			remote = append(remote, k)
		}
	}
	var errs []error
	if len(remote) > 0 {
		errs = append(errs, m.Remote.DeleteKeys(ctx, remote))
	}
	if len(local) > 0 && m.Fallback != nil {
		errs = append(errs, m.Fallback.DeleteKeys(ctx, local))
	}
	return errors.Join(errs...)
}

// Get implements Store.
func (m *Multi) Get(ctx context.Context, id string) (*Entry, error) {
	e, err := m.Remote.Get(ctx, id)
	if err == nil || m.Fallback == nil || !errors.Is(err, ErrNotFound) {
		return e, err
	}
	return m.Fallback.Get(ctx, id)
}

// Delete implements Store: from both.
func (m *Multi) Delete(ctx context.Context, ids []string) (int, error) {
	n, err := m.Remote.Delete(ctx, ids)
	if m.Fallback == nil || err != nil {
		return n, err
	}
	k, err := m.Fallback.Delete(ctx, ids)
	return n + k, err
}

// Close implements Store.
func (m *Multi) Close() error {
	err := m.Remote.Close()
	if m.Fallback != nil {
		err = errors.Join(err, m.Fallback.Close())
	}
	return err
}
