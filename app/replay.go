package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/internal/telemetry"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dedupe"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/pipeline/dlq/kafkadlq"
	"github.com/tracepipe/tracepipe/pipeline/dlq/redisdlq"
	"github.com/tracepipe/tracepipe/pipeline/windows"
	"github.com/tracepipe/tracepipe/sinks"
	kafkasink "github.com/tracepipe/tracepipe/sinks/kafka"
	redissink "github.com/tracepipe/tracepipe/sinks/redis"
	"github.com/tracepipe/tracepipe/sources/file"
)

// Options are what the command line adds to the config.
type Options struct {
	Paths []string
	// Progress, when set, gets a progress bar redrawn in place (a terminal).
	Progress io.Writer
	Logger   *slog.Logger
	Version  string
	// Telemetry, when set, gets the job's instruments and readiness
	// checks (pipeline replay --metrics). The caller starts and closes it;
	// the instruments stay registered after Run, with the final values.
	Telemetry *telemetry.Server
}

// ErrNoInput is returned when the paths resolve to no file at all.
var ErrNoInput = errors.New("no input: the paths match no file")

// Run replays the files. The returned error is for a run that could not be
// set up or whose outputs could not be completed; bad input never makes an
// error, it makes DLQ entries. The report is returned whenever the run
// started, with or without an error.
func Run(ctx context.Context, cfg *config.Config, o Options) (*Report, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	files, expandErrs := file.Expand(o.Paths)
	if len(files) == 0 && len(expandErrs) == len(o.Paths) {
		msgs := make([]error, 0, len(expandErrs))
		for _, e := range expandErrs {
			msgs = append(msgs, fmt.Errorf("%s: %w", e.Path, e.Err))
		}
		return nil, fmt.Errorf("%w\n%w", ErrNoInput, errors.Join(msgs...))
	}
	j, err := newJob(ctx, cfg, log, o.Version)
	if err != nil {
		return nil, err
	}
	runner, win := j.runner, j.win

	fopts := file.DefaultOptions()
	// Files are framed under the limits of the configured format (with
	// auto, the largest); once a file's format is detected, its own apply.
	fopts.MaxLineBytes = int(cfg.Input.MaxLineBytes.For(cfg.Input.Format))
	fopts.MaxDocumentBytes = int(cfg.Input.MaxDocumentBytes.For(cfg.Input.Format))
	for _, f := range []string{"jsonl", "otlp", "zipkin"} {
		pf, _ := pipeline.ParseFormat(f)
		fopts.FormatLimits[pf] = file.Limits{Line: int(cfg.Input.MaxLineBytes.For(f)), Document: int(cfg.Input.MaxDocumentBytes.For(f))}
	}
	fopts.KeepBytes = keepBytes(cfg)
	fopts.BatchUnits = cfg.Pipeline.BatchUnits
	fopts.BatchBytes = int(cfg.Pipeline.BatchBytes)
	fopts.Concurrency = cfg.Input.Concurrency
	fopts.Format, _ = pipeline.ParseFormat(cfg.Input.Format)
	fopts.Detect = parsers.Detect
	if win != nil {
		ids := make([]int, len(files))
		for i := range ids {
			ids[i] = i
		}
		win.ExpectSources(ids...)
		fopts.OnFileDone = win.SourceDone
	}
	reader, err := file.NewReader(fopts)
	if err != nil {
		_ = j.close(context.WithoutCancel(ctx))
		return nil, err
	}

	start := time.Now()
	ev := j.events(ctx)
	for _, fe := range expandErrs {
		ev.Failed(ctx, pipeline.SourceFailure{Kind: "file", Path: fe.Path, Code: fe.Code, Offset: fe.Offset, Line: fe.Line, Err: fe.Err})
	}

	var total int64
	for _, f := range files {
		total += f.Size
	}
	src := &fileReplay{reader: reader, files: files, failed: ev.Failed}
	if o.Telemetry != nil {
		err := j.observe(o.Telemetry, telemetryInputs{
			sources: []pipeline.Source{src}, bytesRead: reader.BytesRead, bytesIn: reader.BytesDecoded,
			readyGrace: cfg.Telemetry.ReadyGrace,
		})
		if err != nil {
			_ = j.close(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	bar := newProgress(o.Progress, total, reader, runner.Accounting())
	bar.start()
	stopPhase := j.running(ctx)
	res := j.feed(ctx, ctx, []pipeline.Source{src}, 0)
	bar.stop()
	dlqFull := res.DLQFull

	// Everything read is handled; now make it durable.
	var errs []error
	if err := j.close(context.WithoutCancel(ctx)); err != nil {
		errs = append(errs, err)
	}
	stopPhase()
	rep := &Report{Files: len(files) + len(expandErrs), DLQFull: dlqFull, Interrupted: ctx.Err() != nil && !dlqFull}
	if err := j.report(rep, reader.BytesDecoded(), reader.BytesRead(), time.Since(start)); err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

// keepBytes is how much of a too-large unit a reader keeps for its DLQ
// entry: dlq.keep_bytes, at most a line (0 keeps the whole payload
// elsewhere; a too-large unit is never kept whole).
func keepBytes(cfg *config.Config) int {
	if cfg.DLQ.KeepBytes > 0 {
		l := cfg.Input.MaxLineBytes
		return int(min(cfg.DLQ.KeepBytes, l.JSONL, l.OTLP, l.Zipkin))
	}
	return 0
}

// fileReplay is the source of a replay: the given files, each read once.
type fileReplay struct {
	reader *file.Reader
	files  []file.File
	failed func(context.Context, pipeline.SourceFailure)
}

func (s *fileReplay) Name() string { return "replay" }

func (s *fileReplay) Run(ctx context.Context, out chan<- *pipeline.Batch) error {
	s.reader.Run(ctx, s.files, out, func(fe file.FileError) {
		s.failed(context.WithoutCancel(ctx), pipeline.SourceFailure{Kind: "file", Path: fe.Path, Code: fe.Code, Offset: fe.Offset, Line: fe.Line, Err: fe.Err})
	})
	return nil
}

// Commit has nothing to commit: a replay keeps no positions.
func (s *fileReplay) Commit(context.Context) error { return nil }

// ParserOptions maps the parse section of the config onto parsers.Options.
func ParserOptions(cfg *config.Config) (*parsers.Options, error) {
	return parserOptions(cfg.Parse, "parse")
}

// sourceParserOptions is a source's own field mapping: the top-level
// parse section with the source's parse.jsonl lists in place of those
// it sets.
func sourceParserOptions(cfg *config.Config, i int) (*parsers.Options, error) {
	p := cfg.Parse
	own := cfg.Sources[i].Parse.JSONL
	mine, top := jsonlPaths(&own, nil), jsonlPaths(&p.JSONL, nil)
	for k := range mine {
		if len(*mine[k].cfg) > 0 {
			*top[k].cfg = *mine[k].cfg
		}
	}
	if len(own.Duration) > 0 {
		p.JSONL.Duration = own.Duration
	}
	return parserOptions(p, fmt.Sprintf("sources[%d].parse", i))
}

func parserOptions(p config.Parse, key string) (*parsers.Options, error) {
	o := parsers.DefaultOptions()
	o.InvalidUTF8 = p.InvalidUTF8
	o.MissingTraceIDSpans = p.MissingTraceID.Spans
	o.MissingTraceIDLogs = p.MissingTraceID.Logs
	o.TimeUnit = p.TimeUnit
	for _, x := range jsonlPaths(&p.JSONL, &o.JSONL) {
		if len(*x.cfg) > 0 {
			*x.opt = *x.cfg
		}
	}
	if d := p.JSONL.Duration; len(d) > 0 {
		o.JSONL.Duration = make([]parsers.DurationField, 0, len(d))
		for _, x := range d {
			o.JSONL.Duration = append(o.JSONL.Duration, parsers.DurationField{Path: x.Path, Unit: x.Unit})
		}
	}
	if err := o.Prepare(); err != nil {
		return nil, fmt.Errorf("config %s: %w", key, err)
	}
	return &o, nil
}

// ShowParserDefaults fills the JSONL field lists left empty in cfg with the
// parsers' built-in defaults, so that printing cfg shows what is in effect.
func ShowParserDefaults(cfg *config.Config) {
	d := parsers.DefaultJSONLFields()
	for _, p := range jsonlPaths(&cfg.Parse.JSONL, &d) {
		if len(*p.cfg) == 0 {
			*p.cfg = *p.opt
		}
	}
	if len(cfg.Parse.JSONL.Duration) == 0 {
		for _, x := range d.Duration {
			cfg.Parse.JSONL.Duration = append(cfg.Parse.JSONL.Duration, config.DurationField{Path: x.Path, Unit: x.Unit})
		}
	}
}

// jsonlPaths pairs each config list of JSONL field paths with the parser
// option it sets: the one place the two schemas are matched up.
// o may be nil when only the config side is wanted.
func jsonlPaths(c *config.JSONLPaths, o *parsers.JSONLFields) []struct{ cfg, opt *[]string } {
	if o == nil {
		o = &parsers.JSONLFields{}
	}
	return []struct{ cfg, opt *[]string }{
		{&c.TraceID, &o.TraceID}, {&c.SpanID, &o.SpanID}, {&c.ParentID, &o.ParentID},
		{&c.Service, &o.Service}, {&c.Name, &o.Name}, {&c.Message, &o.Message},
		{&c.Kind, &o.Kind}, {&c.Status, &o.Status}, {&c.Severity, &o.Severity}, {&c.Time, &o.Time},
		{&c.Start, &o.Start}, {&c.End, &o.End},
	}
}

// Sinks builds the configured sinks, made idempotent when dedupe is on;
// done closes the dedupe store (after the sinks are closed).
func Sinks(cfg *config.Config, log *slog.Logger) (_ []pipeline.Sink, done func() error, _ error) {
	out, err := buildSinks(cfg, log, nil)
	if err != nil {
		return nil, nil, err
	}
	out, _, done, err = wrapDedupe(cfg, out)
	return out, done, err
}

// recoveredFiles lists what the file sinks among ss recovered from a dead
// process (before dedupe wraps them).
func recoveredFiles(ss []pipeline.Sink) []RecoveredFile {
	var out []RecoveredFile
	for _, s := range ss {
		if f, ok := s.(*sinks.File); ok {
			for _, r := range f.Recovered() {
				out = append(out, RecoveredFile{Sink: f.Name(), Recovered: r})
			}
		}
	}
	return out
}

// wrapDedupe makes the sinks idempotent when dedupe is on, and returns
// the store (nil when off) for the DLQ's own dedupe.
func wrapDedupe(cfg *config.Config, out []pipeline.Sink) (_ []pipeline.Sink, _ dedupe.Store, done func() error, _ error) {
	store, done, err := openDedupe(cfg)
	if err != nil {
		closeSinks(out)
		return nil, nil, nil, err
	}
	return wrapSinks(out, store), store, done, nil
}

// wrapSinks wraps each sink with store's dedupe (none when store is nil).
func wrapSinks(out []pipeline.Sink, store dedupe.Store) []pipeline.Sink {
	if store == nil {
		return out
	}
	for i, s := range out {
		out[i] = dedupe.Wrap(s, store)
	}
	return out
}

// openDedupe opens the configured dedupe store; nil when dedupe is off.
func openDedupe(cfg *config.Config) (_ dedupe.Store, done func() error, _ error) {
	none := func() error { return nil }
	if !cfg.Dedupe.Enabled {
		return nil, none, nil
	}
	d := cfg.Dedupe
	switch d.Store {
	case "redis":
		r, err := redissink.NewDedupe(d.Redis.Redis, d.Redis.KeyPrefix, d.TTL)
		if err != nil {
			return nil, none, err
		}
		return r, r.Close, nil
	default:
		if d.Path != "" {
			if err := os.MkdirAll(filepath.Dir(d.Path), 0o700); err != nil {
				return nil, none, fmt.Errorf("dedupe: %w", err)
			}
		}
		m, err := dedupe.NewMemory(d.Path, d.TTL, d.MaxKeys)
		if err != nil {
			return nil, none, err
		}
		return m, m.Close, nil
	}
}

// buildSinks builds the configured sinks. recovering, when set, is told
// of each file a file sink recovers from a dead process, before the file
// is renamed (see sinks.FileOptions.Recovering).
func buildSinks(cfg *config.Config, log *slog.Logger, recovering func(sink, part string) error) ([]pipeline.Sink, error) {
	var out []pipeline.Sink
	for _, s := range cfg.Sinks {
		switch s.Type {
		case "file":
			opts := sinks.FileOptions{Name: s.Name, Dir: s.File.Dir, RotateBytes: int64(s.File.RotateBytes), Logger: log}
			if recovering != nil {
				name := s.Name
				opts.Recovering = func(part string) error { return recovering(name, part) }
			}
			f, err := sinks.NewFile(opts)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		case "discard":
			out = append(out, sinks.NewDiscard(s.Name))
		case "stdout":
			out = append(out, sinks.NewStdout(s.Name, os.Stdout))
		case "kafka":
			k, err := kafkasink.New(s.Name, *s.Kafka, log)
			if err != nil {
				closeSinks(out)
				return nil, err
			}
			out = append(out, k)
		case "redis_stream":
			redisconn.RouteLibraryLogs(log)
			r, err := redissink.NewStream(s.Name, *s.RedisStream, log)
			if err != nil {
				closeSinks(out)
				return nil, err
			}
			out = append(out, r)
		default:
			closeSinks(out)
			return nil, fmt.Errorf("sink %s: unknown type %q", s.Name, s.Type)
		}
	}
	return out, nil
}

func closeSinks(ss []pipeline.Sink) {
	for _, s := range ss {
		_ = s.Close(context.Background())
	}
}

// OpenDLQ opens the configured DLQ backend, logging to log.
func OpenDLQ(cfg *config.Config, log *slog.Logger) (dlq.Backend, error) {
	b, _, err := openDLQ(cfg, log)
	return b, err
}

// openDLQ is OpenDLQ that also returns the file DLQ: the backend itself,
// or the remote backend's fallback (the backend owns it), whose size
// telemetry reports against its cap.
func openDLQ(cfg *config.Config, log *slog.Logger) (dlq.Backend, *dlq.File, error) {
	file, err := openFileDLQ(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	if cfg.DLQ.Type == "file" {
		return file, file, nil
	}
	// A remote DLQ: the file DLQ takes what it cannot store, so nothing is
	// lost while Redis or Kafka is down. The backend owns it.
	switch cfg.DLQ.Type {
	case "kafka":
		b, err := kafkadlq.Open(*cfg.DLQ.Kafka, log, kafkadlq.WithFallback(file))
		if err != nil {
			_ = file.Close(context.Background())
			return nil, nil, err
		}
		return b, file, nil
	case "redis":
		redisconn.RouteLibraryLogs(log)
		b, err := redisdlq.Open(*cfg.DLQ.Redis, redisdlq.Options{Fallback: file, Logger: log})
		if err != nil {
			_ = file.Close(context.Background())
			return nil, nil, err
		}
		return b, file, nil
	}
	_ = file.Close(context.Background())
	return nil, nil, fmt.Errorf("dlq: unknown type %q", cfg.DLQ.Type)
}

func openFileDLQ(cfg *config.Config, log *slog.Logger) (*dlq.File, error) {
	f := cfg.DLQ.File
	policy, err := dlq.ParseOverflowPolicy(f.Overflow)
	if err != nil {
		return nil, err
	}
	return dlq.OpenFile(dlq.FileOptions{
		Dir:          f.Dir,
		SegmentBytes: int64(f.SegmentBytes),
		MaxBytes:     int64(f.MaxBytes),
		Overflow:     policy,
		QueueSize:    f.Queue,
		SyncEvery:    f.SyncEvery,
		Logger:       log,
	})
}

// openWindows builds the window stage and its sink, or nothing when no
// metric is configured.
func openWindows(cfg *config.Config, log *slog.Logger, failed func(context.Context, []windows.Row, error)) (*windows.Windows, windows.RowWriter, error) {
	if len(cfg.Windows.Metrics) == 0 {
		return nil, nil, nil
	}
	sink, err := WindowsSink(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	w, err := windows.New(windows.Options{
		Config:     cfg.Windows,
		Workers:    cfg.Pipeline.Workers,
		Sink:       sink,
		RowsFailed: failed,
		Logger:     log,
	})
	if err != nil {
		_ = sink.Close()
		return nil, nil, err
	}
	return w, sink, nil
}

// WindowsSink opens the configured windows sink.
func WindowsSink(cfg *config.Config, log *slog.Logger) (windows.RowWriter, error) {
	s := cfg.Windows.Sink
	switch s.Type {
	case "file":
		w, err := windows.OpenFileWriter(s.File.Dir, cfg.Windows.Instance)
		if err != nil {
			return nil, err // never a typed nil inside the interface
		}
		return w, nil
	case "redis":
		redisconn.RouteLibraryLogs(log)
		w, err := redissink.NewWindows(*s.Redis, log)
		if err != nil {
			return nil, err // never a typed nil inside the interface
		}
		return w, nil
	}
	return nil, fmt.Errorf("windows sink: unknown type %q", s.Type)
}

func winSinkName(cfg *config.Config) string { return "windows_" + cfg.Windows.Sink.Type }

// winSinkWhere says where rows went, for the summary (never a password).
func winSinkWhere(cfg *config.Config, s windows.RowWriter) string {
	if f, ok := s.(*windows.FileWriter); ok {
		return f.Path()
	}
	if r := cfg.Windows.Sink.Redis; r != nil {
		return "redis " + r.Addr
	}
	return s.Name()
}

// WindowRowsFailed puts rows the windows sink refused into the DLQ, one
// entry each with the row (and its sketch) as payload: kept, never lost.
func WindowRowsFailed(ctx context.Context, r *pipeline.Runner, sink string, rows []windows.Row, err error) {
	for i := range rows {
		row := &rows[i]
		r.DeadLetterOther(ctx, pipeline.OtherFailure{
			Failure:     pipeline.Failure{Stage: "window", Component: sink, Class: pipeline.ClassSinkExhausted, Code: "write", Message: err.Error()},
			Kind:        "window_row",
			Path:        row.Metric + " " + row.GroupJSON(),
			Payload:     row.AppendJSON(nil),
			WindowStart: row.Start,
			WindowEnd:   row.End,
		})
	}
}

// Delivery builds each sink's retry policy and queue from config; the
// retriers are returned for their counters.
func Delivery(cfg *config.Config) ([]pipeline.SinkDelivery, []*pipeline.Retrier, error) {
	var out []pipeline.SinkDelivery
	var rs []*pipeline.Retrier
	for i := range cfg.Sinks {
		s := &cfg.Sinks[i]
		r, err := pipeline.NewRetrier(cfg.RetryFor(s))
		if err != nil {
			return nil, nil, fmt.Errorf("sink %s: %w", s.Name, err)
		}
		out = append(out, pipeline.SinkDelivery{Retry: r, Queue: s.Queue})
		rs = append(rs, r)
	}
	return out, rs, nil
}

// Redaction returns the DLQ payload redaction of the config, or nil.
func Redaction(cfg *config.Config) (func([]byte) ([]byte, bool), error) {
	r, err := dlq.NewRedactor(cfg.DLQ.Redact.Fields, cfg.DLQ.Redact.Mode)
	if err != nil || r == nil {
		return nil, err
	}
	return r.Redact, nil
}
