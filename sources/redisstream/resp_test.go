package redisstream

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline"
)

// rawRead sends XREADGROUP as the source does, over protocol proto (2 or
// 3), and returns the raw reply.
func rawRead(t *testing.T, srv *testredis.Server, proto int, group, id string) []byte {
	t.Helper()
	o := srv.Options()
	o.Protocol = proto
	c := goredis.NewClient(o)
	defer c.Close()
	var buf bytes.Buffer
	err := c.DoRawWriteTo(context.Background(), &buf, "XREADGROUP", "GROUP", group, "c", "COUNT", 100, "BLOCK", 10, "STREAMS", testStream, id).Err()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestParseRead: the raw XREADGROUP reply of a real server, in RESP2 and
// RESP3, parses to the ids and records go-redis reads for the same
// entries (one without a record field has none; a record beside other
// fields and a 100 KB record are found whole); a deleted pending entry has
// no record; a reply of nothing (BLOCK timed out) has no entry; an error
// reply (no such group) is an error go-redis classifies as it would its
// own; a truncated reply is an error, never a shorter list.
func TestParseRead(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	big := strings.Repeat("b", 100<<10)
	for _, vals := range [][]any{
		{RecordField, `{"a":1}`},
		{"other", "x"},
		{"before", "y", RecordField, `{"b":2}`, "after", "z"},
		{RecordField, big},
		{RecordField, ""},
	} {
		if err := c.XAdd(ctx, &goredis.XAddArgs{Stream: testStream, Values: vals}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	want := c.XRange(ctx, testStream, "-", "+").Val()
	for _, proto := range []int{2, 3} {
		group := "g" + string(rune('0'+proto))
		if err := c.XGroupCreate(ctx, testStream, group, "0").Err(); err != nil {
			t.Fatal(err)
		}
		reply := rawRead(t, srv, proto, group, ">")
		got, err := parseRead(reply, testStream, nil)
		if err != nil || len(got) != len(want) {
			t.Fatalf("RESP%d: %d entries, err %v; want %d", proto, len(got), err, len(want))
		}
		for i, e := range got {
			rec, has := want[i].Values[RecordField].(string)
			if string(e.id) != want[i].ID || string(e.payload) != rec || (e.payload == nil) != (!has) {
				t.Fatalf("RESP%d entry %d: id %s record %.20q (nil %v), want %s %.20q (has %v)", proto, i, e.id, e.payload, e.payload == nil, want[i].ID, rec, has)
			}
		}
		for n := range len(reply) {
			if es, err := parseRead(reply[:n], testStream, nil); err == nil {
				t.Fatalf("RESP%d: reply cut at %d of %d parsed to %d entries, no error", proto, n, len(reply), len(es))
			}
		}
		// Nothing new: a null reply.
		if es, err := parseRead(rawRead(t, srv, proto, group, ">"), testStream, nil); err != nil || len(es) != 0 {
			t.Fatalf("RESP%d: nothing new read as %d entries, err %v", proto, len(es), err)
		}
		// A deleted pending entry comes back without fields.
		if proto == 3 {
			if err := c.XDel(ctx, testStream, want[0].ID).Err(); err != nil {
				t.Fatal(err)
			}
		}
		es, err := parseRead(rawRead(t, srv, proto, group, "0"), testStream, nil)
		if err != nil || len(es) != len(want) {
			t.Fatalf("RESP%d: own pending read as %d entries, err %v", proto, len(es), err)
		}
		if proto == 3 && (string(es[0].id) != want[0].ID || es[0].payload != nil) {
			t.Fatalf("deleted entry read as %s %q", es[0].id, es[0].payload)
		}
		_, err = parseRead(rawRead(t, srv, proto, "nosuchgroup", ">"), testStream, nil)
		if !goredis.HasErrorPrefix(err, "NOGROUP") {
			t.Fatalf("RESP%d: missing group: err %v, want a NOGROUP server error", proto, err)
		}
		dst := make([]rawEntry, 0, len(want))
		if a := testing.AllocsPerRun(20, func() { dst, _ = parseRead(reply, testStream, dst[:0]) }); a != 0 {
			t.Fatalf("RESP%d: parseRead allocates %v times per reply", proto, a)
		}
	}
}

// TestParseReadAllocs: parsing a reply allocates nothing once the
// entries' slice has grown. (Not parallel: AllocsPerRun.)
func TestParseReadAllocs(t *testing.T) {
	reply := syntheticReply(512, 400)
	dst, err := parseRead(reply, testStream, nil)
	if err != nil || len(dst) != 512 {
		t.Fatalf("%d entries, err %v", len(dst), err)
	}
	if a := testing.AllocsPerRun(20, func() { dst, _ = parseRead(reply, testStream, dst[:0]) }); a != 0 {
		t.Fatalf("parseRead allocates %v times per reply", a)
	}
}

// TestAppendEntriesAllocs: ids of a read share one allocation and read back
// exactly. (Not parallel: AllocsPerRun.)
func TestAppendEntriesAllocs(t *testing.T) {
	raw := []rawEntry{{id: []byte("1-0"), payload: []byte("a")}, {id: []byte("1700000000000-12")}, {id: []byte("2-3"), payload: []byte("c")}}
	var dst []entry
	if a := testing.AllocsPerRun(20, func() { dst = appendEntries(dst[:0], raw) }); a != 1 {
		t.Fatalf("%v allocations for a read's ids, want 1", a)
	}
	for i, e := range dst {
		if e.id != string(raw[i].id) || string(e.payload) != string(raw[i].payload) {
			t.Fatalf("entry %d: %q %q", i, e.id, e.payload)
		}
	}
}

// TestStopAndResumeFullReads: replies of count entries each, the job
// taking batches one at a time. Stopped mid-way, nothing read is lost or
// repeated: what the group holds pending for the consumer is, in order,
// the entries after the last committed batch, and the same consumer
// started again reads exactly the rest of the stream, in order; its stop,
// with a read blocked on a stream read to its end (BLOCK 30s), is prompt.
func TestStopAndResumeFullReads(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	c := srv.Client(t)
	ids := add(t, c, 0, 500)
	cfg := testCfg(srv, "c1")
	cfg.Count, cfg.Block = 10, 30*time.Second
	src, err := New("rs", cfg, Options{IDs: &pipeline.OriginIDs{}, Logger: quiet(), BatchUnits: 10})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *pipeline.Batch) // the job takes one batch at a time
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	var first []string
	for len(first) < 100 {
		b := <-out
		for i := range b.Units {
			first = append(first, string(b.UnitKey(i)))
		}
		b.Acker.Ack(b.Seq)
		b.Acker.(pipeline.WindowAcker).WindowAck(b.Seq)
		pipeline.PutBatch(b)
	}
	sameIDs(t, "first read", first, ids[:100])
	commit(t, src)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of its context's end")
	}
	_ = src.Close()
	pend := pendingIDs(t, c)
	if len(pend) < 10 {
		t.Fatalf("%d entries pending, want at least the batch being sent", len(pend))
	}
	sameIDs(t, "pending after the stop", pend, ids[100:100+len(pend)])

	h := run(t, cfg, Options{BatchUnits: 10})
	gs := h.take(400)
	sameIDs(t, "read after the restart", idsOf(gs), ids[100:])
	ackAll(gs...)
	commit(t, h.src)
	sameIDs(t, "pending at the end", pendingIDs(t, c), nil)
	start := time.Now()
	h.close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Run took %s to return with a read blocked", d)
	}
}
