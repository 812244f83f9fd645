package pipeline

import (
	"context"
	"fmt"
	"sync"
)

// Acker is told when a batch is durable: every sink flushed what it took of
// the batch and the DLQ synced the batch's entries. A source sets
// Batch.Acker (and Batch.Seq) on each batch it sends; the runner calls Ack
// once per batch, after the flush barrier that covered it, from its
// barrier goroutine. Batches are acked in any order; an AckTracker turns
// that into a committable position.
type Acker interface {
	Ack(seq uint64)
}

// AckTracker is the ordered acknowledgement of one position stream (a
// file, a Kafka partition, a Redis stream): batches are issued in order,
// 1, 2, 3..., each with the position just after its last unit, and acked
// in any order; Acked returns the position of the highest batch whose
// predecessors are all acked too, the only one that may be committed. A
// gap holds everything after it. Safe for concurrent use; Issue and Ack
// allocate nothing in steady state.
type AckTracker[P any] struct {
	mu      sync.Mutex
	done    uint64 // highest contiguous acked seq
	pos     P      // its position
	issued  uint64 // highest issued seq
	pending []ackSlot[P]
	head    int // pending[head] is seq done+1
	waiters []chan struct{}
}

type ackSlot[P any] struct {
	pos   P
	acked bool
}

// NewAckTracker returns a tracker whose committed position starts at
// start, as if batch 0 had ended there.
func NewAckTracker[P any](start P) *AckTracker[P] {
	return &AckTracker[P]{pos: start}
}

// Issue records that batch seq ends at pos. Seqs must be issued in order
// with no gap (1, 2, 3...); anything else is a bug in the source and
// panics.
func (t *AckTracker[P]) Issue(seq uint64, pos P) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq != t.issued+1 {
		panic(fmt.Sprintf("pipeline: ack tracker: batch %d issued after %d", seq, t.issued))
	}
	t.issued = seq
	if t.head > 0 && t.head == len(t.pending) {
		t.pending, t.head = t.pending[:0], 0
	} else if t.head > 1024 && t.head*2 > len(t.pending) {
		n := copy(t.pending, t.pending[t.head:])
		t.pending, t.head = t.pending[:n], 0
	}
	t.pending = append(t.pending, ackSlot[P]{pos: pos})
}

// Ack marks batch seq durable. An unknown or repeated seq is ignored.
func (t *AckTracker[P]) Ack(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq <= t.done || seq > t.issued {
		return
	}
	t.pending[t.head+int(seq-t.done-1)].acked = true
	for t.head < len(t.pending) && t.pending[t.head].acked {
		t.pos = t.pending[t.head].pos
		t.pending[t.head] = ackSlot[P]{}
		t.head++
		t.done++
	}
	if t.done == t.issued {
		for _, w := range t.waiters {
			close(w)
		}
		t.waiters = t.waiters[:0]
	}
}

// Acked returns the highest seq whose batches are all acked, and the
// position after it: what may be committed.
func (t *AckTracker[P]) Acked() (seq uint64, pos P) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done, t.pos
}

// InFlight returns how many issued batches are not yet acked.
func (t *AckTracker[P]) InFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int(t.issued - t.done)
}

// Wait returns nil once every batch issued so far is acked, or ctx's error.
func (t *AckTracker[P]) Wait(ctx context.Context) error {
	t.mu.Lock()
	if t.done == t.issued {
		t.mu.Unlock()
		return nil
	}
	w := make(chan struct{})
	t.waiters = append(t.waiters, w)
	t.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
