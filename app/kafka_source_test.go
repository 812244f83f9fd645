package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testkafka"
)

// TestRunJobKafkaSource: `pipeline run` with a Kafka source (6 partitions)
// and a file sink. Every record produced is in the output files (lines
// counted on disk), none twice, none dead-lettered, and after the run the
// group's committed offsets in the broker are each partition's end, with
// the windowed offset (windows on) equal to it in the metadata.
func TestRunJobKafkaSource(t *testing.T) {
	t.Parallel()
	const topic, parts, n = "spans", 6, 1200
	c := testkafka.StartWith(t, testkafka.Options{Topics: []string{topic}, Partitions: parts})
	w := &kafkago.Writer{Addr: kafkago.TCP(c.Addrs()...), Topic: topic, Transport: c.Transport(),
		Balancer: &kafkago.RoundRobin{}, BatchSize: 500, BatchTimeout: 2 * time.Millisecond, RequiredAcks: kafkago.RequireAll}
	var msgs []kafkago.Message
	for i := range n {
		v := fmt.Sprintf(`{"trace_id":"%032x","span_id":"%016x","service.name":"k","name":"op","time":"2026-01-01T00:00:00Z"}`, i+1, i+1)
		msgs = append(msgs, kafkago.Message{Key: fmt.Appendf(nil, "k-%d", i), Value: []byte(v)})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()

	dir := t.TempDir()
	y := fmt.Sprintf(`
pipeline: {flush_every: 20ms}
sinks: [{name: records, type: file, file: {dir: %[1]s/records}}]
dlq: {file: {dir: %[1]s/dlq}}
run: {state_dir: %[1]s/state, checkpoint_every: 50ms}
sources:
  - name: k
    type: kafka
    kafka:
      brokers: [%[2]s]
      topics: [%[3]s]
      group: e2e
      max_wait: 50ms
      session_timeout: 6s
      heartbeat_interval: 200ms
      idle_timeout: 200ms
`, dir, c.Addrs()[0], topic)
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := RunJob(ctx, cfg, RunOptions{Logger: quietLogger()})
		done <- result{rep, err}
	}()
	lines := func() int {
		total := 0
		files, _ := filepath.Glob(filepath.Join(dir, "records", "*"))
		for _, p := range files {
			data, _ := os.ReadFile(p)
			total += strings.Count(string(data), "\n")
		}
		return total
	}
	deadline := time.Now().Add(60 * time.Second)
	for lines() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records written", lines(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("RunJob did not return within 30s of cancel")
	}
	if r.err != nil || r.rep.RecordsIn != n || r.rep.RecordsOut != n || r.rep.DLQ["total"] != 0 || !r.rep.Reconciled {
		t.Fatalf("err %v, report %+v", r.err, r.rep)
	}
	if got := lines(); got != n {
		t.Fatalf("%d lines on disk, want %d", got, n)
	}
	seen := map[string]bool{}
	for _, rec := range readOutput(t, filepath.Join(dir, "records")) {
		tid, _ := rec["trace_id"].(string)
		if seen[tid] {
			t.Fatalf("trace id %s written twice", tid)
		}
		seen[tid] = true
	}
	cl := &kafkago.Client{Addr: kafkago.TCP(c.Addrs()...), Transport: c.Transport(), Timeout: 5 * time.Second}
	res, err := cl.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{GroupID: "e2e", Topics: map[string][]int{topic: {0, 1, 2, 3, 4, 5}}})
	if err != nil || res.Error != nil {
		t.Fatalf("offset fetch: %v %v", err, res.Error)
	}
	for _, p := range res.Topics[topic] {
		want := int64(n / parts)
		if p.CommittedOffset != want || p.Metadata != fmt.Sprintf("tracepipe w=%d", want) {
			t.Fatalf("partition %d: committed %d %q, want %d and the windowed offset equal", p.Partition, p.CommittedOffset, p.Metadata, want)
		}
	}
}

