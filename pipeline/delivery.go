package pipeline

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// MaxSinks bounds the sinks of a runner (a batch keeps one error per sink).
const MaxSinks = 8

// SinkDelivery configures how the runner delivers to one sink.
type SinkDelivery struct {
	// Retry, when set, retries failed writes; nil writes once.
	Retry *Retrier
	// Queue bounds the batches waiting for a retry. When it is full, a
	// failed batch's records go to the DLQ at once: a failing sink never
	// holds up the workers, so the other sinks go on.
	Queue int
	// Workers is how many retries of this sink run at once (default 4).
	Workers int
}

// SinkStats counts what the runner did with one sink.
type SinkStats struct {
	Name       string `json:"name"`
	Batches    int64  `json:"batches"`    // batches offered
	Failed     int64  `json:"failed"`     // first attempts that failed
	Recovered  int64  `json:"recovered"`  // of those, delivered by a retry
	GaveUp     int64  `json:"gave_up"`    // batches whose records went to the DLQ
	QueueFull  int64  `json:"queue_full"` // of those, because the retry queue was full
	InFlight   int64  `json:"in_flight"`  // batches waiting for a retry now
	Permanents int64  `json:"permanent"`  // of GaveUp, rejected for good
}

// sinkRunner is one sink with its retry queue and goroutines.
type sinkRunner struct {
	sink  Sink
	index int
	d     SinkDelivery
	queue chan retryJob
	wg    sync.WaitGroup

	batches, failed, recovered, gaveUp, queueFull, inFlight, permanent atomic.Int64
}

type retryJob struct {
	b     *Batch
	first error
	start time.Time
}

// ErrRetryQueueFull is the error of a batch whose sink's retry queue was
// full: its records go to the DLQ as sink_exhausted.
var ErrRetryQueueFull = errors.New("retry queue full: the sink is failing; records go to the DLQ")

func (r *Runner) startSinks() {
	for i, s := range r.o.Sinks {
		var d SinkDelivery
		if i < len(r.o.Delivery) {
			d = r.o.Delivery[i]
		}
		if d.Queue <= 0 {
			d.Queue = 64
		}
		if d.Workers <= 0 {
			d.Workers = 4
		}
		sr := &sinkRunner{sink: s, index: i, d: d}
		if d.Retry != nil {
			sr.queue = make(chan retryJob, d.Queue)
			for range d.Workers {
				sr.wg.Go(func() {
					for j := range sr.queue {
						r.retry(sr, j)
					}
				})
			}
		}
		r.sinks = append(r.sinks, sr)
	}
}

// deliver offers the batch to every sink: the first attempt runs here, on
// the worker; a failed one goes to the sink's retry queue (the batch is
// then held until the retry ends) or, when that is full, to the DLQ.
func (r *Runner) deliver(ctx context.Context, b *Batch) {
	deliverable := false
	for i := range b.Records {
		if rec := &b.Records[i]; !rec.Failed() && !rec.Filtered {
			deliverable = true
			break
		}
	}
	if !deliverable {
		return
	}
	for _, sr := range r.sinks {
		if b.SinkMask != 0 && b.SinkMask&(1<<sr.index) == 0 {
			continue
		}
		sr.batches.Add(1)
		var err error
		var start time.Time
		if sr.d.Retry != nil {
			start = time.Now()
			err = sr.d.Retry.Attempt(ctx, sr.writer(r, b))
		} else {
			err = r.write(ctx, sr.sink, b)
		}
		if err == nil {
			continue
		}
		sr.failed.Add(1)
		if sr.queue != nil && !errors.Is(err, ErrPermanent) && !errors.Is(err, ErrBreakerOpen) {
			b.pending.Add(1)
			select {
			case sr.queue <- retryJob{b: b, first: err, start: start}:
				sr.inFlight.Add(1)
				continue
			default:
				b.pending.Add(-1)
				sr.queueFull.Add(1)
				err = fmt.Errorf("%w (after: %w)", ErrRetryQueueFull, err)
			}
		}
		r.gaveUp(sr, b, err)
	}
}

