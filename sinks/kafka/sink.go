// Package kafka is the Kafka sink: records are produced to one topic with
// segmentio/kafka-go, one JSON document per message (sinks.AppendRecord,
// without the newline), keyed by trace id so that a trace stays in one
// partition. The connection (TLS, SASL PLAIN and SCRAM) and the
// classification of Kafka errors are internal/kafkaconn's, shared with the
// Kafka DLQ backend.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/kafkaconn"
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

// Option adjusts New.
type Option = kafkaconn.Option

// WithTLSConfig replaces the default TLS client config (system roots,
// TLS 1.2+), e.g. to trust a private CA; it turns TLS on.
func WithTLSConfig(c *tls.Config) Option { return kafkaconn.WithTLSConfig(c) }

// scratch is one Write's encoding buffer and message slice, pooled.
type scratch struct {
	buf  []byte
	msgs []kafkago.Message
	ends []int   // per message: key start, key end (= value start), value end
	recs []int32 // per message: its record
	big  []int32 // records over batch_bytes: refused before sending
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
	tr, err := kafkaconn.NewTransport(cfg.Kafka, kafkaconn.ApplyOptions(opts))
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
			ReadTimeout:  kafkaconn.Timeout(cfg.Kafka),
			WriteTimeout: kafkaconn.Timeout(cfg.Kafka),
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
		return kafkaconn.Classify(fmt.Errorf("kafka sink %s: metadata: %w", s.name, err))
	}
	for _, t := range md.Topics {
		if t.Name == s.topic {
			if t.Error != nil {
				return kafkaconn.Classify(fmt.Errorf("kafka sink %s: topic %s: %w", s.name, s.topic, t.Error))
			}
			if len(t.Partitions) == 0 {
				return kafkaconn.Classify(fmt.Errorf("kafka sink %s: topic %s has no partitions: %w", s.name, s.topic, kafkago.UnknownTopicOrPartition))
			}
			return nil
		}
	}
	return kafkaconn.Classify(fmt.Errorf("kafka sink %s: topic %s: %w", s.name, s.topic, kafkago.UnknownTopicOrPartition))
}

// Write implements pipeline.Sink: each record of recs becomes one message
// (key: the trace id, none when empty; value: the record's JSON), all sent
// in one WriteMessages call that returns once the broker acknowledged them
// per RequiredAcks. One attempt: retrying is the runner's job. When some
// messages fail (their partitions' errors, a record over batch_bytes) it
// returns a *pipeline.PartialError naming only those records, so the ones
// the broker took are not sent again. The error carries a code
// (pipeline.Coded) and is pipeline.Permanent when retrying cannot fix any
// of the failed ones (see kafkaconn.Code).
//
// Write encodes into pooled scratch space, never into b (other sinks and
// retries may be reading b at the same time), and keeps no view into b
// once it returns.
func (s *Sink) Write(ctx context.Context, b *pipeline.Batch, recs []int32) error {
	sc := s.scratch.Get().(*scratch)
	buf, ends := sc.buf[:0], sc.ends[:0]
	sc.recs, sc.big = sc.recs[:0], sc.big[:0]
	for _, i := range recs {
		r := &b.Records[i]
		// Keys are copied too: a view into b could outlive Write if ctx
		// ends while the writer still holds the message.
		start := len(buf)
		buf = append(buf, r.TraceID...)
		mid := len(buf)
		buf = sinks.AppendRecord(buf, r, b.Buf)
		buf = buf[:len(buf)-1] // the newline
		if int64(len(buf)-start) > s.batchBytes {
			// kafka-go would refuse the whole call for it: refuse it alone.
			buf = buf[:start]
			sc.big = append(sc.big, i)
			continue
		}
		ends = append(ends, start, mid, len(buf))
		sc.recs = append(sc.recs, i)
	}
	sc.buf, sc.ends = buf, ends
	var err error
	var failed []int32
	if n := len(sc.recs); n > 0 {
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
		werr := s.w.WriteMessages(ctx, msgs...)
		if werr != nil && ctx.Err() != nil {
			// WriteMessages may have returned before the writer is done
			// with the messages: leave the scratch to the GC.
			s.errs.Add(1)
			return kafkaconn.Classify(fmt.Errorf("kafka sink %s: topic %s: %w", s.name, s.topic, ctx.Err()))
		}
		sent := n
		if werr != nil {
			s.errs.Add(1)
			var werrs kafkago.WriteErrors
			if errors.As(werr, &werrs) && len(werrs) == n {
				for k, e := range werrs {
					if e != nil {
						failed = append(failed, sc.recs[k])
					}
				}
			} else {
				failed = append(failed, sc.recs...)
			}
			sent -= len(failed)
			err = s.describe(werr, len(msgs))
			s.resetOnNetworkError(err)
		}
		s.messages.Add(int64(sent))
		if sent == n {
			s.bytes.Add(int64(len(buf)))
		}
		clear(msgs)
	}
	if len(sc.big) > 0 {
		tooLarge := kafkaconn.Classify(fmt.Errorf("kafka sink %s: topic %s: %d records are over batch_bytes %d encoded: %w",
			s.name, s.topic, len(sc.big), s.batchBytes, kafkago.MessageSizeTooLarge))
		// With transient failures besides, the error stays transient:
		// the retry sends those again, and the large ones fail alone,
		// then for good.
		if err == nil {
			s.errs.Add(1) // a Write that failed, even if nothing was sent
			err = tooLarge
		} else if errors.Is(err, pipeline.ErrPermanent) {
			err = errors.Join(err, tooLarge)
		}
		failed = mergeSorted(failed, sc.big)
	}
	if cap(buf) <= maxPooledScratch {
		s.scratch.Put(sc)
	}
	switch {
	case err == nil:
		return nil
	case len(failed) == len(recs):
		return err
	}
	return &pipeline.PartialError{Failed: failed, Err: err}
}

