// Package dedupe remembers which records a sink has taken, so that a
// record replayed from the DLQ or re-delivered after a crash is written
// once. Keys are a record's trace id + span id, else a hash of its payload
// (Key). Two stores satisfy Store: Memory (bounded, embedded, optionally
// persisted to a file) and the Redis one in sinks/redis (SET NX EX).
package dedupe

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	metro "github.com/dgryski/go-metro"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Store says which keys were delivered before (Seen) and records new
// deliveries (Mark). Marking comes after a successful write: a crash
// between the two re-delivers (at least once), never loses.
type Store interface {
	Seen(ctx context.Context, keys [][]byte) ([]bool, error)
	Mark(ctx context.Context, keys [][]byte) error
}

// Key appends the dedupe key of record i of b to dst: "t:" trace id ":"
// span id when both are known, else "p:" and the sha256 of the record's
// payload (its unit, or its own bytes).
func Key(dst []byte, b *pipeline.Batch, i int) []byte {
	r := &b.Records[i]
	if len(r.TraceID) > 0 && len(r.SpanID) > 0 {
		return idKey(dst, r.TraceID, r.SpanID)
	}
	sum := sha256.Sum256(b.Payload(i))
	dst = append(dst, "p:"...)
	return append(dst, sum[:]...)
}

// IDKey appends the key Key gives a record with these trace and span ids
// (both non-empty) to dst: for marking records known to be delivered from
// outside a batch (the file sink's recovered files).
func IDKey(dst []byte, traceID, spanID string) []byte { return idKey(dst, traceID, spanID) }

func idKey[T ~string | ~[]byte](dst []byte, traceID, spanID T) []byte {
	dst = append(dst, "t:"...)
	dst = append(dst, traceID...)
	dst = append(dst, ':')
	return append(dst, spanID...)
}

// Memory is a bounded embedded store: at most MaxKeys keys, each kept for
// TTL; past MaxKeys the oldest marks are forgotten first (a record
// re-delivered after that may be written again: counted in Evicted). With
// a path, marks are appended to a file and reloaded at open, so they
// survive a restart; the file is rewritten when it holds twice the live
// keys.
type Memory struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	keys    map[[16]byte]int64 // key digest -> expiry (unix ns)
	order   []entry            // marks in time order (a ring over the slice)
	head    int
	now     func() time.Time
	f       *os.File
	w       *bufio.Writer
	path    string
	logged  int
	evicted int64
}

type entry struct {
	k   [16]byte
	exp int64
}

// recordSize is one persisted mark: digest and expiry.
const recordSize = 16 + 8

// NewMemory opens a store keeping up to maxKeys keys for ttl; path "" keeps
// them in memory only.
func NewMemory(path string, ttl time.Duration, maxKeys int) (*Memory, error) {
	return newMemory(path, ttl, maxKeys, time.Now)
}

func newMemory(path string, ttl time.Duration, maxKeys int, now func() time.Time) (*Memory, error) {
	if ttl <= 0 || maxKeys <= 0 {
		return nil, fmt.Errorf("dedupe: ttl and max keys must be positive")
	}
	m := &Memory{ttl: ttl, max: maxKeys, keys: map[[16]byte]int64{}, now: now, path: path}
	if path == "" {
		return m, nil
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	if err := m.rewrite(); err != nil {
		return nil, err
	}
	return m, nil
}

// digest is the 128-bit key a store keeps for k (MetroHash128: keys are
// not secret and need no cryptographic hash, only few collisions; sha256
// cost a third of a replay's throughput).
func digest(k []byte) [16]byte {
	a, b := metro.Hash128(k, digestSeed)
	var d [16]byte
	binary.LittleEndian.PutUint64(d[:8], a)
	binary.LittleEndian.PutUint64(d[8:], b)
	return d
}

// digestSeed is fixed: digests are persisted (Memory's file).
const digestSeed = 0x7472616365706970

// Seen implements Store.
func (m *Memory) Seen(_ context.Context, keys [][]byte) ([]bool, error) {
	now := m.now().UnixNano()
	out := make([]bool, len(keys))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, k := range keys {
		exp, ok := m.keys[digest(k)]
		out[i] = ok && exp > now
	}
	return out, nil
}

// Mark implements Store.
func (m *Memory) Mark(_ context.Context, keys [][]byte) error {
	exp := m.now().Add(m.ttl).UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		m.add(digest(k), exp)
		if m.w != nil {
			var rec [recordSize]byte
			d := digest(k)
			copy(rec[:16], d[:])
			binary.LittleEndian.PutUint64(rec[16:], uint64(exp))
			if _, err := m.w.Write(rec[:]); err != nil {
				return fmt.Errorf("dedupe: %s: %w", m.path, err)
			}
			m.logged++
		}
	}
	if m.w != nil {
		if err := m.w.Flush(); err != nil {
			return fmt.Errorf("dedupe: %s: %w", m.path, err)
		}
		if m.logged > 2*len(m.keys)+1024 {
			return m.rewrite()
		}
	}
	return nil
}

