package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sinks"
	"github.com/tracepipe/tracepipe/sinks/redis"
)

// streamLines returns n generated jsonl lines.
func streamLines(tb testing.TB, n int64, seed uint64) [][]byte {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := gen.Generate(&buf, gen.Options{Format: "jsonl", Records: n, Seed: seed}); err != nil {
		tb.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
}

var streamSource = &pipeline.Origin{Kind: "file", Path: "gen.jsonl", Format: pipeline.FormatJSONL}

// parsedBatch returns a batch of lines run through the parse stage. The
// caller puts it back with pipeline.PutBatch.
func parsedBatch(tb testing.TB, lines [][]byte) *pipeline.Batch {
	tb.Helper()
	opts := parsers.DefaultOptions()
	if err := opts.Prepare(); err != nil {
		tb.Fatal(err)
	}
	b := pipeline.GetBatch()
	b.Origin = streamSource
	for i, l := range lines {
		b.AddUnit(l, int64(i), int64(i+1), int64(len(l)), 0)
	}
	parsers.NewStage(&opts).Process(context.Background(), b)
	for i := range b.Records {
		if b.Records[i].Failed() {
			tb.Fatalf("generated record %d failed to parse: %+v", i, b.Records[i].Failure)
		}
	}
	return b
}

func streamConfig(s *testredis.Server, stream string, maxLen int64) config.RedisStreamSink {
	return config.RedisStreamSink{
		Redis:  config.Redis{Addr: s.Addr(), Password: config.NewSecret(s.Password()), Timeout: 5 * time.Second},
		Stream: stream,
		MaxLen: maxLen,
	}
}

func newStream(tb testing.TB, s *testredis.Server, stream string, maxLen int64) *redis.Stream {
	tb.Helper()
	sink, err := redis.NewStream("rs", streamConfig(s, stream, maxLen), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sink.Close(context.Background()) })
	return sink
}

