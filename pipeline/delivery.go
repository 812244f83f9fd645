package pipeline

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MaxSinks bounds the sinks of a runner (a batch keeps one error and one
// list of records to deliver per sink).
const MaxSinks = 8

// SinkDelivery configures how the runner delivers to one sink.
type SinkDelivery struct {
	// Retry, when set, retries failed writes; nil writes once.
	Retry *Retrier
	// Queue bounds the batches waiting for a retry. When it is full the
	// worker waits for room (backpressure), at most until the batch's
	// retry policy would give up (MaxElapsed after its first attempt);
	// then its records go to the DLQ (queue_full).
	Queue int
	// Workers is how many retries of this sink run at once (default 4).
	Workers int
}

// SinkStats counts what the runner did with one sink.
type SinkStats struct {
	Name       string `json:"name"`
	Batches    int64  `json:"batches"`    // batches offered
	Records    int64  `json:"records"`    // records the sink took
	Failed     int64  `json:"failed"`     // first attempts that failed (wholly or in part)
	Partial    int64  `json:"partial"`    // writes that took some of their records but not all
	Recovered  int64  `json:"recovered"`  // of Failed, delivered by a retry
	GaveUp     int64  `json:"gave_up"`    // batches with records that went to the DLQ for this sink
	QueueFull  int64  `json:"queue_full"` // of those, because the retry queue stayed full
	Waited     int64  `json:"waited"`     // batches a worker had to wait to queue for a retry (backpressure)
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
	// The keys of its failures in the runner's rate-limited log, built
	// once: a failing sink fails every batch.
	failedKey, gaveUpKey string

	batches, records, failed, partial, recovered, gaveUp, queueFull, waited, inFlight, permanent atomic.Int64
}

type retryJob struct {
	b     *Batch
	first error
	start time.Time
}

// ErrRetryQueueFull is the error of a batch whose sink's retry queue stayed
// full for as long as its retry policy allows: its records go to the DLQ
// as sink_exhausted.
var ErrRetryQueueFull = errors.New("retry queue full for longer than max_elapsed: the sink is failing; records go to the DLQ")

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
		sr := &sinkRunner{sink: s, index: i, d: d, failedKey: "sink_failed/" + s.Name(), gaveUpKey: "sink_gave_up/" + s.Name()}
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

// deliver offers the batch to every sink it is for: the first attempt runs
// here, on the worker; a failed one goes to the sink's retry queue (the
// batch is then held until the retry ends; a full queue makes the worker
// wait, within the retry policy's time), unless it failed for good.
func (r *Runner) deliver(ctx context.Context, b *Batch) {
	b.deliverable = appendDeliverable(b.deliverable[:0], b)
	if len(b.deliverable) == 0 {
		return
	}
	for _, sr := range r.sinks {
		if b.SinkMask != 0 && b.SinkMask&(1<<sr.index) == 0 {
			continue
		}
		b.todo[sr.index] = append(b.todo[sr.index][:0], b.deliverable...)
		sr.batches.Add(1)
		var err error
		var start time.Time
		if sr.d.Retry != nil {
			start = time.Now()
			err = sr.d.Retry.Attempt(ctx, sr.writer(r, b))
		} else {
			err = r.writeTodo(ctx, sr, b)
		}
		if err == nil {
			continue
		}
		sr.failed.Add(1)
		if sr.queue != nil && !permanent(err) && !sr.d.Retry.GiveUpNow(err) {
			b.pending.Add(1)
			if sr.enqueue(retryJob{b: b, first: err, start: start}) {
				r.log.Warn(sr.failedKey, "sink write failed: the batch is retried",
					append([]any{"sink", sr.sink.Name(), "source", sourcePath(b), "err", CutMessage(err.Error())}, traceID(b)...)...)
				continue
			}
			b.pending.Add(-1)
			sr.queueFull.Add(1)
			err = fmt.Errorf("%w (after: %w)", ErrRetryQueueFull, err)
		}
		r.gaveUp(sr, b, err)
	}
}

// enqueue queues j for a retry, waiting for room while the queue is full
// but no longer than the retry policy would wait for the batch
// (MaxElapsed after its first attempt). false: no room in time.
func (sr *sinkRunner) enqueue(j retryJob) bool {
	select {
	case sr.queue <- j:
		sr.inFlight.Add(1)
		return true
	default:
	}
	sr.waited.Add(1)
	wait := time.Until(j.start.Add(sr.d.Retry.Policy.MaxElapsed))
	if sr.d.Retry.Policy.MaxElapsed <= 0 {
		wait = time.Minute
	}
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case sr.queue <- j:
		sr.inFlight.Add(1)
		return true
	case <-t.C:
		return false
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
	class := ClassSinkExhausted
	if permanent(err) {
		sr.permanent.Add(1)
		class = ClassSinkPermanent
	}
	b.sinkErr[sr.index] = err
	// Once per interval per sink, with the count: a sink that is down
	// fails every batch.
	r.log.Error(sr.gaveUpKey, "sink gave up on a batch: its records go to the DLQ",
		append([]any{"sink", sr.sink.Name(), "source", sourcePath(b), "class", class, "code", errorCode(err),
			"records", len(b.todo[sr.index]), "err", CutMessage(err.Error())}, traceID(b)...)...)
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
	w.r, w.sr = r, sr
	if w.op == nil {
		w.op = func(ctx context.Context) error { return w.r.writeTodo(ctx, w.sr, b) }
	}
	return w.op
}

// sinkWrite is a batch's write to one sink, as the retrier runs it.
type sinkWrite struct {
	r  *Runner
	sr *sinkRunner
	op func(context.Context) error
}

// writeTodo writes the records the sink has still to take. After a partial
// write only those it did not take stay on its list; the error is
// returned, for the retry policy to judge.
func (r *Runner) writeTodo(ctx context.Context, sr *sinkRunner, b *Batch) error {
	todo := b.todo[sr.index]
	var start time.Time
	if r.tel != nil && r.tel.SinkWrite != nil {
		start = time.Now()
	}
	err := r.write(ctx, sr.sink, b, todo)
	if !start.IsZero() {
		r.timeWrite(ctx, sr, start, err)
	}
	if err == nil {
		sr.records.Add(int64(len(todo)))
		b.todo[sr.index] = todo[:0]
		return nil
	}
	var pe *PartialError
	if !errors.As(err, &pe) {
		return err
	}
	sr.partial.Add(1)
	// Keep what the sink says it did not take, and only what it was given:
	// a sink naming other records cannot make the runner lose or double
	// any.
	if !slices.IsSorted(pe.Failed) {
		slices.Sort(pe.Failed) // the contract asks for order; do not trust it
	}
	left := todo[:0]
	for _, i := range todo {
		if _, found := slices.BinarySearch(pe.Failed, i); found {
			left = append(left, i)
		}
	}
	sr.records.Add(int64(len(todo) - len(left)))
	b.todo[sr.index] = left
	if len(left) == 0 {
		return nil
	}
	return err
}

// write calls one sink, turning a panic into an error for the batch.
func (r *Runner) write(ctx context.Context, s Sink, b *Batch, recs []int32) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sink %s panicked: %v\n%s", s.Name(), p, debug.Stack())
		}
	}()
	return s.Write(ctx, b, recs)
}

// markSinkFailures turns the sinks' final errors into record failures: a
// record some sink did not take goes to the DLQ, its entry naming every
// sink that lacks it, after every sink was offered it.
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
		for _, i := range b.todo[k] {
			rec := &b.Records[i]
			if rec.lacking == 0 {
				rec.Failure = Failure{Stage: "sink", Component: name, Class: class, Code: code, Message: err.Error()}
			}
			rec.lacking |= 1 << k
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
			Name: sr.sink.Name(), Batches: sr.batches.Load(), Records: sr.records.Load(), Failed: sr.failed.Load(),
			Partial: sr.partial.Load(), Recovered: sr.recovered.Load(), GaveUp: sr.gaveUp.Load(),
			QueueFull: sr.queueFull.Load(), Waited: sr.waited.Load(), InFlight: sr.inFlight.Load(),
			Permanents: sr.permanent.Load(),
		})
	}
	return out
}
