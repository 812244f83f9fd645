package redisstream

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline"
)

const testStream = "spans"

// testCfg is a source config for srv with short intervals, so tests run
// fast; claims are off (an hour) unless a test turns them on.
func testCfg(srv *testredis.Server, consumer string) config.RedisStreamSource {
	return config.RedisStreamSource{
		Redis:  config.Redis{Addr: srv.Addr(), Timeout: 5 * time.Second},
		Stream: testStream, Group: "g", Consumer: consumer, StartAt: "beginning",
		Count: 100, Block: 20 * time.Millisecond, ClaimIdle: time.Hour, ClaimEvery: time.Hour,
		MaxDeliveries: 5, IdleTimeout: time.Hour,
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// harness runs one Source into a channel, as the job would, and lets the
// test see and ack its batches.
type harness struct {
	t    *testing.T
	src  *Source
	out  chan *pipeline.Batch
	stop context.CancelFunc
	done chan error
	idle chan int64
}

// run starts a Source for cfg; the test stops it with h.close (or at its
// end).
func run(t *testing.T, cfg config.RedisStreamSource, o Options) *harness {
	t.Helper()
	if o.IDs == nil {
		o.IDs = &pipeline.OriginIDs{}
	}
	if o.Logger == nil {
		o.Logger = quiet()
	}
	h := &harness{t: t, out: make(chan *pipeline.Batch, 1024), done: make(chan error, 1), idle: make(chan int64, 16)}
	if o.Events.Idle == nil {
		o.Events.Idle = func(_ int, n int64) { h.idle <- n }
	}
	src, err := New("rs", cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	h.src = src
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.done <- src.Run(ctx, h.out) }()
	t.Cleanup(h.close)
	return h
}

// close stops Run (it must return nil within 2s, whatever block is),
// drops the batches not taken, and closes the connections.
func (h *harness) close() {
	if h.stop == nil {
		return
	}
	h.stop()
	h.stop = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v", err)
		}
	case <-time.After(2 * time.Second):
		h.t.Error("Run did not return within 2s of its context's end")
	}
	for {
		select {
		case b := <-h.out:
			pipeline.PutBatch(b)
		default:
			_ = h.src.Close()
			return
		}
	}
}

// got is a batch as the test keeps it (the batch itself goes back to the
// pool).
type got struct {
	seq         uint64
	ids         []string
	payloads    []string
	windowsOnly bool
	acker       pipeline.Acker
	origin      pipeline.Origin
}

// next waits for the next batch.
func (h *harness) next(timeout time.Duration) (got, bool) {
	h.t.Helper()
	select {
	case b := <-h.out:
		g := got{seq: b.Seq, windowsOnly: b.WindowsOnly, acker: b.Acker, origin: *b.Origin}
		for i := range b.Units {
			g.ids = append(g.ids, string(b.UnitKey(i)))
			g.payloads = append(g.payloads, string(b.UnitBytes(i)))
		}
		pipeline.PutBatch(b)
		return g, true
	case <-time.After(timeout):
		return got{}, false
	}
}

// take waits for batches until they hold n entries in all.
func (h *harness) take(n int) []got {
	h.t.Helper()
	var out []got
	total := 0
	deadline := time.Now().Add(20 * time.Second)
	for total < n {
		g, ok := h.next(time.Until(deadline))
		if !ok {
			h.t.Fatalf("%d of %d entries came", total, n)
		}
		out = append(out, g)
		total += len(g.ids)
	}
	if total != n {
		h.t.Fatalf("%d entries came, want %d", total, n)
	}
	return out
}

// ackAll acks and window-acks gs, as the runner does for a durable batch.
func ackAll(gs ...got) {
	for _, g := range gs {
		g.acker.Ack(g.seq)
		g.acker.(pipeline.WindowAcker).WindowAck(g.seq)
	}
}

func idsOf(gs []got) []string {
	var ids []string
	for _, g := range gs {
		ids = append(ids, g.ids...)
	}
	return ids
}

// add appends n entries with a record field and returns their ids.
func add(t testing.TB, c *goredis.Client, from, n int) []string {
	t.Helper()
	ctx := context.Background()
	cmds, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := from; i < from+n; i++ {
			p.XAdd(ctx, &goredis.XAddArgs{Stream: testStream, Values: []any{RecordField, record(i)}})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(cmds))
	for i, c := range cmds {
		ids[i] = c.(*goredis.StringCmd).Val()
	}
	return ids
}

func record(i int) string {
	return fmt.Sprintf(`{"trace_id":"%032x","span_id":"%016x","name":"op","time":"2026-01-01T00:00:00Z"}`, i+1, i+1)
}

// pendingIDs lists the group's pending entries (all consumers), in order.
func pendingIDs(t testing.TB, c *goredis.Client) []string {
	t.Helper()
	pe, err := c.XPendingExt(context.Background(), &goredis.XPendingExtArgs{Stream: testStream, Group: "g", Start: "-", End: "+", Count: 1 << 20}).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range pe {
		ids = append(ids, p.ID)
	}
	return ids
}

func commit(t testing.TB, s *Source) {
	t.Helper()
	if err := s.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func sameIDs(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %d ids %v\nwant %d ids %v", what, len(got), short(got), len(want), short(want))
	}
}

func short(ids []string) []string {
	if len(ids) <= 8 {
		return ids
	}
	return append(slices.Clip(ids[:4]), "...", ids[len(ids)-1])
}

// waitFor polls cond until it holds or 20s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seenSet is a concurrency-safe set of entry ids.
type seenSet struct {
	mu sync.Mutex
	m  map[string]int
}

func (s *seenSet) add(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]int{}
	}
	for _, id := range ids {
		s.m[id]++
	}
}

func (s *seenSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
