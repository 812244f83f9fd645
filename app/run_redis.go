package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/pipeline/dlq/redisdlq"
	"github.com/tracepipe/tracepipe/sources/redisstream"
)

// Poison entries (delivered more than max_deliveries times) are dead-
// lettered with this class and code: the entry itself may be fine; what is
// known is that processing it never completed.
const (
	poisonClass = pipeline.ClassInvalid
	poisonCode  = "max_deliveries"
)

// openRedisStream builds a redis_stream source: the job's origin ids,
// events and batch sizes, and the hook that dead-letters poison entries.
func openRedisStream(cfg *config.Config, i int, sc config.Source, j *job, log *slog.Logger) (pipeline.Source, error) {
	format, _ := pipeline.ParseFormat(sc.Format)
	redisconn.RouteLibraryLogs(log)
	poison, err := poisonHook(cfg, *sc.RedisStream, j, log)
	if err != nil {
		return nil, err
	}
	return redisstream.New(sc.Name, *sc.RedisStream, redisstream.Options{
		Origin:       pipeline.Origin{Format: format, Mapping: j.mapping[i], Source: sc.Name},
		Detect:       parsers.Detect,
		IDs:          &j.ids,
		Events:       j.events(context.Background()),
		Poison:       poison,
		BatchUnits:   cfg.Pipeline.BatchUnits,
		BatchBytes:   int(cfg.Pipeline.BatchBytes),
		MaxLineBytes: int(cfg.Input.MaxLineBytes.For(sc.Format)),
		KeepBytes:    keepBytes(cfg),
		Logger:       log,
	})
}

// mover is the atomic move of the Redis DLQ backend (redisdlq.Backend).
type mover interface {
	Move(ctx context.Context, srcStream, group, streamID string, e *dlq.Entry) error
}

// poisonHook returns what the source calls for a poison entry. With the
// Redis DLQ on the stream's own server (same address and database) it
// moves the entry atomically: XADD to the DLQ stream and XACK in one
// script. Otherwise it puts a DLQ entry and syncs it, and the source then
// XACKs: two systems, so a crash between the two writes the entry to the
// DLQ a second time (same stream id) when the entry is claimed again.
//
// Entries put that way count as DLQ entries that stand for no input
// record of this run (Accounting.DLQOther), since a poison entry is never
// read into a batch: the report's record invariant holds. Moved entries
// are not in the DLQ backend's counts (redisdlq counts them in Moved).
func poisonHook(cfg *config.Config, rs config.RedisStreamSource, j *job, log *slog.Logger) (func(context.Context, redisstream.Poisoned) (bool, error), error) {
	redact, err := Redaction(cfg)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	mv, atomic := j.backend.(mover)
	if atomic && (cfg.DLQ.Redis == nil || cfg.DLQ.Redis.Addr != rs.Addr || cfg.DLQ.Redis.DB != rs.DB) {
		atomic = false
		log.Info("redis stream source: the Redis DLQ is on another server: poison entries are written to it, then acknowledged (not atomic)", "source_addr", rs.Addr)
	}
	return func(ctx context.Context, p redisstream.Poisoned) (bool, error) {
		now := time.Now().UTC()
		e := &dlq.Entry{
			Version: dlq.SchemaVersion, ID: dlq.NewID(now), Time: now,
			Source: dlq.Source{Kind: redisstream.Kind, Stream: p.Stream, StreamID: p.ID},
			Stage:  "read", Component: "redis_stream", Host: host,
			Error: dlq.Error{Class: string(poisonClass), Code: poisonCode,
				Message: fmt.Sprintf("delivered %d times (max_deliveries %d) without being acknowledged", p.Deliveries, rs.MaxDeliveries)},
			Attempts: int(p.Deliveries), FirstFailure: now, LastFailure: now,
		}
		payload, size := p.Payload, int64(len(p.Payload))
		if redact != nil {
			if out, changed := redact(payload); changed {
				payload, e.Redacted = out, true
			}
		}
		e.SetPayload(payload, size, int(cfg.DLQ.KeepBytes))
		if atomic {
			err := mv.Move(ctx, p.Stream, p.Group, p.ID, e)
			if errors.Is(err, redisdlq.ErrNotPending) {
				return true, nil // moved or acknowledged already
			}
			return true, err
		}
		if err := j.backend.Put(ctx, e); err != nil {
			return false, err
		}
		a := j.runner.Accounting()
		a.DLQSent[pipeline.ClassIndex(poisonClass)].Add(1)
		a.DLQOther.Add(1)
		return false, j.backend.Sync(ctx)
	}, nil
}