// retry runs on the sink's goroutines: the rest of the policy, then the
// batch is released (finalized when no other sink still holds it).
func (r *Runner) retry(sr *sinkRunner, j retryJob) {
	ctx := context.Background()
	err := sr.d.Retry.Resume(ctx, sr.writer(r, j.b), j.first, j.start)
	sr.inFlight.Add(-1)
	if err == nil {
		sr.recovered.Add(1)
	} else {
		r.gaveUp(sr, j.b, err)
	}
	r.release(ctx, j.b)
}

func (r *Runner) gaveUp(sr *sinkRunner, b *Batch, err error) {
	sr.gaveUp.Add(1)
	if permanent(err) {
		sr.permanent.Add(1)
	}
	b.sinkErr[sr.index] = err
}

// permanent reports whether a sink error means the sink rejected the
// records for good (sink_permanent) rather than could not take them in
// time (sink_exhausted). A retrier's verdict decides when there is one:
// config may retry an error a sink called permanent.
func permanent(err error) bool {
	var g *GiveUpError
	if errors.As(err, &g) {
		return g.Reason == ReasonPermanent
	}
	return errors.Is(err, ErrPermanent)
}

// writer returns the write of b to the sink as an operation for the
// retrier. The closure lives in the batch (made once per pooled batch and
// sink slot, then reused), so delivering allocates nothing per batch.
func (sr *sinkRunner) writer(r *Runner, b *Batch) func(context.Context) error {
	w := &b.writes[sr.index]
	w.r, w.s = r, sr.sink
	if w.op == nil {
		w.op = func(ctx context.Context) error { return w.r.write(ctx, w.s, b) }
	}
	return w.op
}

// sinkWrite is a batch's write to one sink, as the retrier runs it.
type sinkWrite struct {
	r  *Runner
	s  Sink
	op func(context.Context) error
}

// write calls one sink, turning a panic into an error for the batch.
func (r *Runner) write(ctx context.Context, s Sink, b *Batch) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sink %s panicked: %v\n%s", s.Name(), p, debug.Stack())
		}
	}()
	return s.Write(ctx, b)
}

// markSinkFailures turns the sinks' final errors into record failures:
// a record any sink could not take goes to the DLQ (naming the first such
// sink), after every sink was offered it.
func (r *Runner) markSinkFailures(b *Batch) {
	for k, err := range b.sinkErr[:len(r.sinks)] {
		if err == nil {
			continue
		}
		class, code := ClassSinkExhausted, errorCode(err)
		if permanent(err) {
			class = ClassSinkPermanent
		}
		name := r.sinks[k].sink.Name()
		for i := range b.Records {
			rec := &b.Records[i]
			if !rec.Failed() && !rec.Filtered {
				rec.Failure = Failure{Stage: "sink", Component: name, Class: class, Code: code, Message: err.Error()}
			}
		}
	}
}

// errorCode names a sink error for DLQ entries: why the runner gave up
// when that is not the error itself, else the error's code.
func errorCode(err error) string {
	var g *GiveUpError
	switch {
	case errors.Is(err, ErrRetryQueueFull):
		return "queue_full"
	case errors.Is(err, ErrBreakerOpen):
		return "breaker_open"
	case errors.As(err, &g) && g.Reason == ReasonBudget:
		return "retry_budget"
	}
	if c := ErrorCode(err); c != "error" {
		return c
	}
	return "write"
}

// SinkStats returns the delivery counters of every sink.
func (r *Runner) SinkStats() []SinkStats {
	out := make([]SinkStats, 0, len(r.sinks))
	for _, sr := range r.sinks {
		out = append(out, SinkStats{
			Name: sr.sink.Name(), Batches: sr.batches.Load(), Failed: sr.failed.Load(),
			Recovered: sr.recovered.Load(), GaveUp: sr.gaveUp.Load(), QueueFull: sr.queueFull.Load(),
			InFlight: sr.inFlight.Load(), Permanents: sr.permanent.Load(),
		})
	}
	return out
}

// Close waits for every retry in flight to end (each batch then finalized:
// delivered or in the DLQ) and stops the sinks' retry goroutines. Call it
// after the last Handle.
func (r *Runner) Close() {
	r.closeOnce.Do(func() {
		for _, sr := range r.sinks {
			if sr.queue != nil {
				close(sr.queue)
			}
		}
		for _, sr := range r.sinks {
			sr.wg.Wait()
		}
	})
}
