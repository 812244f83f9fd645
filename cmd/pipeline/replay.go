package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"golang.org/x/term"

	"github.com/tracepipe/tracepipe/app"
	"github.com/tracepipe/tracepipe/config"
)

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file (default: the embedded config.yaml)")
	report := fs.String("report", "", "write the run report as JSON to this file (- for standard output)")
	failOnDLQ := fs.Bool("fail-on-dlq", false, "exit 3 when any record went to the DLQ")
	noProgress := fs.Bool("no-progress", false, "never draw the progress bar")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	metrics := fs.Bool("metrics", false, "serve /metrics, /healthz and /readyz on telemetry.listen while the replay runs")
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(stderr, err)
	}
	if len(paths) == 0 {
		return usageError(stderr, errors.New("replay: no PATH given (files, folders or globs)"))
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitUsage
	}
	summary, err := summaryOut(cfg, *report, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: replay: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)

	opts := app.Options{Paths: paths, Logger: log, Version: buildVersion()}
	if f, ok := stderr.(*os.File); ok && !*noProgress && term.IsTerminal(int(f.Fd())) {
		opts.Progress = stderr
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitUsage
	}
	defer stopProfile()
	// A replay is a batch tool: it serves telemetry only when asked, and
	// then whatever telemetry.enabled says (the flag is the asking). It
	// pushes to telemetry.otlp whenever that has an endpoint.
	if *metrics || cfg.Telemetry.OTLP.Endpoint != "" {
		srv, stop, err := startTelemetry(cfg, log, *metrics)
		if err != nil {
			fmt.Fprintf(stderr, "pipeline: %v\n", err)
			return exitFailed
		}
		defer stop()
		opts.Telemetry = srv
	}
	rep, runErr := app.Run(ctx, cfg, opts)
	if code, done := finishJob(rep, runErr, app.ErrNoInput, *report, summary, stdout, stderr); done {
		return code
	}
	switch {
	case rep.Interrupted:
		return exitInterrupted
	case *failOnDLQ && rep.DLQ["total"] > 0:
		return exitDLQEntries
	}
	return exitOK
}

// summaryOut says where a job's summary goes. Standard output may carry
// records (a stdout sink) or the report (--report -), never both, and then
// nothing else: the summary goes to standard error with the logs and the
// progress bar.
func summaryOut(cfg *config.Config, report string, stdout, stderr io.Writer) (io.Writer, error) {
	toStdout := false
	for _, s := range cfg.Sinks {
		toStdout = toStdout || s.Type == "stdout"
	}
	if toStdout && report == "-" {
		return nil, errors.New("--report - and a stdout sink would both write to standard output: write the report to a file, or use another sink")
	}
	if toStdout || report == "-" {
		return stderr, nil
	}
	return stdout, nil
}

// finishJob prints a job's summary to summary and writes its report (to
// stdout when reportPath is "-"), and returns the exit code when the
// outcome decides it: no report (setup failed; usage when the error is
// usageErr), a report that could not be written, the job's error, a full
// DLQ. done is false when the caller decides.
func finishJob(rep *app.Report, runErr, usageErr error, reportPath string, summary, stdout, stderr io.Writer) (code int, done bool) {
	if rep == nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", runErr)
		if errors.Is(runErr, usageErr) {
			return exitUsage, true
		}
		return exitFailed, true
	}
	rep.WriteSummary(summary)
	if reportPath != "" {
		if err := writeReport(reportPath, rep, stdout); err != nil {
			fmt.Fprintf(stderr, "pipeline: %v\n", err)
			return exitFailed, true
		}
	}
	switch {
	case runErr != nil:
		fmt.Fprintf(stderr, "pipeline: %v\n", runErr)
		return exitFailed, true
	case rep.DLQFull:
		return exitDLQFull, true
	}
	return exitOK, false
}

// startCPUProfile profiles the process into path until stop; with no
// path it does nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

// writeReport writes rep as JSON to path, or to stdout when path is "-".
func writeReport(path string, rep *app.Report, stdout io.Writer) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if path == "-" {
		if _, err := stdout.Write(append(data, '\n')); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		return nil
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
