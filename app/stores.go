package app

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/pipeline/dlq/kafkadlq"
	"github.com/tracepipe/tracepipe/pipeline/dlq/redisdlq"
)

// OpenDLQStore opens the configured DLQ backend's store, and says where it
// is (never with a password).
func OpenDLQStore(cfg *config.Config, log *slog.Logger) (dlq.StepStore, string, error) {
	switch cfg.DLQ.Type {
	case "file":
		s, err := dlq.OpenFileStore(cfg.DLQ.File.Dir, CorruptLogger(log))
		if err != nil {
			return nil, "", err
		}
		return s, cfg.DLQ.File.Dir, nil
	}
	return openRemoteDLQStore(cfg, log)
}

// CorruptLogger logs the DLQ lines a reader skipped as corrupt.
func CorruptLogger(log *slog.Logger) func(dlq.Corruption) {
	return func(c dlq.Corruption) {
		log.Warn("dlq: skipped a corrupt line", "segment", c.Segment, "offset", c.Offset, "reason", c.Reason)
	}
}

// openRemoteDLQStore opens a redis or kafka DLQ's store. Entries that fell
// back to the local file DLQ (dlq.file.dir) while the backend was down are
// part of it: ls, stats, replay and purge see them too.
func openRemoteDLQStore(cfg *config.Config, log *slog.Logger) (dlq.StepStore, string, error) {
	remote, where, err := openRemoteOnly(cfg, log)
	if err != nil {
		return nil, "", err
	}
	m := &dlq.Multi{Remote: remote}
	if cfg.DLQ.File != nil && cfg.DLQ.File.Dir != "" {
		if fb, err := dlq.OpenFileStore(cfg.DLQ.File.Dir, CorruptLogger(log)); err == nil {
			m.Fallback = fb
			where += " (and its fallback " + cfg.DLQ.File.Dir + ")"
		}
	}
	return m, where, nil
}

func openRemoteOnly(cfg *config.Config, log *slog.Logger) (dlq.StepStore, string, error) {
	switch cfg.DLQ.Type {
	case "kafka":
		s, err := kafkadlq.OpenStore(*cfg.DLQ.Kafka, log)
		if err != nil {
			if errors.Is(err, kafkadlq.ErrTopicMissing) {
				err = fmt.Errorf("%w (no entry was ever written there)", err)
			}
			return nil, "", err
		}
		return s, "kafka topic " + cfg.DLQ.Kafka.Topic, nil
	case "redis":
		redisconn.RouteLibraryLogs(log)
		s, err := redisdlq.OpenStore(*cfg.DLQ.Redis, log)
		if err != nil {
			return nil, "", err
		}
		return s, "redis stream " + cfg.DLQ.Redis.Stream + " at " + cfg.DLQ.Redis.Addr, nil
	}
	return nil, "", fmt.Errorf("dlq: unknown type %q", cfg.DLQ.Type)
}
