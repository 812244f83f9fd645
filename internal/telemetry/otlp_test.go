package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tracepipe/tracepipe/internal/testotlp"
)

// TestOTLPPush: a Server with no listener and an OTLP/HTTP push (under a
// path prefix) to an in-process receiver. The metrics arrive, by push,
// with their names, units and attributes and the secret header; the spans
// arrive, sampled at ratio 1, with theirs; the header's value is in no
// log line; the push at Close carries the final value.
func TestOTLPPush(t *testing.T) {
	rc := testotlp.Start(t, "/otlp")
	var logs bytes.Buffer
	s, err := Start(Options{Version: "v-test", Logger: slog.New(slog.NewTextHandler(&logs, nil)), OTLP: &OTLP{
		HostPort: rc.HostPort(), Path: "/otlp", Insecure: true, Interval: 100 * time.Millisecond,
		Headers: map[string]string{"x-api-key": "hunter2"}, SampleRatio: 1,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != "" || s.Tracer() == nil {
		t.Fatalf("addr %q, tracer %v", s.Addr(), s.Tracer())
	}
	var n int64 = 7
	attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String("sink", "out")))
	_, err = s.Meter().Int64ObservableCounter("tracepipe.sink.records", metric.WithUnit("{record}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error { o.Observe(n, attrs); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	_, span := s.Tracer().Start(context.Background(), "tracepipe.batch")
	span.SetAttributes(attribute.Int64("tracepipe.batch.records", 3))
	span.End()

	deadline := time.Now().Add(10 * time.Second)
	for {
		pts, m := rc.Metric("tracepipe.sink.records")
		if m != nil {
			if m.Unit != "{record}" || len(pts) != 1 || pts[0].Attrs["sink"] != "out" || pts[0].Value != 7 || m.GetSum() == nil || !m.GetSum().IsMonotonic {
				t.Fatalf("pushed %+v: %v", m, pts)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no push with the metric in 10s (%d pushes)", rc.Pushes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pts, _ := rc.Metric("tracepipe.build.info"); len(pts) != 1 || pts[0].Attrs["version"] != "v-test" {
		t.Fatalf("build info %v", pts)
	}
	n = 9
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if pts, _ := rc.Metric("tracepipe.sink.records"); len(pts) != 1 || pts[0].Value != 9 {
		t.Fatalf("the last push (at Close) has %v, want 9", pts)
	}
	spans := rc.Spans()
	if len(spans) != 1 || spans[0].Name != "tracepipe.batch" || testotlp.Attrs(spans[0].Attributes)["tracepipe.batch.records"] != "3" {
		t.Fatalf("spans %v", spans)
	}
	for _, h := range rc.Headers() {
		if h.Get("X-Api-Key") != "hunter2" {
			t.Fatalf("a request without the header: %v", h)
		}
	}
	if strings.Contains(logs.String(), "hunter2") || !strings.Contains(logs.String(), "headers=x-api-key") {
		t.Fatalf("log: %s", logs.String())
	}
}

// TestOTLPNoSpansAtRatioZero: with sample_ratio 0 no tracer is made: the
// runner makes no span at all.
func TestOTLPNoSpansAtRatioZero(t *testing.T) {
	rc := testotlp.Start(t, "")
	s, err := Start(Options{Logger: quiet(), OTLP: &OTLP{HostPort: rc.HostPort(), Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if s.Tracer() != nil {
		t.Fatal("a tracer at ratio 0")
	}
}
