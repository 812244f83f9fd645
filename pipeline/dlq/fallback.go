package dlq

import (
	"context"
	"sync"
	"sync/atomic"
)

// Fallback is the local DLQ (the file backend) a Remote hands entries to
// while its server cannot take them, so nothing is lost. It counts what it
// took, says when it is full (so input stops, as with the file DLQ alone),
// and adds its counts to the Remote's Stats. The Remote owns it and closes
// it.
type Fallback struct {
	b     Backend // nil: no fallback
	n     atomic.Int64
	once  sync.Once
	first chan struct{} // closed at the first entry taken
	full  chan struct{}
}

// NewFallback wraps b (nil for none); done is closed when the Remote's
// writer has finished.
func NewFallback(b Backend, done <-chan struct{}) *Fallback {
	f := &Fallback{b: b, first: make(chan struct{}), full: make(chan struct{})}
	if b != nil {
		go f.watch(done)
	}
	return f
}

// watch closes full once entries went to the fallback and it is full.
func (f *Fallback) watch(done <-chan struct{}) {
	select {
	case <-f.first:
	case <-done:
		return
	}
	select {
	case <-f.b.Full():
		close(f.full)
	case <-done:
	}
}

// Exists reports whether there is a fallback.
func (f *Fallback) Exists() bool { return f.b != nil }

// Put hands e over; it blocks while the fallback's queue is full, so
// backpressure reaches the Remote's Put.
func (f *Fallback) Put(e *Entry) error {
	if err := f.b.Put(context.Background(), e); err != nil {
		return err
	}
	f.n.Add(1)
	f.once.Do(func() { close(f.first) })
	return nil
}

// Sync makes what the fallback took durable (a no-op when it took
// nothing).
func (f *Fallback) Sync(ctx context.Context) error {
	if f.b == nil || f.n.Load() == 0 {
		return nil
	}
	if s, ok := f.b.(interface{ Sync(context.Context) error }); ok {
		return s.Sync(ctx)
	}
	return nil
}

// Taken is how many entries went to the fallback.
func (f *Fallback) Taken() int64 { return f.n.Load() }

// Full is closed when entries went to the fallback and it reached its cap.
func (f *Fallback) Full() <-chan struct{} { return f.full }

// AddStats returns st with the fallback's counts added.
func (f *Fallback) AddStats(st Stats) Stats {
	if f.b == nil {
		return st
	}
	fs := f.b.Stats()
	for class, n := range fs.Written {
		st.Written[class] += n
	}
	for k, n := range fs.ByKey {
		st.countKey(k, n)
	}
	st.Total += fs.Total
	st.Failed += fs.Failed
	st.Evicted += fs.Evicted
	st.EvictedSegments += fs.EvictedSegments
	st.Bytes += fs.Bytes
	return st
}

// Close closes the fallback, if any.
func (f *Fallback) Close() error {
	if f.b == nil {
		return nil
	}
	return f.b.Close(context.Background())
}
