// Package redisdlq keeps DLQ entries in a Redis Stream: Backend (the
// dlq.Backend the runner writes to, with the file DLQ as fallback), the
// consumer-group operations of DLQ processors (Read, Claim, Ack, Move) and
// Store (reading and deleting entries for `pipeline dlq`).
//
// # Data model
//
// One stream (dlq.redis.stream, default "tracepipe:dlq"); one stream entry
// per DLQ entry, its fields the entry's fields flat: v, id, time, class,
// code, message, stage, component, host, pipeline_version, source_kind,
// source_path, source_key, source_format, source_offset, source_line, source_topic,
// source_partition, source_kafka_offset, source_stream, source_stream_id,
// attempts, first_failure, last_failure, event_time, window_start,
// window_end, trace_id, span_id, replay_count, replayed_from, payload,
// payload_size, payload_sha256, truncated. Times are RFC 3339 with
// nanoseconds; optional fields that are empty are left out, as in the file
// DLQ's JSON. payload holds the raw bytes, binary safe (no base64): a reader
// takes valid UTF-8 as text and anything else as binary, the rule of
// dlq.Entry.SetPayload, so entries round-trip exactly.
//
// The stream is capped at dlq.redis.maxlen with XTRIM MAXLEN ~ after each
// write; the entries a trim removed are counted (Trimmed, and in
// Stats.Evicted) and the first trim is logged, never silent. A consumer
// group (dlq.redis.group) serves DLQ processors.
//
// Entry ids are not indexed: Store.Get and Store.Delete by entry id look
// the entry up by scanning (first around the time in the id, then the whole
// stream). They are operator commands; an index would have to follow
// MAXLEN trims, which name no ids.
package redisdlq

import (
	"context"
	"errors"
	"log/slog"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

const (
	// queueSize bounds the entries waiting for the writer.
	queueSize = dlq.DefaultQueueSize
	// writeBatch is the most entries one pipelined write carries.
	writeBatch = 256
	// defaultRetryAfter is how long entries go straight to the fallback
	// after Redis failed, at first; it doubles up to maxBackoff times that
	// while Redis keeps failing.
	defaultRetryAfter = time.Second
	maxBackoff        = 30
)

// Options configure Open.
type Options struct {
	// Fallback takes the entries Redis could not (the file DLQ). The
	// Backend owns it from Open on: Close closes it, and Stats include its
	// counts. Without one, such entries are counted in Stats.Failed.
	Fallback dlq.Backend
	// Logger gets fallback, recovery and trim reports; default
	// slog.Default().
	Logger *slog.Logger
	// RetryAfter is how long entries go straight to Fallback after a write
	// to Redis failed, before Redis is tried again (doubling while it keeps
	// failing, up to 30 times RetryAfter). Default 1s.
	RetryAfter time.Duration
}

// Backend is the Redis DLQ backend. It implements dlq.Backend: Put queues
// entries (bounded: a full queue blocks Put), one writer goroutine adds
// them to the stream in pipelined batches of up to 256 (XADD each, then
// XTRIM MAXLEN ~ maxlen), within cfg.Timeout per batch.
//
// When a write fails (Redis down, timing out, refusing), the entries it
// did not store go to Options.Fallback (counted in FellBack), and so do all
// entries for RetryAfter after that: nothing is lost, and the writer does
// not wait on a dead server entry after entry. Entries stay where they were
// written; an entry whose write failed after Redis stored it (the reply was
// lost) may be in both places, with one id: at-least-once.
//
// The queue, the writer, the fallback and the counts are dlq.Remote's
// (Put, Sync, Close, Full, FellBack come from it); this type adds the
// stream: writer, Stats with the trimmed entries, and the consumer-group
// operations (EnsureGroup, Read, Claim, Ack, Move) on the same stream.
type Backend struct {
	*conn
	*dlq.Remote
}

var _ dlq.Backend = (*Backend)(nil)

// Open connects to cfg's server and starts the writer. A wrong password or
// a refused command fails Open; a server that does not answer fails it
// too, unless opts.Fallback is set: then Open succeeds, logs a warning and
// entries go to the fallback until Redis answers.
func Open(cfg config.DLQRedis, opts Options) (*Backend, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = defaultRetryAfter
	}
	c := newConn(cfg, log)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	down := false
	if err := c.client.Ping(ctx).Err(); err != nil {
		err = redisconn.Classify(err)
		if opts.Fallback == nil || errors.Is(err, pipeline.ErrPermanent) {
			_ = c.client.Close()
			return nil, c.errorf("%w", err)
		}
		log.Warn("redis dlq: redis does not answer; entries go to the fallback DLQ until it does",
			"addr", cfg.Addr, "stream", cfg.Stream, "err", err)
		down = true
	}
	r := dlq.NewRemote(&writer{conn: c, timeout: cfg.Timeout}, dlq.RemoteOptions{
		Name:          "redis dlq",
		Label:         "redis dlq " + c.addr + " " + c.stream,
		Attrs:         []any{"stream", c.stream},
		DownText:      "writing to redis failed; entries go to the fallback DLQ",
		UpText:        "redis answers again; entries go to the stream",
		Logger:        log,
		Fallback:      opts.Fallback,
		QueueSize:     queueSize,
		Batch:         writeBatch,
		RetryAfter:    opts.RetryAfter,
		MaxRetryAfter: maxBackoff * opts.RetryAfter,
		StartDown:     down,
	})
	return &Backend{conn: c, Remote: r}, nil
}

