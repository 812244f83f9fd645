package app

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testredis"
)

// BenchmarkRunJobRedisStreamToFile: `pipeline run`, Redis Stream source to
// a file sink, windows on, as BenchmarkRunJobKafkaToFile is for Kafka:
// 300,000 ~400-byte span lines in one stream of a redis-server on the
// same machine (internal/testredis, a process of its own), a new consumer
// group each run. Timed from RunJob's start until the group has nothing
// pending and no lag: every entry read, delivered, made durable (the
// sinks' fsync) and XACKed. flush_every 100ms and checkpoint_every 50ms,
// so that the last barrier adds at most ~150ms. job_cores and
// server_cores are the CPU each process used over the timed run (the
// server's from INFO cpu), in cores.
func BenchmarkRunJobRedisStreamToFile(b *testing.B) {
	const n = 300000
	srv := testredis.Start(b)
	c := srv.Client(b)
	ctx := context.Background()
	pad := strings.Repeat("x", 230)
	for lo := 0; lo < n; lo += 2000 {
		if _, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i := lo; i < min(lo+2000, n); i++ {
				v := fmt.Sprintf(`{"trace_id":"%032x","span_id":"%016x","service.name":"svc-%d","name":"op","time":"2026-01-01T00:00:00Z","attributes":{"pad":"%s"}}`, i/4+1, i+1, i%20, pad)
				p.XAdd(ctx, &goredis.XAddArgs{Stream: "spans", Values: []any{"record", v}})
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	var elapsed, jobCPU, serverCPU time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		dir := b.TempDir()
		group := fmt.Sprint("bench-", i)
		y := fmt.Sprintf(`
pipeline: {flush_every: 100ms}
sinks: [{name: records, type: file, file: {dir: %[1]s/records}}]
dlq: {file: {dir: %[1]s/dlq}}
run: {state_dir: %[1]s/state, checkpoint_every: 50ms}
sources: [{name: rs, type: redis_stream, redis_stream: {addr: "%[2]s", stream: spans, group: %[3]s, consumer: me}}]
`, dir, srv.Addr(), group)
		cfg, err := config.Decode([]byte(y), "b.yaml", os.LookupEnv)
		if err != nil {
			b.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		cpu0, scpu0 := selfCPU(), redisCPU(b, c)
		t0 := time.Now()
		go func() {
			_, err := RunJob(runCtx, cfg, RunOptions{Logger: quietLogger()})
			done <- err
		}()
		for !groupDone(ctx, c, "spans", group, n) {
			time.Sleep(20 * time.Millisecond)
		}
		elapsed += time.Since(t0)
		jobCPU += selfCPU() - cpu0
		serverCPU += redisCPU(b, c) - scpu0
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(jobCPU.Seconds()/elapsed.Seconds(), "job_cores")
	b.ReportMetric(serverCPU.Seconds()/elapsed.Seconds(), "server_cores")
}

// groupDone reports whether group has read all n entries of stream and
// acknowledged every one.
func groupDone(ctx context.Context, c *goredis.Client, stream, group string, n int64) bool {
	gs, err := c.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return false
	}
	for _, g := range gs {
		if g.Name == group {
			return g.EntriesRead >= n && g.Pending == 0
		}
	}
	return false
}

// redisCPU is the CPU time (user and system, every thread) the server has
// used, from INFO cpu.
func redisCPU(b *testing.B, c *goredis.Client) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sec float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			sec += f
		}
	}
	return time.Duration(sec * float64(time.Second))
}
