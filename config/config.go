// Package config owns config.yaml: its schema (every knob of the pipeline),
// strict decoding, ${VAR} expansion and validation. It decides nothing about
// how the knobs are used; cmd/ maps them onto the packages that do.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Default is the shipped config.yaml, embedded so the binary runs with no
// file at all.
//
//go:embed default.yaml
var Default []byte

// Config is the whole of config.yaml.
type Config struct {
	Input     Input     `yaml:"input"`
	Parse     Parse     `yaml:"parse"`
	Filter    Filter    `yaml:"filter"`
	Pipeline  Pipeline  `yaml:"pipeline"`
	Sinks     []Sink    `yaml:"sinks"`
	DLQ       DLQ       `yaml:"dlq"`
	Windows   Windows   `yaml:"windows"`
	Retry     Retry     `yaml:"retry"`
	Dedupe    Dedupe    `yaml:"dedupe"`
	Log       Log       `yaml:"log"`
	Run       Run       `yaml:"run"`
	Sources   []Source  `yaml:"sources"`
	Telemetry Telemetry `yaml:"telemetry"`

	// fromEnv maps a key (input.format, sinks[0].type) to the variables
	// whose values Decode put into it; envValues maps each of those values
	// to its variable. Neither is ever printed.
	fromEnv   map[string][]string
	envValues map[string]string
}

// Input configures reading files.
type Input struct {
	Format           string      `yaml:"format"`             // auto | jsonl | otlp | zipkin
	MaxLineBytes     FormatSizes `yaml:"max_line_bytes"`     // a longer line is too_large, per format
	MaxDocumentBytes FormatSizes `yaml:"max_document_bytes"` // a longer whole-file JSON document is too_large, per format
	Concurrency      int         `yaml:"concurrency"`        // files read at once
}

// Parse configures the parsers.
type Parse struct {
	InvalidUTF8    string         `yaml:"invalid_utf8"`     // reject | replace
	MissingTraceID MissingTraceID `yaml:"missing_trace_id"` // per signal: invalid | filter | keep
	TimeUnit       string         `yaml:"time_unit"`        // auto | s | ms | us | ns
	JSONL          JSONLPaths     `yaml:"jsonl"`
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
	Start    []string        `yaml:"start_time"` // span start: the time when no time path is present
	End      []string        `yaml:"end_time"`   // span end: end - start is the duration when no duration path is present
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
	Type        string           `yaml:"type"` // file | stdout | discard | kafka | redis_stream
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
	Password  Secret `yaml:"password"`
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
	// MaxMemory bounds the window state's estimated size (the partial
	// sketches, group keys and closed rows kept for corrections): past it
	// kept closed windows are forgotten and the oldest open windows close
	// early; a window alone over it counts new groups into __overflow__.
	MaxMemory ByteSize `yaml:"max_memory"`
	// MaxFuture: an event time more than this past the wall clock is an
	// invalid record (code future_time) and does not move the watermark.
	MaxFuture time.Duration `yaml:"max_future"`
	// Instance names this process in window rows; processes that write the
	// same metric to one store must have distinct instances.
	Instance string `yaml:"instance"`
	// InstanceFromHost is set when Instance was left empty and took the
	// host's name: `pipeline run` then adds the id kept in its state_dir,
	// so that two processes on one host never write the same rows.
	InstanceFromHost bool        `yaml:"-"`
	Metrics          []Metric    `yaml:"metrics"`
	Sink             WindowsSink `yaml:"sink"`
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
	Password Secret        `yaml:"password"`
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
	Format string `yaml:"format"` // auto (text on a terminal, else JSON) | text | json
}

// applyDefaults fills every knob the file left out.
func (c *Config) applyDefaults() {
	setStr(&c.Input.Format, "auto")
	c.Input.MaxLineBytes.setDefaults(defaultMaxLineBytes)
	c.Input.MaxDocumentBytes.setDefaults(defaultMaxDocumentBytes)
	setInt(&c.Input.Concurrency, 4)
	setStr(&c.Parse.InvalidUTF8, "reject")
	setStr(&c.Parse.MissingTraceID.Spans, "invalid")
	setStr(&c.Parse.MissingTraceID.Logs, "keep")
	setStr(&c.Parse.TimeUnit, "auto")
	// Two per CPU: a worker blocked in a sink's write leaves its CPU to
	// another (file sink +12% on 2 cores, discard unchanged; bench/README.md).
	setInt(&c.Pipeline.Workers, 2*runtime.GOMAXPROCS(0))
	if c.Pipeline.Queue == 0 {
		c.Pipeline.Queue = c.Pipeline.Workers
		c.sameOrigin("pipeline.queue", "pipeline.workers")
	}
	setInt(&c.Pipeline.BatchUnits, 512)
	setSize(&c.Pipeline.BatchBytes, 512<<10)
	if c.Pipeline.FlushEvery == 0 {
		c.Pipeline.FlushEvery = time.Second
	}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if s.Name == "" {
			s.Name = s.Type
			c.sameOrigin(fmt.Sprintf("sinks[%d].name", i), fmt.Sprintf("sinks[%d].type", i))
		}
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
	c.applySourceDefaults()
	setStr(&c.Log.Level, "info")
	setStr(&c.Log.Format, "auto")
	c.Telemetry.applyDefaults()
}

