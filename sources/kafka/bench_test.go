package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
)

// BenchmarkKafkaSource measures records/s from kfake (in this process, on
// loopback) through Run into a channel that acks and discards each batch:
// 6 partitions, 400-byte records. kfake shares the CPU with the source, so
// this is a floor for the source on a real broker.
func BenchmarkKafkaSource(b *testing.B) {
	const parts, perRound = 6, 60000
	c := startCluster(b, parts)
	produce(b, c, 0, perRound, 400)
	b.ReportAllocs()
	b.SetBytes(400)
	b.ResetTimer()
	total := 0
	for round := 0; total < b.N; round++ {
		b.StopTimer()
		cfg := testConfig(c, "bench-"+time.Now().Format("150405.000000000"))
		s := newSource(b, cfg, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		out := make(chan *pipeline.Batch, 64)
		done := make(chan error, 1)
		b.StartTimer()
		go func() { done <- s.Run(ctx, out) }()
		n := 0
		for n < perRound {
			bt := <-out
			n += len(bt.Units)
			bt.Acker.Ack(bt.Seq)
			pipeline.PutBatch(bt)
		}
		b.StopTimer()
		cancel()
		<-done
		_ = s.Close()
		total += n
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "records/s")
}
