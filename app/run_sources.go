package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/state"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sources/kafka"
	"github.com/tracepipe/tracepipe/sources/tail"
)

// openSource builds source i of the config (sc), with its checkpoint in st.
func openSource(ctx context.Context, cfg *config.Config, i int, sc config.Source, j *job, st *state.Dir, log *slog.Logger) (pipeline.Source, error) {
	format, _ := pipeline.ParseFormat(sc.Format)
	switch sc.Type {
	case "file":
		return tail.New(sc.Name, *sc.File, tail.Options{
			Origin:       pipeline.Origin{Format: format, Mapping: j.mapping[i], Source: sc.Name},
			Detect:       parsers.Detect,
			IDs:          &j.ids,
			Events:       j.events(ctx),
			State:        st,
			BatchUnits:   cfg.Pipeline.BatchUnits,
			BatchBytes:   int(cfg.Pipeline.BatchBytes),
			MaxLineBytes: int(cfg.Input.MaxLineBytes.For(sc.Format)),
			KeepBytes:    keepBytes(cfg),
			Logger:       log,
		})
	case "kafka":
		return kafka.New(sc.Name, *sc.Kafka, kafka.Options{
			Origin:       pipeline.Origin{Format: format, Mapping: j.mapping[i], Source: sc.Name},
			Detect:       parsers.Detect,
			IDs:          &j.ids,
			Events:       j.events(ctx),
			BatchUnits:   cfg.Pipeline.BatchUnits,
			BatchBytes:   int(cfg.Pipeline.BatchBytes),
			MaxLineBytes: int(cfg.Input.MaxLineBytes.For(sc.Format)),
			KeepBytes:    keepBytes(cfg),
			Logger:       log,
		})
	case "redis_stream":
		return openRedisStream(cfg, i, sc, j, log)
	}
	return nil, fmt.Errorf("unknown source type %q", sc.Type)
}
