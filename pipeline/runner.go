package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tracepipe/tracepipe/internal/ratelog"
)

// Stage processes a batch in place: it appends records, or marks them
// failed or filtered. A stage recovers panics per record itself (see
// RecoverRecord) so that one bad record fails alone; a panic that escapes a
// stage fails the whole batch, which the runner still routes to the DLQ.
type Stage interface {
	Name() string
	Process(ctx context.Context, b *Batch)
}

// RunnerOptions wire a Runner.
type RunnerOptions struct {
	Workers int
	Stages  []Stage
	Sinks   []Sink
	// Delivery, parallel to Sinks, sets each sink's retry policy and
	// queue; missing entries write once.
	Delivery []SinkDelivery
	DLQ      DeadLetters
	// FlushEvery is how often the barrier flushes every sink and syncs the
	// DLQ, then acknowledges the batches finalized before it (default 1s).
	FlushEvery time.Duration
	Accounting *Accounting
	Logger     *slog.Logger
}

// Runner drives batches through the stages, the sinks and the DLQ with N
// workers reading one channel: no goroutine or channel hop per record. A
// barrier goroutine makes what they delivered durable on an interval and
// only then acknowledges the batches to their sources.
type Runner struct {
	o         RunnerOptions
	sinks     []*sinkRunner
	lacking   [][]string // sink names by bit mask
	log       *ratelog.Logger
	tel       *runnerTelemetry // nil: no instruments (SetInstruments)
	closeOnce sync.Once

	acksMu  sync.Mutex
	acks    []ackToken // batches finalized since the last barrier
	spare   []ackToken
	barrier sync.Mutex // one barrier at a time
}

type ackToken struct {
	a   Acker
	seq uint64
	wh  *WindowHold // the batch's window hold (nil: no stage held it)
}

// NewRunner returns a runner; Accounting and Logger get defaults.
func NewRunner(o RunnerOptions) *Runner {
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.Accounting == nil {
		o.Accounting = &Accounting{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = time.Second
	}
	if len(o.Sinks) > MaxSinks {
		panic(fmt.Sprintf("pipeline: %d sinks, at most %d", len(o.Sinks), MaxSinks))
	}
	r := &Runner{o: o, log: ratelog.New(o.Logger, 10*time.Second)}
	r.lacking = make([][]string, 1<<len(o.Sinks))
	for m := range r.lacking {
		for k, s := range o.Sinks {
			if m&(1<<k) != 0 {
				r.lacking[m] = append(r.lacking[m], s.Name())
			}
		}
	}
	r.startSinks()
	return r
}

// Accounting returns the run's counters.
func (r *Runner) Accounting() *Accounting { return r.o.Accounting }

// Run handles batches from in until in is closed and every batch taken is
// fully handled (delivered or in the DLQ), retries included, then makes it
// durable (a last barrier) and closes the runner. Cancelling ctx does not
// drop batches already read: the source stops and closes in, and Run
// drains it. The error is the last barrier's: what was delivered could not
// be made durable, and the batches since the last good barrier are not
// acknowledged.
func (r *Runner) Run(ctx context.Context, in <-chan *Batch) error {
	ctx = context.WithoutCancel(ctx)
	stop := make(chan struct{})
	var barrier sync.WaitGroup
	barrier.Go(func() {
		t := time.NewTicker(r.o.FlushEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = r.Barrier(ctx)
			}
		}
	})
	var wg sync.WaitGroup
	for range r.o.Workers {
		wg.Go(func() {
			for b := range in {
				r.Handle(ctx, b)
			}
		})
	}
	wg.Wait()
	r.Close()
	close(stop)
	barrier.Wait()
	err := r.Barrier(ctx)
	r.log.Flush()
	return err
}

// Handle runs one batch through stages and sinks. Once every sink has
// taken the batch or given up on it (a retry may finish later, on the
// sink's goroutines), its failed records go to the DLQ, it is accounted
// for, its Done is called, its ack waits for the next barrier, and it goes
// back to the pool. A WindowsOnly batch goes through the stages only: no
// sink and no DLQ sees it. b must not be used after Handle.
func (r *Runner) Handle(ctx context.Context, b *Batch) {
	ctx = r.begin(ctx, b)
	r.runStages(ctx, b)
	b.pending.Store(1) // the worker's hold
	if !b.WindowsOnly {
		r.deliver(ctx, b)
	}
	r.release(ctx, b)
}

// release drops one hold on b; the last one finalizes it.
func (r *Runner) release(ctx context.Context, b *Batch) {
	if b.pending.Add(-1) == 0 {
		r.finalize(ctx, b)
	}
}