// add records a mark, forgetting the oldest past the bound. Locked.
func (m *Memory) add(d [16]byte, exp int64) {
	if len(m.order) < m.max {
		m.order = append(m.order, entry{d, exp})
	} else {
		old := m.order[m.head]
		if m.keys[old.k] == old.exp { // not re-marked since
			delete(m.keys, old.k)
			if old.exp > m.now().UnixNano() {
				m.evicted++
			}
		}
		m.order[m.head] = entry{d, exp}
		m.head = (m.head + 1) % m.max
	}
	m.keys[d] = exp
}

// Evicted counts live keys forgotten because of the bound.
func (m *Memory) Evicted() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.evicted
}

// Len is the number of keys held.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}

func (m *Memory) load() error {
	f, err := os.Open(m.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dedupe: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	now := m.now().UnixNano()
	var rec [recordSize]byte
	for {
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF { // a torn last record is dropped
				return nil
			}
			return fmt.Errorf("dedupe: read %s: %w", m.path, err)
		}
		var d [16]byte
		copy(d[:], rec[:16])
		if exp := int64(binary.LittleEndian.Uint64(rec[16:])); exp > now {
			m.add(d, exp)
		}
	}
}

// rewrite writes the live keys to a new file and switches to it. Locked
// (or at open).
func (m *Memory) rewrite() error {
	tmp := m.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("dedupe: %w", err)
	}
	w := bufio.NewWriter(f)
	now := m.now().UnixNano()
	n := 0
	for i := range m.order {
		e := m.order[(m.head+i)%len(m.order)]
		if m.keys[e.k] != e.exp || e.exp <= now {
			continue
		}
		var rec [recordSize]byte
		copy(rec[:16], e.k[:])
		binary.LittleEndian.PutUint64(rec[16:], uint64(e.exp))
		if _, err := w.Write(rec[:]); err != nil {
			f.Close()
			return fmt.Errorf("dedupe: %w", err)
		}
		n++
	}
	if err := w.Flush(); err == nil {
		err = f.Sync()
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("dedupe: %w", err)
	}
	if err := os.Rename(tmp, m.path); err != nil {
		return fmt.Errorf("dedupe: %w", err)
	}
	if m.f != nil {
		m.f.Close()
	}
	m.f, err = os.OpenFile(m.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("dedupe: %w", err)
	}
	m.w = bufio.NewWriter(m.f)
	m.logged = n
	return nil
}

// Sync makes the marks so far durable (fsync of the file; marks reach the
// OS at every Mark already, so a killed process keeps them).
func (m *Memory) Sync(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return nil
	}
	if err := m.w.Flush(); err != nil {
		return fmt.Errorf("dedupe: %s: %w", m.path, err)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("dedupe: %s: %w", m.path, err)
	}
	return nil
}

// Close syncs and closes the file.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return nil
	}
	err := m.w.Flush()
	if serr := m.f.Sync(); err == nil {
		err = serr
	}
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	m.f, m.w = nil, nil
	return err
}

var _ Store = (*Memory)(nil)
