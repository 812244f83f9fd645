package dedupe

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	return &Sink{inner: inner, store: store, ns: inner.Name() + "\x00"} // the namespace MarkTaken uses too
}

// MarkTaken records in store that the sink named sink holds records with
// these ids, taken outside Write: what a dead process wrote but had not
// marked (its file sink's recovered files). Records without both ids
// cannot be marked this way (their key is their input's hash).
func MarkTaken(ctx context.Context, store Store, sink string, ids [][2]string) error {
	keys := make([][]byte, 0, len(ids))
	for _, id := range ids {
		if id[0] == "" || id[1] == "" {
			continue
		}
		keys = append(keys, IDKey([]byte(sink+"\x00"), id[0], id[1]))
	}
	if len(keys) == 0 {
		return nil
	}
	return store.Mark(ctx, keys)
}

// Inner returns the wrapped sink.
func (s *Sink) Inner() pipeline.Sink { return s.inner }

// Name implements pipeline.Sink.
func (s *Sink) Name() string { return s.inner.Name() }

// Close implements pipeline.Sink (the store is closed by its owner).
func (s *Sink) Close(ctx context.Context) error { return s.inner.Close(ctx) }

// Flush implements pipeline.Sink: the sink's records first, then the
// marks of those records, so a mark is never durable before its record
// (a crash in between re-delivers, it never skips).
func (s *Sink) Flush(ctx context.Context) error {
	if err := s.inner.Flush(ctx); err != nil {
		return err
	}
	if f, ok := s.store.(interface{ Sync(context.Context) error }); ok {
		if err := f.Sync(ctx); err != nil {
			return fmt.Errorf("dedupe: %w", err)
		}
	}
	return nil
}

// keyBuf holds a batch's keys.
type keyBuf struct {
	buf   []byte
	keys  [][]byte
	offs  []int
	fresh []int32
	marks [][]byte
}

var keyPool = sync.Pool{New: func() any { return new(keyBuf) }}

// Write implements pipeline.Sink: the records the sink took already are
// left out of recs; the rest are written, and those the inner sink took
// are marked. A store error fails the write (the runner retries it):
// writing without knowing could duplicate.
func (s *Sink) Write(ctx context.Context, b *pipeline.Batch, recs []int32) error {
	if len(recs) == 0 {
		return nil
	}
	kb := keyPool.Get().(*keyBuf)
	defer keyPool.Put(kb)
	kb.buf, kb.keys, kb.offs = kb.buf[:0], kb.keys[:0], kb.offs[:0]
	for _, i := range recs {
		kb.offs = append(kb.offs, len(kb.buf))
		kb.buf = append(kb.buf, s.ns...)
		kb.buf = Key(kb.buf, b, int(i))
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
	kb.fresh = kb.fresh[:0]
	for j, i := range recs {
		if !seen[j] {
			kb.fresh = append(kb.fresh, i)
		}
	}
	if dup := len(recs) - len(kb.fresh); dup > 0 {
		s.Skipped.Add(int64(dup))
	}
	if len(kb.fresh) == 0 {
		return nil
	}
	werr := s.inner.Write(ctx, b, kb.fresh)
	var failed []int32 // of fresh, those the inner sink did not take
	if werr != nil {
		var pe *pipeline.PartialError
		if !errors.As(werr, &pe) {
			return werr
		}
		// kb goes back to the pool when Write returns: the list must not
		// share its memory.
		pe.Failed = slices.Clone(pe.Failed)
		failed = pe.Failed
	}
	kb.marks = kb.marks[:0]
	for j, i := range recs {
		if _, notTaken := slices.BinarySearch(failed, i); !seen[j] && !notTaken {
			kb.marks = append(kb.marks, kb.keys[j])
		}
	}
	if len(kb.marks) > 0 {
		if err := s.store.Mark(ctx, kb.marks); err != nil {
			s.MarkErr.Add(1)
		}
	}
	return werr
}
