package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
)

// dedupeChunk is the most keys one MGET carries.
const dedupeChunk = 1000

// Dedupe remembers which keys (e.g. record ids) were delivered, in Redis,
// so that a retried or replayed batch can skip them. Each key is stored as
// prefix+key with the value "1", set only if absent (SET NX) and expiring
// ttl after it was first marked: a key marked again keeps its first expiry.
// Processes sharing a prefix share what they remember. Safe for concurrent
// use.
type Dedupe struct {
	client *goredis.Client
	prefix string
	ttl    time.Duration
}

// NewDedupe connects to cfg's server (checking that it answers within
// cfg.Timeout). Each call makes one attempt (the client does not retry
// commands). ttl is how long a key is remembered; 0 keeps keys until
// deleted by hand.
func NewDedupe(cfg config.Redis, prefix string, ttl time.Duration) (*Dedupe, error) {
	if ttl < 0 {
		return nil, fmt.Errorf("redis dedupe: ttl %s is negative", ttl)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	o := redisconn.Options(cfg)
	o.MaxRetries = -1 // one attempt: callers (a sink's Write) are retried whole
	c := goredis.NewClient(o)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis dedupe (%s): %w", cfg.Addr, redisconn.Classify(err))
	}
	return &Dedupe{client: c, prefix: prefix, ttl: ttl}, nil
}

// Seen reports, for each key, whether it was marked (and has not expired):
// seen[i] is for keys[i]. One round trip (MGET, up to 1,000 keys each, all
// pipelined). Seen does not keep keys.
func (d *Dedupe) Seen(ctx context.Context, keys [][]byte) ([]bool, error) {
	seen := make([]bool, len(keys))
	if len(keys) == 0 {
		return seen, nil
	}
	pipe := d.client.Pipeline()
	cmds := make([]*goredis.SliceCmd, 0, (len(keys)+dedupeChunk-1)/dedupeChunk)
	names := make([]string, 0, min(len(keys), dedupeChunk))
	for lo := 0; lo < len(keys); lo += dedupeChunk {
		names = names[:0]
		for _, k := range keys[lo:min(lo+dedupeChunk, len(keys))] {
			names = append(names, d.key(k))
		}
		cmds = append(cmds, pipe.MGet(ctx, names...))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redis dedupe: MGET %d keys: %w", len(keys), redisconn.Classify(err))
	}
	for c, cmd := range cmds {
		for i, v := range cmd.Val() {
			seen[c*dedupeChunk+i] = v != nil
		}
	}
	return seen, nil
}

// Mark remembers keys as delivered: SET prefix+key 1 NX EX ttl for each,
// all pipelined in one round trip. Mark does not keep keys.
func (d *Dedupe) Mark(ctx context.Context, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	pipe := d.client.Pipeline()
	for _, k := range keys {
		pipe.SetNX(ctx, d.key(k), "1", d.ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis dedupe: SET NX %d keys: %w", len(keys), redisconn.Classify(err))
	}
	return nil
}

// Close closes the connections.
func (d *Dedupe) Close() error { return d.client.Close() }

func (d *Dedupe) key(k []byte) string { return d.prefix + string(k) }