// Validate checks every value and returns all problems at once, each naming
// its key. A value that came from ${VAR} is never quoted: the problem names
// the variable instead.
func (c *Config) Validate() error {
	v := &check{c: c}

	v.oneOf("input.format", c.Input.Format, "auto", "jsonl", "otlp", "zipkin")
	c.Input.MaxLineBytes.validate(v, "input.max_line_bytes", maxLineBytes)
	c.Input.MaxDocumentBytes.validate(v, "input.max_document_bytes", maxDocumentBytes)
	v.positive("input.concurrency", int64(c.Input.Concurrency))
	atMost(v, "input.concurrency", c.Input.Concurrency, maxConcurrency)
	if doc := c.Input.MaxDocumentBytes.Max(); c.Input.Concurrency <= maxConcurrency && doc <= maxDocumentBytes {
		v.product("input: concurrency %v x max_document_bytes %v", "input.concurrency", int64(c.Input.Concurrency),
			"input.max_document_bytes", doc, "of documents held at once")
	}
	v.oneOf("parse.invalid_utf8", c.Parse.InvalidUTF8, "reject", "replace")
	c.Parse.MissingTraceID.validate(v)
	v.oneOf("parse.time_unit", c.Parse.TimeUnit, "auto", "s", "ms", "us", "ns")
	c.Parse.JSONL.validate(v)
	v.positive("pipeline.workers", int64(c.Pipeline.Workers))
	atMost(v, "pipeline.workers", c.Pipeline.Workers, maxWorkers)
	v.positive("pipeline.queue", int64(c.Pipeline.Queue))
	atMost(v, "pipeline.queue", c.Pipeline.Queue, maxQueue)
	v.positive("pipeline.batch_units", int64(c.Pipeline.BatchUnits))
	atMost(v, "pipeline.batch_units", c.Pipeline.BatchUnits, maxBatchUnits)
	v.positive("pipeline.batch_bytes", int64(c.Pipeline.BatchBytes))
	atMost(v, "pipeline.batch_bytes", c.Pipeline.BatchBytes, maxBatchBytes)
	if c.Pipeline.FlushEvery < 10*time.Millisecond || c.Pipeline.FlushEvery > time.Hour {
		v.bad("pipeline.flush_every: %s is outside 10ms..1h", v.val("pipeline.flush_every", c.Pipeline.FlushEvery))
	}

	if len(c.Sinks) == 0 {
		v.bad("sinks: at least one sink is needed (use type: discard to throw records away)")
	}
	names := map[string]bool{}
	stdout := 0
	for i, s := range c.Sinks {
		if s.Type == "stdout" {
			if stdout++; stdout == 2 {
				v.bad("sinks[%d].type: a second stdout sink would interleave with the first", i)
			}
		}
		key := fmt.Sprintf("sinks[%d]", i)
		if names[s.Name] {
			v.bad("%s.name: %q is used twice", key, v.val(key+".name", s.Name))
		}
		names[s.Name] = true
		s.validate(key, v)
	}
	c.validateInFlight(v)
	c.Retry.validate("retry", v)
	c.Dedupe.validate(v)

	v.oneOf("dlq.type", c.DLQ.Type, "file", "redis", "kafka")
	c.DLQ.validate(v)
	if c.DLQ.KeepBytes < 0 {
		v.bad("dlq.keep_bytes: must not be negative")
	}
	atMost(v, "dlq.keep_bytes", c.DLQ.KeepBytes, maxKeepBytes)
	if f := c.DLQ.File; f != nil {
		if f.Dir == "" {
			v.bad("dlq.file.dir: must be set")
		}
		v.positive("dlq.file.segment_bytes", int64(f.SegmentBytes))
		atMost(v, "dlq.file.segment_bytes", f.SegmentBytes, maxSegmentBytes)
		v.positive("dlq.file.max_bytes", int64(f.MaxBytes))
		atMost(v, "dlq.file.max_bytes", f.MaxBytes, maxDLQBytes)
		if f.MaxBytes < f.SegmentBytes {
			v.bad("dlq.file.max_bytes: %s is below segment_bytes %s", v.val("dlq.file.max_bytes", f.MaxBytes), v.val("dlq.file.segment_bytes", f.SegmentBytes))
		}
		v.oneOf("dlq.file.overflow", f.Overflow, "fail", "drop_oldest")
		v.positive("dlq.file.queue", int64(f.Queue))
		atMost(v, "dlq.file.queue", f.Queue, maxQueue)
		v.positive("dlq.file.sync_every", int64(f.SyncEvery))
		if f.Queue <= maxQueue && c.DLQ.KeepBytes <= maxKeepBytes {
			v.product("dlq: file.queue %v x keep_bytes %v", "dlq.file.queue", int64(f.Queue),
				"dlq.keep_bytes", c.DLQ.KeepBytes, "of entries waiting for the writer")
		}
	}
	c.Windows.validate(v)
	c.validateSources(v)
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "auto", "text", "json")
	c.Telemetry.validate(v)
	return errors.Join(v.errs...)
}

