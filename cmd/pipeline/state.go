package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/state"
)

// cmdState is `pipeline state ls|reset`: the checkpoints of `pipeline
// run`'s sources in run.state_dir.
func cmdState(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "ls" && args[0] != "reset") {
		return usageError(stderr, errors.New("state: give ls or reset"))
	}
	sub := args[0]
	fs := flag.NewFlagSet("state "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file (default: the embedded config.yaml)")
	asJSON := fs.Bool("json", false, "ls: print the checkpoints as JSON, positions included")
	all := fs.Bool("all", false, "reset: every checkpoint in the directory")
	names, err := parseArgs(fs, args[1:], 0, -1)
	if err != nil {
		return usageError(stderr, err)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitUsage
	}
	dir := cfg.Run.StateDir
	if sub == "ls" {
		return stateList(state.OpenReadOnly(dir), names, *asJSON, stdout, stderr)
	}
	if len(names) == 0 && !*all {
		return usageError(stderr, errors.New("state reset: name the sources to reset, or --all"))
	}
	if len(names) > 0 && *all {
		return usageError(stderr, errors.New("state reset: names and --all together"))
	}
	d, err := state.Open(dir)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: state reset: %v\n", err)
		return exitFailed
	}
	defer d.Close()
	if *all {
		cps, _ := d.List()
		for _, cp := range cps {
			names = append(names, cp.Source)
		}
	}
	code := exitOK
	for _, n := range names {
		removed, err := d.Reset(n)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "pipeline: state reset %s: %v\n", n, err)
			code = exitFailed
		case removed:
			fmt.Fprintf(stdout, "reset %s: it starts afresh at the next run (start_at applies)\n", n)
		default:
			fmt.Fprintf(stderr, "pipeline: state reset %s: no checkpoint in %s\n", n, dir)
			code = exitFailed
		}
	}
	return code
}

func stateList(d *state.Dir, names []string, asJSON bool, stdout, stderr io.Writer) int {
	cps, errs := d.List()
	for _, err := range errs {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
	}
	if len(names) > 0 {
		want := map[string]bool{}
		for _, n := range names {
			want[n] = true
		}
		kept := cps[:0]
		for _, cp := range cps {
			if want[cp.Source] {
				kept = append(kept, cp)
				delete(want, cp.Source)
			}
		}
		cps = kept
		for n := range want {
			fmt.Fprintf(stderr, "pipeline: state ls: no checkpoint for %s in %s\n", n, d.Path())
			errs = append(errs, errors.New(n))
		}
	}
	if asJSON {
		if cps == nil {
			cps = []state.Checkpoint{}
		}
		data, _ := json.MarshalIndent(cps, "", "  ")
		fmt.Fprintln(stdout, string(data))
	} else if len(cps) == 0 {
		fmt.Fprintf(stdout, "no checkpoints in %s\n", d.Path())
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tKIND\tSAVED\tAGE\tPOSITIONS")
		for _, cp := range cps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cp.Source, cp.Kind, cp.Saved.Format(time.RFC3339),
				time.Since(cp.Saved).Round(time.Second), summarize(cp.Positions))
		}
		_ = tw.Flush()
	}
	if len(errs) > 0 {
		return exitFailed
	}
	return exitOK
}

// summarize says how many positions a checkpoint holds: the length of
// its largest list or map (the file source's files), else its size.
func summarize(raw json.RawMessage) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) == nil {
		for k, v := range m {
			var list []json.RawMessage
			if json.Unmarshal(v, &list) == nil {
				return fmt.Sprintf("%d %s", len(list), k)
			}
		}
	}
	return fmt.Sprintf("%d bytes", len(raw))
}
