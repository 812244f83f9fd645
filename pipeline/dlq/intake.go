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
}

// NewIntake returns an intake holding up to size entries.
func NewIntake(size int) *Intake { return &Intake{C: make(chan *Entry, size)} }

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
		return nil
	default:
	}
	select {
	case q.C <- e:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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
