package parsers

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/parsers/golden")

// goldenCase decodes one input file: whole (one unit) or one unit per line.
type goldenCase struct {
	name   string
	input  string
	format pipeline.Format
	whole  bool
	opts   func(*Options)
}

var goldenCases = []goldenCase{
	{name: "jsonl_spans", input: "parsers/jsonl/spans.jsonl", format: pipeline.FormatJSONL},
	{name: "jsonl_logs", input: "parsers/jsonl/logs.jsonl", format: pipeline.FormatJSONL},
	{name: "jsonl_logs_keep", input: "parsers/jsonl/logs.jsonl", format: pipeline.FormatJSONL, opts: func(o *Options) { o.MissingTraceID = "keep"; o.TimeUnit = "ms" }},
	{name: "jsonl_invalid_utf8_reject", input: "parsers/jsonl/invalid-utf8.jsonl", format: pipeline.FormatJSONL},
	{name: "jsonl_invalid_utf8_replace", input: "parsers/jsonl/invalid-utf8.jsonl", format: pipeline.FormatJSONL, opts: func(o *Options) { o.InvalidUTF8 = "replace" }},
	{name: "otlp_trace", input: "otlp/trace.json", format: pipeline.FormatOTLP, whole: true},
	{name: "otlp_logs", input: "otlp/logs.json", format: pipeline.FormatOTLP, whole: true},
	{name: "otlp_file_exporter_traces", input: "otlp/file-exporter.traces.jsonl", format: pipeline.FormatOTLP},
	{name: "otlp_file_exporter_traces_keep", input: "otlp/file-exporter.traces.jsonl", format: pipeline.FormatOTLP, opts: func(o *Options) { o.MissingTraceID = "keep" }},
	{name: "otlp_file_exporter_logs", input: "otlp/file-exporter.logs.jsonl", format: pipeline.FormatOTLP},
	{name: "otlp_v0_file_exporter_traces", input: "otlp/v0/file-exporter.traces.jsonl", format: pipeline.FormatOTLP, opts: func(o *Options) { o.MissingTraceID = "keep" }},
	{name: "otlp_v0_file_exporter_logs", input: "otlp/v0/file-exporter.logs.jsonl", format: pipeline.FormatOTLP},
	{name: "otlp_v0_file_exporter_metrics", input: "otlp/v0/file-exporter.metrics.jsonl", format: pipeline.FormatOTLP},
	{name: "otlp_messagetojson", input: "parsers/otlp/messagetojson.json", format: pipeline.FormatOTLP, whole: true},
	{name: "otlp_exporters", input: "parsers/otlp/exporters.jsonl", format: pipeline.FormatOTLP},
	{name: "zipkin_spans", input: "parsers/zipkin/spans.json", format: pipeline.FormatZipkin, whole: true},
	{name: "zipkin_lines", input: "parsers/zipkin/lines.jsonl", format: pipeline.FormatZipkin},
	// The layouts recognised with no config (layouts.go); where each line
	// comes from is in testdata/parsers/layouts/SOURCES.md. Lines without
	// a trace id are kept (missing_trace_id: keep) to show their records.
	{name: "layout_otlp_span_lines", input: "parsers/layouts/otlp-span-lines.jsonl", format: pipeline.FormatJSONL},
	{name: "layout_otel_log_data_model", input: "parsers/layouts/otel-log-data-model.jsonl", format: pipeline.FormatJSONL, opts: keepTraceless},
	{name: "layout_ecs", input: "parsers/layouts/ecs.jsonl", format: pipeline.FormatJSONL, opts: keepTraceless},
	{name: "layout_loggers", input: "parsers/layouts/loggers.jsonl", format: pipeline.FormatJSONL, opts: keepTraceless},
}

func keepTraceless(o *Options) { o.MissingTraceID = "keep" }

// loadBatch reads an input file into a batch, whole or one unit per line.
func loadBatch(t testing.TB, path string, whole bool) *pipeline.Batch {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", path))
	if err != nil {
		t.Fatal(err)
	}
	b := &pipeline.Batch{}
	if whole {
		b.AddUnit(data, 0, 1, int64(len(data)), 0)
		return b
	}
	off := int64(0)
	for i, line := range bytes.SplitAfter(data, []byte("\n")) {
		n := int64(len(line))
		line = bytes.TrimSuffix(line, []byte("\n"))
		if len(line) > 0 {
			b.AddUnit(line, off, int64(i+1), int64(len(line)), 0)
		}
		off += n
	}
	return b
}

