package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dedupe"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/pipeline/stages"
	"github.com/tracepipe/tracepipe/pipeline/windows"
	"github.com/tracepipe/tracepipe/sinks"
)

// job is the pipeline a config describes: parse, filter and windows
// stages, the sinks with their retry policies (and dedupe), the DLQ, and
// the runner over them. A file replay and a DLQ replay differ only in what
// feeds the runner.
type job struct {
	cfg         *config.Config
	log         *slog.Logger
	sinks       []pipeline.Sink
	closeDedupe func() error
	backend     dlq.Backend
	dlq         *dlq.Recorder
	win         *windows.Windows // nil without metrics
	winSink     windows.RowWriter
	retriers    []*pipeline.Retrier
	runner      *pipeline.Runner
	recovered   []RecoveredFile // what the file sinks found left by a dead process
	fileSinks   []*sinks.File   // the file sinks (under dedupe, if on): SIGHUP reopens them
	mapping     []int           // per config source: its Origin.Mapping (0: the top-level parse section)
	ids         pipeline.OriginIDs

	// For telemetry (telemetry.go): the file DLQ (the backend, or the
	// remote backend's fallback) whose size is reported against its cap;
	// when every source last committed (Unix ns); the state of each source
	// feed runs (nil without telemetry); and the job's phase.
	dlqFile    *dlq.File
	lastCommit atomic.Int64
	srcHealth  []sourceHealth
	phase      atomic.Int32
}

// newJob builds the job; on error it closes what it had opened.
func newJob(ctx context.Context, cfg *config.Config, log *slog.Logger, version string) (_ *job, err error) {
	j := &job{cfg: cfg, log: log, closeDedupe: func() error { return nil }}
	defer func() {
		if err != nil {
			_ = j.close(context.WithoutCancel(ctx))
		}
	}()
	popts, err := ParserOptions(cfg)
	if err != nil {
		return nil, err
	}
	// A source with its own field mapping gets its own option set: the
	// parse stage picks it by Origin.Mapping.
	mappings := []*parsers.Options{popts}
	j.mapping = make([]int, len(cfg.Sources))
	for i, s := range cfg.Sources {
		if s.Parse == nil {
			continue
		}
		o, err := sourceParserOptions(cfg, i)
		if err != nil {
			return nil, err
		}
		j.mapping[i] = len(mappings)
		mappings = append(mappings, o)
	}
	// The dedupe store first: a file sink recovering what a dead process
	// wrote marks those records before the file is renamed, so a process
	// killed in between finds the .part again and marks them then.
	dd, closeDD, err := openDedupe(cfg)
	if err != nil {
		return nil, err
	}
	j.closeDedupe = closeDD
	var recovering func(sink, part string) error
	if dd != nil {
		recovering = func(sink, part string) error {
			n, err := markFile(ctx, dd, sink, part)
			if err != nil {
				return fmt.Errorf("dedupe: mark the records of %s: %w", part, err)
			}
			log.Info("dedupe: marked the records of a file a dead process wrote, so they are not written again", "sink", sink, "file", part, "records", n)
			return nil
		}
	}
	built, err := buildSinks(cfg, log, recovering)
	if err != nil {
		return nil, err
	}
	j.recovered = recoveredFiles(built)
	for _, s := range built {
		if f, ok := s.(*sinks.File); ok {
			j.fileSinks = append(j.fileSinks, f)
		}
	}
	j.sinks = wrapSinks(built, dd)
	if j.backend, j.dlqFile, err = openDLQ(cfg, log); err != nil {
		return nil, err
	}
	stageList := []pipeline.Stage{parsers.NewStage(mappings...)}
	if f := stages.NewFilter(cfg.Filter.IncludeServices, cfg.Filter.ExcludeServices); f != nil {
		stageList = append(stageList, f)
	}
	if j.win, j.winSink, err = openWindows(cfg, log, func(ctx context.Context, rows []windows.Row, err error) {
		WindowRowsFailed(ctx, j.runner, winSinkName(cfg), rows, err)
	}); err != nil {
		return nil, err
	}
	if j.win != nil {
		stageList = append(stageList, j.win)
	}
	delivery, retriers, err := Delivery(cfg)
	if err != nil {
		return nil, err
	}
	j.retriers = retriers
	redact, err := Redaction(cfg)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	j.dlq = dlq.NewRecorder(j.backend, dlq.RecorderOptions{
		Host: host, Version: version, KeepBytes: int(cfg.DLQ.KeepBytes), Redact: redact,
	})
	// With dedupe on, the DLQ is idempotent too: a bad line read again
	// after a restart is not dead-lettered twice.
	var dead pipeline.DeadLetters = j.dlq
	if dd != nil {
		d := dedupe.WrapDLQ(j.dlq, dd)
		if cfg.DLQ.File != nil && cfg.DLQ.Type == "file" {
			if err := markDLQRecovered(ctx, d, cfg.DLQ.File.Dir); err != nil {
				return nil, err
			}
		}
		dead = d
	}
	j.runner = pipeline.NewRunner(pipeline.RunnerOptions{
		Workers:    cfg.Pipeline.Workers,
		Stages:     stageList,
		Sinks:      j.sinks,
		Delivery:   delivery,
		DLQ:        dead,
		FlushEvery: cfg.Pipeline.FlushEvery,
		Logger:     log,
	})
	return j, nil
}

