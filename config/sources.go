package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	"github.com/bmatcuk/doublestar/v4"
)

// Run configures the long-running job (`pipeline run`).
type Run struct {
	// StateDir holds one checkpoint file per source (and a lock: one
	// process per directory).
	StateDir string `yaml:"state_dir"`
	// CheckpointEvery is how often acked positions are committed (after a
	// durability barrier; never ahead of one).
	CheckpointEvery time.Duration `yaml:"checkpoint_every"`
	// ShutdownGrace bounds the drain on SIGINT/SIGTERM: stop reading,
	// finish in-flight batches, flush, emit open windows, commit. Past it
	// the process exits with what was committed.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// Source is one input of `pipeline run`. Exactly the block named by Type is
// set.
type Source struct {
	Name   string `yaml:"name"`
	Type   string `yaml:"type"`   // file | kafka | redis_stream
	Format string `yaml:"format"` // auto | jsonl | otlp | zipkin; default input.format
	// Parse overrides the top-level parse.jsonl field paths for this
	// source's JSON lines (a list left out keeps the top-level one).
	Parse       *SourceParse       `yaml:"parse"`
	File        *FileSource        `yaml:"file"`
	Kafka       *KafkaSource       `yaml:"kafka"`
	RedisStream *RedisStreamSource `yaml:"redis_stream"`
}

// KafkaSource consumes topics in a consumer group. Offsets are committed
// per partition, only up to the highest contiguous batch delivered (and,
// in the commit's metadata, the position the windows have made durable).
// The connection (brokers, TLS, SASL) is the Kafka sink's.
type KafkaSource struct {
	Kafka `yaml:",inline"`
	// Topics to consume, or TopicRegex (matched against the cluster's
	// topics, again every MetadataRefresh): exactly one of them.
	Topics     []string `yaml:"topics"`
	TopicRegex string   `yaml:"topic_regex"`
	Group      string   `yaml:"group"`
	// StartOffset is where a group with no committed offset starts:
	// earliest | latest.
	StartOffset string `yaml:"start_offset"`
	// MinBytes, MaxBytes and MaxWait shape each fetch.
	MinBytes ByteSize      `yaml:"min_bytes"`
	MaxBytes ByteSize      `yaml:"max_bytes"`
	MaxWait  time.Duration `yaml:"max_wait"`
	// SessionTimeout: a member silent this long is dead and its
	// partitions are reassigned. HeartbeatInterval must be well under it.
	SessionTimeout    time.Duration `yaml:"session_timeout"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// RebalanceTimeout bounds a rebalance: how long members have to
	// finish their in-flight batches of revoked partitions and commit.
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// MetadataRefresh is how often topic_regex is matched again and
	// partition counts are checked.
	MetadataRefresh time.Duration `yaml:"metadata_refresh"`
	// IdleTimeout: a partition with nothing to read for this long no
	// longer holds the window watermark back.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// RedisStreamSource consumes a Redis Stream in a consumer group
// (XREADGROUP; XACK only once delivered, in order).
type RedisStreamSource struct {
	Redis  `yaml:",inline"`
	Stream string `yaml:"stream"`
	Group  string `yaml:"group"` // created with MKSTREAM when missing
	// Consumer names this process in the group. Empty: unique per process
	// (host, pid and a random suffix); set it (e.g. ${POD_NAME}) to keep
	// one name across restarts, so a restarted process takes back its own
	// pending entries at once instead of after claim_idle.
	Consumer string `yaml:"consumer"`
	// StartAt is where a group created by this source starts:
	// beginning (the whole stream) | end (entries added from now on).
	StartAt string `yaml:"start_at"`
	// Count is the most entries one XREADGROUP returns; Block how long
	// it waits for new ones.
	Count int           `yaml:"count"`
	Block time.Duration `yaml:"block"`
	// ClaimIdle: entries pending longer than this in another consumer
	// (a dead one) are claimed (XAUTOCLAIM), checked every ClaimEvery.
	ClaimIdle  time.Duration `yaml:"claim_idle"`
	ClaimEvery time.Duration `yaml:"claim_every"`
	// MaxDeliveries: an entry delivered more often than this (it failed
	// or crashed its consumer each time) is moved to the DLQ.
	MaxDeliveries int `yaml:"max_deliveries"`
	// IdleTimeout: a stream with nothing to read for this long no
	// longer holds the window watermark back.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// SourceParse is a source's own field mapping.
type SourceParse struct {
	JSONL JSONLPaths `yaml:"jsonl"`
}

// FileSource follows files matching globs, as a log shipper's tail does.
type FileSource struct {
	// Include globs, `**` for any depth; Exclude globs remove matches
	// (e.g. "**/*.gz" to skip rotated archives).
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
	// StartAt is where a file first seen is read from: beginning | end.
	// A file with a checkpoint resumes there whatever this says.
	StartAt string `yaml:"start_at"`
	// ReadExisting: files already there when the source starts (and not
	// in the checkpoint) are read (from start_at); false: only files
	// that appear later are, from their beginning.
	ReadExisting *bool `yaml:"read_existing"`
	// ScanInterval is how often the globs are matched again for new
	// files, and, where fsnotify does not work (NFS) or is off, how often
	// open files are checked for growth.
	ScanInterval time.Duration `yaml:"scan_interval"`
	// Watch: auto (fsnotify where it works, polling always as a floor) |
	// poll (polling only).
	Watch string `yaml:"watch"`
	// PollInterval is how often open files are checked for growth
	// without a notification.
	PollInterval time.Duration `yaml:"poll_interval"`
	// PartialLineTimeout: a last line with no newline is held until it
	// completes or for this long, then taken as it is.
	PartialLineTimeout time.Duration `yaml:"partial_line_timeout"`
	// MaxOpenFiles bounds the files held open at once; others wait
	// their turn.
	MaxOpenFiles int `yaml:"max_open_files"`
	// CloseInactive closes a file that did not grow for this long; it is
	// reopened when it grows (found by the scan or a notification).
	CloseInactive time.Duration `yaml:"close_inactive"`
	// IdleTimeout: a file at its end for this long no longer holds the
	// window watermark back.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// FingerprintBytes is how many first bytes identify a file (with its
	// device and inode); a file shorter than that is not read until it
	// has them or has been quiet for partial_line_timeout.
	FingerprintBytes ByteSize `yaml:"fingerprint_bytes"`
}

const (
	maxSources      = 64
	maxOpenFiles    = 65536
	maxFingerprint  = 64 << 10
	maxGraceOrEvery = 24 * time.Hour
)

var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (c *Config) applySourceDefaults() {
	setStr(&c.Run.StateDir, "out/state")
	if c.Run.CheckpointEvery == 0 {
		c.Run.CheckpointEvery = 5 * time.Second
	}
	if c.Run.ShutdownGrace == 0 {
		c.Run.ShutdownGrace = 30 * time.Second
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		if s.Format == "" {
			s.Format = c.Input.Format
			c.sameOrigin(fmt.Sprintf("sources[%d].format", i), "input.format")
		}
		if f := s.File; f != nil {
			setStr(&f.StartAt, "beginning")
			if f.ReadExisting == nil {
				t := true
				f.ReadExisting = &t
			}
			setStr(&f.Watch, "auto")
			setDur(&f.ScanInterval, 10*time.Second)
			setDur(&f.PollInterval, 250*time.Millisecond)
			setDur(&f.PartialLineTimeout, 5*time.Second)
			setInt(&f.MaxOpenFiles, 1024)
			setDur(&f.CloseInactive, 5*time.Minute)
			setDur(&f.IdleTimeout, 30*time.Second)
			setSize(&f.FingerprintBytes, 1024)
		}
		if k := s.Kafka; k != nil {
			k.Kafka.applyDefaults()
			setStr(&k.Group, "tracepipe")
			setStr(&k.StartOffset, "earliest")
			setSize(&k.MinBytes, 1)
			setSize(&k.MaxBytes, 16<<20)
			setDur(&k.MaxWait, 250*time.Millisecond)
			setDur(&k.SessionTimeout, 10*time.Second)
			setDur(&k.HeartbeatInterval, 3*time.Second)
			setDur(&k.RebalanceTimeout, 30*time.Second)
			setDur(&k.MetadataRefresh, 10*time.Second)
			setDur(&k.IdleTimeout, 30*time.Second)
		}
		if r := s.RedisStream; r != nil {
			r.Redis.applyDefaults()
			setStr(&r.Group, "tracepipe")
			setStr(&r.StartAt, "beginning")
			setInt(&r.Count, 512)
			setDur(&r.Block, time.Second)
			setDur(&r.ClaimIdle, time.Minute)
			setDur(&r.ClaimEvery, 10*time.Second)
			setInt(&r.MaxDeliveries, 5)
			setDur(&r.IdleTimeout, 30*time.Second)
		}
	}
}

func setDur(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}

func (c *Config) validateSources(v *check) {
	if c.Run.StateDir == "" {
		v.bad("run.state_dir: must be set")
	}
	durIn(v, "run.checkpoint_every", c.Run.CheckpointEvery, 10*time.Millisecond, time.Hour)
	durIn(v, "run.shutdown_grace", c.Run.ShutdownGrace, time.Second, maxGraceOrEvery)
	if len(c.Sources) > maxSources {
		v.bad("sources: %d sources, at most %d", len(c.Sources), maxSources)
		return
	}
	names := map[string]bool{}
	for i, s := range c.Sources {
		key := fmt.Sprintf("sources[%d]", i)
		switch {
		case s.Name == "":
			v.bad("%s.name: must be set (it names the source's checkpoint)", key)
		case !sourceName.MatchString(s.Name):
			v.bad("%s.name: %q: letters, digits, '_', '.', '-', at most 64, starting with a letter or digit", key, v.val(key+".name", s.Name))
		case names[s.Name]:
			v.bad("%s.name: %q is used twice", key, v.val(key+".name", s.Name))
		}
		names[s.Name] = true
		v.oneOf(key+".format", s.Format, "auto", "jsonl", "otlp", "zipkin")
		if s.Parse != nil {
			s.Parse.JSONL.validatePaths(v, key+".parse.jsonl")
		}
		switch s.Type {
		case "file":
			if s.File == nil {
				v.bad("%s.file: must be set for type file", key)
				continue
			}
			s.File.validate(v, key+".file")
		case "kafka":
			if s.Kafka == nil {
				v.bad("%s.kafka: must be set for type kafka", key)
				continue
			}
			s.Kafka.validate(v, key+".kafka")
		case "redis_stream":
			if s.RedisStream == nil {
				v.bad("%s.redis_stream: must be set for type redis_stream", key)
				continue
			}
			s.RedisStream.validate(v, key+".redis_stream")
		case "":
			v.bad("%s.type: must be set (file | kafka | redis_stream)", key)
		default:
			v.bad("%s.type: %q is not a source type (file | kafka | redis_stream)", key, v.val(key+".type", s.Type))
		}
		set := 0
		for _, b := range []bool{s.File != nil, s.Kafka != nil, s.RedisStream != nil} {
			if b {
				set++
			}
		}
		if set > 1 {
			v.bad("%s: only the block of its type (%s) may be set", key, s.Type)
		}
	}
}

func (f *FileSource) validate(v *check, key string) {
	if len(f.Include) == 0 {
		v.bad("%s.include: at least one glob is needed", key)
	}
	globs := func(k string, list []string) {
		for i, g := range list {
			gk := fmt.Sprintf("%s.%s[%d]", key, k, i)
			if g == "" {
				v.bad("%s: empty glob", gk)
				continue
			}
			if !doublestar.ValidatePattern(filepath.ToSlash(g)) {
				v.bad("%s: %q is not a valid glob", gk, v.val(gk, g))
			}
		}
	}
	globs("include", f.Include)
	globs("exclude", f.Exclude)
	v.oneOf(key+".start_at", f.StartAt, "beginning", "end")
	v.oneOf(key+".watch", f.Watch, "auto", "poll")
	durIn(v, key+".scan_interval", f.ScanInterval, 10*time.Millisecond, time.Hour)
	durIn(v, key+".poll_interval", f.PollInterval, time.Millisecond, time.Hour)
	durIn(v, key+".partial_line_timeout", f.PartialLineTimeout, time.Millisecond, time.Hour)
	durIn(v, key+".close_inactive", f.CloseInactive, time.Second, maxGraceOrEvery)
	durIn(v, key+".idle_timeout", f.IdleTimeout, 10*time.Millisecond, maxGraceOrEvery)
	v.positive(key+".max_open_files", int64(f.MaxOpenFiles))
	atMost(v, key+".max_open_files", f.MaxOpenFiles, maxOpenFiles)
	if f.FingerprintBytes < 16 || f.FingerprintBytes > maxFingerprint {
		v.bad("%s.fingerprint_bytes: %s is outside 16B..64KiB", key, v.val(key+".fingerprint_bytes", f.FingerprintBytes))
	}
}

func (k *KafkaSource) validate(v *check, key string) {
	k.Kafka.validate(key, v)
	switch {
	case len(k.Topics) == 0 && k.TopicRegex == "":
		v.bad("%s: topics or topic_regex must be set", key)
	case len(k.Topics) > 0 && k.TopicRegex != "":
		v.bad("%s: topics and topic_regex: set one of them", key)
	}
	for i, t := range k.Topics {
		if !kafkaTopic.MatchString(t) {
			v.bad("%s.topics[%d]: %q is not a Kafka topic name (letters, digits, '.', '_', '-', at most 249)", key, i, v.val(fmt.Sprintf("%s.topics[%d]", key, i), t))
		}
	}
	if k.TopicRegex != "" {
		if _, err := regexp.Compile(k.TopicRegex); err != nil {
			v.bad("%s.topic_regex: %v", key, err)
		}
	}
	if k.Group == "" {
		v.bad("%s.group: must be set", key)
	}
	v.oneOf(key+".start_offset", k.StartOffset, "earliest", "latest")
	if k.MinBytes < 1 || k.MinBytes > k.MaxBytes {
		v.bad("%s.min_bytes: %s must be at least 1B and at most max_bytes", key, v.val(key+".min_bytes", k.MinBytes))
	}
	if k.MaxBytes > 256<<20 {
		v.bad("%s.max_bytes: %s is over 256MiB", key, v.val(key+".max_bytes", k.MaxBytes))
	}
	durIn(v, key+".max_wait", k.MaxWait, time.Millisecond, time.Minute)
	durIn(v, key+".session_timeout", k.SessionTimeout, time.Second, time.Hour)
	durIn(v, key+".heartbeat_interval", k.HeartbeatInterval, 10*time.Millisecond, time.Hour)
	if k.HeartbeatInterval*2 > k.SessionTimeout {
		v.bad("%s.heartbeat_interval: %s must be at most half of session_timeout", key, v.val(key+".heartbeat_interval", k.HeartbeatInterval))
	}
	durIn(v, key+".rebalance_timeout", k.RebalanceTimeout, time.Second, time.Hour)
	durIn(v, key+".metadata_refresh", k.MetadataRefresh, 100*time.Millisecond, 24*time.Hour)
	durIn(v, key+".idle_timeout", k.IdleTimeout, 10*time.Millisecond, maxGraceOrEvery)
}

var kafkaTopic = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)

func (r *RedisStreamSource) validate(v *check, key string) {
	r.Redis.validate(key, v)
	if r.Stream == "" {
		v.bad("%s.stream: must be set", key)
	}
	if r.Group == "" {
		v.bad("%s.group: must be set", key)
	}
	v.oneOf(key+".start_at", r.StartAt, "beginning", "end")
	v.positive(key+".count", int64(r.Count))
	atMost(v, key+".count", r.Count, 100000)
	durIn(v, key+".block", r.Block, time.Millisecond, time.Minute)
	durIn(v, key+".claim_idle", r.ClaimIdle, 10*time.Millisecond, maxGraceOrEvery)
	durIn(v, key+".claim_every", r.ClaimEvery, 10*time.Millisecond, time.Hour)
	v.positive(key+".max_deliveries", int64(r.MaxDeliveries))
	atMost(v, key+".max_deliveries", r.MaxDeliveries, 1000)
	durIn(v, key+".idle_timeout", r.IdleTimeout, 10*time.Millisecond, maxGraceOrEvery)
}

// durIn refuses a duration outside [lo, hi].
func durIn(v *check, key string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.bad("%s: %s is outside %s..%s", key, v.val(key, d), lo, hi)
	}
}