// BenchmarkRunJobKafkaToFile: `pipeline run`, Kafka source to a file
// sink, windows on: 6 partitions, 600,000 ~400-byte span lines, the broker
// (kfake) in a process of its own on the same machine. Timed from RunJob's
// start until the group's committed offsets (which follow the sinks'
// fsync) cover every record; records/s is the figure. flush_every is
// 100ms and checkpoint_every 50ms so that the last barrier adds at most
// ~150ms to the run: with the default 1s the figure would be quantized by
// the barrier (the last records wait up to a second for it), not set by
// the throughput. job_cores and broker_cores are the CPU each process
// used over the timed run, in cores (of 2 on the reference machine).
func BenchmarkRunJobKafkaToFile(b *testing.B) {
	const topic, parts, n = "spans", 6, 600000
	c := testkafka.StartProcess(b, testkafka.Options{Topics: []string{topic}, Partitions: parts})
	w := &kafkago.Writer{Addr: kafkago.TCP(c.Addrs()...), Topic: topic, Transport: c.Transport(),
		Balancer: &kafkago.RoundRobin{}, BatchSize: 2000, BatchTimeout: 2 * time.Millisecond, RequiredAcks: kafkago.RequireAll}
	pad := strings.Repeat("x", 230)
	msgs := make([]kafkago.Message, 0, 2000)
	for i := range n {
		v := fmt.Sprintf(`{"trace_id":"%032x","span_id":"%016x","service.name":"svc-%d","name":"op","time":"2026-01-01T00:00:00Z","attributes":{"pad":"%s"}}`, i/4+1, i+1, i%20, pad)
		msgs = append(msgs, kafkago.Message{Key: fmt.Appendf(nil, "k-%d", i), Value: []byte(v)})
		if len(msgs) == cap(msgs) {
			if err := w.WriteMessages(context.Background(), msgs...); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	_ = w.Close()
	cl := &kafkago.Client{Addr: kafkago.TCP(c.Addrs()...), Transport: c.Transport(), Timeout: 5 * time.Second}
	ids := []int{0, 1, 2, 3, 4, 5}
	var elapsed, jobCPU, brokerCPU time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		dir := b.TempDir()
		group := fmt.Sprint("bench-", i)
		y := fmt.Sprintf(`
pipeline: {flush_every: 100ms}
sinks: [{name: records, type: file, file: {dir: %[1]s/records}}]
dlq: {file: {dir: %[1]s/dlq}}
run: {state_dir: %[1]s/state, checkpoint_every: 50ms}
sources: [{name: k, type: kafka, kafka: {brokers: [%[2]s], topics: [%[3]s], group: %[4]s, max_wait: 50ms, session_timeout: 6s, heartbeat_interval: 200ms}}]
`, dir, c.Addrs()[0], topic, group)
		cfg, err := config.Decode([]byte(y), "b.yaml", os.LookupEnv)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		cpu0, bcpu0 := selfCPU(), brokerCPUOf(b, c)
		t0 := time.Now()
		go func() {
			_, err := RunJob(ctx, cfg, RunOptions{Logger: quietLogger()})
			done <- err
		}()
		for {
			res, err := cl.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
			var sum int64
			if err == nil {
				for _, p := range res.Topics[topic] {
					sum += max(p.CommittedOffset, 0)
				}
			}
			if sum >= n {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		elapsed += time.Since(t0)
		jobCPU += selfCPU() - cpu0
		brokerCPU += brokerCPUOf(b, c) - bcpu0
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	runs := float64(b.N)
	b.ReportMetric(float64(n)*runs/elapsed.Seconds(), "records/s")
	b.ReportMetric(jobCPU.Seconds()/elapsed.Seconds(), "job_cores")
	b.ReportMetric(brokerCPU.Seconds()/elapsed.Seconds(), "broker_cores")
}

// selfCPU is the CPU time (user and system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// brokerCPUOf is the CPU time the broker process has used.
func brokerCPUOf(b *testing.B, c *testkafka.Process) time.Duration {
	d, err := c.CPU()
	if err != nil {
		b.Fatal(err)
	}
	return d
}