func TestStreamWrite(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := t.Context()
	sink := newStream(t, srv, "recs", 0)
	if sink.Name() != "rs" {
		t.Fatalf("Name = %q", sink.Name())
	}

	b := parsedBatch(t, streamLines(t, 300, 1))
	defer pipeline.PutBatch(b)
	b.Records[3].Fail("parse", pipeline.ClassInvalid, "x", "y")
	b.Records[7].Filtered = true
	b.Records[8].TraceID, b.Records[8].SpanID = nil, nil // a log without ids
	var want [][]byte
	var wantIDs [][2]string
	for i := range b.Records {
		r := &b.Records[i]
		if r.Failed() || r.Filtered {
			continue
		}
		want = append(want, bytes.TrimSuffix(sinks.AppendRecord(nil, r, b.Buf), []byte("\n")))
		wantIDs = append(wantIDs, [2]string{string(r.TraceID), string(r.SpanID)})
	}

	if err := sink.Write(ctx, b, pipeline.DeliverableRecords(b)); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.XRange(ctx, "recs", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(want) {
		t.Fatalf("%d entries, want %d", len(msgs), len(want))
	}
	var wantBytes int64
	for i, m := range msgs {
		if m.Values["record"] != string(want[i]) {
			t.Fatalf("entry %d: record %q, want %q", i, m.Values["record"], want[i])
		}
		for k, name := range []string{"trace_id", "span_id"} {
			got, ok := m.Values[name]
			if wantIDs[i][k] == "" {
				if ok {
					t.Fatalf("entry %d: %s %q, want none", i, name, got)
				}
			} else if got != wantIDs[i][k] {
				t.Fatalf("entry %d: %s %q, want %q", i, name, got, wantIDs[i][k])
			}
		}
		if len(m.Values) > 3 {
			t.Fatalf("entry %d: fields %v", i, m.Values)
		}
		wantBytes += int64(len(want[i]))
	}
	if st := sink.Stats(); st.Entries != int64(len(want)) || st.Bytes != wantBytes || st.Errors != 0 {
		t.Fatalf("stats %+v, want %d entries, %d bytes", st, len(want), wantBytes)
	}

	// A batch with nothing to deliver makes no round trip and no error.
	empty := pipeline.GetBatch()
	defer pipeline.PutBatch(empty)
	if err := sink.Write(ctx, empty, pipeline.DeliverableRecords(empty)); err != nil {
		t.Fatal(err)
	}
}

// TestStreamChunks writes a batch larger than one pipeline chunk,
// concurrently from several goroutines.
func TestStreamChunks(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := t.Context()
	sink := newStream(t, srv, "recs", 0)
	b := parsedBatch(t, streamLines(t, 2500, 2))
	defer pipeline.PutBatch(b)
	const writers = 4
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() { errs <- sink.Write(ctx, b, pipeline.DeliverableRecords(b)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.XLen(ctx, "recs").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(writers * len(b.Records)); n != want || sink.Stats().Entries != want {
		t.Fatalf("XLEN %d, stats %+v, want %d", n, sink.Stats(), want)
	}
}

func TestStreamMaxLen(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := t.Context()
	sink := newStream(t, srv, "capped", 1000)
	b := parsedBatch(t, streamLines(t, 512, 3))
	defer pipeline.PutBatch(b)
	for range 10 {
		if err := sink.Write(ctx, b, pipeline.DeliverableRecords(b)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.XLen(ctx, "capped").Result()
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole macro nodes (100 entries by default): the
	// stream keeps at least maxlen and not much more.
	if n < 1000 || n > 1000+512 {
		t.Fatalf("XLEN %d after 5120 adds with MAXLEN ~ 1000", n)
	}
}

func code(err error) string {
	var c pipeline.Coded
	if errors.As(err, &c) {
		return c.Code()
	}
	return ""
}

func TestStreamErrors(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := t.Context()
	b := parsedBatch(t, streamLines(t, 10, 4))
	defer pipeline.PutBatch(b)

	// The key holds a string: permanent.
	if err := c.Set(ctx, "str", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	sink := newStream(t, srv, "str", 0)
	err := sink.Write(ctx, b, pipeline.DeliverableRecords(b))
	if err == nil || !errors.Is(err, pipeline.ErrPermanent) || code(err) != "WRONGTYPE" {
		t.Fatalf("write to a string key: %v (code %q), want permanent WRONGTYPE", err, code(err))
	}
	if st := sink.Stats(); st.Errors != 1 || st.Entries != 0 {
		t.Fatalf("stats %+v", st)
	}

	// Out of memory: transient, coded OOM.
	ok := newStream(t, srv, "recs", 0)
	if err := c.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	err = ok.Write(ctx, b, pipeline.DeliverableRecords(b))
	if err == nil || errors.Is(err, pipeline.ErrPermanent) || code(err) != "OOM" {
		t.Fatalf("write over maxmemory: %v (code %q), want transient OOM", err, code(err))
	}
	if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := ok.Write(ctx, b, pipeline.DeliverableRecords(b)); err != nil {
		t.Fatalf("write after memory was freed: %v", err)
	}

	// A replica refuses writes: transient, coded READONLY. (The master it
	// follows does not exist; the server stays a read-only replica.)
	if err := c.Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	err = ok.Write(ctx, b, pipeline.DeliverableRecords(b))
	if err == nil || errors.Is(err, pipeline.ErrPermanent) || code(err) != "READONLY" {
		t.Fatalf("write to a replica: %v (code %q), want transient READONLY", err, code(err))
	}
	if err := c.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}

	// The server is gone: a network error, transient and uncoded.
	srv.Kill()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = ok.Write(wctx, b, pipeline.DeliverableRecords(b))
	if err == nil || errors.Is(err, pipeline.ErrPermanent) || code(err) != "" {
		t.Fatalf("write to a killed server: %v (code %q), want a transient network error", err, code(err))
	}

	if err := ok.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ok.Write(ctx, b, pipeline.DeliverableRecords(b)); err == nil || !errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("write after Close: %v", err)
	}
}

func TestStreamSecretsNeverLeak(t *testing.T) {
	const password, wrong = "s3cret-Stream-41", "wr0ng-Stream-52"
	srv := testredis.StartWith(t, testredis.Options{Password: password})
	libLogs := &streamLogBuf{}
	redisconn.RouteLibraryLogs(slog.New(slog.NewTextHandler(libLogs, nil)))
	t.Cleanup(func() { redisconn.RouteLibraryLogs(slog.New(slog.DiscardHandler)) })

	cfg := streamConfig(srv, "recs", 0)
	cfg.Password = config.NewSecret(wrong)
	logs := &streamLogBuf{}
	_, err := redis.NewStream("rs", cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err == nil || !errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("NewStream with a wrong password: %v, want a permanent error", err)
	}
	_, derr := redis.NewDedupe(cfg.Redis, "d:", time.Hour)
	if derr == nil {
		t.Fatal("NewDedupe succeeded with a wrong password")
	}
	for _, text := range []string{err.Error(), derr.Error(), fmt.Sprintf("%+v %#v", err, err), logs.String(), libLogs.String()} {
		for _, secret := range []string{password, wrong} {
			if strings.Contains(text, secret) {
				t.Fatalf("a password leaked: %q", text)
			}
		}
	}
}

type streamLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *streamLogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *streamLogBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// BenchmarkRedisStreamSink writes parsed batches of 512 generated jsonl
// records to a local redis-server (no persistence), MAXLEN ~ 100,000.
func BenchmarkRedisStreamSink(b *testing.B) {
	srv := testredis.Start(b)
	lines := streamLines(b, 512, 6)
	var size int64
	for _, l := range lines {
		size += int64(len(l)) + 1
	}
	batch := parsedBatch(b, lines)
	defer pipeline.PutBatch(batch)
	n := len(batch.Records)
	run := func(b *testing.B, parallel bool) {
		sink := newStream(b, srv, "bench", 100_000)
		b.SetBytes(size)
		b.ReportAllocs()
		if parallel {
			// Write runs on every worker at once; the batch is read only.
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := sink.Write(context.Background(), batch, pipeline.DeliverableRecords(batch)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for b.Loop() {
				if err := sink.Write(context.Background(), batch, pipeline.DeliverableRecords(batch)); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
	}
	b.Run("serial", func(b *testing.B) { run(b, false) })
	b.Run("parallel", func(b *testing.B) { run(b, true) })
}
