package pipeline_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/sinks"
)

// brokenFileSink is a file sink that cannot create its output: its folder
// is a file. Every write fails for good.
func brokenFileSink(t *testing.T, name string) pipeline.Sink {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	s, err := sinks.NewFile(sinks.FileOptions{Name: name, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// instruments builds the runner's instruments on a manual metric reader
// and, when spans is set, a tracer sampling everything into it.
func instruments(t *testing.T, spans *tracetest.InMemoryExporter) (pipeline.Instruments, *sdkmetric.ManualReader) {
	t.Helper()
	rd := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	m := mp.Meter("test")
	bd, err := m.Float64Histogram("tracepipe.batch.duration")
	if err != nil {
		t.Fatal(err)
	}
	sw, err := m.Float64Histogram("tracepipe.sink.write.duration")
	if err != nil {
		t.Fatal(err)
	}
	in := pipeline.Instruments{BatchDuration: bd, SinkWrite: sw}
	if spans != nil {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		in.Tracer = tp.Tracer("test")
	}
	return in, rd
}

// histCounts returns, per instrument name and attribute set, how many
// values each histogram got.
func histCounts(t *testing.T, rd *sdkmetric.ManualReader) map[string]map[attribute.Distinct]uint64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[attribute.Distinct]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				continue
			}
			out[m.Name] = map[attribute.Distinct]uint64{}
			for _, p := range h.DataPoints {
				out[m.Name][p.Attributes.Equivalent()] = p.Count
			}
		}
	}
	return out
}

func set(kv ...attribute.KeyValue) attribute.Distinct {
	s := attribute.NewSet(kv...)
	return s.Equivalent()
}

// TestInstrumentsOncePerBatch: 5 batches of 3 records, to a sink that
// works and one that fails for good. The batch duration gets one value
// per batch (not per record) under the batch's source; the sink write
// duration one per write, by sink and outcome; there is one span per
// batch carrying its counts; and the failing sink's error is logged once,
// then once with the count at the end, naming a span's trace id.
func TestInstrumentsOncePerBatch(t *testing.T) {
	d, _ := openDLQ(t)
	spans := tracetest.NewInMemoryExporter()
	in, rd := instruments(t, spans)
	var logs bytes.Buffer
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 2,
		Stages:  []pipeline.Stage{makeRecords{}},
		Sinks:   []pipeline.Sink{sinks.NewDiscard("ok"), brokenFileSink(t, "broken")},
		DLQ:     dlq.NewRecorder(d, dlq.RecorderOptions{}),
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	r.SetInstruments(in)
	ch := make(chan *pipeline.Batch, 5)
	src := &pipeline.Origin{Kind: "file", Path: "mem.jsonl", Format: pipeline.FormatJSONL, Source: "logs"}
	for range 5 {
		b := pipeline.GetBatch()
		b.Origin = src
		for i, u := range []string{"a", "b", "c"} {
			b.AddUnit([]byte(u), int64(i*10), int64(i+1), 1, 0)
		}
		ch <- b
	}
	close(ch)
	if err := r.Run(context.Background(), ch); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	h := histCounts(t, rd)
	if got := h["tracepipe.batch.duration"]; len(got) != 1 || got[set(attribute.String("source", "logs"))] != 5 {
		t.Errorf("batch duration: %v, want 5 values under source=logs", got)
	}
	sw := h["tracepipe.sink.write.duration"]
	if ok, bad := sw[set(attribute.String("sink", "ok"), attribute.String("outcome", "ok"))],
		sw[set(attribute.String("sink", "broken"), attribute.String("outcome", "error"))]; len(sw) != 2 || ok != 5 || bad != 5 {
		t.Errorf("sink write duration: %v, want 5 ok writes to ok, 5 failed ones to broken", sw)
	}

	got := spans.GetSpans()
	if len(got) != 5 {
		t.Fatalf("%d spans, want one per batch (5)", len(got))
	}
	ids := map[string]bool{}
	for _, s := range got {
		ids[s.SpanContext.TraceID().String()] = true
		a := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes {
			a[kv.Key] = kv.Value
		}
		if s.Name != pipeline.SpanName || a["tracepipe.source"].AsString() != "logs" || a["tracepipe.batch.records"].AsInt64() != 3 ||
			a["tracepipe.batch.dlq"].AsInt64() != 3 || a["tracepipe.origin.path"].AsString() != "mem.jsonl" || !s.EndTime.After(s.StartTime) {
			t.Errorf("span %s: %v, %s..%s", s.Name, s.Attributes, s.StartTime, s.EndTime)
		}
	}

	var gaveUp []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "sink gave up") {
			gaveUp = append(gaveUp, l)
		}
	}
	if len(gaveUp) != 2 || !strings.Contains(gaveUp[1], "total=5") || !strings.Contains(gaveUp[0], "sink=broken") {
		t.Fatalf("want the failure logged once, then its count at the end; got:\n%s", strings.Join(gaveUp, "\n"))
	}
	i := strings.Index(gaveUp[0], "trace_id=")
	if i < 0 || !ids[strings.Fields(gaveUp[0][i+len("trace_id="):])[0]] {
		t.Fatalf("the log line names no batch span's trace id: %s", gaveUp[0])
	}
}

// TestInstrumentsAllocateNothing: timing batches and sink writes into
// histograms adds no allocation to a batch's handling.
func TestInstrumentsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under -race (sync.Pool drops objects)")
	}
	d, _ := openDLQ(t)
	src := &pipeline.Origin{Kind: "file", Path: "mem.jsonl", Format: pipeline.FormatJSONL, Source: "logs"}
	round := func(r *pipeline.Runner) func() {
		return func() {
			b := pipeline.GetBatch()
			b.Origin = src
			b.AddUnit([]byte("a"), 0, 1, 1, 0)
			r.Handle(context.Background(), b)
			_ = r.Barrier(context.Background())
		}
	}
	mk := func() *pipeline.Runner {
		return pipeline.NewRunner(pipeline.RunnerOptions{
			Stages: []pipeline.Stage{makeRecords{}}, Sinks: []pipeline.Sink{sinks.NewDiscard("ok")},
			DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), Logger: quiet(),
		})
	}
	plain, timed := mk(), mk()
	in, _ := instruments(t, nil)
	timed.SetInstruments(in)
	for range 10 {
		round(plain)()
		round(timed)()
	}
	base := testing.AllocsPerRun(500, round(plain))
	with := testing.AllocsPerRun(500, round(timed))
	t.Logf("allocations per batch: %v without, %v with", base, with)
	if with != base {
		t.Errorf("%v allocations per batch with the histograms, %v without: timing must add none", with, base)
	}
	plain.Close()
	timed.Close()
}
