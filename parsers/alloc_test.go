package parsers

import (
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Typical units: a ~600-byte jsonl span line with ~10 fields, an OTLP
// request with one span (the file exporter's shape), a Zipkin array of one
// span.
const (
	jsonlSpanLine = `{"timestamp":"2024-05-14T09:21:07.123456789Z","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",` +
		`"span_id":"00f067aa0ba902b7","parent_span_id":"53995c3f42cd8ad8","service":"checkout-service",` +
		`"name":"POST /api/v1/orders/{id}/items","kind":"server","status":"ok","duration_ms":12.532,` +
		`"http":{"method":"POST","url":"https://shop.example.com/api/v1/orders/8d3c2f7a-51b4-4c3e-9a57-0c6f2d9e4b11/items?expand=true",` +
		`"user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"},` +
		`"message":"order items updated after stock check"}`

	// jsonlDenseLine has twice the fields in fewer bytes: a harder case.
	jsonlDenseLine = `{"timestamp":"2024-05-14T09:21:07.123456789Z","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",` +
		`"span_id":"00f067aa0ba902b7","parent_span_id":"53995c3f42cd8ad8","service":"checkout-service",` +
		`"name":"POST /api/v1/orders/{id}/items","kind":"server","status":"ok","duration_ms":12.532,` +
		`"http":{"method":"POST","route":"/api/v1/orders/{id}/items","status_code":201,` +
		`"user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"},` +
		`"net.peer.ip":"10.0.3.17","user_id":"u-98231","region":"eu-west-1","host":"web-7f9c-5d8b9","retry":false}`

	// jsonlNestedLine is jsonlSpanLine in the nested-attributes layout
	// (OTLP-shaped span line): resource and attributes objects, a start and
	// end time pair, a status object. The same record comes out.
	jsonlNestedLine = `{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","parent_span_id":"53995c3f42cd8ad8",` +
		`"resource":{"attributes":{"service.name":"checkout-service"}},"name":"POST /api/v1/orders/{id}/items","kind":"SPAN_KIND_SERVER",` +
		`"start_time_unix_nano":1715678467123456789,"end_time_unix_nano":1715678467136000000,"status":{"code":"STATUS_CODE_OK"},` +
		`"attributes":{"http.method":"POST","http.url":"https://shop.example.com/api/v1/orders/8d3c2f7a-51b4-4c3e-9a57-0c6f2d9e4b11/items?expand=true",` +
		`"http.user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",` +
		`"message":"order items updated after stock check"}}`

	otlpSpanLine = `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout-service"}},` +
		`{"key":"host.name","value":{"stringValue":"web-7f9c-5d8b9"}},{"key":"process.pid","value":{"intValue":"4242"}}]},` +
		`"scopeSpans":[{"scope":{"name":"io.opentelemetry.http","version":"1.2.0"},"spans":[{"traceId":"4BF92F3577B34DA6A3CE929D0E0E4736",` +
		`"spanId":"00F067AA0BA902B7","parentSpanId":"53995C3F42CD8AD8","name":"POST /api/v1/orders/{id}/items","kind":2,` +
		`"startTimeUnixNano":"1715678467123456789","endTimeUnixNano":"1715678467136000000",` +
		`"attributes":[{"key":"http.method","value":{"stringValue":"POST"}},{"key":"http.status_code","value":{"intValue":"201"}},` +
		`{"key":"http.route","value":{"stringValue":"/api/v1/orders/{id}/items"}},{"key":"retry","value":{"boolValue":false}},` +
		`{"key":"ratio","value":{"doubleValue":0.25}}],"status":{"code":1}}]}]}]}`

	zipkinSpanLine = `[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","parentId":"53995c3f42cd8ad8","id":"00f067aa0ba902b7",` +
		`"kind":"SERVER","name":"post /api/v1/orders/{id}/items","timestamp":1715678467123456,"duration":12532,` +
		`"localEndpoint":{"serviceName":"checkout-service","ipv4":"10.0.3.4","port":8080},` +
		`"remoteEndpoint":{"serviceName":"frontend","ipv4":"10.0.3.17"},` +
		`"annotations":[{"timestamp":1715678467123500,"value":"wire recv"}],` +
		`"tags":{"http.method":"POST","http.path":"/api/v1/orders/17/items","http.status_code":"201","user_id":"u-98231"}}]`
)

var typicalUnits = []struct {
	name   string
	line   string
	format pipeline.Format
	attrs  int
}{
	{"jsonl", jsonlSpanLine, pipeline.FormatJSONL, 4},
	{"jsonl_dense", jsonlDenseLine, pipeline.FormatJSONL, 9},
	{"jsonl_nested", jsonlNestedLine, pipeline.FormatJSONL, 4},
	{"otlp", otlpSpanLine, pipeline.FormatOTLP, 9},
	{"zipkin", zipkinSpanLine, pipeline.FormatZipkin, 5},
}

func TestTypicalUnitsDecode(t *testing.T) {
	for _, c := range typicalUnits {
		b := decodeUnit(t, nil, []byte(c.line), c.format)
		if len(b.Records) != 1 {
			t.Fatalf("%s: %d records", c.name, len(b.Records))
		}
		r := &b.Records[0]
		if r.Failed() || r.Signal != pipeline.SignalSpan || string(r.TraceID) != "4bf92f3577b34da6a3ce929d0e0e4736" ||
			string(r.Service) != "checkout-service" || string(r.Kind) != "server" || r.Duration <= 0 || len(r.Attrs) != c.attrs {
			t.Errorf("%s: %s", c.name, renderBatch(b))
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	for _, c := range typicalUnits {
		t.Run(c.name, func(t *testing.T) {
			d := GetDecoder(nil)
			defer PutDecoder(d)
			b := &pipeline.Batch{}
			run := func() {
				b.Reset()
				b.AddUnit([]byte(c.line), 0, 1, int64(len(c.line)), 0)
				d.Decode(b, 0, c.format)
			}
			for range 3 {
				run()
			}
			if allocs := testing.AllocsPerRun(200, run); allocs != 0 {
				t.Errorf("%s: %v allocs per unit", c.name, allocs)
			}
			if len(b.Records) != 1 || b.Records[0].Failed() {
				t.Errorf("%s: %+v", c.name, b.Records)
			}
		})
	}
}

func TestValidAllocs(t *testing.T) {
	d := GetDecoder(nil)
	defer PutDecoder(d)
	for _, c := range typicalUnits {
		data := []byte(c.line)
		d.Valid(data)
		if allocs := testing.AllocsPerRun(200, func() {
			if !d.Valid(data) {
				t.Fatal("not valid")
			}
		}); allocs != 0 {
			t.Errorf("%s: %v allocs per Valid", c.name, allocs)
		}
	}
	pretty := []byte("{\n  \"a\": [1, 2.5e3, \"\\u00e9\\ud83d\\ude00\"],\n\t\"b\": {\"c\": null}\r\n}")
	lone := []byte(`{"a":"\ud800 lone"}`)
	for _, data := range [][]byte{pretty, lone} {
		d.Valid(data)
		if allocs := testing.AllocsPerRun(200, func() { d.Valid(data) }); allocs != 0 {
			t.Errorf("%q: %v allocs per Valid", data, allocs)
		}
	}
}

// TestDecodeAllocsFailures checks the common failures stay cheap too: a line
// without a trace id under each policy.
func TestDecodeAllocsPolicies(t *testing.T) {
	line := []byte(`{"time":1715678467,"message":"no trace","level":"info","k":{"a":1}}`)
	for _, policy := range []string{"invalid", "filter", "keep"} {
		opts := DefaultOptions()
		opts.MissingTraceID = policy
		if err := opts.Prepare(); err != nil {
			t.Fatal(err)
		}
		d := GetDecoder(&opts)
		b := &pipeline.Batch{}
		run := func() {
			b.Reset()
			b.AddUnit(line, 0, 1, int64(len(line)), 0)
			d.Decode(b, 0, pipeline.FormatJSONL)
		}
		run()
		if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
			t.Errorf("%s: %v allocs", policy, allocs)
		}
		PutDecoder(d)
	}
}
