package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// Stage processes a batch in place: it appends records, or marks them
// failed or filtered. A stage recovers panics per record itself (see
// RecoverRecord) so that one bad record fails alone; a panic that escapes a
// stage fails the whole batch, which the runner still routes to the DLQ.
type Stage interface {
	Name() string
	Process(ctx context.Context, b *Batch)
}

// DLQ takes entries; dlq.Backend satisfies it.
type DLQ interface {
	Put(ctx context.Context, e *dlq.Entry) error
}

// RunnerOptions wire a Runner.
type RunnerOptions struct {
	Workers int
	Stages  []Stage
	Sinks   []Sink
	// Delivery, parallel to Sinks, sets each sink's retry policy and
	// queue; missing entries write once.
	Delivery []SinkDelivery
	DLQ      DLQ
	// KeepBytes bounds the payload copied into a DLQ entry (0 keeps all).
	KeepBytes int
	// Redact, when set, removes or hashes personal fields from a payload
	// before it goes into a DLQ entry (dlq.Redactor.Redact).
	Redact     func(p []byte) ([]byte, bool)
	Host       string
	Version    string
	Accounting *Accounting
	Logger     *slog.Logger
}

// Runner drives batches through the stages, the sinks and the DLQ with N
// workers reading one channel: no goroutine or channel hop per record.
type Runner struct {
	o         RunnerOptions
	sinks     []*sinkRunner
	closeOnce sync.Once
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
	if len(o.Sinks) > MaxSinks {
		panic(fmt.Sprintf("pipeline: %d sinks, at most %d", len(o.Sinks), MaxSinks))
	}
	r := &Runner{o: o}
	r.startSinks()
	return r
}

// Accounting returns the run's counters.
func (r *Runner) Accounting() *Accounting { return r.o.Accounting }

// Run handles batches from in until in is closed and every batch taken is
// fully handled (delivered or in the DLQ), retries included: Run closes the
// runner when done. Cancelling ctx does not drop batches already read: the
// source stops and closes in, and Run drains it.
func (r *Runner) Run(ctx context.Context, in <-chan *Batch) {
	ctx = context.WithoutCancel(ctx)
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
}

// Handle runs one batch through stages and sinks. Once every sink has
// taken the batch or given up on it (a retry may finish later, on the
// sink's goroutines), its failed records go to the DLQ, it is accounted
// for, its Done is called and it goes back to the pool. b must not be used
// after Handle.
func (r *Runner) Handle(ctx context.Context, b *Batch) {
	r.runStages(ctx, b)
	b.pending.Store(1) // the worker's hold
	r.deliver(ctx, b)
	r.release(ctx, b)
}

// release drops one hold on b; the last one finalizes it.
func (r *Runner) release(ctx context.Context, b *Batch) {
	if b.pending.Add(-1) == 0 {
		r.finalize(ctx, b)
	}
}

// finalize routes failed records to the DLQ, accounts, acks and recycles.
func (r *Runner) finalize(ctx context.Context, b *Batch) {
	r.markSinkFailures(b)
	var c batchCount
	c.in = int64(len(b.Records))
	for i := range b.Records {
		rec := &b.Records[i]
		switch {
		case rec.Failed():
			if err := r.deadLetter(ctx, b, i); err != nil {
				c.lost++
				r.o.Logger.Error("DLQ refused an entry: record lost", "source", sourcePath(b), "class", rec.Failure.Class, "err", err)
			} else if k := ClassIndex(rec.Failure.Class); k >= 0 {
				c.dlq[k]++
			}
		case rec.Filtered:
			c.filtered++
		default:
			c.out++
		}
	}
	r.o.Accounting.Units.Add(int64(len(b.Units)))
	r.o.Accounting.add(sourcePath(b), &c, false)
	if b.Done != nil {
		b.Done(b)
	}
	PutBatch(b)
}

// runStages calls each stage; a panic that escapes one fails every unit of
// the batch as class panic (the stages' own per-record recovery is the
// normal path, this is the last line of defence).
func (r *Runner) runStages(ctx context.Context, b *Batch) {
	defer func() {
		if p := recover(); p != nil {
			msg := fmt.Sprintf("panic in a stage: %v\n%s", p, debug.Stack())
			r.o.Logger.Error("stage panicked outside its per-record guard; failing the whole batch", "source", sourcePath(b), "panic", fmt.Sprint(p))
			b.Records = b.Records[:0]
			for u := range b.Units {
				b.NewRecord(u).Fail("stage", ClassPanic, "panic", msg)
			}
		}
	}()
	for _, st := range r.o.Stages {
		st.Process(ctx, b)
	}
}

