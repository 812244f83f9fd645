// Package kafkadlq keeps DLQ entries in a Kafka topic (dlq.kafka.topic,
// default "tracepipe-dlq"): Backend, the dlq.Backend the runner writes to,
// with the file DLQ as fallback; and Store, the dlq.Store `pipeline dlq`
// reads and purges.
//
// # Message layout
//
// One message per entry. The key is the entry id. The value is the raw
// payload bytes, binary safe: Entry.Payload's text, or the bytes
// PayloadBase64 holds (decoded, not base64). Every other field is one
// header, named "dlq." followed by the field's JSON path in the file DLQ:
//
//	dlq.v  dlq.id  dlq.time
//	dlq.payload_size  dlq.payload_sha256  dlq.truncated  dlq.redacted
//	dlq.source.kind  dlq.source.path  dlq.source.key  dlq.source.format  dlq.source.offset
//	dlq.source.line  dlq.source.topic  dlq.source.partition
//	dlq.source.kafka_offset  dlq.source.stream  dlq.source.stream_id
//	dlq.stage  dlq.component  dlq.sinks  dlq.host  dlq.pipeline_version
//	dlq.error.class  dlq.error.code  dlq.error.message
//	dlq.attempts  dlq.first_failure  dlq.last_failure
//	dlq.event_time  dlq.window_start  dlq.window_end
//	dlq.trace_id  dlq.span_id  dlq.replay_count  dlq.replayed_from
//
// plus dlq.payload_binary = "true" when the entry's payload was binary
// (PayloadBase64 in the file DLQ's JSON). Values are text: numbers in
// decimal, booleans "true", times RFC 3339 with nanoseconds. A field at its
// zero value (empty, 0, false, zero or nil time) has no header, and a
// missing header reads back as the zero value, so an entry read back equals
// the entry Put. A reader ignores headers it does not know (a newer writer
// may add fields) and skips, counting and logging, messages that have no
// dlq.id or a schema version newer than its own. The message timestamp is
// the entry's time.
//
// # Delivery and fallback
//
// Put queues (bounded; a full queue blocks Put). One writer goroutine
// sends up to 256 entries per WriteMessages, acknowledged by all in-sync
// replicas, retrying transient errors with backoff for the delivery timeout
// (the config's timeout, 10s by default). Entries it could not deliver in
// that time, entries Kafka refused for good (too large, not authorized)
// and, for a while after a failure (RetryAfter, doubling up to 30s while
// Kafka keeps failing), every new entry go to the fallback (the file DLQ)
// instead: nothing is lost, counted in FellBack. Without a fallback they
// are counted in Stats.Failed and logged. An entry whose write failed after
// Kafka stored it (a lost answer) can be in both places, with one id:
// at-least-once.
//
// # Topics
//
// Open creates the topic if it does not exist (CreateTopics, which Kafka
// sends to the controller; partitions and replication factor are the
// broker's defaults unless WithTopicLayout says otherwise), or fails
// naming it. Kafka's retention applies to the topic like to any other.
//
// # Purging
//
// A log cannot drop single messages. Store.Delete records the ids in the
// companion topic "<topic>.purged" (key: the id; value: when; created on
// first use, cleanup.policy=compact so one marker per id is kept for good),
// and Scan and Get skip purged ids. The entries stay in the DLQ topic until
// its retention removes them.
package kafkadlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/kafkaconn"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// Backend is the Kafka DLQ backend; it implements dlq.Backend. The queue,
// the writer goroutine, the fallback and the counts are dlq.Remote's (Put,
// Sync, Close, Stats, Full, FellBack come from it); this type adds the
// topic and its writer. Stats.Bytes counts Kafka's part as message key,
// value and header bytes. Kafka itself never fills (retention removes old
// entries), so Full follows only the fallback.
type Backend struct {
	*conn
	*dlq.Remote
}

var _ dlq.Backend = (*Backend)(nil)

