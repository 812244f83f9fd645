package dedupe

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Sink makes a sink idempotent: before a write it asks the store which of
// the batch's records the sink took already and leaves those out; after a
// successful write it marks the rest. Keys are namespaced by the sink's
// name, so each sink remembers its own deliveries.
type Sink struct {
	inner pipeline.Sink
	store Store
	ns    string

	Skipped atomic.Int64 // records left out as already delivered
	MarkErr atomic.Int64 // marks that failed after a write (a later re-delivery may then duplicate)
}

// Wrap returns inner made idempotent with store.
func Wrap(inner pipeline.Sink, store Store) *Sink {
	return &Sink{inner: inner, store: store, ns: inner.Name() + "\x00"}
}

// Name implements pipeline.Sink.
func (s *Sink) Name() string { return s.inner.Name() }

// Close implements pipeline.Sink (the store is closed by its owner).
func (s *Sink) Close(ctx context.Context) error { return s.inner.Close(ctx) }

// keyBuf holds a batch's keys.
type keyBuf struct {
	buf  []byte
	keys [][]byte
	idx  []int
	offs []int
}

var keyPool = sync.Pool{New: func() any { return new(keyBuf) }}

// Write implements pipeline.Sink. A store error fails the write (the
// runner retries it): writing without knowing could duplicate.
func (s *Sink) Write(ctx context.Context, b *pipeline.Batch) error {
	kb := keyPool.Get().(*keyBuf)
	defer keyPool.Put(kb)
	kb.buf, kb.keys, kb.idx, kb.offs = kb.buf[:0], kb.keys[:0], kb.idx[:0], kb.offs[:0]
	for i := range b.Records {
		if r := &b.Records[i]; r.Failed() || r.Filtered {
			continue
		}
		kb.offs = append(kb.offs, len(kb.buf))
		kb.buf = append(kb.buf, s.ns...)
		kb.buf = Key(kb.buf, b, i)
		kb.idx = append(kb.idx, i)
	}
	if len(kb.idx) == 0 {
		return nil
	}
	for j, off := range kb.offs {
		end := len(kb.buf)
		if j+1 < len(kb.offs) {
			end = kb.offs[j+1]
		}
		kb.keys = append(kb.keys, kb.buf[off:end])
	}
	seen, err := s.store.Seen(ctx, kb.keys)
	if err != nil {
		return fmt.Errorf("dedupe: %w", err)
	}
	dup := 0
	for _, v := range seen {
		if v {
			dup++
		}
	}
	target := b
	if dup > 0 {
		target = s.without(b, kb.idx, seen)
		s.Skipped.Add(int64(dup))
	}
	if dup < len(seen) {
		if err := s.inner.Write(ctx, target); err != nil {
			return err
		}
	}
	fresh := kb.keys[:0:0]
	for j, k := range kb.keys {
		if !seen[j] {
			fresh = append(fresh, k)
		}
	}
	if len(fresh) > 0 {
		if err := s.store.Mark(ctx, fresh); err != nil {
			s.MarkErr.Add(1)
		}
	}
	return nil
}

// without returns a view of b in which the records already delivered are
// filtered (a copy of the records; the bytes are shared, read-only). Only
// on a re-delivery: the happy path never copies.
func (s *Sink) without(b *pipeline.Batch, idx []int, seen []bool) *pipeline.Batch {
	v := &pipeline.Batch{Source: b.Source, Buf: b.Buf, Units: b.Units, Arena: b.Arena, Attrs: b.Attrs}
	v.Records = append([]pipeline.Record(nil), b.Records...)
	for j, i := range idx {
		if seen[j] {
			v.Records[i].Filtered = true
		}
	}
	return v
}
