package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/jsonstr"
	"github.com/tracepipe/tracepipe/pipeline/windows"
)

// queryNow is the clock --last counts back from (tests set it).
var queryNow = time.Now

func cmdQuery(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file (default: the embedded config.yaml)")
	metricName := fs.String("metric", "", "the metric (windows.metrics[].name); may be left out when only one is configured")
	fromArg := fs.String("from", "", "first window start to include: RFC 3339 (2026-01-01T00:00:00Z) or a date (2026-01-01, UTC)")
	toArg := fs.String("to", "", "windows starting at or after this are left out: RFC 3339 or a date")
	last := fs.Duration("last", 0, "windows starting in the last DURATION: [now-DURATION, now)")
	byArg := fs.String("by", "", "group fields kept in the result, comma separated (default: one total over all groups)")
	where := map[string]string{}
	var whereOrder []string
	fs.Func("where", "only groups whose `field=value` (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want field=value, got %q", s)
		}
		if old, dup := where[k]; dup && old != v {
			return fmt.Errorf("%s is given twice, as %q and %q", k, old, v)
		}
		if _, dup := where[k]; !dup {
			whereOrder = append(whereOrder, k)
		}
		where[k] = v
		return nil
	})
	perWindow := fs.Bool("per-window", false, "one result per window instead of one over the whole range")
	asJSON := fs.Bool("json", false, "print one JSON document instead of a table")
	storeArg := fs.String("store", "", "file | redis (default: windows.sink.type of the config)")
	dirArg := fs.String("dir", "", "the file store's folder (default: windows.sink.file.dir)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(stderr, err)
	}
	if len(pos) > 0 {
		return usageError(stderr, fmt.Errorf("query: unexpected argument %q (query takes flags only)", pos[0]))
	}

	q := windows.Query{PerWindow: *perWindow}
	if len(where) > 0 {
		q.Where = where
	}
	if *last != 0 {
		if *fromArg != "" || *toArg != "" {
			return usageError(stderr, errors.New("query: --last cannot be combined with --from or --to"))
		}
		if *last < 0 {
			return usageError(stderr, fmt.Errorf("query: --last %s must be positive", *last))
		}
		q.To = queryNow().UTC()
		q.From = q.To.Add(-*last)
	}
	if q.From, err = parseQueryTime("--from", *fromArg, q.From); err != nil {
		return usageError(stderr, err)
	}
	if q.To, err = parseQueryTime("--to", *toArg, q.To); err != nil {
		return usageError(stderr, err)
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return usageError(stderr, fmt.Errorf("query: --to %s is not after --from %s", fmtQueryTime(q.To), fmtQueryTime(q.From)))
	}

	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitUsage
	}
	metric, err := queryMetric(cfg.Windows.Metrics, *metricName)
	if err != nil {
		return usageError(stderr, err)
	}
	q.Metric = metric.Name
	for f := range strings.SplitSeq(*byArg, ",") {
		if f = strings.TrimSpace(f); f != "" {
			q.By = append(q.By, f)
		}
	}
	for _, f := range append(slices.Clone(q.By), whereOrder...) {
		if !slices.Contains(metric.GroupBy, f) {
			groups := "it has no group_by"
			if len(metric.GroupBy) > 0 {
				groups = "it groups by " + strings.Join(metric.GroupBy, ", ")
			}
			return usageError(stderr, fmt.Errorf("query: metric %s has no group field %q (%s)", metric.Name, f, groups))
		}
	}
	for i, f := range q.By {
		if slices.Contains(q.By[:i], f) {
			return usageError(stderr, fmt.Errorf("query: --by lists %q twice", f))
		}
	}

	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	reader, code := openQueryStore(cfg, *storeArg, *dirArg, log, stderr)
	if reader == nil {
		return code
	}
	defer reader.Close()

	results, err := windows.Run(ctx, reader, q)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		if ctx.Err() != nil {
			return exitInterrupted
		}
		return exitFailed
	}
	if *asJSON {
		err = writeQueryJSON(stdout, q, results)
	} else {
		err = writeQueryTable(stdout, q, whereOrder, results)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// parseQueryTime reads an RFC 3339 time or a date (midnight UTC); empty
// keeps def.
func parseQueryTime(flagName, s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("query: %s %q: want an RFC 3339 time (2026-01-01T00:00:00Z) or a date (2026-01-01)", flagName, s)
}

func fmtQueryTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// queryMetric finds the metric by name; with no name, the only one.
func queryMetric(ms []config.Metric, name string) (config.Metric, error) {
	names := make([]string, len(ms))
	for i, m := range ms {
		if m.Name == name {
			return m, nil
		}
		names[i] = m.Name
	}
	switch {
	case len(ms) == 0:
		return config.Metric{}, errors.New("query: no metrics are configured (windows.metrics), so there are no windows to query")
	case name == "" && len(ms) == 1:
		return ms[0], nil
	case name == "":
		return config.Metric{}, fmt.Errorf("query: --metric is needed; configured metrics: %s", strings.Join(names, ", "))
	}
	return config.Metric{}, fmt.Errorf("query: metric %q is not configured; configured metrics: %s", name, strings.Join(names, ", "))
}

// openQueryStore opens the windows store to read: the config's sink, or
// the one --store names. On failure it returns a nil reader and the exit
// code, having said why.
func openQueryStore(cfg *config.Config, store, dir string, log *slog.Logger, stderr io.Writer) (windows.RowReader, int) {
	if store == "" {
		store = cfg.Windows.Sink.Type
	}
	switch store {
	case "file":
		if dir == "" {
			dir = "out/windows"
			if f := cfg.Windows.Sink.File; f != nil && f.Dir != "" {
				dir = f.Dir
			}
		}
		return windows.OpenFileReader(dir, func(msg string) {
			log.Warn("query: skipped a line that is not a window row", "at", msg)
		}), exitOK
	case "redis":
		if dir != "" {
			return nil, usageError(stderr, errors.New("query: --dir is for --store file"))
		}
		if cfg.Windows.Sink.Redis == nil {
			return nil, usageError(stderr, errors.New("query: --store redis: the config has no windows.sink.redis"))
		}
		r, err := newRedisReader(*cfg.Windows.Sink.Redis, log)
		if err != nil {
			fmt.Fprintf(stderr, "pipeline: %v\n", err)
			return nil, exitFailed
		}
		return r, exitOK
	}
	return nil, usageError(stderr, fmt.Errorf("query: --store %q is not one of file, redis", store))
}

// describeQuery says what was asked: the metric, the range and the filter.
func describeQuery(q windows.Query, whereOrder []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "metric %s, ", q.Metric)
	switch {
	case q.From.IsZero() && q.To.IsZero():
		b.WriteString("all windows")
	case q.From.IsZero():
		fmt.Fprintf(&b, "windows starting before %s", fmtQueryTime(q.To))
	case q.To.IsZero():
		fmt.Fprintf(&b, "windows starting at or after %s", fmtQueryTime(q.From))
	default:
		fmt.Fprintf(&b, "windows starting in [%s, %s)", fmtQueryTime(q.From), fmtQueryTime(q.To))
	}
	for i, k := range whereOrder {
		sep := " and "
		if i == 0 {
			sep = ", where "
		}
		fmt.Fprintf(&b, "%s%s=%s", sep, k, queryCell(q.Where[k]))
	}
	return b.String()
}