// Open checks that cfg's topic exists, creating it if not (a failure to
// create names the topic), and starts the writer. With a fallback, a Kafka
// that cannot be reached does not fail Open: it logs a warning and entries
// go to the fallback until Kafka answers (the topic is then checked at the
// first delivery that reaches Kafka, and created if missing).
func Open(cfg config.DLQKafka, log *slog.Logger, opts ...Option) (*Backend, error) {
	c, err := newConn(cfg, log, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	err = c.ensureTopic(ctx, c.topic)
	cancel()
	if err != nil {
		if c.o.fallback == nil || errors.Is(err, pipeline.ErrPermanent) || !unreachable(err) {
			c.tr.CloseIdleConnections()
			return nil, err
		}
		c.tr.CloseIdleConnections() // drop the failed metadata kafka-go caches
		c.log.Warn("dlq kafka: brokers unreachable at start; entries go to the fallback until they answer",
			"topic", c.topic, "err", err)
	}
	r := dlq.NewRemote(&writer{conn: c, w: c.writer(c.topic), topicOK: err == nil}, dlq.RemoteOptions{
		Name:          "dlq kafka",
		Label:         "dlq kafka topic " + c.topic,
		Attrs:         []any{"topic", c.topic},
		DownText:      "delivery failed; entries go to the fallback for a while",
		UpText:        "delivering to Kafka again",
		Logger:        c.log,
		Fallback:      c.o.fallback,
		QueueSize:     c.o.queueSize,
		Batch:         maxBatch,
		RetryAfter:    c.o.retryAfter,
		MaxRetryAfter: maxRetryAfter,
		StartDown:     err != nil,
	})
	return &Backend{conn: c, Remote: r}, nil
}

// unreachable reports whether err says the brokers could not be reached
// (as opposed to refusing something).
func unreachable(err error) bool {
	code, _ := kafkaconn.Code(err)
	switch code {
	case kafkaconn.CodeBrokerUnavailable, kafkaconn.CodeNetwork, kafkaconn.CodeTimeout, kafkaconn.CodeTLS:
		return true
	}
	return false
}

// Topic names the DLQ topic.
func (b *Backend) Topic() string { return b.topic }

// writer is the dlq.RemoteServer of Backend: it delivers entries to the
// topic. Only the Remote's writer goroutine uses it.
type writer struct {
	*conn
	w       *kafkago.Writer
	topicOK bool // the topic was found or created
}

// Write delivers batch to Kafka, acknowledged by all in-sync replicas,
// retrying transient errors with backoff until the delivery timeout (after
// a failure, probe: a short window, a few attempts, since the first after
// a broker restart often meets a stale pooled connection). Entries Kafka
// refused for good (too large, not authorized) are Refused, with a
// warning; those still failing at the deadline are Failed.
func (w *writer) Write(batch []*dlq.Entry, probe bool) (res dlq.RemoteResult) {
	now := time.Now()
	if !w.topicOK {
		// Open could not reach Kafka: check (or create) the topic first.
		ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
		err := w.ensureTopic(ctx, w.topic)
		cancel()
		if err != nil {
			return w.failed(res, batch, err)
		}
		w.topicOK = true
	}
	entries := make([]*dlq.Entry, 0, len(batch))
	msgs := make([]kafkago.Message, 0, len(batch))
	for _, e := range batch {
		m := encode(e)
		if n := messageSize(&m); n > batchBytes-1024 {
			w.refused(&res, []*dlq.Entry{e}, pipeline.Permanent(pipeline.WithCode("message_size_too_large",
				fmt.Errorf("entry %s is about %d bytes as a message, over the %d a produce request may carry", e.ID, n, batchBytes))))
			continue
		}
		entries = append(entries, e)
		msgs = append(msgs, m)
	}
	deadline := now.Add(w.o.timeout)
	if probe {
		deadline = now.Add(min(probeWindow, w.o.timeout))
	}
	backoff := 100 * time.Millisecond
	for len(msgs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*w.timeout)
		err := w.w.WriteMessages(ctx, msgs...)
		cancel()
		if err == nil {
			w.acked(&res, entries, msgs)
			return res
		}
		// Split into acknowledged, refused for good, and to retry.
		var werrs kafkago.WriteErrors
		var retryE []*dlq.Entry
		var retryM []kafkago.Message
		var ackE []*dlq.Entry
		var ackM []kafkago.Message
		if errors.As(err, &werrs) && len(werrs) == len(msgs) {
			for i, we := range werrs {
				switch _, permanent := kafkaconn.Code(we); {
				case we == nil:
					ackE, ackM = append(ackE, entries[i]), append(ackM, msgs[i])
				case permanent:
					w.refused(&res, entries[i:i+1], kafkaconn.Classify(we))
				default:
					retryE, retryM = append(retryE, entries[i]), append(retryM, msgs[i])
				}
			}
			if len(ackE) > 0 {
				w.acked(&res, ackE, ackM)
				if probe {
					// Kafka answers: give the rest the full timeout.
					probe = false
					deadline = now.Add(w.o.timeout)
				}
			}
		} else if _, permanent := kafkaconn.Code(err); permanent {
			w.refused(&res, entries, kafkaconn.Classify(err))
			return res
		} else {
			retryE, retryM = entries, msgs
		}
		if len(retryM) == 0 {
			return res
		}
		entries, msgs = retryE, retryM
		if time.Now().Add(backoff).After(deadline) {
			return w.failed(res, entries, kafkaconn.Classify(err))
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
	return res
}

// acked adds entries Kafka acknowledged to res.
func (w *writer) acked(res *dlq.RemoteResult, entries []*dlq.Entry, msgs []kafkago.Message) {
	res.Stored = append(res.Stored, entries...)
	for i := range msgs {
		res.Bytes += messageSize(&msgs[i])
	}
}

// refused adds entries Kafka refused for good to res, with a warning
// (Kafka may be fine otherwise: this is not a down period).
func (w *writer) refused(res *dlq.RemoteResult, entries []*dlq.Entry, err error) {
	w.log.Warn("dlq kafka: Kafka refused entries; they go to the fallback",
		"topic", w.topic, "count", len(entries), "first_id", entries[0].ID, "err", err)
	for _, e := range entries {
		res.Refused = append(res.Refused, dlq.Refusal{Entry: e, Err: err})
	}
}

// failed returns res with entries Failed for err. kafka-go's transport
// caches a failed metadata fetch until its next refresh (up to 6s): its
// pools are dropped so the next try starts afresh.
func (w *writer) failed(res dlq.RemoteResult, entries []*dlq.Entry, err error) dlq.RemoteResult {
	w.tr.CloseIdleConnections()
	res.Failed, res.Err = entries, err
	return res
}

// Close closes the Kafka writer and drops the transport's connections.
func (w *writer) Close() error {
	err := w.w.Close()
	w.tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close writer: %w", err)
	}
	return nil
}
