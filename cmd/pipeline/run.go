package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tracepipe/tracepipe/app"
	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/telemetry"
)

// startTelemetry serves the metrics and health endpoint on
// telemetry.listen when serve is set, and pushes to telemetry.otlp when it
// has an endpoint; stop closes it (a push sends its final values).
func startTelemetry(cfg *config.Config, log *slog.Logger, serve bool) (*telemetry.Server, func(), error) {
	o := telemetry.Options{Version: buildVersion(), Logger: log}
	if serve {
		o.Listen = cfg.Telemetry.Listen
	}
	if oc := cfg.Telemetry.OTLP; oc.Endpoint != "" {
		tg, _ := oc.Target() // validated by config.Load
		o.OTLP = &telemetry.OTLP{
			HostPort: tg.HostPort, Path: tg.Path, GRPC: oc.Protocol == "grpc", Insecure: tg.Insecure,
			Interval: oc.Interval, SampleRatio: cfg.Telemetry.Traces.Ratio(), Headers: map[string]string{},
		}
		for k, v := range oc.Headers {
			o.OTLP.Headers[k] = v.Reveal()
		}
	}
	srv, err := telemetry.Start(o)
	if err != nil {
		return nil, nil, err
	}
	return srv, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			log.Warn("telemetry: closing the endpoint", "err", err)
		}
	}, nil
}

// exitNow ends the process when a drain outlives run.shutdown_grace.
var exitNow = os.Exit

// cmdRun is `pipeline run`: the config's sources, followed until
// SIGINT/SIGTERM, then drained within run.shutdown_grace. SIGHUP reopens
// the output files.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file (default: the embedded config.yaml)")
	report := fs.String("report", "", "write the report of this process's life as JSON to this file when it stops (- for standard output)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return usageError(stderr, err)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitUsage
	}
	summary, err := summaryOut(cfg, *report, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: run: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitUsage
	}
	defer stopProfile()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reopen := make(chan struct{}, 1)
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		for {
			select {
			case <-hup:
				select {
				case reopen <- struct{}{}:
				default: // one pending reopen covers several signals
				}
			case <-ctx.Done():
				// The drain is bounded: past the grace, exit with the
				// positions last committed (what follows them is read
				// again at the next start, never skipped).
				t := time.NewTimer(cfg.Run.ShutdownGrace)
				defer t.Stop()
				select {
				case <-t.C:
					log.Error("run: the drain took longer than run.shutdown_grace; exiting with the positions last committed (the rest is read again at the next start)",
						"shutdown_grace", cfg.Run.ShutdownGrace)
					exitNow(exitFailed)
				case <-finished:
				}
				return
			case <-finished:
				return
			}
		}
	}()

	opts := app.RunOptions{Logger: log, Version: buildVersion(), Reopen: reopen}
	if cfg.Telemetry.On() || cfg.Telemetry.OTLP.Endpoint != "" {
		srv, stop, err := startTelemetry(cfg, log, cfg.Telemetry.On())
		if err != nil {
			fmt.Fprintf(stderr, "pipeline: %v\n", err)
			return exitFailed
		}
		defer stop()
		opts.Telemetry = srv
	}
	rep, runErr := app.RunJob(ctx, cfg, opts)
	// A signal is how run ends: not "interrupted".
	code, _ := finishJob(rep, runErr, app.ErrNoSources, *report, summary, stdout, stderr)
	return code
}