// newEntry starts a DLQ entry for failure f, made now by this process.
func (r *Runner) newEntry(f Failure, msg string, src dlq.Source) *dlq.Entry {
	now := time.Now().UTC()
	return &dlq.Entry{
		Version:         dlq.SchemaVersion,
		ID:              dlq.NewID(now),
		Time:            now,
		Stage:           f.Stage,
		Component:       f.Component,
		Host:            r.o.Host,
		PipelineVersion: r.o.Version,
		Error:           dlq.Error{Class: string(f.Class), Code: f.Code, Message: msg},
		Attempts:        1,
		FirstFailure:    now,
		LastFailure:     now,
		Source:          src,
	}
}

// deadLetter builds the DLQ entry for record i and hands it over.
func (r *Runner) deadLetter(ctx context.Context, b *Batch, i int) error {
	rec := &b.Records[i]
	u := &b.Units[rec.Unit]
	f := rec.Failure
	src := dlq.Source{Kind: "file", Offset: u.Offset, Line: u.Line}
	if b.Source != nil {
		src.Kind, src.Path, src.Format = b.Source.Kind, b.Source.Path, b.Source.Format.String()
		if f.Component == "" && f.Stage == "parse" {
			f.Component = b.Source.Format.String()
		}
	}
	e := r.newEntry(f, cutFailure(f), src)
	e.TraceID, e.SpanID = string(rec.TraceID), string(rec.SpanID)
	e.ReplayCount, e.ReplayedFrom = int(rec.ReplayCount), string(rec.ReplayedFrom)
	if rec.Time != 0 {
		t := time.Unix(0, rec.Time).UTC()
		e.EventTime = &t
	}
	payload := b.Payload(i)
	size := int64(len(payload))
	if rec.Payload == nil && u.Size > size {
		size = u.Size
	}
	if r.o.Redact != nil {
		if out, changed := r.o.Redact(payload); changed {
			size += int64(len(out) - len(payload))
			payload = out
			e.Redacted = true
		}
	}
	e.SetPayload(payload, size, r.o.KeepBytes)
	return r.o.DLQ.Put(ctx, e)
}

// FileFailed records a file that failed as a whole (could not be opened, a
// corrupt stream): one DLQ entry of class file, which counts as one record
// in. offset is how far reading got, in decompressed bytes.
func (r *Runner) FileFailed(ctx context.Context, path, code string, offset, line int64, err error) {
	f := Failure{Stage: "read", Component: "file", Class: ClassFile, Code: code}
	e := r.newEntry(f, CutMessage(err.Error()), dlq.Source{Kind: "file", Path: path, Offset: offset, Line: line})
	e.SetPayload(nil, 0, 0)
	r.o.Logger.Warn("file failed; the rest go on", "path", path, "code", code, "offset", offset, "err", e.Error.Message)
	c := batchCount{in: 1}
	if perr := r.o.DLQ.Put(context.WithoutCancel(ctx), e); perr != nil {
		c.lost = 1
		r.o.Logger.Error("DLQ refused a file entry", "path", path, "err", perr)
	} else {
		c.dlq[ClassIndex(ClassFile)] = 1
	}
	r.o.Accounting.add(path, &c, true)
}

// DeadLetterOther puts an entry that stands for no input record (a window
// row the windows sink refused): counted by class like every entry, and
// in Accounting.DLQOther so the record invariant leaves it out.
func (r *Runner) DeadLetterOther(ctx context.Context, f Failure, src dlq.Source, payload []byte, window [2]time.Time) {
	e := r.newEntry(f, CutMessage(f.Message), src)
	e.SetPayload(payload, int64(len(payload)), 0) // kept whole: a row is useless cut (its group values are the config's fields, not redacted)
	if !window[0].IsZero() {
		e.WindowStart, e.WindowEnd = &window[0], &window[1]
	}
	if err := r.o.DLQ.Put(context.WithoutCancel(ctx), e); err != nil {
		r.o.Accounting.DLQLost.Add(1)
		r.o.Accounting.DLQOtherLost.Add(1)
		r.o.Logger.Error("DLQ refused an entry: lost", "stage", f.Stage, "class", f.Class, "err", err)
		return
	}
	if k := ClassIndex(f.Class); k >= 0 {
		r.o.Accounting.DLQSent[k].Add(1)
	}
	r.o.Accounting.DLQOther.Add(1)
}

// cutFailure bounds a failure's message; a panic keeps more, for its stack.
func cutFailure(f Failure) string {
	if f.Class != ClassPanic {
		return CutMessage(f.Message)
	}
	if len(f.Message) > MaxPanicMessage {
		return f.Message[:MaxPanicMessage] + "…"
	}
	return f.Message
}

func sourcePath(b *Batch) string {
	if b.Source == nil {
		return ""
	}
	return b.Source.Path
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
