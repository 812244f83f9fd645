package pipeline

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Instruments are the runner's synchronous telemetry: what happens once
// per batch or per sink write and is therefore recorded as it happens, not
// read from a counter at scrape time. Every field may be nil; with none
// set the runner records nothing and does no work for it.
type Instruments struct {
	// BatchDuration gets, once per batch, the seconds from a worker taking
	// it to its finalization (delivered or dead-lettered, retries
	// included), with the batch's source as attribute.
	BatchDuration metric.Float64Histogram
	// SinkWrite gets the seconds of each write to a sink, every attempt
	// (retries included), with the sink and the outcome (ok, error) as
	// attributes.
	SinkWrite metric.Float64Histogram
	// Tracer, when set, starts one span per batch, ended at its
	// finalization with its source, record and DLQ counts. Whether a span
	// is recorded and exported is the tracer's sampler's business.
	Tracer trace.Tracer
}

// SpanName is the name of the span of a batch.
const SpanName = "tracepipe.batch"

// runnerTelemetry is Instruments with the attribute sets built once: per
// sink and outcome, and per source as sources appear.
type runnerTelemetry struct {
	Instruments
	timed bool // a histogram is set: batches and writes are timed

	sinkOK, sinkErr [MaxSinks][]metric.RecordOption

	mu      sync.RWMutex
	sources map[string][]metric.RecordOption
}

// SetInstruments sets the runner's synchronous instruments. Call it
// before the first Handle (before Run).
func (r *Runner) SetInstruments(in Instruments) {
	t := &runnerTelemetry{Instruments: in, timed: in.BatchDuration != nil || in.SinkWrite != nil, sources: map[string][]metric.RecordOption{}}
	for i, s := range r.o.Sinks {
		t.sinkOK[i] = attrOpts(attribute.String("sink", s.Name()), attribute.String("outcome", "ok"))
		t.sinkErr[i] = attrOpts(attribute.String("sink", s.Name()), attribute.String("outcome", "error"))
	}
	r.tel = t
}

func attrOpts(kv ...attribute.KeyValue) []metric.RecordOption {
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
}

// sourceName is what the batch's telemetry calls its source: the config
// source's name, else its origin's kind (a replay's files, a DLQ replay).
func sourceName(b *Batch) string {
	if b.Origin == nil {
		return ""
	}
	return sourceOrKind(b.Origin.Source, b.Origin.Kind)
}

// sourceOrKind is the name telemetry and the accounting's series give an
// input: its config source's name, else its kind.
func sourceOrKind(source, kind string) string {
	if source != "" {
		return source
	}
	return kind
}

// sourceAttrs returns the attributes of the batches of source, built the
// first time it is seen: sources are few and known at start (a handful of
// config entries), so the map stays small and a batch allocates nothing.
func (t *runnerTelemetry) sourceAttrs(source string) []metric.RecordOption {
	t.mu.RLock()
	o, ok := t.sources[source]
	t.mu.RUnlock()
	if ok {
		return o
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if o, ok = t.sources[source]; !ok {
		o = attrOpts(attribute.String("source", source))
		t.sources[source] = o
	}
	return o
}

// begin times the batch and starts its span; the context returned carries
// the span to the stages and the sinks.
func (r *Runner) begin(ctx context.Context, b *Batch) context.Context {
	t := r.tel
	if t == nil {
		return ctx
	}
	if t.timed {
		b.started = time.Now()
	}
	if t.Tracer != nil {
		ctx, b.span = t.Tracer.Start(ctx, SpanName)
	}
	return ctx
}

// end records the batch's duration and ends its span with what became of
// its records.
func (r *Runner) end(ctx context.Context, b *Batch, c *batchCount) {
	t := r.tel
	if t == nil {
		return
	}
	if t.BatchDuration != nil && !b.started.IsZero() {
		t.BatchDuration.Record(ctx, time.Since(b.started).Seconds(), t.sourceAttrs(sourceName(b))...)
	}
	if b.span == nil {
		return
	}
	if b.span.IsRecording() {
		var dlq int64
		for _, n := range c.dlq {
			dlq += n
		}
		attrs := []attribute.KeyValue{
			attribute.String("tracepipe.source", sourceName(b)),
			attribute.Int64("tracepipe.batch.records", c.in),
			attribute.Int64("tracepipe.batch.units", int64(len(b.Units))),
			attribute.Int64("tracepipe.batch.dlq", dlq),
			attribute.Int64("tracepipe.batch.filtered", c.filtered),
			attribute.Int64("tracepipe.batch.seq", int64(b.Seq)),
		}
		if o := b.Origin; o != nil {
			attrs = append(attrs, attribute.String("tracepipe.origin.kind", o.Kind), attribute.String("tracepipe.origin.path", o.Path))
			if o.Kind == "kafka" {
				attrs = append(attrs, attribute.Int("tracepipe.origin.partition", o.Partition))
			}
		}
		if b.WindowsOnly {
			attrs = append(attrs, attribute.Bool("tracepipe.batch.windows_only", true))
		}
		b.span.SetAttributes(attrs...)
		if c.lost > 0 {
			b.span.SetStatus(codes.Error, "the DLQ refused entries: the batch is not acknowledged")
		}
	}
	b.span.End()
	b.span = nil
}

// timeWrite records one sink write's duration, begun at start.
func (r *Runner) timeWrite(ctx context.Context, sr *sinkRunner, start time.Time, err error) {
	t := r.tel
	if t == nil || t.SinkWrite == nil {
		return
	}
	o := t.sinkOK[sr.index]
	if err != nil {
		o = t.sinkErr[sr.index]
	}
	t.SinkWrite.Record(ctx, time.Since(start).Seconds(), o...)
}

// traceID returns the log attributes naming the batch's span when it is
// sampled (exported: the id leads somewhere), else none.
func traceID(b *Batch) []any {
	if b.span == nil {
		return nil
	}
	sc := b.span.SpanContext()
	if !sc.IsSampled() {
		return nil
	}
	return []any{"trace_id", sc.TraceID().String()}
}
