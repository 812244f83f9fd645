package parsers

import (
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

// stdZipkinSpan has the fields of zipkinSpanLine, for the encoding/json baseline.
type stdZipkinSpan struct {
	TraceID       string `json:"traceId"`
	ParentID      string `json:"parentId"`
	ID            string `json:"id"`
	Kind          string `json:"kind"`
	Name          string `json:"name"`
	Timestamp     int64  `json:"timestamp"`
	Duration      int64  `json:"duration"`
	LocalEndpoint struct {
		ServiceName string `json:"serviceName"`
		IPv4        string `json:"ipv4"`
		Port        int    `json:"port"`
	} `json:"localEndpoint"`
	RemoteEndpoint struct {
		ServiceName string `json:"serviceName"`
		IPv4        string `json:"ipv4"`
	} `json:"remoteEndpoint"`
	Annotations []struct {
		Timestamp int64  `json:"timestamp"`
		Value     string `json:"value"`
	} `json:"annotations"`
	Tags map[string]string `json:"tags"`
}

func BenchmarkDecodeZipkin(b *testing.B) {
	b.Run("fastjson", func(b *testing.B) { benchDecode(b, zipkinSpanLine, pipeline.FormatZipkin) })
	b.Run("encoding_json", func(b *testing.B) { benchStd[[]stdZipkinSpan](b, zipkinSpanLine, false) })
	b.Run("encoding_json_valid", func(b *testing.B) { benchStd[[]stdZipkinSpan](b, zipkinSpanLine, true) })
}

func TestDetect(t *testing.T) {
	f := func(want pipeline.Format, units ...string) {
		t.Helper()
		b := &pipeline.Batch{}
		for _, u := range units {
			b.AddUnit([]byte(u), 0, 1, int64(len(u)), 0)
		}
		if got := Detect(b); got != want {
			t.Errorf("Detect(%q) = %s, want %s", units, got, want)
		}
	}
	f(pipeline.FormatOTLP, otlpSpanLine)
	f(pipeline.FormatOTLP, `{"resourceLogs":[]}`)
	f(pipeline.FormatOTLP, `not json`, `{"resourceSpans":[{"instrumentationLibrarySpans":[]}]}`)
	f(pipeline.FormatZipkin, zipkinSpanLine)
	f(pipeline.FormatZipkin, `{"traceId":"a","id":"b","localEndpoint":{}}`)
	f(pipeline.FormatZipkin, `{"traceId":"a","id":"b","tags":{"k":"v"}}`)
	f(pipeline.FormatZipkin, `[]`)
	f(pipeline.FormatZipkin, `[]`, `[{"traceId":"a","id":"b"}]`)
	f(pipeline.FormatJSONL, `{"traceId":"a","id":"b"}`)
	f(pipeline.FormatJSONL, jsonlSpanLine)
	f(pipeline.FormatJSONL, `[1,2]`)
	f(pipeline.FormatJSONL, `garbage`, `{"a":`)
	f(pipeline.FormatJSONL)
	f(pipeline.FormatJSONL, `{"a":1}`, otlpSpanLine)
}
