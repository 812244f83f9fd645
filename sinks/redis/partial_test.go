package redis_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline"
)

// TestStreamPipelineCutMidway: Redis runs out of memory (maxmemory,
// noeviction) in the middle of a batch's pipeline, so the first XADDs are
// stored and the later ones refused with OOM. Write reports exactly the
// records that are not in the stream: only those are retried or
// dead-lettered, the others count out once.
func TestStreamPipelineCutMidway(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := t.Context()
	sink := newStream(t, srv, "recs", 0)
	b := parsedBatch(t, streamLines(t, 2000, 4))
	defer pipeline.PutBatch(b)

	info, err := c.InfoMap(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	base, err := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	if err != nil {
		t.Fatalf("used_memory: %v (%v)", err, info)
	}
	// Room for a few hundred of the 2,000 records (~1.3 KB each in Redis).
	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", strconv.FormatInt(base+600<<10, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	werr := sink.Write(ctx, b, pipeline.DeliverableRecords(b))
	if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	var pe *pipeline.PartialError
	if !errors.As(werr, &pe) || len(pe.Failed) == 0 || len(pe.Failed) == len(b.Records) {
		t.Fatalf("err %v: want a PartialError naming some but not all records", werr)
	}
	msgs, err := c.XRange(ctx, "recs", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, m := range msgs {
		stored[m.Values["span_id"].(string)] = true
	}
	failed := map[int32]bool{}
	for _, i := range pe.Failed {
		failed[i] = true
	}
	t.Logf("%d of %d records refused (%v); %d in the stream", len(pe.Failed), len(b.Records), werr, len(msgs))
	if len(msgs)+len(pe.Failed) != len(b.Records) {
		t.Fatalf("%d stored + %d reported failed != %d records", len(msgs), len(pe.Failed), len(b.Records))
	}
	for i := range b.Records {
		if in := stored[string(b.Records[i].SpanID)]; in == failed[int32(i)] {
			t.Fatalf("record %d: reported failed %v, in the stream %v", i, failed[int32(i)], in)
		}
	}
}
