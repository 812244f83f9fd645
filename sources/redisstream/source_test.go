package redisstream

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/pipeline/dlq/redisdlq"
)

// TestInOrderAck: batches acked out of order are XACKed only up to the
// first gap: after Commit, XPENDING shows exactly the entries from the
// first unacked batch on; once the gap is acked, only the last batch's.
func TestInOrderAck(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	c := srv.Client(t)
	ids := add(t, c, 0, 30)
	h := run(t, testCfg(srv, "c1"), Options{BatchUnits: 5})
	gs := h.take(30)
	if len(gs) != 6 {
		t.Fatalf("%d batches, want 6 of 5", len(gs))
	}
	sameIDs(t, "read", idsOf(gs), ids)
	for i, g := range gs {
		if g.seq != uint64(i+1) || g.origin.Kind != "redis" || g.origin.Path != testStream || g.origin.Key != "redis:"+testStream {
			t.Fatalf("batch %d: seq %d origin %+v", i, g.seq, g.origin)
		}
		if g.payloads[0] != record(i*5) {
			t.Fatalf("batch %d payload %q", i, g.payloads[0])
		}
	}
	ackAll(gs[0], gs[1], gs[3], gs[4]) // batch 3 (index 2) is the gap
	commit(t, h.src)
	sameIDs(t, "pending after a gap", pendingIDs(t, c), ids[10:])
	ackAll(gs[2])
	commit(t, h.src)
	sameIDs(t, "pending after the gap closed", pendingIDs(t, c), ids[25:])
	ackAll(gs[5])
	commit(t, h.src)
	sameIDs(t, "pending at the end", pendingIDs(t, c), nil)
	if h.src.Acked() != 30 {
		t.Fatalf("Acked %d", h.src.Acked())
	}
	// The marker says windowed = delivered = the last id.
	if m := c.HGet(context.Background(), testStream+":tracepipe:g:windows", "c1").Val(); m != ids[29]+" "+ids[29] {
		t.Fatalf("marker %q", m)
	}
}

// TestOwnPendingFirst: a consumer with a stable name that stopped without
// acking gets its own pending entries first when it starts again, then
// the new ones; nothing is left pending once all are acked.
func TestOwnPendingFirst(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	c := srv.Client(t)
	old := add(t, c, 0, 10)
	h := run(t, testCfg(srv, "stable"), Options{})
	h.take(10) // read, never acked
	h.close()
	fresh := add(t, c, 10, 5)

	h = run(t, testCfg(srv, "stable"), Options{})
	gs := h.take(15)
	sameIDs(t, "order", idsOf(gs), append(append([]string{}, old...), fresh...))
	// At least the 10: the first run's last blocked read, cut by its
	// stop, may have been served a fresh entry the server then could not
	// send (it is pending here, unseen, and comes with the others).
	if len(gs[0].ids) < 10 {
		t.Fatalf("first batch has %d entries: the old pending ones were not read first on their own", len(gs[0].ids))
	}
	ackAll(gs...)
	commit(t, h.src)
	sameIDs(t, "pending", pendingIDs(t, c), nil)
}

// TestClaimDeadConsumer: a consumer reads entries and stops without
// acking them (it died); another, with a different name, claims them once
// they are idle for claim_idle and delivers every one; after its Commit
// nothing is pending.
func TestClaimDeadConsumer(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	c := srv.Client(t)
	ids := add(t, c, 0, 50)
	dead := run(t, testCfg(srv, "dead"), Options{})
	dead.take(50)
	dead.close()

	cfg := testCfg(srv, "alive")
	cfg.ClaimIdle, cfg.ClaimEvery = 100*time.Millisecond, 20*time.Millisecond
	h := run(t, cfg, Options{})
	gs := h.take(50)
	sameIDs(t, "claimed", idsOf(gs), ids)
	if h.src.Claimed() != 50 {
		t.Fatalf("Claimed %d", h.src.Claimed())
	}
	ackAll(gs...)
	commit(t, h.src)
	sameIDs(t, "pending", pendingIDs(t, c), nil)
}

