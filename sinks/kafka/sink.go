// Package kafka is the Kafka sink: records are produced to one topic with
// segmentio/kafka-go, one JSON document per message (sinks.AppendRecord,
// without the newline), keyed by trace id so that a trace stays in one
// partition. It also holds what other Kafka clients of the project share:
// the transport built from config.Kafka (TLS, SASL PLAIN and SCRAM), and
// the classification of Kafka errors into stable codes and permanent or
// transient (Code, Classify).
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sinks"
)

// Stats counts what a Sink did since New. Messages and Bytes count only
// what the broker acknowledged (per RequiredAcks).
type Stats struct {
	Writes   int64 `json:"writes"`   // Write calls that had records to send
	Messages int64 `json:"messages"` // records acknowledged
	Bytes    int64 `json:"bytes"`    // key + value bytes acknowledged
	Errors   int64 `json:"errors"`   // Write calls that returned an error
}

// Sink produces records to a Kafka topic. It implements pipeline.Sink and
// is safe for concurrent use: Write runs on several workers at once, and
// their messages share the writer's per-partition batches.
type Sink struct {
	name       string
	topic      string
	batchBytes int64
	w          *kafkago.Writer
	tr         *kafkago.Transport
	log        *slog.Logger

	scratch sync.Pool // *scratch

	writes, messages, bytes, errs atomic.Int64
	closeOnce                     sync.Once
	closeErr                      error
}

var _ pipeline.Sink = (*Sink)(nil)

// scratch is one Write's encoding buffer and message slice, pooled.
type scratch struct {
	buf  []byte
	msgs []kafkago.Message
	ends []int // per message: key start, key end (= value start), value end
}

// maxPooledScratch keeps a scratch that grew past this out of the pool.
const maxPooledScratch = 8 << 20

// New returns a Kafka sink for cfg. It does not contact the brokers (Check
// does); the first Write does. Zero batch settings take kafka-go's
// defaults, except Linger: zero means no wait, a Write's messages are sent
// at once.
//
// Write is synchronous, so Linger is latency added to every Write whose
// messages do not fill BatchSize (or BatchBytes) per partition on their
// own or with those of concurrent Writes: keep it small (the records come
// batched already).
func New(name string, cfg config.KafkaSink, log *slog.Logger, opts ...Option) (*Sink, error) {
	if name == "" {
		name = "kafka"
	}
	if log == nil {
		log = slog.Default()
	}
	fail := func(format string, args ...any) (*Sink, error) {
		return nil, fmt.Errorf("kafka sink %s: "+format, append([]any{name}, args...)...)
	}
	if cfg.Topic == "" {
		return fail("topic is not set")
	}
	var codec kafkago.Compression
	switch cfg.Compression {
	case "", "none":
	case "gzip":
		codec = kafkago.Gzip
	case "snappy":
		codec = kafkago.Snappy
	case "lz4":
		codec = kafkago.Lz4
	case "zstd":
		codec = kafkago.Zstd
	default:
		return fail("compression %q is not one of none, gzip, snappy, lz4, zstd", cfg.Compression)
	}
	var acks kafkago.RequiredAcks
	switch cfg.RequiredAcks {
	case "", "all":
		acks = kafkago.RequireAll
	case "one":
		acks = kafkago.RequireOne
	case "none":
		acks = kafkago.RequireNone
	default:
		return fail("required_acks %q is not one of all, one, none", cfg.RequiredAcks)
	}
	if cfg.BatchSize < 0 || cfg.BatchBytes < 0 || cfg.Linger < 0 {
		return fail("batch_size, batch_bytes and linger must not be negative")
	}
	tr, err := NewTransport(cfg.Kafka, ApplyOptions(opts))
	if err != nil {
		return fail("%w", err)
	}
	linger := cfg.Linger
	if linger == 0 {
		linger = time.Nanosecond // kafka-go reads 0 as its 1 s default
	}
	s := &Sink{
		name:  name,
		topic: cfg.Topic,
		tr:    tr,
		log:   log,
		w: &kafkago.Writer{
			Addr:         kafkago.TCP(cfg.Brokers...),
			Topic:        cfg.Topic,
			Balancer:     &kafkago.Hash{}, // by key: a trace stays in one partition
			MaxAttempts:  1,               // the runner retries, not the writer
			BatchSize:    cfg.BatchSize,
			BatchBytes:   int64(cfg.BatchBytes),
			BatchTimeout: linger,
			ReadTimeout:  timeout(cfg.Kafka),
			WriteTimeout: timeout(cfg.Kafka),
			RequiredAcks: acks,
			Compression:  codec,
			Transport:    tr,
			// Write returns every error to the runner, which logs; the
			// writer's own lines are details for debugging. kafka-go
			// never prints credentials in them.
			ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) {
				if log.Enabled(context.Background(), slog.LevelDebug) {
					log.Debug("kafka writer: "+fmt.Sprintf(msg, args...), "sink", name)
				}
			}),
		},
	}
	s.batchBytes = s.w.BatchBytes
	if s.batchBytes == 0 {
		s.batchBytes = 1 << 20 // kafka-go's default
	}
	s.scratch.New = func() any { return new(scratch) }
	attrs := []any{"sink", name, "brokers", strings.Join(cfg.Brokers, ","), "topic", cfg.Topic,
		"compression", cfg.Compression, "required_acks", cfg.RequiredAcks, "tls", tr.TLS != nil}
	if cfg.SASL != nil {
		attrs = append(attrs, "sasl", cfg.SASL.Mechanism, "user", cfg.SASL.Username)
	}
	log.Info("kafka sink ready", attrs...)
	return s, nil
}

