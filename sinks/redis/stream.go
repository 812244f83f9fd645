package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sinks"
)

// streamChunk is the most XADDs one round trip carries.
const streamChunk = 1000

// Stream is the Redis Stream sink: it adds every delivered record to one
// stream with XADD (MAXLEN ~ maxlen when maxlen > 0). Each stream entry has
// the fields
//
//   - record: the record as JSON (sinks.AppendRecord, without the newline),
//     the same bytes the file sink writes as a line;
//   - trace_id and span_id: copies of the record's ids, for consumers that
//     route or filter without decoding JSON; left out when empty.
//
// A Write sends the batch's XADDs pipelined, in chunks of up to 1,000 (one
// round trip each), and makes one attempt: retrying is the runner's job.
// Stream implements pipeline.Sink; Write may run concurrently.
type Stream struct {
	name   string
	stream string
	maxLen int64
	client *goredis.Client
	log    *slog.Logger

	entries, bytes, errs atomic.Int64
	closed               atomic.Bool
}

var _ pipeline.Sink = (*Stream)(nil)

// StreamStats counts what a Stream sink did since it was created.
type StreamStats struct {
	Entries int64 `json:"entries"` // stream entries added (XADD acknowledged)
	Bytes   int64 `json:"bytes"`   // bytes of the record fields of those entries
	Errors  int64 `json:"errors"`  // Write calls that returned an error
}

