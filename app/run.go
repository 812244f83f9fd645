package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/state"
	"github.com/tracepipe/tracepipe/internal/telemetry"
	"github.com/tracepipe/tracepipe/pipeline"
)

// RunOptions are what the command line adds to the config for `pipeline
// run`.
type RunOptions struct {
	Logger  *slog.Logger
	Version string
	// Reopen gets a value for each SIGHUP: the file sinks finish their
	// current files and start new ones.
	Reopen <-chan struct{}
	// Telemetry, when set, gets the job's instruments and readiness
	// checks; the caller starts and closes it.
	Telemetry *telemetry.Server
}

// ErrNoSources is returned when the config names no source to run.
var ErrNoSources = errors.New("run: the config has no sources (add a `sources:` list; `pipeline replay` reads paths given on the command line)")

// RunJob is `pipeline run`: the job fed by the config's sources until ctx
// is cancelled (SIGINT/SIGTERM). Then it drains: the sources stop reading,
// the batches read are handled and made durable (the runner's final
// barrier acks them), the windows still open are emitted, the sinks and
// the DLQ close, and the sources commit their positions, last, so a
// position is never ahead of what is durable. The caller bounds the drain
// (run.shutdown_grace). Positions are also committed every
// run.checkpoint_every while running. The report covers this process's
// life.
func RunJob(ctx context.Context, cfg *config.Config, o RunOptions) (*Report, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if len(cfg.Sources) == 0 {
		return nil, ErrNoSources
	}
	st, err := state.Open(cfg.Run.StateDir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if cfg.Windows.InstanceFromHost && len(cfg.Windows.Metrics) > 0 {
		// Two processes on one host must not write the same window rows:
		// each holds its own state_dir, whose id names it, the same across
		// restarts.
		id, err := st.InstanceID()
		if err != nil {
			return nil, err
		}
		c := *cfg
		c.Windows.Instance += "-" + id
		cfg = &c
	}
	j, err := newJob(ctx, cfg, log, o.Version)
	if err != nil {
		return nil, err
	}
	srcs, err := openSources(ctx, cfg, j, st, log)
	if err != nil {
		_ = j.close(context.WithoutCancel(ctx))
		return nil, err
	}

	reopenDone := make(chan struct{})
	go func() {
		for {
			select {
			case <-o.Reopen:
				j.reopen()
			case <-reopenDone:
				return
			}
		}
	}()

	start := time.Now()
	// The checkpoint age counts from the start until the first commit.
	j.lastCommit.Store(start.UnixNano())
	if o.Telemetry != nil {
		err := j.observe(o.Telemetry, telemetryInputs{
			sources: srcs, bytesRead: func() int64 { return bytesRead(srcs) }, bytesIn: func() int64 { return bytesRead(srcs) },
			checkpoints: true, readyGrace: cfg.Telemetry.ReadyGrace,
		})
		if err != nil {
			close(reopenDone)
			_ = j.close(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	log.Info("run: started", "sources", len(srcs), "state_dir", cfg.Run.StateDir, "instance", cfg.Windows.Instance)
	stopPhase := j.running(ctx)
	res := j.feed(ctx, context.WithoutCancel(ctx), srcs, cfg.Run.CheckpointEvery)
	close(reopenDone)

	errs := []error{res.Err}
	if err := j.close(context.WithoutCancel(ctx)); err != nil {
		errs = append(errs, err)
	}
	// Last: the windows are emitted and every sink closed, so every acked
	// position may be committed.
	if err := j.commit(context.WithoutCancel(ctx), srcs); err != nil {
		errs = append(errs, err)
	}
	// Then a source that holds a membership (a Kafka consumer group,
	// kept for that final commit) lets it go, and a Redis source closes
	// the connection it kept for it.
	for _, s := range srcs {
		if c, ok := s.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("source %s: close: %w", s.Name(), err))
			}
		}
	}
	stopPhase()
	rep := &Report{Job: "run", DLQFull: res.DLQFull}
	read := bytesRead(srcs)
	for _, s := range srcs {
		if c, ok := s.(interface{ FilesFollowed() int64 }); ok {
			rep.Files += int(c.FilesFollowed())
		}
	}
	// A followed file is plain text: what was read is what was parsed
	// (a rotated archive read whole counts its compressed bytes).
	if err := j.report(rep, read, read, time.Since(start)); err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

// bytesRead sums what the sources that count it read.
func bytesRead(srcs []pipeline.Source) int64 {
	var n int64
	for _, s := range srcs {
		if c, ok := s.(interface{ BytesRead() int64 }); ok {
			n += c.BytesRead()
		}
	}
	return n
}

// reopen finishes every file sink's current file (SIGHUP).
func (j *job) reopen() {
	n := 0
	for _, f := range j.fileSinks {
		if err := f.Reopen(); err != nil {
			j.log.Error("reopen failed", "sink", f.Name(), "err", err)
			continue
		}
		n++
	}
	j.log.Info("SIGHUP: output files reopened", "file_sinks", n)
}

// openSources builds the config's sources, in order, each with its
// checkpoint in st.
func openSources(ctx context.Context, cfg *config.Config, j *job, st *state.Dir, log *slog.Logger) ([]pipeline.Source, error) {
	var out []pipeline.Source
	for i, sc := range cfg.Sources {
		s, err := openSource(ctx, cfg, i, sc, j, st, log)
		if err != nil {
			for _, o := range out { // what the opened ones hold (a connection)
				if c, ok := o.(io.Closer); ok {
					_ = c.Close()
				}
			}
			return nil, fmt.Errorf("source %s: %w", sc.Name, err)
		}
		out = append(out, s)
	}
	return out, nil
}