func TestGolden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			opts := DefaultOptions()
			if c.opts != nil {
				c.opts(&opts)
			}
			if err := opts.Prepare(); err != nil {
				t.Fatal(err)
			}
			b := loadBatch(t, c.input, c.whole)
			d := GetDecoder(&opts)
			for u := range b.Units {
				d.Decode(b, u, c.format)
			}
			PutDecoder(d)
			checkInvariants(t, b)
			got := renderBatch(b)
			path := filepath.Join("..", "testdata", "parsers", "golden", c.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./parsers -run TestGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the golden file; got:\n%s", c.name, got)
			}
		})
	}
}

// renderBatch writes every record of b, all fields, in a stable text form.
func renderBatch(b *pipeline.Batch) []byte {
	var w bytes.Buffer
	for i := range b.Records {
		r := &b.Records[i]
		u := &b.Units[r.Unit]
		fmt.Fprintf(&w, "record %d unit %d line %d", i, r.Unit, u.Line)
		if r.Signal != 0 {
			fmt.Fprintf(&w, " %s", r.Signal)
		}
		if r.Time != 0 || r.Duration != 0 {
			fmt.Fprintf(&w, " time=%d duration=%d", r.Time, r.Duration)
		}
		if r.Filtered {
			w.WriteString(" filtered")
		}
		if r.Flags != 0 {
			fmt.Fprintf(&w, " flags=%#x", r.Flags)
		}
		w.WriteByte('\n')
		if r.Failed() {
			f := r.Failure
			fmt.Fprintf(&w, "  failure %s %s %s %s\n", f.Stage, f.Class, f.Code, strconv.Quote(f.Message))
		}
		for _, f := range []struct {
			name string
			v    []byte
		}{
			{"trace_id", r.TraceID}, {"span_id", r.SpanID}, {"parent_id", r.ParentID},
			{"service", r.Service}, {"name", r.Name}, {"kind", r.Kind},
			{"status", r.Status}, {"severity", r.Severity}, {"payload", r.Payload},
		} {
			if len(f.v) > 0 {
				fmt.Fprintf(&w, "  %s %s\n", f.name, strconv.Quote(string(f.v)))
			}
		}
		for _, a := range r.Attrs {
			fmt.Fprintf(&w, "  attr %s %s %s\n", strconv.Quote(string(a.Key)), attrTypeName(a.Type), strconv.Quote(string(a.Value)))
		}
	}
	return w.Bytes()
}

func attrTypeName(t pipeline.AttrType) string {
	switch t {
	case pipeline.AttrString:
		return "string"
	case pipeline.AttrNumber:
		return "number"
	case pipeline.AttrBool:
		return "bool"
	case pipeline.AttrNull:
		return "null"
	case pipeline.AttrJSON:
		return "json"
	}
	return "type" + strconv.Itoa(int(t))
}

// checkInvariants checks what every decoded batch must satisfy.
func checkInvariants(t testing.TB, b *pipeline.Batch) {
	t.Helper()
	perUnit := make(map[int32]int)
	for i := range b.Records {
		r := &b.Records[i]
		perUnit[r.Unit]++
		for _, id := range []struct {
			v    []byte
			lens []int
		}{{r.TraceID, []int{32, 16}}, {r.SpanID, []int{16}}, {r.ParentID, []int{16}}} {
			if len(id.v) == 0 {
				continue
			}
			okLen := false
			for _, n := range id.lens {
				okLen = okLen || len(id.v) == n
			}
			if !okLen || strings.Trim(string(id.v), "0123456789abcdef") != "" {
				t.Errorf("record %d: id %q is not lowercase hex of length %v", i, id.v, id.lens)
			}
		}
		if r.Failed() {
			if r.Failure.Stage != stage || r.Failure.Code == "" {
				t.Errorf("record %d: failure %+v", i, r.Failure)
			}
			if len(r.Failure.Message) > pipeline.MaxErrorMessage+4 {
				t.Errorf("record %d: message of %d bytes", i, len(r.Failure.Message))
			}
			if r.Failure.Class == pipeline.ClassMalformed && len(r.Attrs) > 0 {
				t.Errorf("record %d: malformed with attributes", i)
			}
		}
		if r.Duration < 0 {
			t.Errorf("record %d: negative duration", i)
		}
		for _, a := range r.Attrs {
			if a.Type < pipeline.AttrString || a.Type > pipeline.AttrJSON {
				t.Errorf("record %d: attr %q type %d", i, a.Key, a.Type)
			}
		}
	}
	for u, n := range perUnit {
		if n > 1 {
			for i := range b.Records {
				r := &b.Records[i]
				if r.Unit == u && r.Failure.Class == pipeline.ClassMalformed {
					t.Errorf("unit %d: a malformed record among %d", u, n)
				}
			}
		}
	}
}