// Name implements pipeline.Sink.
func (s *Sink) Name() string { return s.name }

// Topic returns the topic the sink writes to.
func (s *Sink) Topic() string { return s.topic }

// Check asks the brokers for the topic's metadata: nil when it exists and
// has partitions. Errors are classified like Write's.
func (s *Sink) Check(ctx context.Context) error {
	cl := &kafkago.Client{Addr: s.w.Addr, Transport: s.tr, Timeout: s.w.ReadTimeout}
	md, err := cl.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{s.topic}})
	if err != nil {
		return Classify(fmt.Errorf("kafka sink %s: metadata: %w", s.name, err))
	}
	for _, t := range md.Topics {
		if t.Name == s.topic {
			if t.Error != nil {
				return Classify(fmt.Errorf("kafka sink %s: topic %s: %w", s.name, s.topic, t.Error))
			}
			if len(t.Partitions) == 0 {
				return Classify(fmt.Errorf("kafka sink %s: topic %s has no partitions: %w", s.name, s.topic, kafkago.UnknownTopicOrPartition))
			}
			return nil
		}
	}
	return Classify(fmt.Errorf("kafka sink %s: topic %s: %w", s.name, s.topic, kafkago.UnknownTopicOrPartition))
}

// Write implements pipeline.Sink: every record of b that is neither failed
// nor filtered becomes one message (key: the trace id, none when empty;
// value: the record's JSON), all sent in one WriteMessages call that
// returns once the broker acknowledged them per RequiredAcks. One attempt:
// retrying is the runner's job. The error carries a code (pipeline.Coded) and is
// pipeline.Permanent when retrying cannot fix it (see Code).
//
// Write encodes into pooled scratch space, never into b (other sinks and
// retries may be reading b at the same time), and keeps no view into b
// once it returns.
func (s *Sink) Write(ctx context.Context, b *pipeline.Batch) error {
	sc := s.scratch.Get().(*scratch)
	buf, ends := sc.buf[:0], sc.ends[:0]
	for i := range b.Records {
		r := &b.Records[i]
		if r.Failed() || r.Filtered {
			continue
		}
		// Keys are copied too: a view into b could outlive Write if ctx
		// ends while the writer still holds the message.
		ends = append(ends, len(buf))
		buf = append(buf, r.TraceID...)
		ends = append(ends, len(buf))
		buf = sinks.AppendRecord(buf, r, b.Buf)
		buf = buf[:len(buf)-1] // the newline
		ends = append(ends, len(buf))
	}
	sc.buf, sc.ends = buf, ends
	n := len(ends) / 3
	if n == 0 {
		s.scratch.Put(sc)
		return nil
	}
	now := time.Now()
	msgs := sc.msgs[:0]
	for i := 0; i < len(ends); i += 3 {
		m := kafkago.Message{Value: buf[ends[i+1]:ends[i+2]:ends[i+2]], Time: now}
		if ends[i] < ends[i+1] {
			m.Key = buf[ends[i]:ends[i+1]:ends[i+1]]
		}
		msgs = append(msgs, m)
	}
	sc.msgs = msgs

	s.writes.Add(1)
	err := s.w.WriteMessages(ctx, msgs...)
	if err != nil && ctx.Err() != nil {
		// WriteMessages may have returned before the writer is done
		// with the messages: leave the scratch to the GC.
		s.errs.Add(1)
		return Classify(fmt.Errorf("kafka sink %s: topic %s: %w", s.name, s.topic, ctx.Err()))
	}
	if err != nil {
		err = s.describe(err, msgs)
		s.errs.Add(1)
		s.resetOnNetworkError(err)
	} else {
		s.messages.Add(int64(n))
		s.bytes.Add(int64(len(buf)))
	}
	clear(msgs)
	if cap(buf) <= maxPooledScratch {
		s.scratch.Put(sc)
	}
	return err
}

