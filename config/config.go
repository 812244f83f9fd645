// Package config owns config.yaml: its schema (every knob of the pipeline),
// strict decoding, ${VAR} expansion and validation. It decides nothing about
// how the knobs are used; cmd/ maps them onto the packages that do.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// Default is the shipped config.yaml, embedded so the binary runs with no
// file at all.
//
//go:embed default.yaml
var Default []byte

// Config is the whole of config.yaml.
type Config struct {
	Input    Input    `yaml:"input"`
	Parse    Parse    `yaml:"parse"`
	Filter   Filter   `yaml:"filter"`
	Pipeline Pipeline `yaml:"pipeline"`
	Sinks    []Sink   `yaml:"sinks"`
	DLQ      DLQ      `yaml:"dlq"`
	Windows  Windows  `yaml:"windows"`
	Retry    Retry    `yaml:"retry"`
	Dedupe   Dedupe   `yaml:"dedupe"`
	Log      Log      `yaml:"log"`
}

// Input configures reading files.
type Input struct {
	Format           string   `yaml:"format"`             // auto | jsonl | otlp | zipkin
	MaxLineBytes     ByteSize `yaml:"max_line_bytes"`     // a longer line is too_large
	MaxDocumentBytes ByteSize `yaml:"max_document_bytes"` // a longer whole-file JSON document is too_large
	Concurrency      int      `yaml:"concurrency"`        // files read at once
}

// Parse configures the parsers.
type Parse struct {
	InvalidUTF8    string     `yaml:"invalid_utf8"`     // reject | replace
	MissingTraceID string     `yaml:"missing_trace_id"` // invalid | filter | keep
	TimeUnit       string     `yaml:"time_unit"`        // auto | s | ms | us | ns
	JSONL          JSONLPaths `yaml:"jsonl"`
}

// JSONLPaths lists, per record field, the candidate paths looked up in a
// JSON-lines record; the first present wins. Empty keeps the defaults.
type JSONLPaths struct {
	TraceID  []string        `yaml:"trace_id"`
	SpanID   []string        `yaml:"span_id"`
	ParentID []string        `yaml:"parent_id"`
	Service  []string        `yaml:"service"`
	Name     []string        `yaml:"name"`
	Message  []string        `yaml:"message"`
	Kind     []string        `yaml:"kind"`
	Status   []string        `yaml:"status"`
	Severity []string        `yaml:"severity"`
	Time     []string        `yaml:"time"`
	Duration []DurationField `yaml:"duration"`
}

// DurationField is a path holding a duration number in the given unit.
type DurationField struct {
	Path string `yaml:"path"`
	Unit string `yaml:"unit"` // ns | us | ms | s
}

// Filter drops records by configuration. Filtered records are counted, not
// written.
type Filter struct {
	IncludeServices []string `yaml:"include_services"` // when set, only these pass
	ExcludeServices []string `yaml:"exclude_services"`
}

// Pipeline sizes the workers and batches.
type Pipeline struct {
	Workers    int      `yaml:"workers"`     // 0 = two per CPU
	Queue      int      `yaml:"queue"`       // batches waiting for a worker
	BatchUnits int      `yaml:"batch_units"` // lines or documents per batch
	BatchBytes ByteSize `yaml:"batch_bytes"`
	// FlushEvery is the durability barrier's interval: every sink flushes
	// (a file sink fsyncs), the DLQ syncs, then the batches handled before
	// are acknowledged to their sources.
	FlushEvery time.Duration `yaml:"flush_every"`
}

// Sink is one output. Exactly the block named by Type is set.
type Sink struct {
	Name        string           `yaml:"name"`
	Type        string           `yaml:"type"` // file | discard | kafka | redis_stream
	File        *FileSink        `yaml:"file"`
	Kafka       *KafkaSink       `yaml:"kafka"`
	RedisStream *RedisStreamSink `yaml:"redis_stream"`
	// Retry overrides the top-level retry policy for this sink.
	Retry *Retry `yaml:"retry"`
	// Queue bounds the batches waiting for this sink's retry loop; when it
	// is full and the sink is failing, records go to the DLQ at once.
	Queue int `yaml:"queue"`
}

// Kafka is a connection to Kafka brokers. Password (use ${VAR}) never
// appears in logs or errors.
type Kafka struct {
	Brokers  []string      `yaml:"brokers"`
	ClientID string        `yaml:"client_id"`
	TLS      bool          `yaml:"tls"`
	SASL     *SASL         `yaml:"sasl"`
	Timeout  time.Duration `yaml:"timeout"` // dial, read and write
}

