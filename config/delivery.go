package config

import (
	"fmt"
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

func (d *Dedupe) validate(bad func(string, ...any), oneOf func(string, string, ...string), positive func(string, int64)) {
	positive("dedupe.ttl", int64(d.TTL))
	oneOf("dedupe.store", d.Store, "memory", "redis")
	positive("dedupe.max_keys", int64(d.MaxKeys))
	if d.Store == "redis" && d.Redis != nil {
		d.Redis.Redis.validate("dedupe.redis", bad, positive)
	}
	if d.Store != "redis" && d.Redis != nil {
		bad("dedupe.redis: only for store redis")
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

func (s *Sink) validate(key string, bad func(string, ...any), oneOf func(string, string, ...string), positive func(string, int64)) {
	blocks := map[string]bool{"file": s.File != nil, "kafka": s.Kafka != nil, "redis_stream": s.RedisStream != nil}
	for name, set := range blocks {
		if set && name != s.Type {
			bad("%s.%s: only for type %s", key, name, name)
		}
	}
	positive(key+".queue", int64(s.Queue))
	switch s.Type {
	case "file":
		if s.File == nil || s.File.Dir == "" {
			bad("%s.file.dir: must be set for a file sink", key)
		} else {
			positive(key+".file.rotate_bytes", int64(s.File.RotateBytes))
		}
	case "discard":
	case "kafka":
		if s.Kafka == nil {
			bad("%s.kafka: must be set for a kafka sink", key)
			break
		}
		s.Kafka.Kafka.validate(key+".kafka", bad, oneOf, positive)
		if s.Kafka.Topic == "" {
			bad("%s.kafka.topic: must be set", key)
		}
		oneOf(key+".kafka.compression", s.Kafka.Compression, "none", "gzip", "snappy", "lz4", "zstd")
		oneOf(key+".kafka.required_acks", s.Kafka.RequiredAcks, "all", "one", "none")
		positive(key+".kafka.batch_size", int64(s.Kafka.BatchSize))
		positive(key+".kafka.batch_bytes", int64(s.Kafka.BatchBytes))
		if s.Kafka.Linger < 0 {
			bad("%s.kafka.linger: must not be negative", key)
		}
	case "redis_stream":
		if s.RedisStream == nil {
			bad("%s.redis_stream: must be set for a redis_stream sink", key)
			break
		}
		s.RedisStream.Redis.validate(key+".redis_stream", bad, positive)
		if s.RedisStream.Stream == "" {
			bad("%s.redis_stream.stream: must be set", key)
		}
		if s.RedisStream.MaxLen < 0 {
			bad("%s.redis_stream.maxlen: must not be negative", key)
		}
	default:
		bad("%s.type: %q is not one of file, discard, kafka, redis_stream", key, s.Type)
	}
	if s.Retry != nil {
		s.Retry.validateOverride(key+".retry", bad)
	}
}

func (k *Kafka) validate(key string, bad func(string, ...any), oneOf func(string, string, ...string), positive func(string, int64)) {
	if len(k.Brokers) == 0 {
		bad("%s.brokers: at least one broker is needed", key)
	}
	for i, b := range k.Brokers {
		if b == "" {
			bad("%s.brokers[%d]: empty", key, i)
		}
	}
	positive(key+".timeout", int64(k.Timeout))
	if a := k.SASL; a != nil {
		oneOf(key+".sasl.mechanism", a.Mechanism, "plain", "scram-sha-256", "scram-sha-512")
		if a.Username == "" {
			bad("%s.sasl.username: must be set", key)
		}
	}
}

func (r *Retry) validate(key string, bad func(string, ...any), positive func(string, int64)) {
	positive(key+".initial", int64(r.Initial))
	if r.Multiplier < 1 {
		bad("%s.multiplier: %g must be at least 1", key, r.Multiplier)
	}
	if r.MaxInterval < r.Initial {
		bad("%s.max_interval: %s is below initial %s", key, r.MaxInterval, r.Initial)
	}
	positive(key+".max_attempts", int64(r.MaxAttempts))
	positive(key+".max_elapsed", int64(r.MaxElapsed))
	if r.Budget.Ratio < 0 || r.Budget.Ratio > 1 {
		bad("%s.budget.ratio: %g is outside 0..1", key, r.Budget.Ratio)
	}
	if r.Budget.MinPerSecond < 0 {
		bad("%s.budget.min_per_second: must not be negative", key)
	}
	positive(key+".breaker.failures", int64(r.Breaker.Failures))
	positive(key+".breaker.open_for", int64(r.Breaker.OpenFor))
	r.validateCodes(key, bad)
}

// validateOverride checks a sink's retry block: unset fields are taken
// from the top level, set ones must be valid.
func (r *Retry) validateOverride(key string, bad func(string, ...any)) {
	neg := func(k string, v int64) {
		if v < 0 {
			bad("%s.%s: must not be negative", key, k)
		}
	}
	neg("initial", int64(r.Initial))
	neg("max_interval", int64(r.MaxInterval))
	neg("max_attempts", int64(r.MaxAttempts))
	neg("max_elapsed", int64(r.MaxElapsed))
	neg("breaker.failures", int64(r.Breaker.Failures))
	neg("breaker.open_for", int64(r.Breaker.OpenFor))
	if r.Multiplier != 0 && r.Multiplier < 1 {
		bad("%s.multiplier: %g must be at least 1", key, r.Multiplier)
	}
	if r.Budget.Ratio < 0 || r.Budget.Ratio > 1 {
		bad("%s.budget.ratio: %g is outside 0..1", key, r.Budget.Ratio)
	}
	r.validateCodes(key, bad)
}

func (r *Retry) validateCodes(key string, bad func(string, ...any)) {
	for code, d := range r.Codes {
		if d != "retry" && d != "permanent" {
			bad("%s.codes.%s: %q is not one of retry, permanent", key, code, d)
		}
	}
}

func (d *DLQ) validate(bad func(string, ...any), oneOf func(string, string, ...string), positive func(string, int64)) {
	switch d.Type {
	case "redis":
		if d.Redis == nil {
			bad("dlq.redis: must be set for type redis")
			break
		}
		d.Redis.Redis.validate("dlq.redis", bad, positive)
		if d.Redis.Stream == "" {
			bad("dlq.redis.stream: must be set")
		}
		positive("dlq.redis.maxlen", d.Redis.MaxLen)
		if d.Redis.Group == "" {
			bad("dlq.redis.group: must be set")
		}
	case "kafka":
		if d.Kafka == nil {
			bad("dlq.kafka: must be set for type kafka")
			break
		}
		d.Kafka.Kafka.validate("dlq.kafka", bad, oneOf, positive)
		if d.Kafka.Topic == "" {
			bad("dlq.kafka.topic: must be set")
		}
	}
	if d.Type != "redis" && d.Redis != nil {
		bad("dlq.redis: only for type redis")
	}
	if d.Type != "kafka" && d.Kafka != nil {
		bad("dlq.kafka: only for type kafka")
	}
	oneOf("dlq.redact.mode", d.Redact.Mode, "remove", "hash")
	for i, f := range d.Redact.Fields {
		if f == "" {
			bad("%s: empty field", fmt.Sprintf("dlq.redact.fields[%d]", i))
		}
	}
}
