package parsers

import (
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

// OTLP/JSON shapes for the encoding/json baseline.
type stdAnyValue struct {
	StringValue *string  `json:"stringValue"`
	IntValue    *string  `json:"intValue"`
	DoubleValue *float64 `json:"doubleValue"`
	BoolValue   *bool    `json:"boolValue"`
}

type stdKeyValue struct {
	Key   string      `json:"key"`
	Value stdAnyValue `json:"value"`
}

type stdOTLPTraces struct {
	ResourceSpans []struct {
		Resource struct {
			Attributes []stdKeyValue `json:"attributes"`
		} `json:"resource"`
		ScopeSpans []struct {
			Scope struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"scope"`
			Spans []struct {
				TraceID           string        `json:"traceId"`
				SpanID            string        `json:"spanId"`
				ParentSpanID      string        `json:"parentSpanId"`
				Name              string        `json:"name"`
				Kind              int           `json:"kind"`
				StartTimeUnixNano string        `json:"startTimeUnixNano"`
				EndTimeUnixNano   string        `json:"endTimeUnixNano"`
				Attributes        []stdKeyValue `json:"attributes"`
				Status            struct {
					Code int `json:"code"`
				} `json:"status"`
			} `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

func BenchmarkDecodeOTLP(b *testing.B) {
	b.Run("fastjson", func(b *testing.B) { benchDecode(b, otlpSpanLine, pipeline.FormatOTLP) })
	b.Run("encoding_json", func(b *testing.B) { benchStd[stdOTLPTraces](b, otlpSpanLine, false) })
	b.Run("encoding_json_valid", func(b *testing.B) { benchStd[stdOTLPTraces](b, otlpSpanLine, true) })
}

func TestOTLPShapes(t *testing.T) {
	f := func(doc string, want string) {
		t.Helper()
		b := decodeUnit(t, nil, []byte(doc), pipeline.FormatOTLP)
		checkInvariants(t, b)
		if got := string(renderBatch(b)); got != want {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", doc, got, want)
		}
	}
	const tr = `"traceId":"5B8EFFF798038103D269B633813FC60C"`
	// Legacy instrumentationLibrarySpans, numeric times, string kind and status.
	f(`{"resourceSpans":[{"instrumentationLibrarySpans":[{"instrumentationLibrary":{"name":"lib"},"spans":[{`+tr+
		`,"spanId":"eee19b7ec3c1b174","name":"s","kind":"SPAN_KIND_CONSUMER","startTimeUnixNano":1544712660000000000,`+
		`"endTimeUnixNano":1544712659000000000,"status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}`,
		`record 0 unit 0 line 1 span time=1544712660000000000 duration=0
  trace_id "5b8efff798038103d269b633813fc60c"
  span_id "eee19b7ec3c1b174"
  name "s"
  kind "consumer"
  status "error"
  attr "otel.scope.name" string "lib"
  attr "otel.status_description" string "boom"
`)
	// Zero spans: zero records.
	f(`{"resourceSpans":[]}`, ``)
	f(`{"resourceSpans":[{"scopeSpans":[{"spans":[]}]}]}`, ``)
	// Not OTLP, wrong types.
	f(`{"foo":1}`, "record 0 unit 0 line 1\n  failure parse invalid not_otlp \"no resourceSpans or resourceLogs\"\n")
	f(`[1]`, "record 0 unit 0 line 1\n  failure parse invalid not_object \"an OTLP request must be an object, not a array\"\n")
	f(`{"resourceSpans":{}}`, "record 0 unit 0 line 1\n  failure parse invalid wrong_type \"resourceSpans is not an array\"\n  payload \"{}\"\n")
	// One bad span among good ones.
	f(`{"resourceSpans":[{"scopeSpans":[{"spans":[{`+tr+`},{"traceId":"xyz"},7]}]}]}`,
		`record 0 unit 0 line 1 span
  trace_id "5b8efff798038103d269b633813fc60c"
  status "unset"
record 1 unit 0 line 1 span
  failure parse invalid bad_id "traceId is not 32 or 16 hex digits, nor 16 bytes in base64"
  status "unset"
  payload "{\"traceId\":\"xyz\"}"
record 2 unit 0 line 1
  failure parse invalid not_object "a span must be an object, not a number"
  payload "7"
`)
	// A bad number anywhere, even in ignored parts, makes the unit malformed.
	f(`{"resourceSpans":[{"scopeSpans":[{"spans":[{`+tr+`,"events":[{"x":01}]}]}]}]}`,
		"record 0 unit 0 line 1\n  failure parse malformed bad_number \"invalid number \\\"01\\\"\"\n")
	// Logs: severity from number, non-string body, observed time fallback.
	f(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{`+tr+`,"severityNumber":17,"observedTimeUnixNano":"5",`+
		`"body":{"kvlistValue":{"values":[{"key":"a","value":{"intValue":"1"}},{"key":"b","value":{"arrayValue":{"values":[{"boolValue":true},{}]}}}]}},"eventName":"e"}]}]}]}`,
		`record 0 unit 0 line 1 log time=5 duration=0
  trace_id "5b8efff798038103d269b633813fc60c"
  name "{\"a\":1,\"b\":[true,null]}"
  severity "ERROR"
  attr "event.name" string "e"
