package kafkadlq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/kafkaconn"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// Defaults of the options.
const (
	DefaultQueueSize  = dlq.DefaultQueueSize
	DefaultRetryAfter = time.Second
	maxRetryAfter     = 30 * time.Second
	// probeWindow bounds the attempts of the first delivery after a
	// failure.
	probeWindow = 300 * time.Millisecond
	// maxBatch is the most entries one WriteMessages carries.
	maxBatch = 256
	// batchBytes bounds a produce request per partition, and so a single
	// entry's message: Kafka's default message.max.bytes is a little over
	// 1 MiB. An entry larger than this goes to the fallback.
	batchBytes = 1 << 20
)

// PurgedSuffix names the companion topic of Store.Delete: "<topic>.purged".
const PurgedSuffix = ".purged"

// Option configures Open and OpenStore.
type Option func(*options)

type options struct {
	fallback   dlq.Backend
	tls        *tls.Config
	queueSize  int
	timeout    time.Duration
	retryAfter time.Duration
	partitions int
	replicas   int
}

// WithFallback gives the backend where entries go that Kafka did not take
// within the delivery timeout (the file DLQ). The Backend owns it from Open
// on: Close closes it, and Stats include its counts.
func WithFallback(b dlq.Backend) Option { return func(o *options) { o.fallback = b } }

// WithTLSConfig replaces the default TLS client config (e.g. a private CA);
// it turns TLS on.
func WithTLSConfig(c *tls.Config) Option { return func(o *options) { o.tls = c } }

// WithQueueSize bounds the entries waiting for the writer (default
// DefaultQueueSize); when that many wait, Put blocks.
func WithQueueSize(n int) Option { return func(o *options) { o.queueSize = n } }

// WithDeliveryTimeout is how long the writer keeps trying to deliver a
// batch (transient errors are retried with backoff) before its entries go
// to the fallback. Default: the config's timeout (10s).
func WithDeliveryTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithRetryAfter is how long entries go straight to the fallback after a
// delivery failed, before Kafka is tried again (one attempt; the wait
// doubles up to 30s while Kafka keeps failing). Default DefaultRetryAfter.
func WithRetryAfter(d time.Duration) Option { return func(o *options) { o.retryAfter = d } }

// WithTopicLayout sets the partitions and replication factor of topics the
// package creates; default -1 for both: the broker's defaults
// (num.partitions, default.replication.factor).
func WithTopicLayout(partitions, replicas int) Option {
	return func(o *options) { o.partitions, o.replicas = partitions, replicas }
}

func buildOptions(cfg config.DLQKafka, opts []Option) options {
	o := options{partitions: -1, replicas: -1}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.queueSize <= 0 {
		o.queueSize = DefaultQueueSize
	}
	if o.timeout <= 0 {
		o.timeout = cfg.Timeout
		if o.timeout <= 0 {
			o.timeout = kafkaconn.DefaultTimeout
		}
	}
	if o.retryAfter <= 0 {
		o.retryAfter = DefaultRetryAfter
	}
	if o.partitions == 0 {
		o.partitions = -1
	}
	if o.replicas == 0 {
		o.replicas = -1
	}
	return o
}

// conn is what Backend and Store share: the topic and a client.
type conn struct {
	topic   string
	log     *slog.Logger
	tr      *kafkago.Transport
	addr    net.Addr
	timeout time.Duration
	o       options
}

func newConn(cfg config.DLQKafka, log *slog.Logger, opts []Option) (*conn, error) {
	if cfg.Topic == "" {
		return nil, errors.New("dlq kafka: topic is not set")
	}
	if log == nil {
		log = slog.Default()
	}
	o := buildOptions(cfg, opts)
	tr, err := kafkaconn.NewTransport(cfg.Kafka, kafkaconn.Options{TLSConfig: o.tls})
	if err != nil {
		return nil, fmt.Errorf("dlq kafka: %w", err)
	}
	t := cfg.Timeout
	if t <= 0 {
		t = kafkaconn.DefaultTimeout
	}
	return &conn{topic: cfg.Topic, log: log, tr: tr, addr: kafkago.TCP(cfg.Brokers...), timeout: t, o: o}, nil
}

func (c *conn) client() *kafkago.Client {
	return &kafkago.Client{Addr: c.addr, Transport: c.tr, Timeout: c.timeout}
}

// ErrTopicMissing is wrapped by OpenStore's error when the DLQ topic does
// not exist (no entry was ever written, or a wrong name): `pipeline dlq` may
// show an empty DLQ for it. Open creates the topic instead.
var ErrTopicMissing = errors.New("dlq kafka: topic does not exist")

// partitions returns the sorted partition ids of topic, or an error
// wrapping ErrTopicMissing.
func (c *conn) partitions(ctx context.Context, topic string) ([]int, error) {
	md, err := c.client().Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, kafkaconn.Classify(fmt.Errorf("dlq kafka: metadata of topic %q: %w", topic, err))
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafkago.UnknownTopicOrPartition) {
			break
		}
		if t.Error != nil {
			return nil, kafkaconn.Classify(fmt.Errorf("dlq kafka: topic %q: %w", topic, t.Error))
		}
		ids := make([]int, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			ids = append(ids, p.ID)
		}
		slices.Sort(ids)
		if len(ids) == 0 {
			break
		}
		return ids, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrTopicMissing, topic)
}

// ensureTopic creates topic if it does not exist (CreateTopics goes to the
// controller), with the configured layout and extra topic configs.
func (c *conn) ensureTopic(ctx context.Context, topic string, configs ...kafkago.ConfigEntry) error {
	_, err := c.partitions(ctx, topic)
	if err == nil || !errors.Is(err, ErrTopicMissing) {
		return err
	}
	res, err := c.client().CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic:             topic,
		NumPartitions:     c.o.partitions,
		ReplicationFactor: c.o.replicas,
		ConfigEntries:     configs,
	}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
		return kafkaconn.Classify(fmt.Errorf("dlq kafka: topic %q does not exist and could not be created (create it, or allow this client to): %w", topic, err))
	}
	c.log.Info("dlq kafka: created topic", "topic", topic)
	// Metadata may lag the creation a moment.
	for i := 0; ; i++ {
		if _, err = c.partitions(ctx, topic); err == nil || i == 50 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writer returns a kafka-go writer for topic: acks from all in-sync
// replicas, one attempt per call (the callers retry), no linger (callers
// batch), messages spread by key.
func (c *conn) writer(topic string) *kafkago.Writer {
	return &kafkago.Writer{
		Addr:         c.addr,
		Topic:        topic,
		Transport:    c.tr,
		Balancer:     &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll,
		MaxAttempts:  1,
		BatchSize:    maxBatch,
		BatchBytes:   batchBytes,
		BatchTimeout: time.Nanosecond, // kafka-go reads 0 as 1s
		ReadTimeout:  c.timeout,
		WriteTimeout: c.timeout,
		ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) {
			if c.log.Enabled(context.Background(), slog.LevelDebug) {
				c.log.Debug("dlq kafka writer: "+fmt.Sprintf(msg, args...), "topic", topic)
			}
		}),
	}
}