// NewStream connects the sink named name to cfg's server and stream. It
// checks that the server answers within cfg.Timeout. The client makes one
// attempt per command (no retries of its own).
func NewStream(name string, cfg config.RedisStreamSink, log *slog.Logger) (*Stream, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if name == "" {
		name = "redis_stream"
	}
	if cfg.Stream == "" {
		return nil, fmt.Errorf("redis stream sink %s: stream is not set", name)
	}
	if cfg.MaxLen < 0 {
		return nil, fmt.Errorf("redis stream sink %s: maxlen %d is negative", name, cfg.MaxLen)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	o := redisconn.Options(cfg.Redis)
	o.MaxRetries = -1 // one attempt: the runner retries whole batches
	c := goredis.NewClient(o)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	// A server that refuses us for good (a wrong password) is a config
	// error; one that is down is an outage like any later one: the sink
	// starts, its writes fail, are retried, and end in the DLQ.
	if err := c.Ping(ctx).Err(); err != nil {
		err = redisconn.Classify(err)
		if errors.Is(err, pipeline.ErrPermanent) {
			_ = c.Close()
			return nil, fmt.Errorf("redis stream sink %s (%s): %w", name, cfg.Addr, err)
		}
		if log != nil {
			log.Warn("redis stream sink: server not reachable at start; its records will be retried, then kept in the DLQ",
				"sink", name, "addr", cfg.Addr, "err", err)
		}
	}
	return &Stream{name: name, stream: cfg.Stream, maxLen: cfg.MaxLen, client: c, log: log}, nil
}

// Name implements pipeline.Sink.
func (s *Stream) Name() string { return s.name }

// streamScratch is one Write's encoding space: the records of a chunk
// encoded back to back in buf, ends[i] where record i ends.
type streamScratch struct {
	buf  []byte
	ends []int
	ok   []bool // per record of the chunk: its XADD succeeded
}

// maxStreamScratch caps the buffer a pooled scratch keeps.
const maxStreamScratch = 8 << 20

var streamScratchPool = sync.Pool{New: func() any { return &streamScratch{buf: make([]byte, 0, 256<<10)} }}

// Write implements pipeline.Sink: it adds each record of recs, in
// pipelines of up to streamChunk XADDs. When some commands fail (a server
// error, a connection cut part-way) it returns a *pipeline.PartialError
// naming only the records whose XADD did not succeed, with the first
// failure's error classified by redisconn.Classify (pipeline.Permanent for what
// retrying cannot fix, pipeline.WithCode with the Redis error word for
// server errors). A command whose reply was lost may still have been
// executed: such a record can be added twice (at-least-once); the dedupe
// layer (Dedupe, keyed by record) makes that idempotent.
func (s *Stream) Write(ctx context.Context, b *pipeline.Batch, recs []int32) error {
	if s.closed.Load() {
		s.errs.Add(1)
		return pipeline.Permanent(fmt.Errorf("redis stream sink %s: write after Close", s.name))
	}
	sc := streamScratchPool.Get().(*streamScratch)
	defer func() {
		if cap(sc.buf) <= maxStreamScratch {
			streamScratchPool.Put(sc)
		}
	}()
	var failed []int32
	var first error
	var added int
	for lo := 0; lo < len(recs); lo += streamChunk {
		chunk := recs[lo:min(lo+streamChunk, len(recs))]
		sc.buf, sc.ends = sc.buf[:0], sc.ends[:0]
		for _, i := range chunk {
			sc.buf = sinks.AppendRecord(sc.buf, &b.Records[i], b.Buf)
			sc.buf = sc.buf[:len(sc.buf)-1] // the newline
			sc.ends = append(sc.ends, len(sc.buf))
		}
		ok, err := s.writeChunk(ctx, b, chunk, sc)
		added += ok
		if err != nil {
			if first == nil {
				first = err
			}
			for k, i := range chunk {
				if !sc.ok[k] {
					failed = append(failed, i)
				}
			}
		}
	}
	if first == nil {
		return nil
	}
	s.errs.Add(1)
	err := fmt.Errorf("redis stream sink %s: XADD to %s (%d of %d added): %w", s.name, s.stream, added, len(recs), first)
	if len(failed) == len(recs) {
		return err
	}
	return &pipeline.PartialError{Failed: failed, Err: err}
}

// writeChunk sends the chunk encoded in sc as one pipeline. It sets
// sc.ok[k] for each command that succeeded and returns how many did, and
// the first failure, classified.
func (s *Stream) writeChunk(ctx context.Context, b *pipeline.Batch, chunk []int32, sc *streamScratch) (int, error) {
	pipe := s.client.Pipeline()
	args := goredis.XAddArgs{Stream: s.stream, MaxLen: s.maxLen, Approx: true}
	var vals [6]any
	start := 0
	for k, ri := range chunk {
		r := &b.Records[ri]
		v := append(vals[:0], "record", sc.buf[start:sc.ends[k]])
		start = sc.ends[k]
		if len(r.TraceID) > 0 {
			v = append(v, "trace_id", r.TraceID)
		}
		if len(r.SpanID) > 0 {
			v = append(v, "span_id", r.SpanID)
		}
		// XAdd copies the values into its command: vals can be reused.
		args.Values = v
		pipe.XAdd(ctx, &args)
	}
	cmds, err := pipe.Exec(ctx)
	if cap(sc.ok) < len(chunk) {
		sc.ok = make([]bool, len(chunk))
	}
	sc.ok = sc.ok[:len(chunk)]
	clear(sc.ok)
	var added int
	var bytes int64
	var first error
	start = 0
	for k := range chunk {
		if k < len(cmds) && cmds[k].Err() == nil {
			sc.ok[k] = true
			added++
			bytes += int64(sc.ends[k] - start)
		} else if first == nil && k < len(cmds) {
			first = cmds[k].Err()
		}
		start = sc.ends[k]
	}
	s.entries.Add(int64(added))
	s.bytes.Add(bytes)
	if added == len(chunk) {
		return added, nil
	}
	if first == nil {
		first = err
	}
	if first == nil {
		first = errors.New("no reply")
	}
	return added, redisconn.Classify(first)
}

// Stats returns the sink's counters.
func (s *Stream) Stats() StreamStats {
	return StreamStats{Entries: s.entries.Load(), Bytes: s.bytes.Load(), Errors: s.errs.Load()}
}

// Flush implements pipeline.Sink: nothing to do, a Write returns only once
// the server replied to its commands.
func (s *Stream) Flush(context.Context) error { return nil }

// Close implements pipeline.Sink: it closes the connections. Every Write
// that returned nil is stored already (each Write waits for its replies).
func (s *Stream) Close(context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.client.Close()
}
