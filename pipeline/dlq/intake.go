package dlq

import (
	"context"
	"sync"
	"sync/atomic"
)

// Intake is the bounded queue between a backend's Put and its writer
// goroutine, with the ordering every backend needs at Close: a Put
// registers under a read lock unless closed, so Close can wait for every
// Put that got in before it closes C, and the writer, ranging over C,
// drains exactly what Put accepted.
type Intake struct {
	C chan *Entry

	mu       sync.RWMutex
	closed   bool
	isClosed atomic.Bool
	inflight sync.WaitGroup
	once     sync.Once

	accepted atomic.Int64 // entries Put queued
	doneMu   sync.Mutex
	done     int64         // entries the writer finished with (Done)
	doneWake chan struct{} // closed and replaced at each Done
}

// NewIntake returns an intake holding up to size entries.
func NewIntake(size int) *Intake {
	return &Intake{C: make(chan *Entry, size), doneWake: make(chan struct{})}
}

// Closed reports whether Close was called: a cheap check before work.
func (q *Intake) Closed() bool { return q.isClosed.Load() }

// Put queues e: at once when there is room, else it blocks until there is
// (nil) or ctx is done (ctx.Err(), e not taken). After Close it returns
// ErrClosed.
func (q *Intake) Put(ctx context.Context, e *Entry) error {
	q.mu.RLock()
	if q.closed {
		q.mu.RUnlock()
		return ErrClosed
	}
	q.inflight.Add(1)
	q.mu.RUnlock()
	defer q.inflight.Done()
	select {
	case q.C <- e:
		q.accepted.Add(1)
		return nil
	default:
	}
	select {
	case q.C <- e:
		q.accepted.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is called by the writer when it has finished with n entries taken
// from C: stored, handed to the fallback, or counted as failed.
func (q *Intake) Done(n int) {
	q.doneMu.Lock()
	q.done += int64(n)
	close(q.doneWake)
	q.doneWake = make(chan struct{})
	q.doneMu.Unlock()
}

// Sync waits until the writer is done with every entry Put accepted
// before the call, or ctx ends. Entries are taken in order, so a count
// is enough.
func (q *Intake) Sync(ctx context.Context) error {
	target := q.accepted.Load()
	for {
		q.doneMu.Lock()
		done, wake := q.done, q.doneWake
		q.doneMu.Unlock()
		if done >= target {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close refuses further Puts and closes C once every Put that got in has
// queued its entry. It does not wait; it may be called more than once.
func (q *Intake) Close() {
	q.once.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.isClosed.Store(true)
		q.mu.Unlock()
		go func() {
			q.inflight.Wait()
			close(q.C)
		}()
	})
}
