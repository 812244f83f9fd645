package config

import (
	"maps"
	"regexp"
	"slices"
	"time"
)

func (s *Sink) applyDefaults() {
	setInt(&s.Queue, 64)
	if k := s.Kafka; k != nil {
		k.Kafka.applyDefaults()
		setStr(&k.Compression, "snappy")
		setStr(&k.RequiredAcks, "all")
		setInt(&k.BatchSize, 1000)
		setSize(&k.BatchBytes, 1<<20)
		// Linger stays 0 (send at once): Write waits for the acks, so a
		// linger is added to every batch (10 ms caps a worker at ~40k
		// records/s, bench/README.md).
	}
	if r := s.RedisStream; r != nil {
		r.Redis.applyDefaults()
		setStr(&r.Stream, "tracepipe:records")
	}
}

func (k *Kafka) applyDefaults() {
	setStr(&k.ClientID, "tracepipe")
	if k.Timeout == 0 {
		k.Timeout = 10 * time.Second
	}
}

// applyDefaults fills the top-level policy.
func (r *Retry) applyDefaults() {
	if r.Initial == 0 {
		r.Initial = 100 * time.Millisecond
	}
	if r.Multiplier == 0 {
		r.Multiplier = 2
	}
	if r.MaxInterval == 0 {
		r.MaxInterval = 10 * time.Second
	}
	setInt(&r.MaxAttempts, 8)
	if r.MaxElapsed == 0 {
		r.MaxElapsed = time.Minute
	}
	if r.Budget.Ratio == 0 {
		r.Budget.Ratio = 0.1
	}
	if r.Budget.MinPerSecond == 0 {
		r.Budget.MinPerSecond = 10
	}
	setInt(&r.Breaker.Failures, 5)
	if r.Breaker.OpenFor == 0 {
		r.Breaker.OpenFor = 10 * time.Second
	}
}

// RetryFor returns the policy of sink s: its own retry block over the
// top-level one, field by field.
func (c *Config) RetryFor(s *Sink) Retry {
	r := c.Retry
	o := s.Retry
	if o == nil {
		return r
	}
	if o.Initial != 0 {
		r.Initial = o.Initial
	}
	if o.Multiplier != 0 {
		r.Multiplier = o.Multiplier
	}
	if o.MaxInterval != 0 {
		r.MaxInterval = o.MaxInterval
	}
	if o.MaxAttempts != 0 {
		r.MaxAttempts = o.MaxAttempts
	}
	if o.MaxElapsed != 0 {
		r.MaxElapsed = o.MaxElapsed
	}
	if o.Budget.Ratio != 0 {
		r.Budget.Ratio = o.Budget.Ratio
	}
	if o.Budget.MinPerSecond != 0 {
		r.Budget.MinPerSecond = o.Budget.MinPerSecond
	}
	if o.Breaker.Failures != 0 {
		r.Breaker.Failures = o.Breaker.Failures
	}
	if o.Breaker.OpenFor != 0 {
		r.Breaker.OpenFor = o.Breaker.OpenFor
	}
	if len(o.Codes) > 0 {
		codes := make(map[string]string, len(r.Codes)+len(o.Codes))
		for k, v := range r.Codes {
			codes[k] = v
		}
		for k, v := range o.Codes {
			codes[k] = v
		}
		r.Codes = codes
	}
	return r
}

func (d *Dedupe) applyDefaults() {
	if d.TTL == 0 {
		d.TTL = 24 * time.Hour
	}
	setStr(&d.Store, "memory")
	setInt(&d.MaxKeys, 1_000_000)
	if d.Store == "redis" && d.Redis == nil {
		d.Redis = &DedupeRedis{}
	}
	if r := d.Redis; r != nil {
		r.Redis.applyDefaults()
		setStr(&r.KeyPrefix, "tracepipe:dd:")
	}
}

func (d *Dedupe) validate(v *check) {
	v.positive("dedupe.ttl", int64(d.TTL))
	v.oneOf("dedupe.store", d.Store, "memory", "redis")
	v.positive("dedupe.max_keys", int64(d.MaxKeys))
	atMost(v, "dedupe.max_keys", d.MaxKeys, maxDedupeKeys)
	if d.Store == "redis" && d.Redis != nil {
		d.Redis.Redis.validate("dedupe.redis", v)
	}
	if d.Store != "redis" && d.Redis != nil {
		v.bad("dedupe.redis: only for store redis")
	}
}