// Limits on the knobs that size memory, goroutines or files, so that a typo
// or a hostile value (workers: 100000000 took 23 GB and the OOM killer) is
// refused by validate instead of exhausting the host. They are fixed, not
// relative to this machine, so that a config valid in CI is valid where it
// runs; each is far above what a knob is useful at.
const (
	maxConcurrency   = 256       // input.concurrency: files read at once
	maxLineBytes     = 256 << 20 // input.max_line_bytes
	maxDocumentBytes = 1 << 30   // input.max_document_bytes (a document is held whole)
	maxWorkers       = 1024      // pipeline.workers: goroutines, each with a batch
	maxQueue         = 65536     // pipeline.queue, sinks[].queue, dlq.file.queue
	maxBatchUnits    = 1 << 20   // pipeline.batch_units
	maxBatchBytes    = 256 << 20 // pipeline.batch_bytes
	maxInFlight      = 8 << 30   // batches or entries held at once x their size
	maxRotateBytes   = 1 << 40   // sinks[].file.rotate_bytes
	maxKafkaBatch    = 1 << 20   // sinks[].kafka.batch_size: messages per request
	maxKafkaBytes    = 256 << 20 // sinks[].kafka.batch_bytes
	maxAttempts      = 1000      // retry.max_attempts
	maxDedupeKeys    = 50e6      // dedupe.max_keys (memory store: ~70 bytes a key)
	maxKeepBytes     = 16 << 20  // dlq.keep_bytes: payload kept per entry
	maxSegmentBytes  = 4 << 30   // dlq.file.segment_bytes
	maxDLQBytes      = 1 << 40   // dlq.file.max_bytes
	maxOpenWindows   = 4096      // windows.max_open_windows
	maxGroups        = 1 << 20   // windows.max_groups: per metric per window
	minWindowMemory  = 1 << 20   // windows.max_memory
	maxWindowMemory  = 1 << 40   // windows.max_memory
	maxPathSegments  = 8         // parse.jsonl paths (the parsers' own limit)
)

// validateInFlight bounds the memory held by batches: each worker holds
// one, and the pipeline queue and every sink's retry queue hold more, each
// up to batch_bytes.
func (c *Config) validateInFlight(v *check) {
	p := c.Pipeline
	if p.Workers > maxWorkers || p.Queue > maxQueue || p.BatchBytes > maxBatchBytes {
		return // already refused; the product would say it again
	}
	n := int64(p.Workers) + int64(p.Queue)
	queues := int64(0)
	for _, s := range c.Sinks {
		if s.Queue > maxQueue {
			return
		}
		queues += int64(s.Queue)
	}
	if n+queues <= 0 || p.BatchBytes <= 0 {
		return
	}
	if total := mulSize(n+queues, p.BatchBytes); total > maxInFlight {
		v.bad("pipeline: (workers %v + queue %v + sinks' queues %d) x batch_bytes %v = %s of batches in flight is above the limit %s",
			v.val("pipeline.workers", p.Workers), v.val("pipeline.queue", p.Queue), queues,
			v.val("pipeline.batch_bytes", p.BatchBytes), total, ByteSize(maxInFlight))
	}
}

// validate checks the JSON-lines field paths as the parsers will, so that
// the problem is reported here (with its key, and without a value that came
// from the environment).
func (j *JSONLPaths) validate(v *check) { j.validatePaths(v, "parse.jsonl") }

