package redisdlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// conn is what Backend and Store share: the client, the DLQ stream, its
// consumer group and cap, and the operations of DLQ processors.
type conn struct {
	client *goredis.Client
	addr   string
	stream string
	group  string
	maxLen int64
	log    *slog.Logger

	trimmed     atomic.Int64
	trimWarned  atomic.Bool
	moved       atomic.Int64
	undecodable atomic.Int64
}

// withDefaults fills what config.applyDefaults fills, for configs built in
// code, and checks the rest.
func withDefaults(cfg config.DLQRedis) (config.DLQRedis, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:6379"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Stream == "" {
		cfg.Stream = "tracepipe:dlq"
	}
	if cfg.Group == "" {
		cfg.Group = "dlq-processors"
	}
	if cfg.MaxLen < 0 {
		return cfg, fmt.Errorf("redis dlq: maxlen %d is negative", cfg.MaxLen)
	}
	return cfg, nil
}

func newConn(cfg config.DLQRedis, log *slog.Logger) *conn {
	o := redisconn.Options(cfg.Redis)
	// Fail fast when the server is gone (the Backend then falls back to
	// the file DLQ): one retry, for a pooled connection the server closed,
	// and two dial attempts instead of go-redis's 4 tries of 5 dials.
	o.MaxRetries = 1
	o.DialerRetries = 2
	return &conn{
		client: goredis.NewClient(o),
		addr:   cfg.Addr,
		stream: cfg.Stream,
		group:  cfg.Group,
		maxLen: cfg.MaxLen,
		log:    log,
	}
}

// errorf names the server and stream; it never holds credentials (go-redis
// errors do not either).
func (c *conn) errorf(format string, args ...any) error {
	return fmt.Errorf("redis dlq %s %s: "+format, append([]any{c.addr, c.stream}, args...)...)
}

// countTrimmed adds n entries removed by MAXLEN, warning the first time.
func (c *conn) countTrimmed(n int64) {
	if n <= 0 {
		return
	}
	c.trimmed.Add(n)
	if !c.trimWarned.Swap(true) {
		c.log.Warn("redis dlq: the stream reached its maxlen: the oldest entries are being trimmed (counted in dlq evicted)",
			"stream", c.stream, "maxlen", c.maxLen, "trimmed", n)
	}
}

// Trimmed is how many entries MAXLEN trimming removed from the stream
// since this value was opened, by its own writes (other writers count
// theirs). With MAXLEN ~ Redis trims whole nodes (100 entries by default),
// so the stream may hold a little more than maxlen.
func (c *conn) Trimmed() int64 { return c.trimmed.Load() }

// Moved is how many entries Move added to the stream.
func (c *conn) Moved() int64 { return c.moved.Load() }

// Undecodable is how many stream entries Read, Claim or a Store scan found
// that are not DLQ entries (or are of a newer schema), since opened.
func (c *conn) Undecodable() int64 { return c.undecodable.Load() }

// Stream names the DLQ stream.
func (c *conn) Stream() string { return c.stream }

// Group names the consumer group of DLQ processors.
func (c *conn) Group() string { return c.group }

// UndecodableError is returned by Read and Claim, together with the
// entries that did decode, when some stream entries are not DLQ entries
// (written by something else, or by a newer schema). They stay pending in
// the group: Ack them, or remove them (Store.Delete with IDs), once dealt
// with.
type UndecodableError struct {
	Stream string
	IDs    []string // stream ids
	Err    error    // why the first one did not decode
}

func (e *UndecodableError) Error() string {
	return fmt.Sprintf("redis dlq %s: %d stream entries are not DLQ entries (first %s: %v)", e.Stream, len(e.IDs), e.IDs[0], e.Err)
}

func (e *UndecodableError) Unwrap() error { return e.Err }

// decodeMessages decodes msgs, returning the entries and their stream ids,
// and an *UndecodableError naming the others.
func (c *conn) decodeMessages(msgs []goredis.XMessage) ([]*dlq.Entry, []string, error) {
	entries := make([]*dlq.Entry, 0, len(msgs))
	ids := make([]string, 0, len(msgs))
	var bad *UndecodableError
	for _, m := range msgs {
		e, err := decodeEntry(m.Values)
		if err != nil {
			c.undecodable.Add(1)
			if bad == nil {
				bad = &UndecodableError{Stream: c.stream, Err: err}
			}
			bad.IDs = append(bad.IDs, m.ID)
			continue
		}
		entries = append(entries, e)
		ids = append(ids, m.ID)
	}
	if bad != nil {
		return entries, ids, bad
	}
	return entries, ids, nil
}

// EnsureGroup creates the consumer group of DLQ processors (and the stream
// if missing), reading from the stream's start; an existing group is left
// as it is.
func (c *conn) EnsureGroup(ctx context.Context) error {
	err := c.client.XGroupCreateMkStream(ctx, c.stream, c.group, "0").Err()
	if err != nil && !goredis.HasErrorPrefix(err, "BUSYGROUP") {
		return c.errorf("create group %s: %w", c.group, redisconn.Classify(err))
	}
	return nil
}

// Read takes up to count entries never delivered to the group
// (XREADGROUP ... >), for consumer, without blocking: none waiting gives
// none. entries[i] is stored under streamIDs[i]; each stays pending for
// consumer until acknowledged with Ack (or claimed by another with Claim).
// Stream entries that do not decode are not returned but reported in an
// *UndecodableError, after the good ones.
func (c *conn) Read(ctx context.Context, consumer string, count int) (entries []*dlq.Entry, streamIDs []string, err error) {
	res, err := c.client.XReadGroup(ctx, &goredis.XReadGroupArgs{
		Group: c.group, Consumer: consumer, Streams: []string{c.stream, ">"}, Count: int64(count), Block: -1,
	}).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, c.errorf("read group %s as %s: %w", c.group, consumer, redisconn.Classify(err))
	}
	var msgs []goredis.XMessage
	for _, s := range res {
		msgs = append(msgs, s.Messages...)
	}
	return c.decodeMessages(msgs)
}

