package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/tracepipe/tracepipe/app"
	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// stdin is where purge reads its confirmation (tests replace it).
var stdin io.Reader = os.Stdin

const dlqUsage = `Usage:
  pipeline dlq ls    [-c config.yaml] [filters] [--limit N] [--json]
  pipeline dlq show  [-c config.yaml] ID [--json]
  pipeline dlq stats [-c config.yaml] [filters] [--json]
  pipeline dlq purge [-c config.yaml] [filters | --all] [--yes]
  pipeline dlq replay [-c config.yaml] [filters] [--dry-run] [--json]
Filters: --class C --code C --stage S --source SUBSTRING --since T --until T
  (T: RFC 3339, a date, or a duration back from now such as 2h)
`

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file (default: the embedded config.yaml)")
	asJSON := fs.Bool("json", false, "print JSON")
	var f dlq.Filter
	var since, until string
	filters := sub == "ls" || sub == "stats" || sub == "purge" || sub == "replay"
	if filters {
		fs.StringVar(&f.Class, "class", "", "only entries of this error class")
		fs.StringVar(&f.Code, "code", "", "only entries with this error code")
		fs.StringVar(&f.Stage, "stage", "", "only entries failed at this stage (read, parse, window, sink)")
		fs.StringVar(&f.Source, "source", "", "only entries whose source path, topic or stream contains this")
		fs.StringVar(&since, "since", "", "only entries at or after T")
		fs.StringVar(&until, "until", "", "only entries before T")
	}
	limit := fs.Int("limit", 0, "ls: at most N entries (0: all)")
	all := fs.Bool("all", false, "purge: every entry (required when no filter is given)")
	yes := fs.Bool("yes", false, "purge: do not ask for confirmation")
	dryRun := fs.Bool("dry-run", false, "replay: parse the entries and say what would happen; write and delete nothing")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(stderr, err)
	}
	switch sub {
	case "ls", "show", "stats", "purge", "replay":
	default:
		return usageError(stderr, fmt.Errorf("dlq: unknown command %q\n%s", sub, dlqUsage))
	}
	if sub == "show" && len(pos) != 1 {
		return usageError(stderr, errors.New("dlq show: give exactly one entry ID"))
	}
	if sub != "show" && len(pos) > 0 {
		return usageError(stderr, fmt.Errorf("dlq %s: unexpected argument %q", sub, pos[0]))
	}
	now := time.Now()
	if f.Since, err = parseWhen("--since", since, now); err != nil {
		return usageError(stderr, err)
	}
	if f.Until, err = parseWhen("--until", until, now); err != nil {
		return usageError(stderr, err)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	store, where, err := app.OpenDLQStore(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitFailed
	}
	defer store.Close()

	switch sub {
	case "show":
		return dlqShow(ctx, store, pos[0], *asJSON, stdout, stderr)
	case "ls":
		return dlqList(ctx, store, f, *limit, *asJSON, stdout, stderr)
	case "stats":
		return dlqStats(ctx, store, f, where, *asJSON, stdout, stderr)
	case "replay":
		return dlqReplay(ctx, cfg, store, f, *dryRun, *asJSON, log, stdout, stderr)
	default:
		if f.Empty() && !*all {
			return usageError(stderr, errors.New("dlq purge: give a filter, or --all to delete every entry"))
		}
		return dlqPurge(ctx, store, f, where, *yes, stdout, stderr)
	}
}

// fileStores returns the file DLQ stores within store.
func fileStores(store dlq.Store) []*dlq.FileStore {
	switch s := store.(type) {
	case *dlq.FileStore:
		return []*dlq.FileStore{s}
	case *dlq.Multi:
		if s.Fallback != nil {
			return []*dlq.FileStore{s.Fallback}
		}
	}
	return nil
}

// parseWhen reads RFC 3339, a date (UTC), or a duration back from now.
func parseWhen(flagName, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s %q: want RFC 3339 (2026-01-01T10:00:00Z), a date (2026-01-01) or a duration (2h)", flagName, s)
}

