package redisstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sources/file"
)

// Kind is the Origin kind of the batches of this source.
const Kind = "redis"

// RecordField is the entry field that holds a record: the one the Redis
// Stream sink writes.
const RecordField = "record"

// Options are what the composition root gives a Source besides its config
// block. Zero numeric fields take their defaults.
type Options struct {
	// Origin is the template of the stream's Origin: its Format and
	// Mapping are copied; ID, Kind, Path and Key are set by the source.
	Origin pipeline.Origin
	// Detect resolves the format from the first batch when Origin.Format
	// is FormatAuto (a FormatAuto answer, or no Detect, means JSONL).
	Detect func(*pipeline.Batch) pipeline.Format
	// IDs hands out the stream's origin id. Required.
	IDs *pipeline.OriginIDs
	// Events: Idle is told when the stream goes quiet (the others are not
	// used: a stream never ends, and its failures are per entry).
	Events pipeline.SourceEvents
	// Poison takes an entry delivered more than max_deliveries times to
	// the DLQ (see the package doc). nil: max_deliveries is not enforced.
	Poison func(ctx context.Context, p Poisoned) (moved bool, err error)

	BatchUnits   int // default file.DefaultBatchUnits
	BatchBytes   int // default file.DefaultBatchBytes
	MaxLineBytes int // an entry's record over this is cut (UnitTooLarge); default file.DefaultMaxLineBytes
	KeepBytes    int // what is kept of such a record; default file.DefaultKeepBytes

	Logger *slog.Logger
}

// Poisoned is an entry delivered more than max_deliveries times, handed to
// Options.Poison. Payload is the entry's record field (empty when it has
// none), valid until the hook returns.
//
// The hook returns moved = true when it both stored the entry in the DLQ
// and acknowledged it in the group, atomically (redisdlq's Move); false
// with a nil error when the entry is durable in the DLQ and the source is
// to acknowledge it. On an error nothing is acknowledged: the entry stays
// pending and is tried again at a later claim round.
type Poisoned struct {
	Stream, Group, Consumer string
	ID                      string
	Payload                 []byte
	Deliveries              int64
	// Client is the source's connection (the stream's server), for a hook
	// that acts on the stream itself.
	Client *goredis.Client
}

// Source consumes one stream in a consumer group. It implements
// pipeline.Source.
type Source struct {
	name     string
	cfg      config.RedisStreamSource
	o        Options
	log      *slog.Logger
	rl       *ratelog.Logger
	consumer string
	markers  string // the hash of windows markers

	cl *goredis.Client // everything but the blocking read; lives until Close
	rd *goredis.Client // the blocking XREADGROUP; closed when Run's ctx ends

	origin *pipeline.Origin
	acker  acker

	// Run's own state (one goroutine).
	running  atomic.Bool
	ctx      context.Context
	out      chan<- *pipeline.Batch
	seq      uint64
	high     pos // position carried by batches read from pending lists
	batches  int64
	lastRead time.Time
	idleSent bool
	claimAt  time.Time
	detected bool
	raw      bytes.Buffer // the last XREADGROUP reply
	rents    []rawEntry   // its entries
	ents     []entry
	// Setup's state, kept across its retries.
	startLast            pos // the group's last delivered id at start
	rewinding            bool
	rewindFrom, rewindTo pos // what is left of this consumer's marker range

	// mu guards what Commit shares with Run.
	mu       sync.Mutex
	ready    bool      // the trackers are initialized
	unacked  []idBatch // per issued batch not yet XACKed: its entry ids
	commitMu sync.Mutex
	marker   string // the marker last written

	entries  atomic.Int64 // entries read
	acked    atomic.Int64 // entries XACKed by Commit
	poisoned atomic.Int64 // entries handed to Poison and acknowledged
	claimed  atomic.Int64 // entries taken over from other consumers
	lag      atomic.Int64
	pending  atomic.Int64
	rounds   atomic.Int64 // claim rounds done, for tests
}

// idBatch is the entry ids of one issued batch.
type idBatch struct {
	seq uint64
	ids []string
}