// finalize routes failed records to the DLQ, accounts, and queues the
// batch's ack for the next barrier. A WindowsOnly batch only counts its
// records as rewindowed: they were delivered or dead-lettered (and
// counted in) on their first read.
func (r *Runner) finalize(ctx context.Context, b *Batch) {
	if b.WindowsOnly {
		r.end(ctx, b, &batchCount{in: int64(len(b.Records))})
		r.o.Accounting.addRewindowed(sourcePath(b), int64(len(b.Records)))
		r.done(b, 0)
		return
	}
	r.markSinkFailures(b)
	var c batchCount
	c.in = int64(len(b.Records))
	for i := range b.Records {
		rec := &b.Records[i]
		switch {
		case rec.Failed():
			if err := r.o.DLQ.PutRecord(ctx, b, i, r.lacking[rec.lacking]); errors.Is(err, ErrAlreadyInDLQ) {
				c.already++
			} else if err != nil {
				c.lost++
				r.log.Error("dlq_refused", "DLQ refused an entry: the record is neither delivered nor stored",
					append([]any{"source", sourcePath(b), "class", rec.Failure.Class, "err", err}, traceID(b)...)...)
			} else if k := ClassIndex(rec.Failure.Class); k >= 0 {
				c.dlq[k]++
			}
		case rec.Filtered:
			c.filtered++
		default:
			c.out++
		}
	}
	// The batch's telemetry before its counts: a scrape that sees the
	// records counted sees the batch's duration too.
	r.end(ctx, b, &c)
	r.o.Accounting.Units.Add(int64(len(b.Units)))
	r.o.Accounting.add(sourcePath(b), seriesKey{sourceName(b), originFormat(b)}, &c, false)
	r.done(b, c.lost)
}

// done calls the batch's Done, queues its ack for the next barrier and
// returns it to the pool. A batch with a lost record is never
// acknowledged, nor window-acknowledged: its source must not commit past
// it; its window hold, if a stage took one, is dropped.
func (r *Runner) done(b *Batch, lost int64) {
	if b.Done != nil {
		b.Done(b)
	}
	switch {
	case b.Acker != nil && lost == 0:
		r.acksMu.Lock()
		r.acks = append(r.acks, ackToken{b.Acker, b.Seq, b.wh})
		r.acksMu.Unlock()
	case b.wh != nil:
		b.wh.Drop()
	}
	PutBatch(b)
}