// events is what the job's sources tell it besides batches: a failed
// input becomes one DLQ entry; an origin done or idle stops holding the
// windows' watermark back.
func (j *job) events(ctx context.Context) pipeline.SourceEvents {
	ev := pipeline.SourceEvents{Failed: func(ctx context.Context, f pipeline.SourceFailure) {
		j.runner.FileFailed(ctx, f)
	}}
	if j.win != nil {
		ev.OriginDone = j.win.SourceDone
		ev.Idle = j.win.SourceIdle
	}
	return ev
}

// close makes everything durable, in order: every window closes (what was
// read is counted) while the DLQ still takes the rows the windows sink may
// refuse; then the sinks; the DLQ last, since a sink that fails to close
// routes nothing more to it; then the dedupe store. It returns every error.
func (j *job) close(ctx context.Context) error {
	var errs []error
	if j.runner != nil {
		j.runner.Close() // retries in flight end (Run did it already, unless it never ran)
	}
	if j.win != nil {
		if err := j.win.Close(ctx); err != nil {
			errs = append(errs, err)
		}
		if err := j.winSink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("windows sink: %w", err))
		}
	}
	for _, s := range j.sinks {
		if err := s.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if j.backend != nil {
		if err := j.backend.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("DLQ: %w", err))
		}
	}
	if err := j.closeDedupe(); err != nil {
		errs = append(errs, fmt.Errorf("dedupe: %w", err))
	}
	return errors.Join(errs...)
}

// report fills what the job knows into rep (a closed job: final counts)
// and reconciles it.
func (j *job) report(rep *Report, bytesIn, bytesRead int64, took time.Duration) error {
	a := j.runner.Accounting()
	st := j.backend.Stats()
	rep.BytesIn, rep.BytesRead = bytesIn, bytesRead
	rep.Units = a.Units.Load()
	rep.RecordsIn, rep.RecordsOut, rep.RecordsFiltered = a.RecordsIn.Load(), a.RecordsOut.Load(), a.RecordsFiltered.Load()
	rep.DLQ = map[string]int64{"total": st.Total}
	for _, c := range pipeline.Classes {
		rep.DLQ[string(c)] = st.Written[string(c)]
	}
	rep.DLQLost = a.DLQLost.Load() + st.Failed
	rep.DLQEvicted = st.Evicted
	rep.DLQWindowRows = a.DLQOther.Load()
	rep.DLQAlready = a.DLQAlready.Load()
	rep.RecordsRewindowed = a.RecordsRewindowed.Load()
	rep.Seconds = took.Seconds()
	if rep.Seconds > 0 {
		rep.MBPerSec = float64(rep.BytesIn) / 1e6 / rep.Seconds
	}
	rep.Sources = a.Sources()
	for _, s := range rep.Sources {
		if s.Failed {
			rep.FilesFailed++
		}
	}
	if j.cfg.DLQ.File != nil {
		rep.DLQDir = j.cfg.DLQ.File.Dir
	}
	rep.Sinks = sinkReports(j.runner.SinkStats(), j.retriers)
	rep.Recovered = j.recovered
	if j.win != nil {
		rep.Windows = &WindowsReport{Metrics: len(j.cfg.Windows.Metrics), Sink: winSinkWhere(j.cfg, j.winSink), Snapshot: j.win.Stats.Snapshot()}
	}
	return rep.check(a)
}
