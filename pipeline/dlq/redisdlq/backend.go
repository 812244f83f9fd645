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
// source_path, source_format, source_offset, source_line, source_topic,
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
	"fmt"
	"log/slog"
	"maps"
	"sync"
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
// It also offers the consumer-group operations (EnsureGroup, Read, Claim,
// Ack, Move) on the same stream.
type Backend struct {
	*conn
	fb         *dlq.Fallback
	retryAfter time.Duration
	timeout    time.Duration

	in   *dlq.Intake
	done chan struct{} // closed when the writer has finished

	statsMu      sync.Mutex
	syncedFailed int64     // stats.Failed at the last Sync
	stats        dlq.Stats // Redis's part
	err          error     // first error, returned by Close

	// Writer state.
	downUntil time.Time
	backoff   time.Duration
	down      bool
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
	b := &Backend{
		conn:       newConn(cfg, log),
		retryAfter: opts.RetryAfter,
		timeout:    cfg.Timeout,
		in:         dlq.NewIntake(queueSize),
		done:       make(chan struct{}),
		stats:      dlq.Stats{Written: map[string]int64{}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	if err := b.client.Ping(ctx).Err(); err != nil {
		err = redisconn.Classify(err)
		if opts.Fallback == nil || errors.Is(err, pipeline.ErrPermanent) {
			_ = b.client.Close()
			return nil, b.errorf("%w", err)
		}
		log.Warn("redis dlq: redis does not answer; entries go to the fallback DLQ until it does",
			"addr", cfg.Addr, "stream", cfg.Stream, "err", err)
		b.markDown(time.Now())
	}
	b.fb = dlq.NewFallback(opts.Fallback, b.done)
	go b.run()
	return b, nil
}

// Put validates e (filling Version, Time and ID when zero, as the file
// backend does) and queues it for the writer. If the queue has room Put
// returns at once; otherwise it blocks until there is room (nil) or ctx is
// done (ctx.Err(), the entry not taken). After Close it returns an error
// wrapping dlq.ErrClosed. The Backend keeps e until written: the caller
// must not modify it after Put.
func (b *Backend) Put(ctx context.Context, e *dlq.Entry) error {
	if b.in.Closed() {
		return b.errorf("%w", dlq.ErrClosed)
	}
	if err := prepare(e); err != nil {
		return err
	}
	if err := b.in.Put(ctx, e); err != nil {
		if errors.Is(err, dlq.ErrClosed) {
			return b.errorf("%w", dlq.ErrClosed)
		}
		return err
	}
	return nil
}

// Close stops taking entries and waits until the writer has written all
// that Put accepted (to Redis or the fallback), then closes the fallback
// and the connections. It returns the first error of the Backend's life (an
// entry neither Redis nor the fallback took, the fallback's Close). If ctx
// ends first, Close returns an error wrapping ctx.Err(); the writer goes on
// in the background and a later Close waits again.
func (b *Backend) Close(ctx context.Context) error {
	b.in.Close()
	select {
	case <-b.done:
		b.statsMu.Lock()
		defer b.statsMu.Unlock()
		return b.err
	case <-ctx.Done():
		return b.errorf("close: %w (the writer goes on in the background)", ctx.Err())
	}
}

// Stats counts entries stored, by class: acknowledged by Redis (as durable
// as the server's persistence makes them) plus those the fallback wrote
// and synced. Failed counts entries neither took (and the
// fallback's own failures); Evicted the entries MAXLEN trimmed (Trimmed)
// plus the fallback's evictions. Bytes counts Redis's part as field bytes.
func (b *Backend) Stats() dlq.Stats {
	b.statsMu.Lock()
	st := b.stats
	st.Written = maps.Clone(b.stats.Written)
	b.statsMu.Unlock()
	st.Evicted += b.Trimmed()
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

// Full is closed when entries went to the fallback and the fallback
// reached its cap (file DLQ, overflow: fail). Redis itself never fills: its
// cap trims. It stays closed.
func (b *Backend) Full() <-chan struct{} { return b.fb.Full() }

// FellBack is how many entries went to the fallback since Open.
func (b *Backend) FellBack() int64 { return b.fb.Taken() }

// run is the writer: it takes what is queued, up to writeBatch at a time,
// until the queue is closed.
func (b *Backend) run() {
	defer b.finish()
	batch := make([]*dlq.Entry, 0, writeBatch)
	args := make([]any, 0, 80)
	for {
		e, ok := <-b.in.C
		if !ok {
			return
		}
		batch = append(batch[:0], e)
	fill:
		for len(batch) < writeBatch {
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
		args = b.write(batch, args)
		b.in.Done(len(batch))
		clear(batch)
	}
}

// finish closes the fallback and the client once the queue is drained.
func (b *Backend) finish() {
	if err := b.fb.Close(); err != nil {
		b.recordErr(fmt.Errorf("redis dlq: fallback: %w", err))
	}
	_ = b.client.Close()
	close(b.done)
}

// write stores batch in Redis, or what Redis did not take in the fallback.
// args is scratch space, returned for reuse.
func (b *Backend) write(batch []*dlq.Entry, args []any) []any {
	now := time.Now()
	if b.down && now.Before(b.downUntil) {
		b.fallback(batch, nil)
		return args
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	pipe := b.client.Pipeline()
	sizes := make([]int64, len(batch))
	for i, e := range batch {
		var n int64
		args, n = appendFields(args[:0], e)
		sizes[i] = n
		// XAdd copies args into its command.
		pipe.XAdd(ctx, &goredis.XAddArgs{Stream: b.stream, Values: args})
	}
	var trim *goredis.IntCmd
	if b.maxLen > 0 {
		trim = pipe.XTrimMaxLenApprox(ctx, b.stream, b.maxLen, 0)
	}
	cmds, _ := pipe.Exec(ctx)

	var failed []*dlq.Entry
	var firstErr error
	written := map[string]int64{}
	var total, bytes int64
	for i, e := range batch {
		var err error
		if i < len(cmds) {
			err = cmds[i].Err()
		} else {
			err = errors.New("not sent")
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			failed = append(failed, e)
			continue
		}
		written[e.Error.Class]++
		total++
		bytes += sizes[i]
	}
	if total > 0 {
		b.statsMu.Lock()
		for class, n := range written {
			b.stats.Written[class] += n
		}
		b.stats.Total += total
		b.stats.Bytes += bytes
		b.statsMu.Unlock()
	}
	if trim != nil {
		if n, err := trim.Result(); err == nil {
			b.countTrimmed(n)
		} else if firstErr == nil {
			// The entries are stored; the next write trims.
			b.log.Warn("redis dlq: trimming the stream failed", "stream", b.stream, "err", redisconn.Classify(err))
		}
	}
	if firstErr == nil {
		if b.down {
			b.down, b.backoff = false, 0
			b.log.Info("redis dlq: redis answers again; entries go to the stream", "stream", b.stream, "fell_back", b.FellBack())
		}
		return args
	}
	b.markDown(now)
	b.fallback(failed, redisconn.Classify(firstErr))
	return args
}

// markDown sends entries to the fallback for the next backoff period.
func (b *Backend) markDown(now time.Time) {
	if b.backoff == 0 {
		b.backoff = b.retryAfter
	} else {
		b.backoff = min(2*b.backoff, maxBackoff*b.retryAfter)
	}
	b.down = true
	b.downUntil = now.Add(b.backoff)
}

// fallback hands entries to the fallback backend. cause is the write
// error that sent them there, nil while Redis is considered down.
func (b *Backend) fallback(entries []*dlq.Entry, cause error) {
	if len(entries) == 0 {
		return
	}
	if cause != nil {
		b.log.Warn("redis dlq: writing to redis failed; entries go to the fallback DLQ",
			"stream", b.stream, "entries", len(entries), "retry_after", b.backoff, "err", cause)
	}
	if !b.fb.Exists() {
		if cause == nil {
			cause = errors.New("redis unavailable")
		}
		b.fail(int64(len(entries)), b.errorf("%d entries lost, no fallback: %w", len(entries), cause))
		return
	}
	for _, e := range entries {
		// Blocks while the fallback's queue is full: backpressure reaches
		// Put through this Backend's queue.
		if err := b.fb.Put(e); err != nil {
			b.fail(1, b.errorf("entry %s: neither redis nor the fallback took it: %w", e.ID, err))
		}
	}
}

func (b *Backend) fail(n int64, err error) {
	b.statsMu.Lock()
	b.stats.Failed += n
	b.statsMu.Unlock()
	b.log.Error("redis dlq: entries lost", "entries", n, "err", err)
	b.recordErr(err)
}

func (b *Backend) recordErr(err error) {
	b.statsMu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.statsMu.Unlock()
}