func (d *DLQ) applyDefaults() {
	if r := d.Redis; r != nil {
		r.Redis.applyDefaults()
		setStr(&r.Stream, "tracepipe:dlq")
		if r.MaxLen == 0 {
			r.MaxLen = 1_000_000
		}
		setStr(&r.Group, "dlq-processors")
	}
	if k := d.Kafka; k != nil {
		k.Kafka.applyDefaults()
		setStr(&k.Topic, "tracepipe-dlq")
	}
	setStr(&d.Redact.Mode, "remove")
}

// sinkName is what a sink may be called: its name goes into file names,
// metric labels and the DLQ entries' list of sinks (comma separated in
// Kafka headers and Redis fields).
var sinkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (s *Sink) validate(key string, v *check) {
	blocks := map[string]bool{"file": s.File != nil, "kafka": s.Kafka != nil, "redis_stream": s.RedisStream != nil}
	for _, name := range []string{"file", "kafka", "redis_stream"} {
		if blocks[name] && name != s.Type {
			v.bad("%s.%s: only for type %s", key, name, name)
		}
	}
	if !sinkName.MatchString(s.Name) {
		v.bad("%s.name: %q must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit", key, v.val(key+".name", s.Name))
	}
	v.positive(key+".queue", int64(s.Queue))
	atMost(v, key+".queue", s.Queue, maxQueue)
	switch s.Type {
	case "file":
		if s.File == nil || s.File.Dir == "" {
			v.bad("%s.file.dir: must be set for a file sink", key)
		} else {
			v.positive(key+".file.rotate_bytes", int64(s.File.RotateBytes))
			atMost(v, key+".file.rotate_bytes", s.File.RotateBytes, maxRotateBytes)
		}
	case "discard", "stdout":
	case "kafka":
		if s.Kafka == nil {
			v.bad("%s.kafka: must be set for a kafka sink", key)
			break
		}
		s.Kafka.Kafka.validate(key+".kafka", v)
		if s.Kafka.Topic == "" {
			v.bad("%s.kafka.topic: must be set", key)
		}
		v.oneOf(key+".kafka.compression", s.Kafka.Compression, "none", "gzip", "snappy", "lz4", "zstd")
		v.oneOf(key+".kafka.required_acks", s.Kafka.RequiredAcks, "all", "one", "none")
		v.positive(key+".kafka.batch_size", int64(s.Kafka.BatchSize))
		atMost(v, key+".kafka.batch_size", s.Kafka.BatchSize, maxKafkaBatch)
		v.positive(key+".kafka.batch_bytes", int64(s.Kafka.BatchBytes))
		atMost(v, key+".kafka.batch_bytes", s.Kafka.BatchBytes, maxKafkaBytes)
		if s.Kafka.Linger < 0 {
			v.bad("%s.kafka.linger: must not be negative", key)
		}
	case "redis_stream":
		if s.RedisStream == nil {
			v.bad("%s.redis_stream: must be set for a redis_stream sink", key)
			break
		}
		s.RedisStream.Redis.validate(key+".redis_stream", v)
		if s.RedisStream.Stream == "" {
			v.bad("%s.redis_stream.stream: must be set", key)
		}
		if s.RedisStream.MaxLen < 0 {
			v.bad("%s.redis_stream.maxlen: must not be negative", key)
		}
	default:
		v.bad("%s.type: %q is not one of file, stdout, discard, kafka, redis_stream", key, v.val(key+".type", s.Type))
	}
	if s.Retry != nil {
		s.Retry.validateOverride(key+".retry", v)
	}
}

func (k *Kafka) validate(key string, v *check) {
	if len(k.Brokers) == 0 {
		v.bad("%s.brokers: at least one broker is needed", key)
	}
	for i, b := range k.Brokers {
		if b == "" {
			v.bad("%s.brokers[%d]: empty", key, i)
		}
	}
	v.positive(key+".timeout", int64(k.Timeout))
	if a := k.SASL; a != nil {
		v.oneOf(key+".sasl.mechanism", a.Mechanism, "plain", "scram-sha-256", "scram-sha-512")
		if a.Username == "" {
			v.bad("%s.sasl.username: must be set", key)
		}
	}
}