func scanFiltered(ctx context.Context, store dlq.Store, f dlq.Filter, fn func(*dlq.Entry) error) error {
	return store.Scan(ctx, func(e *dlq.Entry) error {
		if !f.Match(e) {
			return nil
		}
		return fn(e)
	})
}

var errLimit = errors.New("limit reached")

func dlqList(ctx context.Context, store dlq.Store, f dlq.Filter, limit int, asJSON bool, stdout, stderr io.Writer) int {
	bw := bufio.NewWriter(stdout)
	defer bw.Flush()
	var tw *tabwriter.Writer
	if !asJSON {
		tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTIME\tCLASS\tCODE\tSTAGE\tSOURCE\tMESSAGE")
	}
	n := 0
	err := scanFiltered(ctx, store, f, func(e *dlq.Entry) error {
		if limit > 0 && n >= limit {
			return errLimit
		}
		n++
		if asJSON {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			bw.Write(b)
			return bw.WriteByte('\n')
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.UTC().Format(time.RFC3339), e.Error.Class, e.Error.Code,
			e.Stage, sourceOf(e), oneLine(e.Error.Message, 80))
		return nil
	})
	if tw != nil {
		tw.Flush()
	}
	if err != nil && !errors.Is(err, errLimit) {
		bw.Flush()
		fmt.Fprintf(stderr, "pipeline: dlq ls: %v\n", err)
		return exitFailed
	}
	if !asJSON && n == 0 {
		fmt.Fprintln(bw, "(no entries)")
	}
	return exitOK
}