// Stats counts entries stored, by class: acknowledged by Redis (as durable
// as the server's persistence makes them) plus those the fallback wrote
// and synced. Failed counts entries neither took (and the
// fallback's own failures); Evicted the entries MAXLEN trimmed (Trimmed)
// plus the fallback's evictions. Bytes counts Redis's part as field bytes.
func (b *Backend) Stats() dlq.Stats {
	st := b.Remote.Stats()
	st.Evicted += b.Trimmed()
	return st
}

// Ping asks the server whether it answers (for readiness checks): the
// writer only learns of an outage when it has entries to write.
func (b *Backend) Ping(ctx context.Context) error {
	if err := b.client.Ping(ctx).Err(); err != nil {
		return b.errorf("%w", redisconn.Classify(err))
	}
	return nil
}

// writer is the dlq.RemoteServer of Backend: it adds entries to the stream.
// Only the Remote's writer goroutine uses it.
type writer struct {
	*conn
	timeout time.Duration
	args    []any // scratch space for one entry's fields
}

// Write adds batch to the stream in one pipeline (XADD each entry, then
// XTRIM MAXLEN ~ maxlen), within the configured timeout. The entries whose
// XADD failed are Failed, with the first error; a failed trim is only
// logged (the entries are stored; the next write trims). probe changes
// nothing: a write is already bounded by the timeout.
func (w *writer) Write(batch []*dlq.Entry, _ bool) dlq.RemoteResult {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	pipe := w.client.Pipeline()
	sizes := make([]int64, len(batch))
	for i, e := range batch {
		var n int64
		w.args, n = appendFields(w.args[:0], e)
		sizes[i] = n
		// XAdd copies args into its command.
		pipe.XAdd(ctx, &goredis.XAddArgs{Stream: w.stream, Values: w.args})
	}
	var trim *goredis.IntCmd
	if w.maxLen > 0 {
		trim = pipe.XTrimMaxLenApprox(ctx, w.stream, w.maxLen, 0)
	}
	cmds, _ := pipe.Exec(ctx)

	var res dlq.RemoteResult
	for i, e := range batch {
		var err error
		if i < len(cmds) {
			err = cmds[i].Err()
		} else {
			err = errors.New("not sent")
		}
		if err != nil {
			if res.Err == nil {
				res.Err = err
			}
			res.Failed = append(res.Failed, e)
			continue
		}
		res.Stored = append(res.Stored, e)
		res.Bytes += sizes[i]
	}
	if trim != nil {
		if n, err := trim.Result(); err == nil {
			w.countTrimmed(n)
		} else if res.Err == nil {
			w.log.Warn("redis dlq: trimming the stream failed", "stream", w.stream, "err", redisconn.Classify(err))
		}
	}
	if res.Err != nil {
		res.Err = redisconn.Classify(res.Err)
	}
	return res
}

// Close closes the client once the Remote's queue is drained.
func (w *writer) Close() error {
	_ = w.client.Close()
	return nil
}