// SASL authenticates to Kafka.
type SASL struct {
	Mechanism string `yaml:"mechanism"` // plain | scram-sha-256 | scram-sha-512
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// KafkaSink produces records to a topic, keyed by trace id.
type KafkaSink struct {
	Kafka        `yaml:",inline"`
	Topic        string        `yaml:"topic"`
	Compression  string        `yaml:"compression"`   // none | gzip | snappy | lz4 | zstd
	RequiredAcks string        `yaml:"required_acks"` // all | one | none
	BatchSize    int           `yaml:"batch_size"`    // messages per produce request
	BatchBytes   ByteSize      `yaml:"batch_bytes"`
	Linger       time.Duration `yaml:"linger"` // wait this long for a batch to fill; 0 sends at once
}

// RedisStreamSink adds records to a Redis Stream (XADD, MAXLEN ~).
type RedisStreamSink struct {
	Redis  `yaml:",inline"`
	Stream string `yaml:"stream"`
	MaxLen int64  `yaml:"maxlen"` // approximate cap (MAXLEN ~); 0 = none
}

// Retry is the policy every sink's retry loop follows: exponential backoff
// with full jitter, a retry budget, a circuit breaker, and how errors are
// classified.
type Retry struct {
	Initial     time.Duration `yaml:"initial"`
	Multiplier  float64       `yaml:"multiplier"`
	MaxInterval time.Duration `yaml:"max_interval"`
	MaxAttempts int           `yaml:"max_attempts"` // first attempt included
	MaxElapsed  time.Duration `yaml:"max_elapsed"`
	// Budget: retries may be at most Ratio of first attempts, plus
	// MinPerSecond (a token bucket), so a dead sink cannot cause a storm.
	Budget RetryBudget `yaml:"budget"`
	// Breaker opens after Failures consecutive failed attempts; after
	// OpenFor one probe is let through (half-open).
	Breaker Breaker `yaml:"breaker"`
	// Codes overrides the classification of errors by code: retry | permanent.
	Codes map[string]string `yaml:"codes"`
}

// Dedupe makes delivery idempotent: each sink remembers the records it
// took (trace id + span id, else a hash of the payload) for TTL and skips
// them when they come again (a DLQ replay, a re-delivery after a crash).
type Dedupe struct {
	Enabled bool          `yaml:"enabled"`
	TTL     time.Duration `yaml:"ttl"`
	Store   string        `yaml:"store"`    // memory | redis
	MaxKeys int           `yaml:"max_keys"` // memory: past it the oldest keys are forgotten (counted)
	Path    string        `yaml:"path"`     // memory: a file the keys survive restarts in; "" = none
	Redis   *DedupeRedis  `yaml:"redis"`
}

// DedupeRedis keeps dedupe keys in Redis (SET NX EX), shared by processes.
type DedupeRedis struct {
	Redis     `yaml:",inline"`
	KeyPrefix string `yaml:"key_prefix"`
}

// RetryBudget bounds retries to a fraction of requests.
type RetryBudget struct {
	Ratio        float64 `yaml:"ratio"`
	MinPerSecond float64 `yaml:"min_per_second"`
}

// Breaker is a circuit breaker per sink.
type Breaker struct {
	Failures int           `yaml:"failures"`
	OpenFor  time.Duration `yaml:"open_for"`
}

// FileSink writes normalized records as JSON lines into a folder.
type FileSink struct {
	Dir         string   `yaml:"dir"`
	RotateBytes ByteSize `yaml:"rotate_bytes"` // start a new file past this size
}

// DLQ configures the dead-letter queue.
type DLQ struct {
	Type string `yaml:"type"` // file | redis | kafka
	// KeepBytes bounds the payload kept per entry; the size and sha256 of
	// the whole payload are always recorded.
	KeepBytes ByteSize  `yaml:"keep_bytes"`
	File      *FileDLQ  `yaml:"file"`
	Redis     *DLQRedis `yaml:"redis"`
	Kafka     *DLQKafka `yaml:"kafka"`
	// Redact removes or hashes named fields from DLQ payloads.
	Redact Redact `yaml:"redact"`
}

// DLQRedis keeps entries in a Redis Stream; when Redis is unavailable they
// go to the file DLQ (dlq.file), so nothing is lost.
type DLQRedis struct {
	Redis  `yaml:",inline"`
	Stream string `yaml:"stream"`
	MaxLen int64  `yaml:"maxlen"` // cap (MAXLEN ~); entries trimmed are counted
	Group  string `yaml:"group"`  // consumer group for DLQ processors
}

// DLQKafka keeps entries in a Kafka topic: metadata as headers, payload as
// value; the file DLQ takes over when Kafka is unavailable.
type DLQKafka struct {
	Kafka `yaml:",inline"`
	Topic string `yaml:"topic"`
}

// Redact lists payload fields (JSON paths, dot-separated) to remove or
// replace with a hash in DLQ entries.
type Redact struct {
	Fields []string `yaml:"fields"`
	Mode   string   `yaml:"mode"` // remove | hash
}

// FileDLQ is the embedded default DLQ backend.
type FileDLQ struct {
	Dir          string        `yaml:"dir"`
	SegmentBytes ByteSize      `yaml:"segment_bytes"`
	MaxBytes     ByteSize      `yaml:"max_bytes"`
	Overflow     string        `yaml:"overflow"` // fail | drop_oldest
	Queue        int           `yaml:"queue"`
	SyncEvery    time.Duration `yaml:"sync_every"`
}

// Windows configures per-window distinct counts (HyperLogLog). No metrics
// means no window stage.
type Windows struct {
	Size            time.Duration `yaml:"size"`             // tumbling window length
	AllowedLateness time.Duration `yaml:"allowed_lateness"` // watermark = max event time seen - this
	Precision       int           `yaml:"precision"`        // HLL precision, 4..18 (2^p registers)
	LatePolicy      string        `yaml:"late_policy"`      // dlq | drop | update
	// KeepClosedFor is, under late_policy update, how long (in event time,
	// past its close) a window still takes corrections; a record later
	// than that goes to the DLQ as late.
	KeepClosedFor time.Duration `yaml:"keep_closed_for"`
	// UpdateEvery is, under late_policy update, how often corrected rows
	// are written (late records are batched, not one row per record).
	UpdateEvery    time.Duration `yaml:"update_every"`
	MaxOpenWindows int           `yaml:"max_open_windows"` // past it the oldest window closes early
	MaxGroups      int           `yaml:"max_groups"`       // per metric per window; past it: __overflow__
	// Instance names this process in window rows; processes that write the
	// same metric to one store must have distinct instances.
	Instance string      `yaml:"instance"`
	Metrics  []Metric    `yaml:"metrics"`
	Sink     WindowsSink `yaml:"sink"`
}

// Metric is one distinct count: the field counted, the fields it is grouped
// by, and an optional filter. Fields are record fields (trace_id, span_id,
// parent_span_id, service, name, kind, status, severity, signal) or
// attributes.KEY (KEY as flattened by the parser, e.g. attributes.user.id).
type Metric struct {
	Name    string      `yaml:"name"`
	Count   string      `yaml:"count"`
	GroupBy []string    `yaml:"group_by"`
	Where   []Condition `yaml:"where"` // all must hold
}

// Condition is one test on a field: exactly one of in, not_in, exists.
type Condition struct {
	Field  string   `yaml:"field"`
	In     []string `yaml:"in"`
	NotIn  []string `yaml:"not_in"`
	Exists *bool    `yaml:"exists"`
}

// WindowsSink is where closed windows are written. Exactly the block named
// by Type is set (file gets a default).
type WindowsSink struct {
	Type  string        `yaml:"type"` // file | redis
	File  *WindowsFile  `yaml:"file"`
	Redis *WindowsRedis `yaml:"redis"`
}

// WindowsFile writes window rows as JSON lines into a folder.
type WindowsFile struct {
	Dir string `yaml:"dir"`
}

// Redis is a connection to a Redis server. Password (use ${VAR}) never
// appears in logs or errors.
type Redis struct {
	Addr     string        `yaml:"addr"`
	Username string        `yaml:"username"`
	Password string        `yaml:"password"`
	DB       int           `yaml:"db"`
	TLS      bool          `yaml:"tls"`
	Timeout  time.Duration `yaml:"timeout"` // dial, read and write
}

// WindowsRedis stores window sketches in Redis: one hash per metric and
// window, one field per group and instance.
type WindowsRedis struct {
	Redis     `yaml:",inline"`
	KeyPrefix string        `yaml:"key_prefix"`
	TTL       time.Duration `yaml:"ttl"` // 0 keeps windows forever
}

// Log configures the process's own structured logs (stderr).
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// applyDefaults fills every knob the file left out.
func (c *Config) applyDefaults() {
	setStr(&c.Input.Format, "auto")
	setSize(&c.Input.MaxLineBytes, 1<<20)
	setSize(&c.Input.MaxDocumentBytes, 16<<20)
	setInt(&c.Input.Concurrency, 4)
	setStr(&c.Parse.InvalidUTF8, "reject")
	setStr(&c.Parse.MissingTraceID, "invalid")
	setStr(&c.Parse.TimeUnit, "auto")
	// Two per CPU: a worker blocked in a sink's write leaves its CPU to
	// another (file sink +12% on 2 cores, discard unchanged; bench/README.md).
	setInt(&c.Pipeline.Workers, 2*runtime.GOMAXPROCS(0))
	setInt(&c.Pipeline.Queue, c.Pipeline.Workers)
	setInt(&c.Pipeline.BatchUnits, 512)
	setSize(&c.Pipeline.BatchBytes, 512<<10)
	if c.Pipeline.FlushEvery == 0 {
		c.Pipeline.FlushEvery = time.Second
	}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		setStr(&s.Name, s.Type)
		if s.Type == "file" && s.File != nil {
			setSize(&s.File.RotateBytes, 256<<20)
		}
		s.applyDefaults()
	}
	c.Retry.applyDefaults()
	c.Dedupe.applyDefaults()
	setStr(&c.DLQ.Type, "file")
	setSize(&c.DLQ.KeepBytes, 64<<10)
	if c.DLQ.File == nil { // the DLQ, or the fallback of a redis or kafka DLQ
		c.DLQ.File = &FileDLQ{}
	}
	c.DLQ.applyDefaults()
	if f := c.DLQ.File; f != nil {
		setStr(&f.Dir, "out/dlq")
		setSize(&f.SegmentBytes, 64<<20)
		setSize(&f.MaxBytes, 1<<30)
		setStr(&f.Overflow, "fail")
		setInt(&f.Queue, 1024)
		if f.SyncEvery == 0 {
			f.SyncEvery = time.Second
		}
	}
	c.Windows.applyDefaults()
	setStr(&c.Log.Level, "info")
	setStr(&c.Log.Format, "text")
}

