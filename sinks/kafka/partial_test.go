package kafka_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/pipeline"
)

// TestPartialFailureNamesOnlyTheFailedRecords: one of the produce requests
// of a write (one partition's messages) is refused by the broker; the rest
// land. Write reports exactly the records that are not in the topic, so
// only those are retried or dead-lettered, and the others count once.
func TestPartialFailureNamesOnlyTheFailedRecords(t *testing.T) {
	c := testkafka.StartWith(t, testkafka.Options{Topics: []string{"records"}, Partitions: 3})
	s := newSink(t, sinkConfig(c.Addrs(), "records"))
	b := parsedBatch(t, genLines(t, 300, 0))
	defer pipeline.PutBatch(b)
	c.FailProduce(1, 87) // INVALID_RECORD: not retried inside the writer

	err := s.Write(context.Background(), b, pipeline.DeliverableRecords(b))
	var pe *pipeline.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) == 0 || len(pe.Failed) == len(b.Records) {
		t.Fatalf("err %v: want a PartialError naming some but not all records", err)
	}
	inTopic := map[string]bool{}
	for _, m := range c.Messages("records") {
		inTopic[string(m.Value)] = true
	}
	failed := map[int32]bool{}
	for _, i := range pe.Failed {
		failed[i] = true
	}
	got := c.Count("records")
	t.Logf("%d of %d records failed (%v); %d in the topic", len(pe.Failed), len(b.Records), err, got)
	if got != int64(len(b.Records)-len(pe.Failed)) {
		t.Fatalf("%d messages in the topic, want %d taken", got, len(b.Records)-len(pe.Failed))
	}
	// Each record the sink says failed is absent, each other one present.
	for i := range b.Records {
		want := []byte(`"span_id":"` + string(b.Records[i].SpanID) + `"`)
		in := false
		for v := range inTopic {
			if strings.Contains(v, string(want)) {
				in = true
				break
			}
		}
		if in == failed[int32(i)] {
			t.Fatalf("record %d (span %s): reported failed %v, in the topic %v", i, b.Records[i].SpanID, failed[int32(i)], in)
		}
	}
	if s.Stats().Messages != got {
		t.Fatalf("stats %+v, %d in the topic", s.Stats(), got)
	}
}