// Claim takes over, for consumer, up to count entries that have been
// pending in the group for at least minIdle (delivered to a consumer that
// died or hung without acknowledging them), with XAUTOCLAIM, scanning the
// whole pending list at most once. Entries are returned as Read returns
// them. Pending ids whose stream entry was deleted meanwhile (trimmed by
// MAXLEN) are dropped from the pending list by Redis and not returned.
func (c *conn) Claim(ctx context.Context, consumer string, minIdle time.Duration, count int) (entries []*dlq.Entry, streamIDs []string, err error) {
	if count <= 0 {
		return nil, nil, nil
	}
	var msgs []goredis.XMessage
	start := "0-0"
	for len(msgs) < count {
		got, next, deleted, err := c.client.XAutoClaimWithDeleted(ctx, &goredis.XAutoClaimArgs{
			Stream: c.stream, Group: c.group, Consumer: consumer, MinIdle: minIdle, Start: start, Count: int64(count - len(msgs)),
		}).Result()
		if err != nil {
			return nil, nil, c.errorf("claim for %s: %w", consumer, redisconn.Classify(err))
		}
		if len(deleted) > 0 {
			c.log.Debug("redis dlq: pending entries were deleted from the stream before they were claimed", "stream", c.stream, "count", len(deleted))
		}
		msgs = append(msgs, got...)
		if next == "0-0" || next == "" {
			break
		}
		start = next
	}
	return c.decodeMessages(msgs)
}

// Ack acknowledges stream entries of the group (XACK): they are no longer
// pending. It returns how many were pending.
func (c *conn) Ack(ctx context.Context, streamIDs ...string) (int64, error) {
	if len(streamIDs) == 0 {
		return 0, nil
	}
	n, err := c.client.XAck(ctx, c.stream, c.group, streamIDs...).Result()
	if err != nil {
		return 0, c.errorf("ack %d entries: %w", len(streamIDs), redisconn.Classify(err))
	}
	return n, nil
}

// moveScript adds an entry to the DLQ stream and acknowledges the source
// stream entry it stands for, in one atomic step. Redis does not roll a
// script back, so every check that can fail comes before the first write:
// the DLQ key must be a stream (or missing), and the source entry must be
// pending in the group. Then XADD, XTRIM (the count it returns is what the
// cap removed) and XACK, none of which can fail on checked keys.
//
// KEYS[1] the DLQ stream, KEYS[2] the source stream. ARGV[1] the group,
// ARGV[2] the source stream id, ARGV[3] maxlen (0: none), ARGV[4...] the
// entry's fields. Returns {dlq stream id, entries trimmed}.
var moveScript = goredis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'stream' then
	return redis.error_reply('WRONGTYPE the DLQ key ' .. KEYS[1] .. ' holds a ' .. t .. ', not a stream')
end
local p = redis.pcall('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1)
if type(p) == 'table' and p['err'] then
	return p
end
if #p == 0 then
	return redis.error_reply('NOTPENDING ' .. ARGV[2] .. ' is not pending in group ' .. ARGV[1] .. ' of ' .. KEYS[2])
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
local trimmed = 0
if tonumber(ARGV[3]) > 0 then
	trimmed = redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[3])
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
return {id, trimmed}
`)

// ErrNotPending is wrapped by Move's error when the source entry is not
// pending in the group (already moved or acknowledged); nothing changed.
var ErrNotPending = errors.New("source entry is not pending")

// Move puts e in the DLQ stream and acknowledges streamID in srcStream's
// consumer group, atomically (one Lua script): either both happen or
// neither. It fails, changing nothing, when streamID is not pending in the
// group (ErrNotPending: so a Move retried after a lost reply does not add
// the entry twice), when the group or source stream does not exist
// (NOGROUP), or when the DLQ key is not a stream (WRONGTYPE). Like Put, it
// fills e's Version, Time and ID when zero and refuses an invalid entry.
// The two keys must live on one server (in a cluster: one hash slot).
// Moves are counted in Moved, not in a Backend's Stats.
func (c *conn) Move(ctx context.Context, srcStream, group, streamID string, e *dlq.Entry) error {
	if err := prepare(e); err != nil {
		return err
	}
	args := make([]any, 0, 80)
	args = append(args, group, streamID, strconv.FormatInt(c.maxLen, 10))
	args, _ = appendFields(args, e)
	res, err := moveScript.Run(ctx, c.client, []string{c.stream, srcStream}, args...).Slice()
	if goredis.HasErrorPrefix(err, "NOTPENDING") {
		return c.errorf("move %s %s (group %s): %w: %w", srcStream, streamID, group, ErrNotPending, err)
	}
	if err != nil {
		return c.errorf("move %s %s (group %s) to the DLQ: %w", srcStream, streamID, group, redisconn.Classify(err))
	}
	c.moved.Add(1)
	if len(res) == 2 {
		if n, ok := res[1].(int64); ok {
			c.countTrimmed(n)
		}
	}
	return nil
}

func prepare(e *dlq.Entry) error {
	if e == nil {
		return errors.New("redis dlq: nil entry")
	}
	return e.Prepare()
}

// isStreamID reports whether s has the form of a stream entry id
// ("<ms>-<seq>"), which a dlq entry id (26 base32 characters) never has.
func isStreamID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok || ms == "" || seq == "" {
		return false
	}
	for _, part := range [...]string{ms, seq} {
		if _, err := strconv.ParseUint(part, 10, 64); err != nil {
			return false
		}
	}
	return true
}
