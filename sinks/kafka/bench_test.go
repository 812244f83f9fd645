package kafka_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/pipeline"
)

// BenchmarkKafkaSink writes batches of 512 parsed jsonl records to kfake on
// loopback and reports records/s. One op is one Write of one batch.
//
//   - serial: one goroutine, each Write waits for its acks before the next.
//   - parallel: 4 writers sharing the sink, as the runner's workers do.
//
// Linger is the config's default (10ms) or zero; with synchronous Writes a
// linger is waited for by every Write whose messages do not fill a
// partition's batch_size.
func BenchmarkKafkaSink(b *testing.B) {
	const perBatch = 512
	lines := genLines(b, perBatch*8, 2000)
	for _, bc := range []struct {
		name        string
		compression string
		linger      time.Duration
		parallel    int
	}{
		{"serial/snappy/linger=0", "snappy", 0, 1},
		{"serial/snappy/linger=10ms", "snappy", 10 * time.Millisecond, 1},
		{"serial/none/linger=0", "none", 0, 1},
		{"serial/zstd/linger=0", "zstd", 0, 1},
		{"parallel4/snappy/linger=0", "snappy", 0, 4},
		{"parallel4/snappy/linger=10ms", "snappy", 10 * time.Millisecond, 4},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := testkafka.Start(b, "records")
			cfg := sinkConfig(c.Addrs(), "records")
			cfg.Compression = bc.compression
			cfg.Linger = bc.linger
			s := newSink(b, cfg)
			// Pre-parsed batches, reused: the benchmark measures the sink.
			batches := make([]*pipeline.Batch, len(lines)/perBatch)
			recs := make([][]int32, len(batches))
			for i := range batches {
				batches[i] = parsedBatch(b, lines[i*perBatch:(i+1)*perBatch])
				recs[i] = pipeline.DeliverableRecords(batches[i])
			}
			var size int64
			for _, l := range lines[:perBatch] {
				size += int64(len(l))
			}
			ctx := context.Background()
			var next atomic.Int64
			b.SetBytes(size)
			b.ReportAllocs()
			b.SetParallelism(bc.parallel)
			start := time.Now()
			if bc.parallel == 1 {
				for i := 0; b.Loop(); i++ {
					if err := s.Write(ctx, batches[i%len(batches)], recs[i%len(batches)]); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				// SetParallelism multiplies GOMAXPROCS; force exactly
				// bc.parallel goroutines regardless of the machine.
				b.SetParallelism(1)
				done := make(chan error, bc.parallel)
				n := int64(b.N)
				b.ResetTimer()
				start = time.Now()
				for range bc.parallel {
					go func() {
						for {
							i := next.Add(1) - 1
							if i >= n {
								done <- nil
								return
							}
							if err := s.Write(ctx, batches[i%int64(len(batches))], recs[i%int64(len(batches))]); err != nil {
								done <- err
								return
							}
						}
					}()
				}
				for range bc.parallel {
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
			}
			el := time.Since(start)
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.Messages)/el.Seconds(), "records/s")
			if got := c.Count("records"); got != st.Messages {
				b.Fatalf("topic holds %d messages, sink acked %d", got, st.Messages)
			}
			for _, bt := range batches {
				pipeline.PutBatch(bt)
			}
		})
	}
}