func (r *Retry) validate(key string, v *check) {
	v.positive(key+".initial", int64(r.Initial))
	if r.Multiplier < 1 {
		v.bad("%s.multiplier: %g must be at least 1", key, v.val(key+".multiplier", r.Multiplier))
	}
	if r.MaxInterval < r.Initial {
		v.bad("%s.max_interval: %s is below initial %s", key, v.val(key+".max_interval", r.MaxInterval), v.val(key+".initial", r.Initial))
	}
	v.positive(key+".max_attempts", int64(r.MaxAttempts))
	atMost(v, key+".max_attempts", r.MaxAttempts, maxAttempts)
	v.positive(key+".max_elapsed", int64(r.MaxElapsed))
	if r.Budget.Ratio < 0 || r.Budget.Ratio > 1 {
		v.bad("%s.budget.ratio: %g is outside 0..1", key, v.val(key+".budget.ratio", r.Budget.Ratio))
	}
	if r.Budget.MinPerSecond < 0 {
		v.bad("%s.budget.min_per_second: must not be negative", key)
	}
	v.positive(key+".breaker.failures", int64(r.Breaker.Failures))
	v.positive(key+".breaker.open_for", int64(r.Breaker.OpenFor))
	r.validateCodes(key, v)
}

// validateOverride checks a sink's retry block: unset fields are taken
// from the top level, set ones must be valid.
func (r *Retry) validateOverride(key string, v *check) {
	neg := func(k string, n int64) {
		if n < 0 {
			v.bad("%s.%s: must not be negative", key, k)
		}
	}
	neg("initial", int64(r.Initial))
	neg("max_interval", int64(r.MaxInterval))
	neg("max_attempts", int64(r.MaxAttempts))
	atMost(v, key+".max_attempts", r.MaxAttempts, maxAttempts)
	neg("max_elapsed", int64(r.MaxElapsed))
	neg("breaker.failures", int64(r.Breaker.Failures))
	neg("breaker.open_for", int64(r.Breaker.OpenFor))
	if r.Multiplier != 0 && r.Multiplier < 1 {
		v.bad("%s.multiplier: %g must be at least 1", key, v.val(key+".multiplier", r.Multiplier))
	}
	if r.Budget.Ratio < 0 || r.Budget.Ratio > 1 {
		v.bad("%s.budget.ratio: %g is outside 0..1", key, v.val(key+".budget.ratio", r.Budget.Ratio))
	}
	r.validateCodes(key, v)
}

func (r *Retry) validateCodes(key string, v *check) {
	for _, code := range slices.Sorted(maps.Keys(r.Codes)) {
		if d := r.Codes[code]; d != "retry" && d != "permanent" {
			k := key + ".codes." + code
			v.bad("%s: %q is not one of retry, permanent", k, v.val(k, d))
		}
	}
}

func (d *DLQ) validate(v *check) {
	switch d.Type {
	case "redis":
		if d.Redis == nil {
			v.bad("dlq.redis: must be set for type redis")
			break
		}
		d.Redis.Redis.validate("dlq.redis", v)
		if d.Redis.Stream == "" {
			v.bad("dlq.redis.stream: must be set")
		}
		v.positive("dlq.redis.maxlen", d.Redis.MaxLen)
		if d.Redis.Group == "" {
			v.bad("dlq.redis.group: must be set")
		}
	case "kafka":
		if d.Kafka == nil {
			v.bad("dlq.kafka: must be set for type kafka")
			break
		}
		d.Kafka.Kafka.validate("dlq.kafka", v)
		if d.Kafka.Topic == "" {
			v.bad("dlq.kafka.topic: must be set")
		}
	}
	if d.Type != "redis" && d.Redis != nil {
		v.bad("dlq.redis: only for type redis")
	}
	if d.Type != "kafka" && d.Kafka != nil {
		v.bad("dlq.kafka: only for type kafka")
	}
	v.oneOf("dlq.redact.mode", d.Redact.Mode, "remove", "hash")
	for i, f := range d.Redact.Fields {
		if f == "" {
			v.bad("dlq.redact.fields[%d]: empty field", i)
		}
	}
}
