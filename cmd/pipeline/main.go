// Command pipeline is tracepipe's command line: it wires the packages, it
// does not decide. See `pipeline help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"golang.org/x/term"
)

// Exit codes. Documented in the README; scripts rely on them.
const (
	exitOK          = 0
	exitFailed      = 1 // the run could not complete its outputs or did not reconcile
	exitUsage       = 2 // bad flags, bad config, nothing to read
	exitDLQEntries  = 3 // --fail-on-dlq and the DLQ got entries
	exitDLQFull     = 4 // the DLQ reached its cap under overflow: fail
	exitInterrupted = 130
)

// version is set at build time with -ldflags "-X main.version=..."; else
// the module's VCS revision is used.
var version = ""

const usage = `pipeline: trace-log pipeline (tracepipe)

Usage:
  pipeline replay [-c config.yaml] [--report FILE|-] [--fail-on-dlq] [--metrics] PATH...
      Read files, folders (recursively) and globs once, plain, .gz or .zst,
      through parse, windows and sinks; every failure goes to the DLQ.
      PATH - is standard input; a sink of type stdout writes records, and
      --report - the report, to standard output (the summary then goes to
      standard error).
      Prints a summary that reconciles records in = out + dlq + filtered.
      --metrics serves /metrics, /healthz and /readyz on telemetry.listen
      while it runs.
  pipeline run [-c config.yaml] [--report FILE]
      The long-running job: follow the config's sources (files matching
      globs, through rotation) until SIGINT/SIGTERM, then drain within
      run.shutdown_grace and commit positions; a restart resumes there.
      SIGHUP reopens the output files. Serves /metrics, /healthz and
      /readyz on telemetry.listen (127.0.0.1:9464) unless telemetry.enabled
      is false.
  pipeline state ls|reset [-c config.yaml] [--json] [--all] [NAME...]
      Show the sources' checkpoints (run.state_dir), or delete them so a
      source starts afresh (not while a pipeline run holds the directory).
  pipeline gen --format jsonl|otlp|zipkin (--size 1GiB | --records N) [-o FILE] [--seed N]
               [--malformed 0.01] [--services N] [--users N] [--traces N]
      Write deterministic, realistic sample logs (gzip if FILE ends in .gz).
  pipeline validate [-q] [-c config.yaml | config.yaml]
      Check a config file strictly and print the effective values
      (passwords redacted); -q prints nothing when it is valid.
  pipeline query [-c config.yaml] [--metric NAME] [--from T] [--to T | --last 1h]
                 [--by field,...] [--where field=value]... [--per-window] [--json]
                 [--store file|redis] [--dir DIR]
      Distinct counts of a windows metric, merged across windows, groups,
      instances and runs. T is RFC 3339 or a date (UTC); a window is in
      the range when it starts in [from, to).
  pipeline dlq ls|show|stats|purge [-c config.yaml] [filters] [--json]
      Inspect the dead-letter queue: list entries (filters: --class, --code,
      --stage, --source, --since, --until), show one with its payload and
      context, count them, or delete them (purge asks unless --yes).
  pipeline top [-c config.yaml | --url http://127.0.0.1:9464/metrics] [--interval 1s] [--once]
      A live view of a running pipeline run (or replay --metrics), read
      from its /metrics and /readyz: rates per source and sink, DLQ per
      class, breakers, retry queues, window lag, checkpoint age. q or
      Ctrl-C quits. Not on a terminal, or with --once: one plain snapshot.
  pipeline version

Without -c the embedded default config (the shipped config.yaml) is used.

Exit codes: 0 done (DLQ entries or not), 1 outputs failed or run did not
reconcile (query: the store could not be read; top: the endpoint could
not be reached for a snapshot), 2 usage or config error,
3 DLQ entries with --fail-on-dlq, 4 DLQ full (overflow: fail),
130 interrupted.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first SIGINT/SIGTERM asks for a clean stop (input stops, what was
	// read is finished); once it came, the handler is removed, so a second
	// one ends the process at once, as the default action does.
	finished, watched := make(chan struct{}), make(chan struct{})
	defer func() { close(finished); <-watched }() // before stop: no write after run returns
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			stop()
			fmt.Fprintln(stderr, "pipeline: stopping: finishing what was read (a second signal exits at once)")
		case <-finished:
		}
	}()
	switch args[0] {
	case "replay":
		return cmdReplay(ctx, args[1:], stdout, stderr)
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "state":
		return cmdState(args[1:], stdout, stderr)
	case "gen":
		return cmdGen(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "dlq":
		return cmdDLQ(ctx, args[1:], stdout, stderr)
	case "query":
		return cmdQuery(ctx, args[1:], stdout, stderr)
	case "top":
		return cmdTop(ctx, args[1:], stdout, stderr)
	case "version", "help", "-h", "--help":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "pipeline: %s: unexpected argument %q\n\n%s", args[0], args[1], usage)
			return exitUsage
		}
		if args[0] == "version" {
			fmt.Fprintln(stdout, buildVersion())
		} else {
			fmt.Fprint(stdout, usage)
		}
		return exitOK
	}
	fmt.Fprintf(stderr, "pipeline: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments (`replay dir --report r.json`), and returns the
// positionals. "--" ends flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseArgs is parseInterspersed for a command that takes from min to max
// positional arguments (max < 0: any number); another count is an error,
// printed with the command's usage as the flag package does for a bad flag.
func parseArgs(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	switch {
	case err != nil:
		return nil, err
	case max >= 0 && len(pos) > max:
		return nil, argError(fs, fmt.Errorf("%s: unexpected argument %q", fs.Name(), pos[max]))
	case len(pos) < min:
		return nil, argError(fs, fmt.Errorf("%s: %d argument(s) needed, got %d", fs.Name(), min, len(pos)))
	}
	return pos, nil
}

// argError prints err and the usage of fs, and returns err.
func argError(fs *flag.FlagSet, err error) error {
	fmt.Fprintln(fs.Output(), err)
	fs.Usage()
	return err
}

// newLogger returns the process's logger on w. Format auto is text when w
// is a terminal (a person reads it) and JSON otherwise (a file, a pipe, a
// container's log collector: a program reads it).
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}

// usageError reports a usage problem and returns exitUsage.
func usageError(stderr io.Writer, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitUsage
	}
	fmt.Fprintf(stderr, "pipeline: %v\n", err)
	return exitUsage
}
