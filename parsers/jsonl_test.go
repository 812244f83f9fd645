package parsers

import (
	"testing"

	"github.com/valyala/fastjson"

	"github.com/tracepipe/tracepipe/pipeline"
)

// stdJSONLSpan has the fields of jsonlSpanLine, for the encoding/json baseline.
type stdJSONLSpan struct {
	Timestamp    string  `json:"timestamp"`
	TraceID      string  `json:"trace_id"`
	SpanID       string  `json:"span_id"`
	ParentSpanID string  `json:"parent_span_id"`
	Service      string  `json:"service"`
	Name         string  `json:"name"`
	Kind         string  `json:"kind"`
	Status       string  `json:"status"`
	DurationMS   float64 `json:"duration_ms"`
	HTTP         struct {
		Method    string `json:"method"`
		URL       string `json:"url"`
		UserAgent string `json:"user_agent"`
	} `json:"http"`
	Message string `json:"message"`
}

// stdJSONLDense has the fields of jsonlDenseLine.
type stdJSONLDense struct {
	Timestamp    string  `json:"timestamp"`
	TraceID      string  `json:"trace_id"`
	SpanID       string  `json:"span_id"`
	ParentSpanID string  `json:"parent_span_id"`
	Service      string  `json:"service"`
	Name         string  `json:"name"`
	Kind         string  `json:"kind"`
	Status       string  `json:"status"`
	DurationMS   float64 `json:"duration_ms"`
	HTTP         struct {
		Method     string `json:"method"`
		Route      string `json:"route"`
		StatusCode int    `json:"status_code"`
		UserAgent  string `json:"user_agent"`
	} `json:"http"`
	NetPeerIP string `json:"net.peer.ip"`
	UserID    string `json:"user_id"`
	Region    string `json:"region"`
	Host      string `json:"host"`
	Retry     bool   `json:"retry"`
}

// stdJSONLNested has the fields of jsonlNestedLine.
type stdJSONLNested struct {
	TraceID      string `json:"trace_id"`
	SpanID       string `json:"span_id"`
	ParentSpanID string `json:"parent_span_id"`
	Resource     struct {
		Attributes struct {
			ServiceName string `json:"service.name"`
		} `json:"attributes"`
	} `json:"resource"`
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Start  int64  `json:"start_time_unix_nano"`
	End    int64  `json:"end_time_unix_nano"`
	Status struct {
		Code string `json:"code"`
	} `json:"status"`
	Attributes struct {
		Method    string `json:"http.method"`
		URL       string `json:"http.url"`
		UserAgent string `json:"http.user_agent"`
		Message   string `json:"message"`
	} `json:"attributes"`
}

// BenchmarkDecodeJSONLLayouts decodes the same span in the flat layout
// (jsonlSpanLine) and in the nested-attributes one (jsonlNestedLine), each
// beside encoding/json decoding it into a struct: the nested layout must
// stay within 10% of the flat one's MB/s.
func BenchmarkDecodeJSONLLayouts(b *testing.B) {
	b.Logf("flat line %d bytes, nested line %d bytes", len(jsonlSpanLine), len(jsonlNestedLine))
	b.Run("flat", func(b *testing.B) { benchDecode(b, jsonlSpanLine, pipeline.FormatJSONL) })
	b.Run("nested", func(b *testing.B) { benchDecode(b, jsonlNestedLine, pipeline.FormatJSONL) })
	b.Run("flat_encoding_json", func(b *testing.B) { benchStd[stdJSONLSpan](b, jsonlSpanLine, false) })
	b.Run("nested_encoding_json", func(b *testing.B) { benchStd[stdJSONLNested](b, jsonlNestedLine, false) })
	b.Run("nested_tree_fastjson", func(b *testing.B) { withoutSinglePass(b); benchDecode(b, jsonlNestedLine, pipeline.FormatJSONL) })
}

// BenchmarkDecodeJSONL decodes a ~600-byte span line with 11 fields (one
// nested object), and a denser 528-byte line with 20 leaf values, beside
// encoding/json decoding the same lines into structs.
func BenchmarkDecodeJSONL(b *testing.B) {
	b.Logf("line %d bytes, dense line %d bytes", len(jsonlSpanLine), len(jsonlDenseLine))
	b.Run("singlepass", func(b *testing.B) { benchDecode(b, jsonlSpanLine, pipeline.FormatJSONL) })
	b.Run("tree_fastjson", func(b *testing.B) { withoutSinglePass(b); benchDecode(b, jsonlSpanLine, pipeline.FormatJSONL) })
	b.Run("encoding_json", func(b *testing.B) { benchStd[stdJSONLSpan](b, jsonlSpanLine, false) })
	b.Run("encoding_json_valid", func(b *testing.B) { benchStd[stdJSONLSpan](b, jsonlSpanLine, true) })
	b.Run("dense_singlepass", func(b *testing.B) { benchDecode(b, jsonlDenseLine, pipeline.FormatJSONL) })
	b.Run("dense_encoding_json", func(b *testing.B) { benchStd[stdJSONLDense](b, jsonlDenseLine, false) })
	b.Run("strict_check_only", func(b *testing.B) { benchValid(b, jsonlSpanLine) })
	b.Run("fastjson_parse_only", func(b *testing.B) {
		var p fastjson.Parser
		data := []byte(jsonlSpanLine)
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			if _, err := p.ParseBytes(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestJSONLSignalRule(t *testing.T) {
	f := func(line string, want pipeline.Signal, wantName, wantSeverity string) {
		t.Helper()
		b := decodeUnit(t, nil, []byte(line), pipeline.FormatJSONL)
		r := &b.Records[0]
		if r.Failed() || r.Signal != want || string(r.Name) != wantName || string(r.Severity) != wantSeverity {
			t.Errorf("%s: %s", line, renderBatch(b))
		}
	}
	const tr = `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`
	f(`{`+tr+`,"span_id":"00f067aa0ba902b7","duration_ms":1,"name":"n","level":"info"}`, pipeline.SignalSpan, "n", "")
	f(`{`+tr+`,"span_id":"00f067aa0ba902b7","name":"n","level":"info"}`, pipeline.SignalLog, "n", "info")
	f(`{`+tr+`,"duration_ms":1,"msg":"m"}`, pipeline.SignalLog, "m", "")
	f(`{`+tr+`,"span_id":"","duration":"1s","msg":"m"}`, pipeline.SignalLog, "m", "")
	f(`{`+tr+`,"span_id":"00f067aa0ba902b7","duration":"1s","msg":"m"}`, pipeline.SignalSpan, "", "")
}

func TestJSONLFlattenLimits(t *testing.T) {
	// Deep nesting stops flattening at maxFlattenDepth.
	line := `{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","a":`
	for range 30 {
		line += `{"b":`
	}
	line += `1` + string(make([]byte, 0))
	for range 31 {
		line += `}`
	}
	b := decodeUnit(t, nil, []byte(line), pipeline.FormatJSONL)
	r := &b.Records[0]
	if r.Failed() || len(r.Attrs) != 1 || r.Attrs[0].Type != pipeline.AttrJSON {
		t.Fatalf("%s", renderBatch(b))
	}
	if n := len(r.Attrs[0].Key); n != 1+2*maxFlattenDepth {
		t.Errorf("key %q", r.Attrs[0].Key)
	}
}

// withoutSinglePass makes jsonl decode through the fastjson tree path for
// the rest of b, to compare the two.
func withoutSinglePass(b *testing.B) {
	singlePass = false
	b.Cleanup(func() { singlePass = true })
}