// TestPoisonAtomicMove: an entry whose processing never acks is delivered
// to one consumer after another (each dies and the next claims it) until
// it was delivered max_deliveries times; the next claim does not deliver
// it but moves it to the Redis DLQ stream atomically: it is there, with
// its stream id and payload, and no longer pending. The other entries are
// not touched.
func TestPoisonAtomicMove(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	c := srv.Client(t)
	ids := add(t, c, 0, 1)
	back, err := redisdlq.Open(config.DLQRedis{Redis: config.Redis{Addr: srv.Addr(), Timeout: 5 * time.Second}, Stream: "dlq"}, redisdlq.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = back.Close(context.Background()) })
	poison := func(ctx context.Context, p Poisoned) (bool, error) {
		e := &dlq.Entry{
			Source: dlq.Source{Kind: "redis", Stream: p.Stream, StreamID: p.ID},
			Stage:  "read", Component: "redis_stream",
			Error: dlq.Error{Class: string(pipeline.ClassInvalid), Code: "max_deliveries", Message: "delivered too often"},
		}
		e.SetPayload(p.Payload, int64(len(p.Payload)), 0)
		return true, back.Move(ctx, p.Stream, p.Group, p.ID, e)
	}
	const maxDeliveries = 3
	cfg := func(name string) config.RedisStreamSource {
		cfg := testCfg(srv, name)
		cfg.MaxDeliveries = maxDeliveries
		cfg.ClaimIdle, cfg.ClaimEvery = 50*time.Millisecond, 10*time.Millisecond
		return cfg
	}
	for i := range maxDeliveries {
		h := run(t, cfg("c"+string(rune('a'+i))), Options{Poison: poison})
		sameIDs(t, "delivery", idsOf(h.take(1)), ids)
		h.close() // dies without acking
	}
	h := run(t, cfg("last"), Options{Poison: poison})
	waitFor(t, "the poison move", func() bool { return h.src.Poisoned() == 1 })
	if g, ok := h.next(100 * time.Millisecond); ok {
		t.Fatalf("entry delivered a %dth time: %v", maxDeliveries+1, g.ids)
	}
	sameIDs(t, "pending", pendingIDs(t, c), nil)
	msgs, err := c.XRange(context.Background(), "dlq", "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("dlq stream: %v %v", msgs, err)
	}
	v := msgs[0].Values
	if v["source_stream_id"] != ids[0] || v["source_stream"] != testStream || v["payload"] != record(0) || v["code"] != "max_deliveries" {
		t.Fatalf("dlq entry %v", v)
	}
	if n := c.XLen(context.Background(), testStream).Val(); n != 1 {
		t.Fatalf("the source stream holds %d entries: the entry must stay where it was", n)
	}
}

