// Package testkafka runs an in-process Kafka-protocol broker for tests:
// franz-go's kfake, one broker on a random 127.0.0.1 port, closed at the end
// of the test. No Kafka installation is needed and nothing leaves loopback.
//
// What it provides:
//
//   - Start / StartWith: the cluster, with topics seeded (3 partitions unless
//     Options.Partitions says otherwise; kfake does not auto-create topics),
//     optional broker configs (e.g. a small "message.max.bytes"), SASL users
//     (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), TLS, and persistence (so Restart
//     keeps the data).
//   - Addrs: the broker addresses for a client config.
//   - Messages / Count: every message of a topic, all partitions, read with
//     kafka-go up to the high watermark at call time (not a consumer group,
//     nothing is committed), for assertions.
//   - Fail: make the broker answer the next N requests of one API (Produce,
//     Metadata, ...) with a Kafka error code, for retry and classification
//     tests; FailProduce is the common case. Remove the returned handle to
//     stop early; Hits says how many were failed.
//   - Stop / Restart: close the broker (its listener and every open
//     connection: clients then get connection refused/reset) and start it
//     again on the same port. Without Options.Persist a restarted broker is
//     empty except for the seeded topics.
//   - Kfake: the underlying *kfake.Cluster for anything else (ControlKey,
//     SleepControl, MoveTopicPartition...).
//
// kfake quirks worth knowing: topics are not auto-created unless asked;
// group session timeouts under 6 s are refused; kafka-go's Reader MaxWait
// defaults to 10 s, so set ~100 ms or Close takes seconds; everything is
// about 10x slower under -race.
package testkafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultPartitions is the partition count of seeded topics when
// Options.Partitions is zero.
const DefaultPartitions = 3

// User is a SASL user of the cluster. Mechanism is "PLAIN",
// "SCRAM-SHA-256" or "SCRAM-SHA-512".
type User struct {
	Mechanism string
	Name      string
	Password  string
}

// Options configure StartWith. The zero value is what Start uses.
type Options struct {
	Topics     []string
	Partitions int32 // per seeded topic; default DefaultPartitions
	// BrokerConfigs are kfake broker configs, e.g. "message.max.bytes".
	BrokerConfigs map[string]string
	// Users enables SASL with these superusers; clients must then
	// authenticate. Messages and Transport authenticate as Users[0] when
	// its mechanism is PLAIN, so put a PLAIN user first to read back
	// (Count asks kfake directly).
	Users []User
	// TLS makes the broker listen with TLS (server side config).
	// ClientTLS is what Messages and Count use to connect then.
	TLS       *tls.Config
	ClientTLS *tls.Config
	// Persist keeps the cluster's data in a temporary directory, so that
	// Restart finds it again.
	Persist bool
}

// Cluster is a running kfake broker. Its methods are safe for concurrent
// use.
type Cluster struct {
	tb   testing.TB
	opts Options
	dir  string // data dir when Persist

	mu     sync.Mutex
	c      *kfake.Cluster
	port   int
	addrs  []string
	closed bool
}

// Start runs a one-broker cluster on 127.0.0.1 with topics seeded
// (DefaultPartitions each). It is closed when the test ends.
func Start(t testing.TB, topics ...string) *Cluster {
	t.Helper()
	return StartWith(t, Options{Topics: topics})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Partitions <= 0 {
		o.Partitions = DefaultPartitions
	}
	c := &Cluster{tb: t, opts: o}
	if o.Persist {
		c.dir = t.TempDir()
	}
	if err := c.start(0); err != nil {
		t.Fatalf("testkafka: start: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// start creates the kfake cluster on port (0: any free port).
func (c *Cluster) start(port int) error {
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("testkafka"),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		}),
		kfake.DefaultNumPartitions(int(c.opts.Partitions)),
	}
	if len(c.opts.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(c.opts.Partitions, c.opts.Topics...))
	}
	if len(c.opts.BrokerConfigs) > 0 {
		opts = append(opts, kfake.BrokerConfigs(c.opts.BrokerConfigs))
	}
	if len(c.opts.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range c.opts.Users {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.Name, u.Password))
		}
	}
	if c.opts.TLS != nil {
		opts = append(opts, kfake.TLS(c.opts.TLS))
	}
	if c.dir != "" {
		opts = append(opts, kfake.DataDir(c.dir))
	}
	kc, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	addrs := kc.ListenAddrs()
	_, p, err := net.SplitHostPort(addrs[0])
	if err != nil {
		kc.Close()
		return err
	}
	c.mu.Lock()
	c.c, c.addrs, c.closed = kc, addrs, false
	c.port, _ = strconv.Atoi(p)
	c.mu.Unlock()
	return nil
}

// Addrs returns the broker addresses ("127.0.0.1:port"). They stay the same
// across Restart.
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.addrs...)
}

// Kfake returns the running kfake cluster (a new one after Restart).
func (c *Cluster) Kfake() *kfake.Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c
}

// Stop closes the broker: the listener and every client connection. It is
// idempotent and also runs at the end of the test.
func (c *Cluster) Stop() {
	c.mu.Lock()
	kc, closed := c.c, c.closed
	c.closed = true
	c.mu.Unlock()
	if !closed && kc != nil {
		kc.Close()
	}
}

