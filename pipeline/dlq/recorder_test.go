package dlq

import (
	"context"
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

// A record read from a Kafka partition or a Redis Stream is dead-lettered
// with where its message is: topic, partition, offset and key; stream and
// entry id. The entries are read back from a real file DLQ.
func TestRecorderStreamPositions(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenFile(FileOptions{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRecorder(f, RecorderOptions{})
	put := func(o *pipeline.Origin, key []byte, off int64) {
		t.Helper()
		b := pipeline.GetBatch()
		defer pipeline.PutBatch(b)
		b.Origin = o
		b.AddKeyedUnit([]byte(`{"x":`), key, off, 0, 5, 0)
		rec := b.NewRecord(0)
		rec.Failure = pipeline.Failure{Stage: "parse", Class: pipeline.ClassMalformed, Code: "bad_json", Message: "cut"}
		if err := r.PutRecord(context.Background(), b, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	put(&pipeline.Origin{Kind: "kafka", Path: "spans", Partition: 0, Key: "kafka:spans:0"}, []byte("order-17"), 41)
	put(&pipeline.Origin{Kind: "kafka", Path: "spans", Partition: 5, Key: "kafka:spans:5"}, []byte{0xff, 0x00}, 7)
	put(&pipeline.Origin{Kind: "redis", Path: "traces", Key: "redis:traces"}, []byte("1718000000000-3"), 1718000000000)
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var got []Source
	if err := st.Scan(context.Background(), func(e *Entry) error { got = append(got, e.Source); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []Source{
		{Kind: "kafka", Key: "kafka:spans:0", Format: "auto", Offset: 41, Topic: "spans", Partition: 0, KafkaOff: 41, MessageKey: "order-17"},
		{Kind: "kafka", Key: "kafka:spans:5", Format: "auto", Offset: 7, Topic: "spans", Partition: 5, KafkaOff: 7, MessageKey: "/wA=", KeyBase64: true},
		{Kind: "redis", Key: "redis:traces", Format: "auto", Offset: 1718000000000, Stream: "traces", StreamID: "1718000000000-3"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d source:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}