func writeQueryTable(w io.Writer, q windows.Query, whereOrder []string, results []windows.Result) error {
	var buf bytes.Buffer
	head := describeQuery(q, whereOrder)
	if len(results) == 0 {
		fmt.Fprintf(&buf, "%s: no windows found\n", head)
		_, err := w.Write(buf.Bytes())
		return err
	}
	var insts []string
	for _, r := range results {
		insts = append(insts, r.Instances...)
	}
	slices.Sort(insts)
	insts = slices.Compact(insts)
	fmt.Fprintf(&buf, "%s: %d %s, %d %s merged (%s)\n", head,
		len(results), queryPlural(len(results), "result", "results"),
		len(insts), queryPlural(len(insts), "instance", "instances"), strings.Join(insts, ", "))

	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	var cols []string
	if q.PerWindow {
		cols = append(cols, "window_start")
	}
	cols = append(cols, q.By...)
	cols = append(cols, "distinct", "windows", "rows")
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range results {
		cols = cols[:0]
		if q.PerWindow {
			cols = append(cols, fmtQueryTime(r.WindowStart))
		}
		for _, v := range r.GroupValues {
			cols = append(cols, queryCell(v))
		}
		cols = append(cols, strconv.FormatUint(r.Estimate, 10), strconv.Itoa(r.Windows), strconv.Itoa(r.Rows))
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// queryCell shows a group value in one table cell: Go-quoted when it is
// empty, starts or ends with a space, or holds a control character, so
// that every value is visible and columns stay aligned.
func queryCell(v string) string {
	if v == "" || v[0] == ' ' || v[len(v)-1] == ' ' || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return strconv.Quote(v)
	}
	return v
}

func queryPlural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// The --json document. Field order is the key order.
type queryDoc struct {
	Metric  string           `json:"metric"`
	From    *string          `json:"from"` // null: open
	To      *string          `json:"to"`
	Results []queryDocResult `json:"results"`
}

type queryDocResult struct {
	WindowStart string        `json:"window_start,omitempty"`
	Group       queryDocGroup `json:"group"`
	Distinct    uint64        `json:"distinct"`
	Windows     int           `json:"windows"`
	Rows        int           `json:"rows"`
	Instances   []string      `json:"instances"`
}

// queryDocGroup is a JSON object whose keys keep the --by order.
type queryDocGroup struct{ keys, values []string }

func (g queryDocGroup) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, k := range g.keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonstr.AppendString(b, k)
		b = append(b, ':')
		b = jsonstr.AppendString(b, g.values[i])
	}
	return append(b, '}'), nil
}

func writeQueryJSON(w io.Writer, q windows.Query, results []windows.Result) error {
	doc := queryDoc{Metric: q.Metric, Results: make([]queryDocResult, 0, len(results))}
	if !q.From.IsZero() {
		s := fmtQueryTime(q.From)
		doc.From = &s
	}
	if !q.To.IsZero() {
		s := fmtQueryTime(q.To)
		doc.To = &s
	}
	for _, r := range results {
		d := queryDocResult{
			Group:     queryDocGroup{keys: r.GroupKeys, values: r.GroupValues},
			Distinct:  r.Estimate,
			Windows:   r.Windows,
			Rows:      r.Rows,
			Instances: r.Instances,
		}
		if q.PerWindow {
			d.WindowStart = fmtQueryTime(r.WindowStart)
		}
		if d.Instances == nil {
			d.Instances = []string{}
		}
		doc.Results = append(doc.Results, d)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}