// New checks cfg and o and returns the Source; it does not connect (Run
// does, and retries until the server answers). cfg is taken with its
// defaults applied (config.Load does that); zero fields get the same
// defaults here.
func New(name string, cfg config.RedisStreamSource, o Options) (*Source, error) {
	if o.IDs == nil {
		return nil, errors.New("redis stream source: Options.IDs is required")
	}
	if cfg.Stream == "" {
		return nil, fmt.Errorf("redis stream source %s: stream is not set", name)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:6379"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Group == "" {
		cfg.Group = "tracepipe"
	}
	if cfg.StartAt == "" {
		cfg.StartAt = "beginning"
	}
	if cfg.StartAt != "beginning" && cfg.StartAt != "end" {
		return nil, fmt.Errorf("redis stream source %s: start_at %q: beginning or end", name, cfg.StartAt)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.Block, time.Second}, {&cfg.ClaimIdle, time.Minute}, {&cfg.ClaimEvery, 10 * time.Second},
		{&cfg.IdleTimeout, 30 * time.Second},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("redis stream source %s: negative duration", name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.Count <= 0 {
		cfg.Count = 512
	}
	if cfg.MaxDeliveries <= 0 {
		cfg.MaxDeliveries = 5
	}
	if cfg.Consumer == "" {
		cfg.Consumer = uniqueConsumer()
	}
	d := file.DefaultOptions()
	o.BatchUnits = orDefault(o.BatchUnits, d.BatchUnits)
	o.BatchBytes = orDefault(o.BatchBytes, d.BatchBytes)
	o.MaxLineBytes = orDefault(o.MaxLineBytes, d.MaxLineBytes)
	o.KeepBytes = min(orDefault(o.KeepBytes, d.KeepBytes), o.MaxLineBytes)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	log := o.Logger.With("source", name, "stream", cfg.Stream, "group", cfg.Group, "consumer", cfg.Consumer)

	// One attempt per command: Run retries with its own backoff, and a
	// read retried inside the client after a lost reply would leave the
	// entries of the lost reply pending unseen.
	co := redisconn.Options(cfg.Redis)
	co.MaxRetries = -1
	ro := redisconn.Options(cfg.Redis)
	ro.MaxRetries = -1
	ro.PoolSize = 1
	// The read is a raw command, which go-redis gives no BLOCK-aware
	// read timeout: the connection's own must outlast BLOCK.
	ro.ReadTimeout += cfg.Block

	origin := o.Origin
	origin.ID = o.IDs.Next()
	origin.Kind = Kind
	origin.Path = cfg.Stream
	origin.Key = "redis:" + cfg.Stream
	s := &Source{
		name: name, cfg: cfg, o: o, log: log, rl: ratelog.New(log, 10*time.Second),
		consumer: cfg.Consumer, markers: cfg.Stream + ":tracepipe:" + cfg.Group + ":windows",
		cl: goredis.NewClient(co), rd: goredis.NewClient(ro), origin: &origin,
	}
	if origin.Format == pipeline.FormatAuto && o.Detect == nil {
		origin.Format = pipeline.FormatJSONL
	}
	s.detected = origin.Format != pipeline.FormatAuto
	return s, nil
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// uniqueConsumer names a consumer after this process: host, pid and a
// random suffix (a pid is reused across containers and restarts).
func uniqueConsumer() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}

// Name is the source's name.
func (s *Source) Name() string { return s.name }

// Consumer is the consumer name this source reads as.
func (s *Source) Consumer() string { return s.consumer }

// OriginID is the id of the stream's Origin.
func (s *Source) OriginID() int { return s.origin.ID }

// Entries returns how many stream entries were read (pending, claimed,
// new; not the windows-only re-reads).
func (s *Source) Entries() int64 { return s.entries.Load() }

// Acked returns how many entries Commit acknowledged (XACK).
func (s *Source) Acked() int64 { return s.acked.Load() }

// Poisoned returns how many entries went to the DLQ for being delivered
// more than max_deliveries times.
func (s *Source) Poisoned() int64 { return s.poisoned.Load() }

// Claimed returns how many entries were taken over from other consumers.
func (s *Source) Claimed() int64 { return s.claimed.Load() }

// Close closes the connections. Call it after the last Commit.
func (s *Source) Close() error {
	_ = s.rd.Close()
	err := s.cl.Close()
	if errors.Is(err, goredis.ErrClosed) {
		return nil
	}
	return err
}

// Lag is the consumer group's backlog.
type Lag struct {
	// Entries is how many stream entries the group has not been delivered
	// yet (XINFO GROUPS lag); -1 when Redis cannot tell (after deletions
	// in the middle of the stream).
	Entries int64
	// Pending is how many entries were delivered to the group's consumers
	// and not acknowledged yet.
	Pending int64
}

// Lag asks the server for the group's lag and pending count. It also
// updates what LastLag returns.
func (s *Source) Lag(ctx context.Context) (Lag, error) {
	groups, err := s.cl.XInfoGroups(ctx, s.cfg.Stream).Result()
	if err != nil {
		return Lag{}, s.errorf("xinfo groups: %w", redisconn.Classify(err))
	}
	for _, g := range groups {
		if g.Name == s.cfg.Group {
			s.lag.Store(g.Lag)
			s.pending.Store(g.Pending)
			return Lag{Entries: g.Lag, Pending: g.Pending}, nil
		}
	}
	return Lag{}, s.errorf("group %s not found", s.cfg.Group)
}

// LastLag returns the lag as of the last claim round (or Lag call),
// without asking the server.
func (s *Source) LastLag() Lag { return Lag{Entries: s.lag.Load(), Pending: s.pending.Load()} }

func (s *Source) errorf(format string, args ...any) error {
	return fmt.Errorf("redis stream %s %s: "+format, append([]any{s.cfg.Addr, s.cfg.Stream}, args...)...)
}