// sourceOf names where an entry came from in one short string.
func sourceOf(e *dlq.Entry) string {
	s := e.Source
	switch {
	case s.Topic != "":
		return fmt.Sprintf("%s/%d@%d", s.Topic, s.Partition, s.KafkaOff)
	case s.Stream != "":
		return s.Stream + "@" + s.StreamID
	case s.Line > 0:
		return fmt.Sprintf("%s:%d", s.Path, s.Line)
	case s.Path != "":
		return s.Path
	}
	return s.Kind
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func dlqShow(ctx context.Context, store dlq.Store, id string, asJSON bool, stdout, stderr io.Writer) int {
	e, err := store.Get(ctx, id)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: dlq show: %v\n", err)
		if errors.Is(err, dlq.ErrNotFound) {
			return exitUsage
		}
		return exitFailed
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: dlq show: %v\n", err)
		return exitFailed
	}
	if asJSON {
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	fmt.Fprintf(stdout, "%s\n\npayload (%d of %d bytes", b, len(e.PayloadBytes()), e.PayloadSize)
	if e.Truncated {
		fmt.Fprint(stdout, ", truncated")
	}
	fmt.Fprintln(stdout, "):")
	p := e.PayloadBytes()
	if utf8.Valid(p) {
		fmt.Fprintf(stdout, "%s\n", p)
	} else {
		fmt.Fprintf(stdout, "%q\n", p)
	}
	return exitOK
}

type dlqStatsDoc struct {
	Store   string           `json:"store"`
	Total   int64            `json:"total"`
	ByClass map[string]int64 `json:"by_class"`
	ByStage map[string]int64 `json:"by_stage"`
	BySrc   map[string]int64 `json:"by_source"`
	Oldest  *time.Time       `json:"oldest,omitempty"`
	Newest  *time.Time       `json:"newest,omitempty"`
}

func dlqStats(ctx context.Context, store dlq.Store, f dlq.Filter, where string, asJSON bool, stdout, stderr io.Writer) int {
	d := dlqStatsDoc{Store: where, ByClass: map[string]int64{}, ByStage: map[string]int64{}, BySrc: map[string]int64{}}
	err := scanFiltered(ctx, store, f, func(e *dlq.Entry) error {
		d.Total++
		d.ByClass[e.Error.Class]++
		d.ByStage[e.Stage]++
		src := e.Source.Path
		if src == "" {
			src = cmpOr(e.Source.Topic, e.Source.Stream, e.Source.Kind)
		}
		d.BySrc[src]++
		t := e.Time
		if d.Oldest == nil || t.Before(*d.Oldest) {
			d.Oldest = &t
		}
		if d.Newest == nil || t.After(*d.Newest) {
			t2 := t
			d.Newest = &t2
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: dlq stats: %v\n", err)
		return exitFailed
	}
	if asJSON {
		b, _ := json.MarshalIndent(d, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	fmt.Fprintf(stdout, "dlq %s: %d entries", where, d.Total)
	if d.Oldest != nil {
		fmt.Fprintf(stdout, ", oldest %s, newest %s", d.Oldest.UTC().Format(time.RFC3339), d.Newest.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(stdout)
	for _, sec := range []struct {
		name string
		m    map[string]int64
	}{{"class", d.ByClass}, {"stage", d.ByStage}, {"source", d.BySrc}} {
		if len(sec.m) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "\nby %s\tentries\n", sec.name)
		keys := slices.Sorted(maps.Keys(sec.m))
		slices.SortStableFunc(keys, func(a, b string) int { return int(sec.m[b] - sec.m[a]) })
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%d\n", cmpOr(k, "(none)"), sec.m[k])
		}
		tw.Flush()
	}
	return exitOK
}

func cmpOr(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func dlqPurge(ctx context.Context, store dlq.Store, f dlq.Filter, where string, yes bool, stdout, stderr io.Writer) int {
	// A file DLQ is locked before it is read, so that a run writing to it
	// makes purge refuse instead of deleting what it scanned a moment ago.
	for _, s := range fileStores(store) {
		if err := s.Lock(); err != nil {
			fmt.Fprintf(stderr, "pipeline: dlq purge: %v: refusing to purge; stop the run first\n", err)
			return exitFailed
		}
	}
	var ids []string
	if err := scanFiltered(ctx, store, f, func(e *dlq.Entry) error {
		ids = append(ids, e.ID)
		return nil
	}); err != nil {
		fmt.Fprintf(stderr, "pipeline: dlq purge: %v\n", err)
		return exitFailed
	}
	if len(ids) == 0 {
		fmt.Fprintln(stdout, "dlq purge: no entry matches; nothing deleted")
		return exitOK
	}
	if !yes {
		fmt.Fprintf(stdout, "delete %d entries from the DLQ %s? [y/N] ", len(ids), where)
		answer, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(stdout, "not deleted")
			return exitOK
		}
	}
	n, err := store.Delete(ctx, ids)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: dlq purge: deleted %d of %d: %v\n", n, len(ids), err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "dlq purge: deleted %d entries from %s\n", n, where)
	return exitOK
}

func dlqReplay(ctx context.Context, cfg *config.Config, store dlq.StepStore, f dlq.Filter, dryRun, asJSON bool, log *slog.Logger, stdout, stderr io.Writer) int {
	rep, err := app.ReplayDLQ(ctx, cfg, store, app.DLQOptions{Filter: f, DryRun: dryRun, Logger: log, Version: buildVersion()})
	if rep == nil {
		fmt.Fprintf(stderr, "pipeline: dlq replay: %v\n", err)
		return exitFailed
	}
	if asJSON {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		verb := "replayed"
		if rep.DryRun {
			verb = "would replay"
		}
		fmt.Fprintf(stdout, "dlq replay: %d entries match; %s %d: %d delivered", rep.Selected, verb, rep.Replayed, rep.Delivered)
		for _, c := range slices.Sorted(maps.Keys(rep.FailedAgain)) {
			fmt.Fprintf(stdout, ", %d failed again (%s)", rep.FailedAgain[c], c)
		}
		fmt.Fprintln(stdout)
		for _, r := range slices.Sorted(maps.Keys(rep.Skipped)) {
			fmt.Fprintf(stdout, "  left in the DLQ: %d: %s\n", rep.Skipped[r], r)
		}
		if rep.Superseded > 0 {
			fmt.Fprintf(stdout, "  already replayed by an earlier run that died before deleting them: %d\n", rep.Superseded)
		}
		if !rep.DryRun {
			fmt.Fprintf(stdout, "  deleted from the DLQ: %d (failed records are new entries with replay_count + 1)\n", rep.Deleted)
		}
		if rep.Run != nil {
			rep.Run.WriteSummary(stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: dlq replay: %v\n", err)
		return exitFailed
	}
	return exitOK
}