`)
}

// TestOTLPAttrBudget feeds many resource attributes and many tiny spans
// (5,000 x 50,000 would be 250 million attributes without the budget): work
// must stay linear, the spans past the budget fail.
func TestOTLPAttrBudget(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`{"resourceSpans":[{"resource":{"attributes":[`)
	for i := range 5000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"key":"k","value":{}}`)
	}
	sb.WriteString(`]},"scopeSpans":[{"spans":[`)
	for i := range 50000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{}`)
	}
	sb.WriteString(`]}]}]}`)
	opts := DefaultOptions()
	opts.MissingTraceID = "keep"
	if err := opts.Prepare(); err != nil {
		t.Fatal(err)
	}
	// Quadratic work here would not finish within the test timeout; speed
	// itself is for the benchmarks.
	b := decodeUnit(t, &opts, []byte(sb.String()), pipeline.FormatOTLP)
	if len(b.Attrs) > sb.Len() {
		t.Errorf("%d attrs for %d bytes", len(b.Attrs), sb.Len())
	}
	last := b.Records[len(b.Records)-1]
	if len(b.Records) != 50000 || last.Failure.Code != codeAttrBudget {
		t.Errorf("%d records, last %+v", len(b.Records), last.Failure)
	}
}

// TestOTLPExporterFormsAllocs checks that the forms real exporters write
// (base64 ids, enum names, trace-less logs kept) decode without allocating.
func TestOTLPExporterFormsAllocs(t *testing.T) {
	lines := []string{
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"W47/95gDgQPSabYzgT/GDA==","spanId":"7uGbfsPBsXQ=",` +
			`"parentSpanId":"ZWVlMTliN2VjM2MxYjE3NA==","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1718000000000000000"}]}]}]}`,
		`{"resourceLogs":[{"instrumentationLibraryLogs":[{"logs":[{"severityNumber":"SEVERITY_NUMBER_WARN2","timeUnixNano":"1718000000000000000","body":{"stringValue":"no trace"}}]}]}]}`,
	}
	d := GetDecoder(nil)
	defer PutDecoder(d)
	for _, line := range lines {
		b := &pipeline.Batch{}
		run := func() {
			b.Reset()
			b.AddUnit([]byte(line), 0, 1, int64(len(line)), 0)
			d.Decode(b, 0, pipeline.FormatOTLP)
		}
		for range 3 {
			run()
		}
		if allocs := testing.AllocsPerRun(200, run); allocs != 0 {
			t.Errorf("%v allocs per unit: %s", allocs, line)
		}
		if len(b.Records) != 1 || b.Records[0].Failed() {
			t.Errorf("%s", renderBatch(b))
		}
	}
}