// TestServerRestartAOF: redis-server is killed (SIGKILL) and restarted
// mid-run with AOF on, while a producer keeps adding; the source retries
// through the outage and every entry added is delivered (counted by id),
// and nothing is left pending once acked and committed.
func TestServerRestartAOF(t *testing.T) {
	t.Parallel()
	srv := testredis.StartWith(t, testredis.Options{AOF: true})
	c := srv.Client(t)
	h := run(t, testCfg(srv, "c1"), Options{BatchUnits: 50})
	var seen seenSet
	stopAck := make(chan struct{})
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopAck:
				return
			case <-tick.C:
				_ = h.src.Commit(context.Background()) // fails while the server is down
			default:
			}
			g, ok := h.next(5 * time.Millisecond)
			if ok {
				seen.add(g.ids)
				ackAll(g)
			}
		}
	}()
	var added []string
	ctx := context.Background()
	addOne := func(i int) {
		for {
			id, err := c.XAdd(ctx, &goredis.XAddArgs{Stream: testStream, Values: []any{RecordField, record(i)}}).Result()
			if err == nil {
				added = append(added, id)
				return
			}
			time.Sleep(10 * time.Millisecond) // the server is down: the producer retries
		}
	}
	for i := range 3000 {
		addOne(i)
		if i == 1500 {
			srv.Kill()
			go func() { time.Sleep(300 * time.Millisecond); srv.Restart() }()
		}
	}
	// An XADD whose reply the kill cut may have been executed: the stream
	// can hold entries the producer does not know of. Every known one
	// must come.
	missing := func() int {
		seen.mu.Lock()
		defer seen.mu.Unlock()
		n := 0
		for _, id := range added {
			if seen.m[id] == 0 {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(20 * time.Second)
	for missing() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entries added never delivered", missing(), len(added))
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stopAck)
	<-ackDone
	waitFor(t, "nothing pending", func() bool {
		_ = h.src.Commit(ctx)
		return len(pendingIDs(t, c)) == 0
	})
}

// TestWindowsMarkerRewind: batches delivered (acked) but not windowed
// (never window-acked) when the process stops are read again at the next
// start, from the same consumer's marker, as WindowsOnly batches covering
// exactly (windowed, delivered]; nothing is delivered twice, and the
// marker catches up once they are window-acked.
func TestWindowsMarkerRewind(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	c := srv.Client(t)
	ids := add(t, c, 0, 20)
	h := run(t, testCfg(srv, "w"), Options{BatchUnits: 5})
	gs := h.take(20)
	for _, g := range gs {
		g.acker.Ack(g.seq)
	}
	gs[0].acker.(pipeline.WindowAcker).WindowAck(gs[0].seq)
	commit(t, h.src)
	key := testStream + ":tracepipe:g:windows"
	if m := c.HGet(context.Background(), key, "w").Val(); m != ids[4]+" "+ids[19] {
		t.Fatalf("marker %q, want %q", m, ids[4]+" "+ids[19])
	}
	sameIDs(t, "pending", pendingIDs(t, c), nil)
	h.close()

	h = run(t, testCfg(srv, "w"), Options{BatchUnits: 5})
	re := h.take(15)
	for _, g := range re {
		if !g.windowsOnly {
			t.Fatalf("batch %d not WindowsOnly", g.seq)
		}
	}
	sameIDs(t, "re-read", idsOf(re), ids[5:])
	if g, ok := h.next(100 * time.Millisecond); ok {
		t.Fatalf("more came: %v (windowsOnly %t)", g.ids, g.windowsOnly)
	}
	// A second stop with part of the re-read windowed: the marker keeps
	// the rest.
	ackAll(re[0])
	for _, g := range re[1:] {
		g.acker.Ack(g.seq)
	}
	commit(t, h.src)
	if m := c.HGet(context.Background(), key, "w").Val(); m != ids[9]+" "+ids[19] {
		t.Fatalf("marker after part of the re-read %q, want %q", m, ids[9]+" "+ids[19])
	}
	ackAll(re[1:]...)
	commit(t, h.src)
	if m := c.HGet(context.Background(), key, "w").Val(); m != ids[19]+" "+ids[19] {
		t.Fatalf("marker after the re-read %q", m)
	}
}

// TestTakeOverMarker: a consumer that stopped with windowed < delivered
// and never comes back has its range re-read by the consumer that claims
// work, once it is idle for claim_idle; its marker is deleted (HDEL), so
// no one else re-reads it.
func TestTakeOverMarker(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	c := srv.Client(t)
	ids := add(t, c, 0, 10)
	h := run(t, testCfg(srv, "gone"), Options{BatchUnits: 5})
	gs := h.take(10)
	ackAll(gs[0])
	gs[1].acker.Ack(gs[1].seq)
	commit(t, h.src)
	h.close()

	cfg := testCfg(srv, "taker")
	cfg.ClaimIdle, cfg.ClaimEvery = 100*time.Millisecond, 20*time.Millisecond
	h = run(t, cfg, Options{BatchUnits: 5})
	re := h.take(5)
	if !re[0].windowsOnly {
		t.Fatal("not WindowsOnly")
	}
	sameIDs(t, "re-read", idsOf(re), ids[5:])
	if n := c.HExists(context.Background(), testStream+":tracepipe:g:windows", "gone").Val(); n {
		t.Fatal("the gone consumer's marker is still there")
	}
}

// TestEntryWithoutRecord: an entry with no record field is one unit with
// no bytes (the parse stage fails it) keyed by its id, and reading goes
// on.
func TestEntryWithoutRecord(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	bad := c.XAdd(ctx, &goredis.XAddArgs{Stream: testStream, Values: []any{"other", "x"}}).Val()
	good := add(t, c, 0, 1)
	h := run(t, testCfg(srv, "c"), Options{})
	gs := h.take(2)
	sameIDs(t, "ids", idsOf(gs), []string{bad, good[0]})
	if p := gs[0].payloads; p[0] != "" || p[1] != record(0) {
		t.Fatalf("payloads %q", p)
	}
}

// TestStopsPromptly: Run returns soon after its context ends although its
// read blocks for 30s (the harness fails it after 2s); and the stream
// tells Idle once it has been quiet for idle_timeout.
func TestStopsPromptly(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	c := srv.Client(t)
	add(t, c, 0, 3)
	cfg := testCfg(srv, "c")
	cfg.Block, cfg.IdleTimeout = 30*time.Second, 50*time.Millisecond
	h := run(t, cfg, Options{})
	ackAll(h.take(3)...)
	select {
	case n := <-h.idle:
		if n != 1 {
			t.Fatalf("idle after %d batches", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no Idle")
	}
	start := time.Now()
	h.close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Run took %s to return", d)
	}
	if !strings.Contains(h.src.Consumer(), "c") {
		t.Fatal(h.src.Consumer())
	}
}