// validatePaths checks the paths under prefix (parse.jsonl, or a
// source's own sources[i].parse.jsonl).
func (j *JSONLPaths) validatePaths(v *check, prefix string) {
	lists := []struct {
		key   string
		paths []string
	}{
		{"trace_id", j.TraceID}, {"span_id", j.SpanID}, {"parent_id", j.ParentID},
		{"service", j.Service}, {"name", j.Name}, {"message", j.Message}, {"kind", j.Kind},
		{"status", j.Status}, {"severity", j.Severity}, {"time", j.Time},
		{"start_time", j.Start}, {"end_time", j.End},
	}
	path := func(key, p string) {
		switch {
		case p == "":
			v.bad("%s: empty path", key)
		case p[0] == '.' || p[len(p)-1] == '.' || strings.Contains(p, ".."):
			v.bad("%s: path %q has an empty segment", key, v.val(key, p))
		case strings.Count(p, ".") >= maxPathSegments:
			v.bad("%s: path %q has more than %d segments", key, v.val(key, p), maxPathSegments)
		}
	}
	for _, l := range lists {
		for i, p := range l.paths {
			path(fmt.Sprintf("%s.%s[%d]", prefix, l.key, i), p)
		}
	}
	for i, d := range j.Duration {
		key := fmt.Sprintf("%s.duration[%d]", prefix, i)
		if d.Path == "" {
			v.bad("%s.path: must be set", key)
		} else {
			path(key+".path", d.Path)
		}
		v.oneOf(key+".unit", d.Unit, "ns", "us", "ms", "s")
	}
}

// check collects Validate's problems. Every value put in a message goes
// through val, so that one taken from the environment is never shown.
type check struct {
	c    *Config
	errs []error
}

func (v *check) bad(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

// val is x, the value of key, as a message shows it: x itself, or when it
// came from ${VAR} (wholly or in part) a placeholder naming the variable.
func (v *check) val(key string, x any) any {
	if vars := v.c.fromEnv[key]; len(vars) > 0 {
		return hidden(vars)
	}
	return x
}

// hidden stands for a value from the environment, whatever the verb.
type hidden []string

func (h hidden) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "the value of ${%s} (not shown)", strings.Join(h, "}${"))
}

func (v *check) oneOf(key, s string, allowed ...string) {
	if slices.Contains(allowed, s) {
		return
	}
	v.bad("%s: %q is not one of %s", key, v.val(key, s), strings.Join(allowed, ", "))
}

func (v *check) positive(key string, n int64) {
	if n <= 0 {
		v.bad("%s: must be positive, got %d", key, v.val(key, n))
	}
}

// atMost refuses a value above its limit.
func atMost[T ~int | ~int64](v *check, key string, x, limit T) {
	if x > limit {
		v.bad("%s: %v is above the limit %v", key, v.val(key, x), limit)
	}
}

// product refuses a count x size above maxInFlight; format names the two
// operands (two %v).
func (v *check) product(format, countKey string, count int64, sizeKey string, size ByteSize, what string) {
	if count <= 0 || size <= 0 {
		return
	}
	if total := mulSize(count, size); total > maxInFlight {
		v.bad(format+" = %s %s is above the limit %s", v.val(countKey, count), v.val(sizeKey, size), total, what, ByteSize(maxInFlight))
	}
}

// mulSize is n x size, saturated rather than overflowing.
func mulSize(n int64, size ByteSize) ByteSize {
	if n > 0 && int64(size) > math.MaxInt64/n {
		return math.MaxInt64
	}
	return ByteSize(n * int64(size))
}

// FromEnv returns the variables whose values went into key (a path as
// errors name it: input.format, sinks[0].type), none when the value is the
// file's own text.
func (c *Config) FromEnv(key string) []string { return slices.Clone(c.fromEnv[key]) }

// HideExpanded replaces in s every value that was taken from the
// environment by the ${VAR} it came from: quoted ("value") anywhere, bare
// where it is not part of a longer word. It is for messages from other
// packages that may quote a config value; Validate never needs it.
func (c *Config) HideExpanded(s string) string {
	values := slices.Collect(maps.Keys(c.envValues))
	slices.SortFunc(values, func(a, b string) int { return len(b) - len(a) }) // longest first
	for _, v := range values {
		ref := "${" + c.envValues[v] + "}"
		s = strings.ReplaceAll(s, strconv.Quote(v), ref)
		s = replaceWord(s, v, ref)
	}
	return s
}

// replaceWord replaces old in s where no letter, digit or '_' touches it.
func replaceWord(s, old, repl string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, old)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(old)
		before, _ := utf8.DecodeLastRuneInString(s[:i])
		after, _ := utf8.DecodeRuneInString(s[end:])
		if isWordRune(before) || isWordRune(after) {
			b.WriteString(s[:end])
		} else {
			b.WriteString(s[:i])
			b.WriteString(repl)
		}
		s = s[end:]
	}
}

func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

// sameOrigin marks key as holding the value of from (a default copied from
// another key), so that it is hidden as that one is.
func (c *Config) sameOrigin(key, from string) {
	if vars := c.fromEnv[from]; len(vars) > 0 {
		c.fromEnv[key] = vars
	}
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