// Validate checks every value and returns all problems at once, each naming
// its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	oneOf := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad("%s: %q is not one of %s", key, v, strings.Join(allowed, ", "))
	}
	positive := func(key string, v int64) {
		if v <= 0 {
			bad("%s: must be positive, got %d", key, v)
		}
	}

	oneOf("input.format", c.Input.Format, "auto", "jsonl", "otlp", "zipkin")
	positive("input.max_line_bytes", int64(c.Input.MaxLineBytes))
	positive("input.max_document_bytes", int64(c.Input.MaxDocumentBytes))
	positive("input.concurrency", int64(c.Input.Concurrency))
	oneOf("parse.invalid_utf8", c.Parse.InvalidUTF8, "reject", "replace")
	oneOf("parse.missing_trace_id", c.Parse.MissingTraceID, "invalid", "filter", "keep")
	oneOf("parse.time_unit", c.Parse.TimeUnit, "auto", "s", "ms", "us", "ns")
	for i, d := range c.Parse.JSONL.Duration {
		if d.Path == "" {
			bad("parse.jsonl.duration[%d].path: must be set", i)
		}
		oneOf(fmt.Sprintf("parse.jsonl.duration[%d].unit", i), d.Unit, "ns", "us", "ms", "s")
	}
	positive("pipeline.workers", int64(c.Pipeline.Workers))
	positive("pipeline.queue", int64(c.Pipeline.Queue))
	positive("pipeline.batch_units", int64(c.Pipeline.BatchUnits))
	positive("pipeline.batch_bytes", int64(c.Pipeline.BatchBytes))
	if c.Pipeline.FlushEvery < 10*time.Millisecond || c.Pipeline.FlushEvery > time.Hour {
		bad("pipeline.flush_every: %s is outside 10ms..1h", c.Pipeline.FlushEvery)
	}

	if len(c.Sinks) == 0 {
		bad("sinks: at least one sink is needed (use type: discard to throw records away)")
	}
	names := map[string]bool{}
	for i, s := range c.Sinks {
		key := fmt.Sprintf("sinks[%d]", i)
		if names[s.Name] {
			bad("%s.name: %q is used twice", key, s.Name)
		}
		names[s.Name] = true
		s.validate(key, bad, oneOf, positive)
	}
	c.Retry.validate("retry", bad, positive)
	c.Dedupe.validate(bad, oneOf, positive)

	oneOf("dlq.type", c.DLQ.Type, "file", "redis", "kafka")
	c.DLQ.validate(bad, oneOf, positive)
	if c.DLQ.KeepBytes < 0 {
		bad("dlq.keep_bytes: must not be negative")
	}
	if f := c.DLQ.File; f != nil {
		if f.Dir == "" {
			bad("dlq.file.dir: must be set")
		}
		positive("dlq.file.segment_bytes", int64(f.SegmentBytes))
		positive("dlq.file.max_bytes", int64(f.MaxBytes))
		if f.MaxBytes < f.SegmentBytes {
			bad("dlq.file.max_bytes: %s is below segment_bytes %s", f.MaxBytes, f.SegmentBytes)
		}
		oneOf("dlq.file.overflow", f.Overflow, "fail", "drop_oldest")
		positive("dlq.file.queue", int64(f.Queue))
		positive("dlq.file.sync_every", int64(f.SyncEvery))
	}
	c.Windows.validate(bad, oneOf, positive)
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")
	return errors.Join(errs...)
}

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setSize(p *ByteSize, v ByteSize) {
	if *p == 0 {
		*p = v
	}
}
