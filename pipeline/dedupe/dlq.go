package dedupe

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/tracepipe/tracepipe/pipeline"
)

// DeadLetters makes the DLQ idempotent for records read from a position
// in an input, so that a source that reads again what it had read before a
// crash (its checkpoint lags what it delivered by up to checkpoint_every)
// does not dead-letter the same bad line twice. The key is where the
// record was read: the origin (its Key, else its path), the unit's offset
// and the record's place among its unit's records; an entry refused as
// already there returns pipeline.ErrAlreadyInDLQ (the runner counts the
// record as in the DLQ, which it is).
//
// Records of a DLQ replay (origin kind "dlq") and entries that stand for
// no input record (window rows) pass through: a replayed record that fails
// again must make a new entry.
//
// A key is marked only after the DLQ synced its entry (Sync), so a mark is
// never durable before the entry it stands for: a crash in between makes a
// second entry, never none.
type DeadLetters struct {
	inner pipeline.DeadLetters
	store Store

	mu      sync.Mutex
	pending [][]byte // keys of entries queued since the last Sync

	Skipped atomic.Int64 // entries left out as already in the DLQ
}

// WrapDLQ returns inner made idempotent with store.
func WrapDLQ(inner pipeline.DeadLetters, store Store) *DeadLetters {
	return &DeadLetters{inner: inner, store: store}
}

// recordKey returns the key of record i of b, nil when it has none.
func recordKey(b *pipeline.Batch, i int) []byte {
	o := b.Origin
	if o == nil || o.Kind == "dlq" {
		return nil
	}
	r := &b.Records[i]
	ordinal := 0
	for j := i - 1; j >= 0 && b.Records[j].Unit == r.Unit; j-- {
		ordinal++
	}
	id := o.Key
	if id == "" {
		id = o.Path
	}
	if k := b.UnitKey(int(r.Unit)); o.Kind == "redis" && k != nil {
		id += "\x00" + string(k) // a stream entry is its id, not an offset
	}
	return DLQKey(id, b.Units[r.Unit].Offset, ordinal)
}

// DLQKey is the key of the entry for the ordinal-th failed record of the
// unit at offset in the input known as input (its origin key, else its
// path).
func DLQKey(input string, offset int64, ordinal int) []byte {
	k := make([]byte, 0, 8+len(input)+24)
	k = append(k, "dlq\x00"...)
	k = append(k, input...)
	k = append(k, 0)
	k = strconv.AppendInt(k, offset, 10)
	k = append(k, ':')
	return strconv.AppendInt(k, int64(ordinal), 10)
}

// DLQSourceKey is the key of the entry for an input that failed as a
// whole.
func DLQSourceKey(f pipeline.SourceFailure) []byte {
	return []byte("dlqsrc\x00" + f.Kind + "\x00" + f.Path + "\x00" + f.Code)
}

// MarkStored marks keys of entries the DLQ holds already, found outside
// Put: what a process that died had written but not marked (it marks
// after a sync). Read again after the restart, their lines are then not
// dead-lettered twice.
func (d *DeadLetters) MarkStored(ctx context.Context, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	if err := d.store.Mark(ctx, keys); err != nil {
		return fmt.Errorf("dedupe: dlq marks: %w", err)
	}
	return nil
}

// PutRecord implements pipeline.DeadLetters.
func (d *DeadLetters) PutRecord(ctx context.Context, b *pipeline.Batch, i int, lacking []string) error {
	k := recordKey(b, i)
	if k == nil {
		return d.inner.PutRecord(ctx, b, i, lacking)
	}
	return d.put(ctx, k, func() error { return d.inner.PutRecord(ctx, b, i, lacking) })
}

// PutSource implements pipeline.DeadLetters: a file that fails the same
// way at every start is one entry.
func (d *DeadLetters) PutSource(ctx context.Context, f pipeline.SourceFailure) error {
	return d.put(ctx, DLQSourceKey(f), func() error { return d.inner.PutSource(ctx, f) })
}

func (d *DeadLetters) put(ctx context.Context, k []byte, put func() error) error {
	seen, err := d.store.Seen(ctx, [][]byte{k})
	if err != nil {
		// Not knowing, the entry is made: a duplicate beats a loss.
		return put()
	}
	if seen[0] {
		d.Skipped.Add(1)
		return pipeline.ErrAlreadyInDLQ
	}
	if err := put(); err != nil {
		return err
	}
	d.mu.Lock()
	d.pending = append(d.pending, k)
	d.mu.Unlock()
	return nil
}

// PutOther implements pipeline.DeadLetters (never deduplicated).
func (d *DeadLetters) PutOther(ctx context.Context, o pipeline.OtherFailure) error {
	return d.inner.PutOther(ctx, o)
}

// Sync implements pipeline.DeadLetters: the DLQ syncs, then the keys of
// the entries it holds now are marked and the marks synced.
func (d *DeadLetters) Sync(ctx context.Context) error {
	d.mu.Lock()
	keys := d.pending
	d.pending = nil
	d.mu.Unlock()
	if err := d.inner.Sync(ctx); err != nil {
		d.requeue(keys)
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	if err := d.store.Mark(ctx, keys); err != nil {
		d.requeue(keys)
		return fmt.Errorf("dedupe: dlq marks: %w", err)
	}
	if s, ok := d.store.(interface{ Sync(context.Context) error }); ok {
		if err := s.Sync(ctx); err != nil {
			return fmt.Errorf("dedupe: dlq marks: %w", err)
		}
	}
	return nil
}

func (d *DeadLetters) requeue(keys [][]byte) {
	d.mu.Lock()
	d.pending = append(keys, d.pending...)
	d.mu.Unlock()
}
