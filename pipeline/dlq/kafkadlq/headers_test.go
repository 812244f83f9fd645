package kafkadlq

import (
	"reflect"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// TestHeadersRoundTrip: encode then decode gives the entry back, with
// every field filled, text and binary payloads (no broker needed).
func TestHeadersRoundTrip(t *testing.T) {
	tm := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, payload := range [][]byte{[]byte(`{"a":1}`), {0xff, 0, 'x'}} {
		e := &dlq.Entry{Version: dlq.SchemaVersion, ID: dlq.NewID(tm), Time: tm,
			Source: dlq.Source{Kind: "kafka", Path: "p", Format: "jsonl", Offset: 9, Line: 2, Topic: "t", Partition: 4, KafkaOff: 77, Stream: "s", StreamID: "1-2"},
			Stage:  "sink", Component: "k", Sinks: []string{"a", "b.c"}, Host: "h", PipelineVersion: "v1",
			Error:    dlq.Error{Class: "sink_exhausted", Code: "timeout", Message: "m é"},
			Attempts: 3, FirstFailure: tm, LastFailure: tm.Add(time.Second),
			EventTime: &tm, WindowStart: &tm, WindowEnd: &tm, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
			Redacted: true, ReplayCount: 2, ReplayedFrom: dlq.NewID(tm)}
		e.SetPayload(payload, int64(len(payload))+10, 1024)
		m := encode(e)
		got, err := decode(m.Value, m.Headers)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
		}
	}
}
