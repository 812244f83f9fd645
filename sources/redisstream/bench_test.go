package redisstream

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline"
)

// BenchmarkRedisStreamSource reads b.N entries of 400-byte records from a
// redis-server on the same machine (its CPU is counted in the wall time,
// not in the Go process's), acking every batch and committing (XACK) every
// 50 ms as the job would. The stream is filled before the timer starts.
// Reported: entries/s of the source alone (no parse, no sink).
func BenchmarkRedisStreamSource(b *testing.B) {
	srv := testredis.Start(b)
	c := srv.Client(b)
	ctx := context.Background()
	rec := fmt.Sprintf(`{"trace_id":"%032x","span_id":"%016x","name":"op","time":"2026-01-01T00:00:00Z","attrs":"%s"}`, 1, 1, "")
	rec += strings.Repeat("x", 400-len(rec))
	rec = rec[:len(rec)-len(`"}`)] + `"}`
	for lo := 0; lo < b.N; lo += 1000 {
		_, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for range min(1000, b.N-lo) {
				p.XAdd(ctx, &goredis.XAddArgs{Stream: testStream, Values: []any{RecordField, rec}})
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	cfg := testCfg(srv, "bench")
	cfg.Count = 512
	src, err := New("rs", cfg, Options{IDs: &pipeline.OriginIDs{}, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	out := make(chan *pipeline.Batch, 64)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() { done <- src.Run(runCtx, out) }()
	n := 0
	last := time.Now()
	for n < b.N {
		bt := <-out
		n += len(bt.Units)
		bt.Acker.Ack(bt.Seq)
		bt.Acker.(pipeline.WindowAcker).WindowAck(bt.Seq)
		pipeline.PutBatch(bt)
		if time.Since(last) > 50*time.Millisecond {
			if err := src.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			last = time.Now()
		}
	}
	if err := src.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(n)/el.Seconds(), "entries/s")
	if p := c.XPending(ctx, testStream, "g").Val(); p.Count != 0 {
		b.Fatalf("%d pending after the last commit", p.Count)
	}
}

// BenchmarkParseRead: parsing a raw XREADGROUP reply (RESP3) of 512
// entries of 400-byte records, as readNew does. Per entry.
func BenchmarkParseRead(b *testing.B) {
	reply := syntheticReply(512, 400)
	var dst []rawEntry
	b.ReportAllocs()
	b.SetBytes(int64(len(reply)))
	for b.Loop() {
		var err error
		if dst, err = parseRead(reply, testStream, dst[:0]); err != nil || len(dst) != 512 {
			b.Fatal(len(dst), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/512, "ns/entry")
}

// syntheticReply is a RESP3 XREADGROUP reply of n entries of size-byte
// records, as redis-server 7 sends it.
func syntheticReply(n, size int) []byte {
	rec := strings.Repeat("r", size)
	reply := fmt.Appendf(nil, "%%1\r\n$%d\r\n%s\r\n*%d\r\n", len(testStream), testStream, n)
	for i := range n {
		id := fmt.Sprintf("1767225600000-%d", i)
		reply = fmt.Appendf(reply, "*2\r\n$%d\r\n%s\r\n*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(id), id, len(RecordField), RecordField, len(rec), rec)
	}
	return reply
}