// TestOTLPIDForms decodes each id form against its hex (from Python's
// base64 module) and refuses what is none of them.
func TestOTLPIDForms(t *testing.T) {
	const trace, span = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
	for _, c := range []struct{ trace, span, want string }{
		{"5B8EFFF798038103D269B633813FC60C", "EEE19B7EC3C1B174", ""},
		{"W47/95gDgQPSabYzgT/GDA==", "7uGbfsPBsXQ=", ""},                                                          // standard, padded
		{"W47_95gDgQPSabYzgT_GDA", "7uGbfsPBsXQ", ""},                                                             // URL-safe, unpadded
		{"NWI4ZWZmZjc5ODAzODEwM2QyNjliNjMzODEzZmM2MGM=", "ZWVlMTliN2VjM2MxYjE3NA==", ""},                          // base64 of the hex text
		{"W47/95gDgQPSabYzgT/GDA=", "7uGbfsPBsXQ=", "traceId is not 32 or 16 hex digits, nor 16 bytes in base64"}, // 23 characters
		{"W47/95gDgQPSabYzgT/GD.==", "7uGbfsPBsXQ=", "traceId is not 16 bytes in base64"},
		{"W47/95gDgQPSabYzgT/GDA==", "7uGbfsPBsXQ==", "spanId is not 16 hex digits, nor 8 bytes in base64"},
		{"NWI4ZWZmZjc5ODAzODEwM2QyNjliNjMzODEzZmM2MGc=", "7uGbfsPBsXQ=", "traceId is not 16 bytes in base64"}, // hex text with a 'g'
	} {
		doc := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"` + c.trace + `","spanId":"` + c.span + `"}]}]}]}`
		b := decodeUnit(t, nil, []byte(doc), pipeline.FormatOTLP)
		r := &b.Records[0]
		if c.want != "" {
			if r.Failure.Code != codeBadID || r.Failure.Message != c.want {
				t.Errorf("%s %s: %+v, want bad_id %q", c.trace, c.span, r.Failure, c.want)
			}
			continue
		}
		if r.Failed() || string(r.TraceID) != trace || string(r.SpanID) != span {
			t.Errorf("%s %s: %s", c.trace, c.span, renderBatch(b))
		}
	}
}

// TestOTLPMissingTraceIDPerSignal: by default a trace-less log record is
// delivered and a trace-less span is invalid; each signal's policy is its
// own, and the scalar form sets both.
func TestOTLPMissingTraceIDPerSignal(t *testing.T) {
	const doc = `{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"s"}]}]}],"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"l"}}]}]}]}`
	for _, c := range []struct {
		set        func(*Options)
		span, logs string // "" delivered, "filtered", or a failure code
	}{
		{func(*Options) {}, codeMissingTrace, ""},
		{func(o *Options) { o.MissingTraceID = "invalid" }, codeMissingTrace, codeMissingTrace},
		{func(o *Options) { o.MissingTraceID = "keep" }, "", ""},
		{func(o *Options) { o.MissingTraceIDSpans, o.MissingTraceIDLogs = "keep", "filter" }, "", "filtered"},
		{func(o *Options) { o.MissingTraceID, o.MissingTraceIDLogs = "filter", "invalid" }, "filtered", codeMissingTrace},
	} {
		o := DefaultOptions()
		c.set(&o)
		if err := o.Prepare(); err != nil {
			t.Fatal(err)
		}
		b := decodeUnit(t, &o, []byte(doc), pipeline.FormatOTLP)
		got := func(r *pipeline.Record) string {
			if r.Filtered {
				return "filtered"
			}
			return r.Failure.Code
		}
		if len(b.Records) != 2 || got(&b.Records[0]) != c.span || got(&b.Records[1]) != c.logs {
			t.Errorf("%+v: %s", o, renderBatch(b))
		}
	}
}