// Restart stops the broker if it runs and starts a new one on the same port
// with the same options. With Options.Persist the data written before is
// there again; otherwise only the seeded topics, empty.
func (c *Cluster) Restart() {
	c.tb.Helper()
	c.Stop()
	c.mu.Lock()
	port := c.port
	c.mu.Unlock()
	var err error
	// The port was ours a moment ago; retry briefly in case the kernel
	// has not released it yet.
	for i := 0; i < 50; i++ {
		if err = c.start(port); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.tb.Fatalf("testkafka: restart on port %d: %v", port, err)
}

// CreateTopic adds a topic with partitions (<= 0: Options.Partitions).
func (c *Cluster) CreateTopic(topic string, partitions int32) {
	c.tb.Helper()
	if partitions <= 0 {
		partitions = c.opts.Partitions
	}
	if err := c.Kfake().CreateTopic(topic, partitions, nil); err != nil {
		c.tb.Fatalf("testkafka: create topic %s: %v", topic, err)
	}
}

// Fail makes the broker answer the next n requests of API key (e.g.
// kmsg.Produce, kmsg.Metadata) with the Kafka error code (e.g.
// kerr.LeaderNotAvailable.Code); n < 0 fails them until the handle is
// removed. A topic-scoped request fails per topic/partition, as a real
// broker would answer.
func (c *Cluster) Fail(key kmsg.Key, n int, code int16) *kfake.FaultHandle {
	c.tb.Helper()
	e := kerr.ErrorForCode(code)
	var ke *kerr.Error
	if !errors.As(e, &ke) {
		c.tb.Fatalf("testkafka: %d is not a Kafka error code", code)
	}
	return c.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{key}, Err: ke, Count: n})
}

// FailProduce makes the next n produce requests fail with code.
func (c *Cluster) FailProduce(n int, code int16) *kfake.FaultHandle {
	c.tb.Helper()
	return c.Fail(kmsg.Produce, n, code)
}

// Transport returns a kafka-go transport that reaches this cluster
// (authenticating as Users[0] if it is PLAIN, with ClientTLS).
func (c *Cluster) Transport() *kafkago.Transport {
	var mech sasl.Mechanism
	if len(c.opts.Users) > 0 && c.opts.Users[0].Mechanism == "PLAIN" {
		mech = plain.Mechanism{Username: c.opts.Users[0].Name, Password: c.opts.Users[0].Password}
	}
	return &kafkago.Transport{ClientID: "testkafka", SASL: mech, TLS: c.opts.ClientTLS, DialTimeout: 5 * time.Second}
}

// Messages returns every message of topic, partition by partition in offset
// order, up to each partition's high watermark at the time of the call.
func (c *Cluster) Messages(topic string) []kafkago.Message {
	c.tb.Helper()
	msgs, err := ReadAll(context.Background(), c.Addrs(), c.Transport(), topic)
	if err != nil {
		c.tb.Fatalf("testkafka: read %s: %v", topic, err)
	}
	return msgs
}

// Count returns the number of messages in topic (sum of high watermarks
// minus log starts), without reading them.
func (c *Cluster) Count(topic string) int64 {
	c.tb.Helper()
	var n int64
	for _, p := range c.Kfake().PartitionInfos(topic) {
		n += p.HighWatermark - p.LogStartOffset
	}
	return n
}

// ReadAll reads every message of topic from the brokers at addrs, partition
// by partition, up to each high watermark at the time of the call.
func ReadAll(ctx context.Context, addrs []string, tr *kafkago.Transport, topic string) ([]kafkago.Message, error) {
	defer tr.CloseIdleConnections()
	cl := &kafkago.Client{Addr: kafkago.TCP(addrs...), Transport: tr, Timeout: 10 * time.Second}
	md, err := cl.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	if parts == nil {
		return nil, fmt.Errorf("topic %s: %w", topic, kafkago.UnknownTopicOrPartition)
	}
	slices.Sort(parts)
	var out []kafkago.Message
	for _, p := range parts {
		offs, err := cl.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{
			topic: {kafkago.FirstOffsetOf(p), kafkago.LastOffsetOf(p)},
		}})
		if err != nil {
			return nil, err
		}
		var first, hw int64
		for _, po := range offs.Topics[topic] {
			if po.Partition == p {
				if po.Error != nil {
					return nil, po.Error
				}
				first, hw = po.FirstOffset, po.LastOffset
			}
		}
		for off := first; off < hw; {
			res, err := cl.Fetch(ctx, &kafkago.FetchRequest{
				Topic: topic, Partition: p, Offset: off,
				MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond,
			})
			if err != nil {
				return nil, err
			}
			if res.Error != nil {
				return nil, res.Error
			}
			before := off
			for {
				r, err := res.Records.ReadRecord()
				if err != nil {
					if errors.Is(err, io.EOF) {
						break
					}
					return nil, err
				}
				if r.Offset < off || r.Offset >= hw {
					continue
				}
				m := kafkago.Message{Topic: topic, Partition: p, Offset: r.Offset, Time: r.Time}
				for _, h := range r.Headers {
					m.Headers = append(m.Headers, kafkago.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)})
				}
				if m.Key, err = readBytes(r.Key); err == nil {
					m.Value, err = readBytes(r.Value)
				}
				if err != nil {
					return nil, err
				}
				out = append(out, m)
				off = r.Offset + 1
			}
			if off == before {
				return nil, fmt.Errorf("topic %s partition %d: no progress at offset %d (high watermark %d)", topic, p, off, hw)
			}
		}
	}
	return out, nil
}

// readBytes reads a record's key or value; nil stays nil.
func readBytes(b kafkago.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	out := make([]byte, b.Len())
	_, err := io.ReadFull(b, out)
	return out, err
}
