package pipeline

import (
	"sync"
	"sync/atomic"
)

// WindowAcker is an Acker that keeps a second position per stream, for the
// window stage: Ack(seq) says batch seq is durable in the sinks and the DLQ
// (the delivered position), WindowAck(seq) that moreover every record of
// it a window counted is in a window row the windows store has made
// durable (the windowed position). A source that implements it restarts
// from its windowed position and marks the batches that lie wholly before
// its delivered position WindowsOnly: re-reading them rebuilds the window
// counts that died with the process (HLL is idempotent, so counting a
// record twice is harmless) without delivering anything twice.
//
// The runner calls WindowAck(seq) once per batch, always after Ack(seq),
// and never for a batch with a lost record (one it does not Ack either).
// When no stage holds the batch (see Batch.HoldWindowAck: no window stage
// is configured, or the batch counted nothing into a window) it is called
// right after Ack, by the barrier. When a stage holds it, it is called by
// whichever comes last of the runner's Ack and the stage's Release: from
// the barrier goroutine or from the stage's own (the window closer), in any
// order across batches. So the windowed position of a stream never passes
// its delivered one.
type WindowAcker interface {
	Acker
	WindowAck(seq uint64)
}

// WindowHold is a batch's WindowAck waiting for two things: the runner's
// Ack (the batch is durable in the sinks and the DLQ) and the release of
// every stage that holds it (the window stage: its rows are durable). The
// last of them calls WindowAck, unless one of them dropped the hold (a
// record the DLQ refused; rows the windows store refused): then it is never
// called. A hold outlives its batch; holds are pooled and must not be used
// after their last share is released.
type WindowHold struct {
	a    WindowAcker
	seq  uint64
	refs atomic.Int32 // shares not yet released: the runner's and each holder's
	lost atomic.Bool
}

var holdPool = sync.Pool{New: func() any { return new(WindowHold) }}

// HoldWindowAck is called by a stage (the window stage, from Process) that
// must see something durable of its own before the batch may be
// window-acked. It returns a share of the batch's hold, which the stage
// must Release (or Drop) exactly once, or nil when b.Acker is not a
// WindowAcker (there is nothing to hold, and nothing to release). A batch
// no stage holds is window-acked by the runner right after its Ack.
//
// The runner owns one share of every hold and releases it when it acks
// the batch, so a held batch must go through Runner.Handle. Allocates
// nothing in steady state (holds are pooled).
func (b *Batch) HoldWindowAck() *WindowHold {
	wa, ok := b.Acker.(WindowAcker)
	if !ok {
		return nil
	}
	if b.wh == nil {
		h := holdPool.Get().(*WindowHold)
		h.a, h.seq = wa, b.Seq
		h.refs.Store(1) // the runner's
		b.wh = h
	}
	b.wh.refs.Add(1)
	return b.wh
}

// Release gives back one share of the hold: what its holder waited for is
// durable. The last share released calls WindowAck, unless the hold was
// dropped.
func (h *WindowHold) Release() { h.done(false) }

// Drop gives back one share and says what it waited for will never be
// durable (the batch's window rows were refused, or a record of the batch
// was lost): WindowAck is never called for this batch, so its source does
// not move its windowed position past it (a restart re-reads it).
func (h *WindowHold) Drop() { h.done(true) }

func (h *WindowHold) done(lost bool) {
	if lost {
		h.lost.Store(true)
	}
	if n := h.refs.Add(-1); n > 0 {
		return
	} else if n < 0 {
		panic("pipeline: WindowHold released more often than it was held")
	}
	if !h.lost.Load() {
		h.a.WindowAck(h.seq)
	}
	h.a, h.seq = nil, 0
	h.lost.Store(false)
	holdPool.Put(h)
}

// windowAck finishes the runner's part of a batch's window ack, after its
// Ack: it releases the runner's share of the batch's hold, or, when no
// stage held the batch, window-acks it at once.
func windowAck(a Acker, seq uint64, h *WindowHold) {
	if h != nil {
		h.Release()
		return
	}
	if wa, ok := a.(WindowAcker); ok {
		wa.WindowAck(seq)
	}
}