// resetOnNetworkError drops the transport's connection pools after a
// network failure: kafka-go caches a failed metadata fetch until its next
// refresh (up to 6s), so without this a broker that is back would still be
// reported down for seconds. Requests in flight keep their pool.
func (s *Sink) resetOnNetworkError(err error) {
	switch code, _ := Code(err); code {
	case CodeBrokerUnavailable, CodeNetwork, CodeTimeout:
		s.tr.CloseIdleConnections()
	}
}

// describe turns a WriteMessages error into the sink's error: prefixed with
// the sink and topic, summarized (kafka-go's own text lists every failed
// message), holding no view into the messages, classified.
func (s *Sink) describe(err error, msgs []kafkago.Message) error {
	var tooLarge kafkago.MessageTooLargeError
	var werrs kafkago.WriteErrors
	switch {
	case errors.As(err, &tooLarge):
		// Refused by the writer itself before sending: larger than
		// batch_bytes. The error holds the messages; keep none of it.
		size := len(tooLarge.Message.Key) + len(tooLarge.Message.Value)
		return Classify(fmt.Errorf("kafka sink %s: topic %s: a record of %d bytes encoded is over batch_bytes %d: %w",
			s.name, s.topic, size, s.batchBytes, kafkago.MessageSizeTooLarge))
	case errors.As(err, &werrs):
		// Per-message errors: the messages of the partitions that
		// failed. If any is permanent the batch is; else it is
		// transient and the runner retries the whole batch, so the
		// messages that did succeed are written again: the dedupe
		// layer downstream is what makes that idempotent (kafka-go has
		// no idempotent producer).
		var first, perm error
		failed := 0
		for _, e := range werrs {
			if e == nil {
				continue
			}
			failed++
			if first == nil {
				first = e
			}
			if _, p := Code(e); p && perm == nil {
				perm = e
			}
		}
		cause := first
		if perm != nil {
			cause = perm
		}
		if cause == nil { // cannot happen: kafka-go returns WriteErrors only with errors
			cause = errors.New("write failed")
		}
		return Classify(fmt.Errorf("kafka sink %s: topic %s: %d of %d messages failed: %w",
			s.name, s.topic, failed, len(msgs), cause))
	}
	return Classify(fmt.Errorf("kafka sink %s: topic %s: %w", s.name, s.topic, err))
}

// Stats returns the counters; safe to call at any time.
func (s *Sink) Stats() Stats {
	return Stats{
		Writes:   s.writes.Load(),
		Messages: s.messages.Load(),
		Bytes:    s.bytes.Load(),
		Errors:   s.errs.Load(),
	}
}

// Close implements pipeline.Sink: it waits for the writer to flush what it
// holds (only messages of Writes whose ctx ended early: a returned Write is
// acknowledged or failed) and closes its connections. Write must not be
// called after Close (it returns a permanent "closed" error). If ctx ends
// first, Close returns its error and the writer finishes in the background.
func (s *Sink) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.closeOnce.Do(func() {
			s.closeErr = s.w.Close()
			s.tr.CloseIdleConnections()
		})
		close(done)
	}()
	select {
	case <-done:
		if s.closeErr != nil {
			return fmt.Errorf("kafka sink %s: close: %w", s.name, s.closeErr)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka sink %s: close: %w", s.name, ctx.Err())
	}
}