// Barrier makes durable what the sinks took and the DLQ queued so far,
// then acknowledges the batches finalized before it started: each sink's
// Flush, then the DLQ's Sync, then every Ack. On an error nothing is
// acknowledged; those batches wait for the next barrier that succeeds.
// The runner calls it every FlushEvery and once at the end of Run.
//
// Right after a batch's Ack, the barrier window-acks it when its Acker is
// a WindowAcker and no stage holds it, or releases the runner's share of
// its hold (see WindowAcker).
func (r *Runner) Barrier(ctx context.Context) error {
	r.barrier.Lock()
	defer r.barrier.Unlock()
	r.acksMu.Lock()
	toks := r.acks
	r.acks = r.spare[:0]
	r.acksMu.Unlock()

	var errs []error
	for _, sr := range r.sinks {
		if err := sr.sink.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("sink %s: flush: %w", sr.sink.Name(), err))
		}
	}
	if err := r.o.DLQ.Sync(ctx); err != nil {
		errs = append(errs, fmt.Errorf("DLQ: sync: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		r.log.Error("barrier", "flush barrier failed: batches are not acknowledged until one succeeds", "batches", len(toks), "err", err)
		r.acksMu.Lock()
		r.acks = append(toks, r.acks...) // keep them, in front of the newer ones
		r.acksMu.Unlock()
		return err
	}
	for _, t := range toks {
		t.a.Ack(t.seq)
		windowAck(t.a, t.seq, t.wh)
	}
	clear(toks)
	r.acksMu.Lock()
	r.spare = toks[:0]
	r.acksMu.Unlock()
	return nil
}

// runStages calls each stage; a panic that escapes one fails every unit of
// the batch as class panic (the stages' own per-record recovery is the
// normal path, this is the last line of defence).
func (r *Runner) runStages(ctx context.Context, b *Batch) {
	for _, st := range r.o.Stages {
		r.runStage(ctx, st, b)
	}
}

// runStage runs one stage. A panic escaping it fails the whole batch, and
// the later stages still see the batch (with every record failed, they
// skip its records): the window stage must see every batch of a source,
// or its watermark would wait for the missing one until the end.
func (r *Runner) runStage(ctx context.Context, st Stage, b *Batch) {
	defer func() {
		if p := recover(); p != nil {
			msg := fmt.Sprintf("panic in stage %s: %v\n%s", st.Name(), p, debug.Stack())
			// Rate-limited: a stage that panics on one batch may well
			// panic on every one.
			r.log.Error("stage_panic", "stage panicked outside its per-record guard; failing the whole batch",
				append([]any{"stage", st.Name(), "source", sourcePath(b), "panic", fmt.Sprint(p)}, traceID(b)...)...)
			b.Records = b.Records[:0]
			for u := range b.Units {
				b.NewRecord(u).Fail("stage", ClassPanic, "panic", msg)
			}
		}
	}()
	st.Process(ctx, b)
}

// FileFailed records a file that failed as a whole (could not be opened, a
// corrupt stream): one DLQ entry of class file, which counts as one record
// in. offset is how far reading got, in decompressed bytes.
//
// Its record counts under source f.Source (the config source's name), else
// f.Kind (a replay's files: "file"), and format auto: a file that failed
// may never have been looked at.
func (r *Runner) FileFailed(ctx context.Context, f SourceFailure) {
	path, code, offset, err := f.Path, f.Code, f.Offset, f.Err
	// Rate-limited: a glob over a folder of unreadable files fails each;
	// every one of them is in the DLQ.
	r.log.Warn("file_failed", "file failed; the rest go on (each is in the DLQ)", "path", path, "code", code, "offset", offset, "err", CutMessage(err.Error()))
	c := batchCount{in: 1}
	if f.Kind == "" {
		f.Kind = "file"
	}
	if perr := r.o.DLQ.PutSource(context.WithoutCancel(ctx), f); errors.Is(perr, ErrAlreadyInDLQ) {
		c.already = 1
	} else if perr != nil {
		c.lost = 1
		r.log.Error("dlq_refused", "DLQ refused an entry: the record is neither delivered nor stored", "source", path, "class", ClassFile, "err", perr)
	} else {
		c.dlq[ClassIndex(ClassFile)] = 1
	}
	r.o.Accounting.add(path, seriesKey{sourceOrKind(f.Source, f.Kind), FormatAuto}, &c, true)
}

// DeadLetterOther puts an entry that stands for no input record (a window
// row the windows sink refused): counted by class like every entry, and
// in Accounting.DLQOther so the record invariant leaves it out.
func (r *Runner) DeadLetterOther(ctx context.Context, o OtherFailure) {
	if err := r.o.DLQ.PutOther(context.WithoutCancel(ctx), o); err != nil {
		r.o.Accounting.DLQLost.Add(1)
		r.o.Accounting.DLQOtherLost.Add(1)
		r.log.Error("dlq_refused_other", "DLQ refused an entry: lost", "stage", o.Failure.Stage, "class", o.Failure.Class, "err", err)
		return
	}
	if k := ClassIndex(o.Failure.Class); k >= 0 {
		r.o.Accounting.DLQSent[k].Add(1)
	}
	r.o.Accounting.DLQOther.Add(1)
}

// Close waits for every retry in flight to end (each batch then finalized:
// delivered or in the DLQ) and stops the sinks' retry goroutines. Call it
// after the last Handle. It does not flush: Run ends with a barrier, and
// a caller driving Handle itself calls Barrier.
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

// CutFailure bounds a failure's message for a DLQ entry or a log; a panic
// keeps more, for its stack.
func CutFailure(f Failure) string {
	if f.Class != ClassPanic {
		return CutMessage(f.Message)
	}
	if len(f.Message) > MaxPanicMessage {
		return f.Message[:MaxPanicMessage] + "…"
	}
	return f.Message
}

// originFormat is the batch's resolved format (auto when it has no origin).
func originFormat(b *Batch) Format {
	if b.Origin == nil {
		return FormatAuto
	}
	return b.Origin.Format
}

func sourcePath(b *Batch) string {
	if b.Origin == nil {
		return ""
	}
	return b.Origin.Path
}

// RecoverRecord is deferred by stages around the handling of one record or
// unit: a panic becomes a panic failure on rec, with the stack, and the
// stage goes on with the next.
//
//	func (s *X) one(b *Batch, i int) {
//		defer pipeline.RecoverRecord(s.Name(), &b.Records[i])
//		...
//	}
func RecoverRecord(stage string, rec *Record) {
	if p := recover(); p != nil {
		rec.Fail(stage, ClassPanic, "panic", fmt.Sprintf("panic: %v\n%s", p, debug.Stack()))
	}
}
