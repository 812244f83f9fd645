package config

import (
	"strings"
	"testing"
	"time"
)

func TestSourcesDefaults(t *testing.T) {
	y := "sinks: [{type: discard}]\nsources:\n  - name: app\n    type: file\n    file: {include: [\"logs/**/*.jsonl\"]}\n"
	cfg, err := Decode([]byte(y), "c.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sources[0]
	f := s.File
	if s.Format != "auto" || f.StartAt != "beginning" || !*f.ReadExisting || f.Watch != "auto" ||
		f.ScanInterval != 10*time.Second || f.PartialLineTimeout != 5*time.Second || f.MaxOpenFiles != 1024 ||
		f.CloseInactive != 5*time.Minute || f.IdleTimeout != 30*time.Second || f.FingerprintBytes != 1024 {
		t.Fatalf("defaults: %+v %+v", s, *f)
	}
	if cfg.Run.StateDir != "out/state" || cfg.Run.CheckpointEvery != 5*time.Second || cfg.Run.ShutdownGrace != 30*time.Second {
		t.Fatalf("run defaults: %+v", cfg.Run)
	}
	// read_existing: false is kept (a pointer, so false is not "unset").
	y = strings.Replace(y, "include:", "read_existing: false, include:", 1)
	if cfg, err = Decode([]byte(y), "c.yaml", env(nil)); err != nil || *cfg.Sources[0].File.ReadExisting {
		t.Fatalf("read_existing false: %v", err)
	}
}

func TestSourcesErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"sources: [{type: file, file: {include: [a]}}]", "sources[0].name: must be set"},
		{"sources: [{name: a/b, type: file, file: {include: [a]}}]", "sources[0].name: "},
		{"sources: [{name: a, type: file, file: {include: [a]}}, {name: a, type: file, file: {include: [b]}}]", `sources[1].name: "a" is used twice`},
		{"sources: [{name: a, type: tcp}]", `sources[0].type: "tcp" is not a source type`},
		{"sources: [{name: a, type: file}]", "sources[0].file: must be set"},
		{"sources: [{name: a, type: file, file: {}}]", "sources[0].file.include: at least one glob"},
		{"sources: [{name: a, type: file, file: {include: ['a[']}}]", "sources[0].file.include[0]: \"a[\" is not a valid glob"},
		{"sources: [{name: a, type: file, file: {include: [a], start_at: middle}}]", "sources[0].file.start_at"},
		{"sources: [{name: a, type: file, file: {include: [a], max_open_files: 100000000}}]", "sources[0].file.max_open_files"},
		{"sources: [{name: a, type: file, file: {include: [a], fingerprint_bytes: 1MiB}}]", "sources[0].file.fingerprint_bytes"},
		{"sources: [{name: a, format: xml, type: file, file: {include: [a]}}]", "sources[0].format"},
		{"sources: [{name: a, type: file, parse: {jsonl: {trace_id: [a..b]}}, file: {include: [a]}}]", "sources[0].parse.jsonl.trace_id[0]"},
		{"run: {shutdown_grace: 1ms}", "run.shutdown_grace"},
		{"run: {checkpoint_every: 2h}", "run.checkpoint_every"},
		{"sources: [{name: a, type: file, file: {include: [a], tail: true}}]", "tail"},
	} {
		_, err := Decode([]byte("sinks: [{type: discard}]\n"+c.yaml+"\n"), "c.yaml", env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n  err = %v\n  want %q", c.yaml, err, c.want)
		}
	}
}

func TestStreamSourcesDefaults(t *testing.T) {
	y := `sinks: [{type: discard}]
sources:
  - name: k
    type: kafka
    kafka: {brokers: ["127.0.0.1:9092"], topics: [spans], sasl: {mechanism: plain, username: u, password: "${KPASS}"}}
  - name: r
    type: redis_stream
    redis_stream: {stream: traces, password: "${RPASS}"}
`
	cfg, err := Decode([]byte(y), "c.yaml", env(map[string]string{"KPASS": "k-secret", "RPASS": "r-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	k, r := cfg.Sources[0].Kafka, cfg.Sources[1].RedisStream
	if k.Group != "tracepipe" || k.StartOffset != "earliest" || k.MaxWait != 250*time.Millisecond ||
		k.SessionTimeout != 10*time.Second || k.ClientID != "tracepipe" || k.SASL.Password.Reveal() != "k-secret" {
		t.Fatalf("kafka defaults: %+v", *k)
	}
	if r.Addr != "127.0.0.1:6379" || r.Group != "tracepipe" || r.Consumer != "" || r.StartAt != "beginning" ||
		r.Count != 512 || r.ClaimIdle != time.Minute || r.MaxDeliveries != 5 || r.Password.Reveal() != "r-secret" {
		t.Fatalf("redis stream defaults: %+v", *r)
	}
}

func TestStreamSourcesErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"sources: [{name: a, type: kafka}]", "sources[0].kafka: must be set"},
		{"sources: [{name: a, type: kafka, kafka: {topics: [t]}}]", "sources[0].kafka.brokers"},
		{"sources: [{name: a, type: kafka, kafka: {brokers: [b]}}]", "topics or topic_regex must be set"},
		{"sources: [{name: a, type: kafka, kafka: {brokers: [b], topics: [t], topic_regex: x}}]", "set one of them"},
		{"sources: [{name: a, type: kafka, kafka: {brokers: [b], topics: ['a b']}}]", "sources[0].kafka.topics[0]"},
		{"sources: [{name: a, type: kafka, kafka: {brokers: [b], topic_regex: '('}}]", "sources[0].kafka.topic_regex"},
		{"sources: [{name: a, type: kafka, kafka: {brokers: [b], topics: [t], start_offset: middle}}]", "sources[0].kafka.start_offset"},
		{"sources: [{name: a, type: kafka, kafka: {brokers: [b], topics: [t], session_timeout: 4s}}]", "heartbeat_interval"},
		{"sources: [{name: a, type: kafka, kafka: {brokers: [b], topics: [t]}, file: {include: [a]}}]", "only the block of its type"},
		{"sources: [{name: a, type: redis_stream}]", "sources[0].redis_stream: must be set"},
		{"sources: [{name: a, type: redis_stream, redis_stream: {}}]", "sources[0].redis_stream.stream: must be set"},
		{"sources: [{name: a, type: redis_stream, redis_stream: {stream: s, max_deliveries: -1}}]", "sources[0].redis_stream.max_deliveries"},
		{"sources: [{name: a, type: redis_stream, redis_stream: {stream: s, start_at: middle}}]", "sources[0].redis_stream.start_at"},
		{"sources: [{name: a, type: redis_stream, redis_stream: {stream: s, claimidle: 1s}}]", "claimidle"},
	} {
		_, err := Decode([]byte("sinks: [{type: discard}]\n"+c.yaml+"\n"), "c.yaml", env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n  err = %v\n  want %q", c.yaml, err, c.want)
		}
	}
}
