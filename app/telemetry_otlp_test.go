package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/telemetry"
	"github.com/tracepipe/tracepipe/internal/testotlp"
	"github.com/tracepipe/tracepipe/pipeline"
)

// TestTelemetryOTLPReplay: a replay whose telemetry is only an OTLP/HTTP
// push (no listener), to an in-process receiver, every batch traced
// (ratio 1). The pushed record counters equal the report's; there is one
// span per batch (as many as the batch duration histogram counted, far
// fewer than records), each with its source and counts, and the spans'
// record and DLQ counts add up to the report's.
func TestTelemetryOTLPReplay(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	generate(t, in, "jsonl", 3000, false)
	// A line that is not JSON, for a DLQ entry.
	f, err := os.OpenFile(in, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("not json\n")
	_ = f.Close()
	y := fmt.Sprintf(`
input: {concurrency: 1}
pipeline: {workers: 2, batch_units: 256}
sinks: [{name: out, type: discard}]
dlq: {file: {dir: %[1]s/dlq}}
windows: {metrics: []}
`, dir)
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	rc := testotlp.Start(t, "")
	srv, err := telemetry.Start(telemetry.Options{Version: "test", Logger: quietLogger(), OTLP: &telemetry.OTLP{
		HostPort: rc.HostPort(), Insecure: true, Interval: time.Hour, SampleRatio: 1,
	}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger(), Telemetry: srv})
	if err != nil {
		t.Fatal(err)
	}
	// Close pushes the final values and the spans still queued.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rep.RecordsIn != 3001 || rep.DLQ["total"] != 1 {
		t.Fatalf("report: %+v", rep)
	}
	for name, want := range map[string]int64{"tracepipe.records.in": rep.RecordsIn, "tracepipe.records.out": rep.RecordsOut} {
		if pts, _ := rc.Metric(name); len(pts) != 1 || int64(pts[0].Value) != want || pts[0].Attrs["source"] != "file" || pts[0].Attrs["format"] != "jsonl" {
			t.Errorf("%s pushed %v, want %d with source file, format jsonl", name, pts, want)
		}
	}
	hist, _ := rc.Metric("tracepipe.batch.duration")
	if len(hist) != 1 || hist[0].Attrs["source"] != "file" {
		t.Fatalf("batch duration: %v", hist)
	}
	if pts, _ := rc.Metric("tracepipe.sink.write.duration"); len(pts) != 1 || pts[0].Attrs["sink"] != "out" || pts[0].Attrs["outcome"] != "ok" {
		t.Fatalf("sink write duration: %v", pts)
	}
	spans := rc.Spans()
	if len(spans) == 0 || float64(len(spans)) != hist[0].Value || int64(len(spans)) >= rep.RecordsIn/100 {
		t.Fatalf("%d spans, %v batches timed, %d records: want one span per batch", len(spans), hist[0].Value, rep.RecordsIn)
	}
	var records, dlq int64
	for _, s := range spans {
		a := testotlp.Attrs(s.Attributes)
		if s.Name != pipeline.SpanName || a["tracepipe.source"] != "file" || a["tracepipe.origin.path"] != in || s.EndTimeUnixNano <= s.StartTimeUnixNano {
			t.Fatalf("span %s %v", s.Name, a)
		}
		n, _ := strconv.ParseInt(a["tracepipe.batch.records"], 10, 64)
		d, _ := strconv.ParseInt(a["tracepipe.batch.dlq"], 10, 64)
		records += n
		dlq += d
	}
	if records != rep.RecordsIn || dlq != 1 {
		t.Fatalf("spans count %d records and %d DLQ entries, the report %d and 1", records, dlq, rep.RecordsIn)
	}
}
