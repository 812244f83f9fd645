package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/internal/testredis"
)

// TestTelemetrySourceLag: a run with a file, a Kafka (2 partitions) and a
// Redis Stream source, scraped over HTTP: each source's lag is reported
// under its name (each owned Kafka partition under its topic and number)
// and falls to 0 once everything was read and acknowledged; the records
// counter says all of it went in.
func TestTelemetrySourceLag(t *testing.T) {
	t.Parallel()
	const nFile, nKafka, nRedis = 300, 200, 500
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	generate(t, filepath.Join(dir, "logs", "a.jsonl"), "jsonl", nFile, false)

	kc := testkafka.StartWith(t, testkafka.Options{Topics: []string{"spans"}, Partitions: 2})
	w := &kafkago.Writer{Addr: kafkago.TCP(kc.Addrs()...), Topic: "spans", Transport: kc.Transport(),
		Balancer: &kafkago.RoundRobin{}, BatchTimeout: 2 * time.Millisecond, RequiredAcks: kafkago.RequireAll}
	var msgs []kafkago.Message
	for i := range nKafka {
		msgs = append(msgs, kafkago.Message{Value: fmt.Appendf(nil, `{"trace_id":"%032x","span_id":"%016x","service.name":"k","name":"op","time":"2026-01-01T00:00:00Z"}`, i+1, i+1)})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()

	rs := testredis.Start(t)
	c := rs.Client(t)
	ctx := context.Background()
	if _, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := range nRedis {
			p.XAdd(ctx, &goredis.XAddArgs{Stream: "in", Values: []any{"record",
				fmt.Sprintf(`{"trace_id":"%032x","span_id":"%016x","service.name":"r","name":"op","time":"2026-01-01T00:00:00Z"}`, i+1, i+1)}})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	y := fmt.Sprintf(`
pipeline: {flush_every: 20ms}
sinks: [{name: d, type: discard}]
dlq: {file: {dir: "%[1]s/dlq"}}
windows: {metrics: []}
run: {state_dir: "%[1]s/state", checkpoint_every: 50ms}
sources:
  - {name: logs, type: file, file: {include: ["%[1]s/logs/*.jsonl"], poll_interval: 10ms}}
  - name: k
    type: kafka
    kafka: {brokers: ["%[2]s"], topics: [spans], group: lag, max_wait: 50ms, session_timeout: 6s, heartbeat_interval: 200ms, idle_timeout: 200ms}
  - name: rs
    type: redis_stream
    redis_stream: {addr: "%[3]s", stream: in, group: g, consumer: me, block: 20ms, claim_every: 20ms}
`, dir, kc.Addrs()[0], rs.Addr())
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	srv := startTelemetry(t)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := RunJob(runCtx, cfg, RunOptions{Logger: quietLogger(), Telemetry: srv})
		done <- err
	}()
	const total = nFile + nKafka + nRedis
	var m metrics
	deadline := time.Now().Add(60 * time.Second)
	for {
		m = scrape(t, srv.Addr())
		if m.sum("tracepipe_records_in_total") == total &&
			m.value("tracepipe_source_file_lag_bytes", "source", "logs") == 0 &&
			m.value("tracepipe_source_kafka_lag", "source", "k", "topic", "spans", "partition", "0") == 0 &&
			m.value("tracepipe_source_kafka_lag", "source", "k", "topic", "spans", "partition", "1") == 0 &&
			m.value("tracepipe_source_redis_lag", "source", "rs") == 0 &&
			m.value("tracepipe_source_redis_pending", "source", "rs") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lags never settled at 0 with every record in: records in %v, file %v, kafka %v/%v, redis %v pending %v",
				m.sum("tracepipe_records_in_total"), m.value("tracepipe_source_file_lag_bytes", "source", "logs"),
				m.value("tracepipe_source_kafka_lag", "partition", "0"), m.value("tracepipe_source_kafka_lag", "partition", "1"),
				m.value("tracepipe_source_redis_lag"), m.value("tracepipe_source_redis_pending"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The records by source: each config source's own, all JSON lines.
	for src, want := range map[string]float64{"logs": nFile, "k": nKafka, "rs": nRedis} {
		if got := m.sum("tracepipe_records_in_total", "source", src, "format", "jsonl"); got != want {
			t.Errorf("tracepipe_records_in_total{source=%s,format=jsonl} = %v, want %v", src, got, want)
		}
	}
	// One series per source (and per owned partition), no other.
	for name, want := range map[string]int{"tracepipe_source_file_lag_bytes": 1, "tracepipe_source_kafka_lag": 2, "tracepipe_source_redis_lag": 1, "tracepipe_source_redis_pending": 1} {
		if got := len(m[name].GetMetric()); got != want {
			t.Errorf("%s: %d series, want %d", name, got, want)
		}
	}
	// The histograms: one value per batch, under its source, and one per
	// write to the sink; every batch was offered to it once.
	perSource := map[string]uint64{}
	var batches uint64
	for _, s := range m["tracepipe_batch_duration_seconds"].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "source" {
				perSource[l.GetValue()] += s.GetHistogram().GetSampleCount()
			}
		}
		batches += s.GetHistogram().GetSampleCount()
	}
	var writes uint64
	for _, s := range m["tracepipe_sink_write_duration_seconds"].GetMetric() {
		writes += s.GetHistogram().GetSampleCount()
	}
	if len(perSource) != 3 || perSource["logs"] == 0 || perSource["k"] == 0 || perSource["rs"] == 0 ||
		float64(batches) != m.value("tracepipe_sink_batches_total", "sink", "d") || writes != batches {
		t.Errorf("batch durations by source %v (%d in all), %d sink writes, %v batches offered to the sink",
			perSource, batches, writes, m.value("tracepipe_sink_batches_total", "sink", "d"))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RunJob did not return within 30s of cancel")
	}
}