// mergeSorted returns the union of two ascending lists, ascending, in a
// new slice (error path only).
func mergeSorted(a, b []int32) []int32 {
	out := make([]int32, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		if j == len(b) || (i < len(a) && a[i] < b[j]) {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	return out
}

// resetOnNetworkError drops the transport's connection pools after a
// network failure: kafka-go caches a failed metadata fetch until its next
// refresh (up to 6s), so without this a broker that is back would still be
// reported down for seconds. Requests in flight keep their pool.
func (s *Sink) resetOnNetworkError(err error) {
	switch code, _ := kafkaconn.Code(err); code {
	case kafkaconn.CodeBrokerUnavailable, kafkaconn.CodeNetwork, kafkaconn.CodeTimeout:
		s.tr.CloseIdleConnections()
	}
}

// describe turns a WriteMessages error into the sink's error: prefixed with
// the sink and topic, summarized (kafka-go's own text lists every failed
// message), holding no view into the messages, classified. Per-message
// errors are permanent only when every failed message's is.
func (s *Sink) describe(err error, total int) error {
	var werrs kafkago.WriteErrors
	if !errors.As(err, &werrs) {
		return kafkaconn.Classify(fmt.Errorf("kafka sink %s: topic %s: %w", s.name, s.topic, err))
	}
	var transient, perm error
	failed := 0
	for _, e := range werrs {
		if e == nil {
			continue
		}
		failed++
		if _, p := kafkaconn.Code(e); p {
			if perm == nil {
				perm = e
			}
		} else if transient == nil {
			transient = e
		}
	}
	cause := transient
	if cause == nil {
		cause = perm
	}
	if cause == nil { // cannot happen: kafka-go returns WriteErrors only with errors
		cause = errors.New("write failed")
	}
	return kafkaconn.Classify(fmt.Errorf("kafka sink %s: topic %s: %d of %d messages failed: %w",
		s.name, s.topic, failed, total, cause))
}

// Flush implements pipeline.Sink: nothing to do, a Write returns only once
// the brokers acknowledged its messages (RequiredAcks).
func (s *Sink) Flush(context.Context) error { return nil }

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
