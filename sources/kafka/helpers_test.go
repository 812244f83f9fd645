package kafka

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/pipeline"
)

const testTopic = "spans"

// startCluster runs kfake with testTopic in parts partitions.
func startCluster(t testing.TB, parts int32) *testkafka.Cluster {
	t.Helper()
	return testkafka.StartWith(t, testkafka.Options{Topics: []string{testTopic}, Partitions: parts})
}

// value is record i's value: a JSON line naming i (padded to about pad
// bytes when pad > 0).
func value(i, pad int) []byte {
	v := fmt.Sprintf(`{"i":%d,"trace_id":"%032x","span_id":"%016x","name":"op","time":"2026-01-01T00:00:00Z"`, i, i+1, i+1)
	if n := pad - len(v) - 10; n > 0 {
		v += `,"pad":"` + strings.Repeat("x", n) + `"`
	}
	return []byte(v + "}")
}

func keyOf(i int) []byte { return fmt.Appendf(nil, "k-%d", i) }

// produce writes records from..to-1 to testTopic, spread over the
// partitions round robin.
func produce(t testing.TB, c *testkafka.Cluster, from, to, pad int) {
	t.Helper()
	w := &kafkago.Writer{
		Addr: kafkago.TCP(c.Addrs()...), Topic: testTopic, Transport: c.Transport(),
		Balancer: &kafkago.RoundRobin{}, BatchSize: 1000, BatchTimeout: 2 * time.Millisecond,
		RequiredAcks: kafkago.RequireAll,
	}
	defer w.Close()
	msgs := make([]kafkago.Message, 0, 1000)
	for i := from; i < to; i++ {
		msgs = append(msgs, kafkago.Message{Key: keyOf(i), Value: value(i, pad)})
		if len(msgs) == cap(msgs) || i == to-1 {
			if err := w.WriteMessages(context.Background(), msgs...); err != nil {
				t.Fatalf("produce: %v", err)
			}
			msgs = msgs[:0]
		}
	}
}

// testConfig is a source config for c in group, quick to rebalance.
func testConfig(c *testkafka.Cluster, group string) config.KafkaSource {
	return config.KafkaSource{
		Kafka:  config.Kafka{Brokers: c.Addrs(), Timeout: 5 * time.Second},
		Topics: []string{testTopic}, Group: group, StartOffset: "earliest",
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond,
		SessionTimeout: 6 * time.Second, HeartbeatInterval: 200 * time.Millisecond,
		RebalanceTimeout: 10 * time.Second, MetadataRefresh: 2 * time.Second, IdleTimeout: time.Hour,
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// got is one batch as the harness saw it.
type got struct {
	partition   int
	seq         uint64
	originID    int
	windowsOnly bool
	offsets     []int64
	keys        []string
	values      []string
	flags       []uint8
	sizes       []int64
	acker       pipeline.Acker
}

// harness runs a Source into a channel and records every batch. With
// autoAck each batch is acked and window-acked on arrival, as a runner with
// no window stage would.
type harness struct {
	t       testing.TB
	src     *Source
	cancel  context.CancelFunc
	done    chan error
	autoAck bool

	mu      sync.Mutex
	batches []got
	units   int
	byTopic map[string]int // units per topic, when the source reads several
}

func newSource(t testing.TB, cfg config.KafkaSource, o Options) *Source {
	t.Helper()
	if o.IDs == nil {
		o.IDs = new(pipeline.OriginIDs)
	}
	o.Origin.Format = pipeline.FormatJSONL
	if o.Logger == nil {
		o.Logger = quiet()
	}
	s, err := New("k", cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func start(t testing.TB, s *Source, autoAck bool) *harness {
	return startWith(t, s, autoAck, nil)
}

// startTopics starts s acking every batch and counting its units per
// topic in byTopic (read it under h.mu).
func startTopics(t testing.TB, s *Source, byTopic map[string]int) *harness {
	return startWith(t, s, true, byTopic)
}

func startWith(t testing.TB, s *Source, autoAck bool, byTopic map[string]int) *harness {
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, src: s, cancel: cancel, done: make(chan error, 1), autoAck: autoAck, byTopic: byTopic}
	out := make(chan *pipeline.Batch, 4)
	go func() { h.done <- s.Run(ctx, out) }()
	go func() {
		for {
			select {
			case b := <-out:
				h.take(b)
			case err := <-h.done:
				// Run returned: take what it left in the channel.
				for {
					select {
					case b := <-out:
						h.take(b)
						continue
					default:
					}
					break
				}
				h.done <- err
				return
			}
		}
	}()
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *harness) take(b *pipeline.Batch) {
	g := got{partition: b.Origin.Partition, seq: b.Seq, originID: b.Origin.ID, windowsOnly: b.WindowsOnly, acker: b.Acker}
	topic := testTopic
	if h.byTopic != nil {
		topic = b.Origin.Path
	}
	if b.Origin.Kind != Kind || b.Origin.Path != topic || b.Origin.Key != fmt.Sprintf("kafka:%s:%d", topic, b.Origin.Partition) {
		h.t.Errorf("origin %+v", *b.Origin)
	}
	for i := range b.Units {
		u := &b.Units[i]
		g.offsets = append(g.offsets, u.Offset)
		g.keys = append(g.keys, string(b.UnitKey(i)))
		g.values = append(g.values, string(b.UnitBytes(i)))
		g.flags = append(g.flags, u.Flags)
		g.sizes = append(g.sizes, u.Size)
	}
	if h.autoAck {
		b.Acker.Ack(b.Seq)
		b.Acker.(pipeline.WindowAcker).WindowAck(b.Seq)
	}
	pipeline.PutBatch(b)
	h.mu.Lock()
	h.batches = append(h.batches, g)
	h.units += len(g.offsets)
	if h.byTopic != nil {
		h.byTopic[topic] += len(g.offsets)
	}
	h.mu.Unlock()
}

// stop cancels Run and waits for it (bounded).
func (h *harness) stop() {
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Errorf("Run did not return within 10s of cancel")
	}
}

func (h *harness) snapshot() []got {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]got(nil), h.batches...)
}

func (h *harness) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.units
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// committed returns the group's committed offset and metadata per
// partition of testTopic.
func committed(t testing.TB, c *testkafka.Cluster, group string, parts int) map[int]kafkago.OffsetFetchPartition {
	t.Helper()
	cl := &kafkago.Client{Addr: kafkago.TCP(c.Addrs()...), Transport: c.Transport(), Timeout: 5 * time.Second}
	ids := make([]int, parts)
	for i := range ids {
		ids[i] = i
	}
	res, err := cl.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{testTopic: ids}})
	if err != nil || res.Error != nil {
		t.Fatalf("offset fetch: %v %v", err, res.Error)
	}
	out := map[int]kafkago.OffsetFetchPartition{}
	for _, p := range res.Topics[testTopic] {
		out[p.Partition] = p
	}
	return out
}
