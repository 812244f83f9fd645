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
//	dlq.source.kind  dlq.source.path  dlq.source.format  dlq.source.offset
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
	"maps"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/kafkaconn"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// Backend is the Kafka DLQ backend; it implements dlq.Backend.
type Backend struct {
	*conn
	w  *kafkago.Writer
	fb *dlq.Fallback

	in   *dlq.Intake
	done chan struct{} // closed when the writer has finished

	statsMu      sync.Mutex
	syncedFailed int64     // stats.Failed at the last Sync
	stats        dlq.Stats // Kafka's part
	err          error     // first error, returned by Close

	// Writer goroutine state.
	down       bool
	downUntil  time.Time
	retryAfter time.Duration
	topicOK    bool // the topic was found or created
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
	b := &Backend{
		conn:       c,
		w:          c.writer(c.topic),
		in:         dlq.NewIntake(c.o.queueSize),
		done:       make(chan struct{}),
		retryAfter: c.o.retryAfter,
		stats:      dlq.Stats{Written: map[string]int64{}},
	}
	if err != nil {
		b.down = true
		b.downUntil = time.Now().Add(b.retryAfter)
	} else {
		b.topicOK = true
	}
	b.fb = dlq.NewFallback(c.o.fallback, b.done)
	go b.run()
	return b, nil
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

// Put validates e (filling Version, Time and ID when zero, as the file
// backend does) and queues it. If the queue has room Put returns at once;
// otherwise it blocks until there is room (nil) or ctx is done (ctx.Err(),
// the entry not taken). After Close it returns an error wrapping
// dlq.ErrClosed. A nil error means the entry will be in Kafka, in the
// fallback, or counted in Stats.Failed. The caller must not modify e after
// Put; the backend keeps it until written.
func (b *Backend) Put(ctx context.Context, e *dlq.Entry) error {
	if e == nil {
		return errors.New("dlq kafka: Put of a nil entry")
	}
	if b.in.Closed() {
		return fmt.Errorf("%w: kafka topic %s", dlq.ErrClosed, b.topic)
	}
	if err := e.Prepare(); err != nil {
		return err
	}

	if err := b.in.Put(ctx, e); err != nil {
		if errors.Is(err, dlq.ErrClosed) {
			return fmt.Errorf("%w: kafka topic %s", dlq.ErrClosed, b.topic)
		}
		return err
	}
	return nil
}

// Close stops taking entries and waits until the writer has delivered (to
// Kafka or the fallback) everything Put accepted, then closes the Kafka
// writer and the fallback, and returns the first error of the backend's
// life (a fallback that refused entries, closing the fallback). If ctx ends
// first, Close returns an error wrapping ctx.Err() and the writer goes on in
// the background; a later Close waits again.
func (b *Backend) Close(ctx context.Context) error {
	b.in.Close()
	select {
	case <-b.done:
		b.statsMu.Lock()
		defer b.statsMu.Unlock()
		return b.err
	case <-ctx.Done():
		return fmt.Errorf("dlq kafka: close topic %s: %w (the writer goes on in the background)", b.topic, ctx.Err())
	}
}

// Stats counts entries stored by class: acknowledged by Kafka plus those
// the fallback wrote. Failed counts entries neither took (and the
// fallback's own failures); Evicted and Bytes add the fallback's (Kafka's
// bytes are message key, value and header bytes). Final once Close has
// returned.
func (b *Backend) Stats() dlq.Stats {
	b.statsMu.Lock()
	st := b.stats
	st.Written = maps.Clone(b.stats.Written)
	b.statsMu.Unlock()
	return b.fb.AddStats(st)
}

// Sync waits until every entry Put accepted before the call is stored
// (acknowledged by the server, or written and synced by the fallback), or
// ctx ends. It returns an error when entries were lost (neither the
// server nor the fallback took them) since the previous Sync.
func (b *Backend) Sync(ctx context.Context) error {
	return dlq.SyncRemote(ctx, b.in, b.fb, b.lostSinceSync)
}

// lostSinceSync counts the entries lost since the previous call.
func (b *Backend) lostSinceSync() (int64, error) {
	b.statsMu.Lock()
	defer b.statsMu.Unlock()
	lost := b.stats.Failed - b.syncedFailed
	b.syncedFailed = b.stats.Failed
	return lost, b.err
}

// Full is closed when entries went to the fallback and the fallback reached
// its cap (file DLQ, overflow: fail). Kafka itself never fills (retention
// removes old entries), so without a fallback it is never closed.
func (b *Backend) Full() <-chan struct{} { return b.fb.Full() }

// FellBack is how many entries went to the fallback since Open.
func (b *Backend) FellBack() int64 { return b.fb.Taken() }

// Topic names the DLQ topic.
func (b *Backend) Topic() string { return b.topic }

// run is the writer: it takes what is queued, up to maxBatch at a time,
// until the queue is closed.
func (b *Backend) run() {
	defer b.finish()
	batch := make([]*dlq.Entry, 0, maxBatch)
	for e := range b.in.C {
		batch = append(batch[:0], e)
	fill:
		for len(batch) < maxBatch {
			select {
			case e, ok := <-b.in.C:
				if !ok {
					break fill
				}
				batch = append(batch, e)
			default:
				break fill
			}
		}
		b.deliver(batch)
		b.in.Done(len(batch))
		clear(batch)
	}
}

// finish closes the Kafka writer and the fallback, then signals done.
func (b *Backend) finish() {
	if err := b.w.Close(); err != nil {
		b.recordErr(fmt.Errorf("dlq kafka: close writer: %w", err))
	}
	b.tr.CloseIdleConnections()
	if err := b.fb.Close(); err != nil {
		b.recordErr(fmt.Errorf("dlq kafka: close fallback: %w", err))
	}
	close(b.done)
}

// deliver writes batch to Kafka, retrying transient failures until the
// delivery timeout, and hands what is left to the fallback.
func (b *Backend) deliver(batch []*dlq.Entry) {
	now := time.Now()
	if b.down && now.Before(b.downUntil) {
		b.fallback(batch, errors.New("kafka unavailable (recent failure)"))
		return
	}
	if !b.topicOK {
		// Open could not reach Kafka: check (or create) the topic first.
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		err := b.ensureTopic(ctx, b.topic)
		cancel()
		if err != nil {
			b.markDown(err)
			b.fallback(batch, err)
			return
		}
		b.topicOK = true
	}
	entries := make([]*dlq.Entry, 0, len(batch))
	msgs := make([]kafkago.Message, 0, len(batch))
	for _, e := range batch {
		m := encode(e)
		if n := messageSize(&m); n > batchBytes-1024 {
			b.refused([]*dlq.Entry{e}, pipeline.Permanent(pipeline.WithCode("message_size_too_large",
				fmt.Errorf("entry %s is about %d bytes as a message, over the %d a produce request may carry", e.ID, n, batchBytes))))
			continue
		}
		entries = append(entries, e)
		msgs = append(msgs, m)
	}
	// After a failure, a short probe tells whether Kafka is back (a few
	// attempts: the first after a broker restart often meets a stale
	// pooled connection).
	deadline := now.Add(b.o.timeout)
	if b.down {
		deadline = now.Add(min(probeWindow, b.o.timeout))
	}
	backoff := 100 * time.Millisecond
	for len(msgs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*b.timeout)
		err := b.w.WriteMessages(ctx, msgs...)
		cancel()
		if err == nil {
			b.acked(entries, msgs)
			b.up()
			return
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
					b.refused(entries[i:i+1], kafkaconn.Classify(we))
				default:
					retryE, retryM = append(retryE, entries[i]), append(retryM, msgs[i])
				}
			}
			if len(ackE) > 0 {
				// Kafka answers: give the rest the full timeout.
				b.acked(ackE, ackM)
				if b.down {
					b.up()
					deadline = now.Add(b.o.timeout)
				}
			}
		} else if _, permanent := kafkaconn.Code(err); permanent {
			b.refused(entries, kafkaconn.Classify(err))
			return
		} else {
			retryE, retryM = entries, msgs
		}
		if len(retryM) == 0 {
			return
		}
		entries, msgs = retryE, retryM
		if time.Now().Add(backoff).After(deadline) {
			b.markDown(err)
			b.fallback(entries, kafkaconn.Classify(err))
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// acked counts entries Kafka acknowledged.
func (b *Backend) acked(entries []*dlq.Entry, msgs []kafkago.Message) {
	if len(entries) == 0 {
		return
	}
	b.statsMu.Lock()
	for i, e := range entries {
		b.stats.Written[e.Error.Class]++
		b.stats.Total++
		b.stats.Bytes += messageSize(&msgs[i])
	}
	b.statsMu.Unlock()
}

// markDown sends entries to the fallback for a while.
func (b *Backend) markDown(err error) {
	// kafka-go's transport caches a failed metadata fetch until its next
	// refresh (up to 6s): drop its pools so the next try starts afresh.
	b.tr.CloseIdleConnections()
	if b.down {
		b.retryAfter = min(2*b.retryAfter, maxRetryAfter)
	} else {
		b.log.Warn("dlq kafka: delivery failed; entries go to the fallback for a while",
			"topic", b.topic, "retry_after", b.retryAfter, "err", err)
	}
	b.down = true
	b.downUntil = time.Now().Add(b.retryAfter)
}

// up notes that Kafka took a batch.
func (b *Backend) up() {
	if b.down {
		b.log.Info("dlq kafka: delivering to Kafka again", "topic", b.topic, "fell_back", b.fb.Taken())
	}
	b.down = false
	b.retryAfter = b.o.retryAfter
}

// refused sends entries Kafka refused for good to the fallback, with a
// warning (Kafka may be fine otherwise: this is not a down period).
func (b *Backend) refused(entries []*dlq.Entry, err error) {
	b.log.Warn("dlq kafka: Kafka refused entries; they go to the fallback",
		"topic", b.topic, "count", len(entries), "first_id", entries[0].ID, "err", err)
	b.fallback(entries, err)
}

// fallback hands entries Kafka did not take to the fallback, or counts
// them failed when there is none (or it refuses them).
func (b *Backend) fallback(entries []*dlq.Entry, cause error) {
	if len(entries) == 0 {
		return
	}
	if !b.fb.Exists() {
		b.fail(int64(len(entries)), fmt.Errorf("dlq kafka: %d entries not delivered to topic %s and no fallback: %w", len(entries), b.topic, cause))
		return
	}
	for _, e := range entries {
		if err := b.fb.Put(e); err != nil {
			b.fail(1, fmt.Errorf("dlq kafka: entry %s: Kafka did not take it (%v) and the fallback refused it: %w", e.ID, cause, err))
		}
	}
}

// fail counts entries lost and keeps the first error.
func (b *Backend) fail(n int64, err error) {
	b.log.Error("dlq kafka: entries lost", "count", n, "err", err)
	b.statsMu.Lock()
	b.stats.Failed += n
	if b.err == nil {
		b.err = err
	}
	b.statsMu.Unlock()
}

func (b *Backend) recordErr(err error) {
	b.statsMu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.statsMu.Unlock()
}
