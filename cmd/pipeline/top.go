package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gdamore/tcell/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/term"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline"
)

// cmdTop is `pipeline top`: a live view of a running instance, read from
// its /metrics (and /readyz, for the sources' and the job's states). It
// only reads the endpoint, so it works against `pipeline run` and
// `pipeline replay --metrics` alike, on this host or through a tunnel.
func cmdTop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file whose telemetry.listen is scraped (default: the embedded config.yaml)")
	rawURL := fs.String("url", "", "the /metrics URL to scrape, instead of the config's telemetry.listen")
	interval := fs.Duration("interval", time.Second, "time between scrapes")
	once := fs.Bool("once", false, "print one plain-text snapshot (two scrapes an interval apart, for the rates) and exit")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return usageError(stderr, err)
	}
	if *interval < 100*time.Millisecond {
		return usageError(stderr, fmt.Errorf("top: --interval %s is below 100ms", *interval))
	}
	if *cfgPath != "" && *rawURL != "" {
		return usageError(stderr, errors.New("top: give -c or --url, not both"))
	}
	target, err := topTarget(*cfgPath, *rawURL)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: top: %v\n", err)
		return exitUsage
	}
	sc := newTopScraper(target, *interval)

	// A script, a pipe or a CI log gets text it can keep, not escape
	// sequences.
	f, isFile := stdout.(*os.File)
	if *once || !isFile || !term.IsTerminal(int(f.Fd())) {
		return topSnapshot(ctx, sc, *interval, stdout, stderr)
	}
	return topLive(ctx, sc, *interval, stderr)
}

// topTarget is the /metrics URL to scrape: --url as given (a bare
// host:port gets http:// and /metrics), else the config's
// telemetry.listen, with an address that listens on every interface
// reached through loopback.
func topTarget(cfgPath, raw string) (string, error) {
	if raw == "" {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return "", err
		}
		if !cfg.Telemetry.On() {
			return "", errors.New("telemetry.enabled is false in the config: the process serves no metrics (give --url if another does)")
		}
		host, port, err := net.SplitHostPort(cfg.Telemetry.Listen)
		if err != nil {
			return "", fmt.Errorf("telemetry.listen: %w", err)
		}
		if port == "0" {
			return "", errors.New("telemetry.listen has port 0: the port is chosen at start and logged (telemetry: serving ... addr=); give it with --url")
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		return "http://" + net.JoinHostPort(host, port) + "/metrics", nil
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("--url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("--url %q: want http://host:port/metrics", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/metrics"
	}
	return u.String(), nil
}

// topSample is one scrape: the metric families, the /readyz body when it
// answered with one, and when the scrape was taken.
type topSample struct {
	At       time.Time
	Families map[string]*dto.MetricFamily
	Ready    *topReady
}

// topReady is the part of /readyz's body top shows.
type topReady struct {
	Status     string                       `json:"status"`
	Uptime     float64                      `json:"uptime_seconds"`
	Components map[string]topReadyComponent `json:"components"`
}

type topReadyComponent struct {
	Ready bool   `json:"ready"`
	State string `json:"state"`
	Error string `json:"error"`
}

// parseTopSample parses a /metrics body in the Prometheus text format and,
// when not nil, a /readyz body.
func parseTopSample(metrics io.Reader, readyz []byte, at time.Time) (topSample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(metrics)
	if err != nil {
		return topSample{}, fmt.Errorf("parse metrics: %w", err)
	}
	s := topSample{At: at, Families: mf}
	if readyz != nil {
		var r topReady
		// A /readyz that is not ours (another exporter on the port) only
		// costs the states: the metrics are still shown.
		if json.Unmarshal(readyz, &r) == nil && r.Components != nil {
			s.Ready = &r
		}
	}
	return s, nil
}

// topCount is a counter's value and its rate over the last interval
// (HasRate false on the first scrape).
type topCount struct {
	Name    string
	Total   float64
	Rate    float64
	HasRate bool
}

type topSource struct {
	Name, State, Error string
	// Ready is /readyz's word for the source.
	Ready bool
	// In is the records the source took: per source where the endpoint
	// counts by source, else the job-wide count when the job has this one
	// source (then it is the same number); HasIn false otherwise.
	In    topCount
	HasIn bool
	// Lag is the sum of the source's tracepipe_source_lag* samples (its
	// partitions, its files), in LagUnit; HasLag false where the endpoint
	// exports none.
	Lag     float64
	LagUnit string
	HasLag  bool
}

type topSink struct {
	Name                               string
	Records                            topCount
	Batches, Failures, Retries, GaveUp float64
	// Breaker is closed, open or half_open; "" when the sink has no
	// breaker (no retry policy).
	Breaker    string
	RetryQueue float64
}

type topWindows struct {
	Lag, Open, Memory, Closed, Overflow float64
	// Late is the late records by policy (dlq, drop, update, expired).
	Late []topCount
}

// topView is what top shows of two scrapes: the model the renderer draws,
// computed without I/O so that it can be checked on saved scrapes.
type topView struct {
	At                 time.Time
	Interval           time.Duration // between the two scrapes; 0 on the first
	Version, GoVersion string
	// Job is the job's phase from /readyz (running, draining...), Ready
	// its overall status; both "" without /readyz.
	Job, Ready string
	Uptime     float64

	// Records is in, out, filtered, dlq (the sum of the classes), units
	// and bytes read.
	Records []topCount
	Sources []topSource
	// PerSource is true when the endpoint counts records by source.
	PerSource bool
	Sinks     []topSink
	// DLQ is the entries by class; DLQTotal their sum.
	DLQ                 []topCount
	DLQTotal            topCount
	DLQLost, DLQEvicted float64
	DLQSize, DLQLimit   float64
	HasDLQSize          bool
	FallbackActive      bool
	FallbackEntries     float64
	HasFallback         bool
	Windows             *topWindows
	CheckpointAge       float64
	HasCheckpointAge    bool
	NotReady            []string // components /readyz says are not ready, with why
}

// topValue is the sample's value: a counter's, a gauge's or an untyped one's.
func topValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return math.NaN()
}

func topLabel(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// topSum is the sum of name's samples whose label has the value (any
// sample when label is ""), and whether there was one.
func topSum(fams map[string]*dto.MetricFamily, name, label, value string) (float64, bool) {
	var sum float64
	found := false
	for _, m := range fams[name].GetMetric() {
		if label != "" && topLabel(m, label) != value {
			continue
		}
		if v := topValue(m); !math.IsNaN(v) {
			sum += v
			found = true
		}
	}
	return sum, found
}

// topByLabel is name's samples summed by the value of label, and the
// values in order.
func topByLabel(fams map[string]*dto.MetricFamily, name, label string) (map[string]float64, []string) {
	out := map[string]float64{}
	var keys []string
	for _, m := range fams[name].GetMetric() {
		v := topLabel(m, label)
		if v == "" {
			continue
		}
		if _, ok := out[v]; !ok {
			keys = append(keys, v)
		}
		out[v] += topValue(m)
	}
	sort.Strings(keys)
	return out, keys
}

// count is the counter's total in cur and its rate since prev. A counter
// lower than before was reset (the process restarted): as Prometheus's
// rate does, the whole new value is taken as the increase.
func (c *topCounter) count(name, metric, label, value string) topCount {
	tc := topCount{Name: name}
	tc.Total, _ = topSum(c.cur.Families, metric, label, value)
	if c.prev == nil || c.dt <= 0 {
		return tc
	}
	before, ok := topSum(c.prev.Families, metric, label, value)
	if !ok {
		before = 0
	}
	d := tc.Total - before
	if d < 0 {
		d = tc.Total
	}
	tc.Rate, tc.HasRate = d/c.dt, true
	return tc
}

type topCounter struct {
	prev *topSample
	cur  topSample
	dt   float64
}

// The Prometheus names of the instruments top reads (app/telemetry.go's
// OpenTelemetry names after the exporter's translation).
const (
	mRecordsIn       = "tracepipe_records_in_total"
	mRecordsOut      = "tracepipe_records_out_total"
	mRecordsFiltered = "tracepipe_records_filtered_total"
	mUnits           = "tracepipe_units_read_total"
	mBytesRead       = "tracepipe_bytes_read_total"
	mDLQEntries      = "tracepipe_dlq_entries_total"
	mDLQLost         = "tracepipe_dlq_lost_total"
	mDLQEvicted      = "tracepipe_dlq_evicted_total"
	mDLQSize         = "tracepipe_dlq_size_bytes"
	mDLQLimit        = "tracepipe_dlq_size_limit_bytes"
	mFallbackActive  = "tracepipe_dlq_fallback_active"
	mFallbackEntries = "tracepipe_dlq_fallback_entries_total"
	mSinkRecords     = "tracepipe_sink_records_total"
	mSinkBatches     = "tracepipe_sink_batches_total"
	mSinkFailures    = "tracepipe_sink_write_failures_total"
	mSinkRetries     = "tracepipe_sink_retries_total"
	mSinkGaveUp      = "tracepipe_sink_given_up_total"
	mSinkBreaker     = "tracepipe_sink_breaker_state"
	mSinkQueue       = "tracepipe_sink_retry_queue_depth"
	mWindowLag       = "tracepipe_window_watermark_lag_seconds"
	mWindowOpen      = "tracepipe_window_open"
	mWindowMemory    = "tracepipe_window_memory_bytes"
	mWindowClosed    = "tracepipe_window_closed_total"
	mWindowLate      = "tracepipe_window_late_total"
	mWindowOverflow  = "tracepipe_window_overflow_total"
	mCheckpointAge   = "tracepipe_checkpoint_age_seconds"
	mBuildInfo       = "tracepipe_build_info"
)

// sourceLagFamily matches the source lag families, one per kind of source
// (tracepipe.source.<kind>.lag: tracepipe_source_file_lag_bytes,
// tracepipe_source_kafka_lag, tracepipe_source_redis_lag): the kind, and
// the unit when the exporter put one in the name.
var sourceLagFamily = regexp.MustCompile(`^tracepipe_source_([a-z]+)_lag(?:_([a-z]+))?$`)

// lagUnits names the unit of a lag family whose name has none.
var lagUnits = map[string]string{"kafka": "messages", "redis": "entries"}

// computeTop turns the current scrape, and the one before when there is
// one, into the rows top shows, with rates from the counters' deltas.
func computeTop(prev *topSample, cur topSample) topView {
	c := &topCounter{prev: prev, cur: cur}
	v := topView{At: cur.At}
	if prev != nil && cur.At.After(prev.At) {
		v.Interval = cur.At.Sub(prev.At)
		c.dt = v.Interval.Seconds()
	}
	f := cur.Families
	if ms := f[mBuildInfo].GetMetric(); len(ms) > 0 {
		v.Version, v.GoVersion = topLabel(ms[0], "version"), topLabel(ms[0], "go_version")
	}

	// The DLQ's classes: the pipeline's, in its order, and any other the
	// endpoint reports (a newer process).
	classes := make([]string, 0, len(pipeline.Classes))
	known := map[string]bool{}
	for _, cl := range pipeline.Classes {
		classes = append(classes, string(cl))
		known[string(cl)] = true
	}
	_, scraped := topByLabel(f, mDLQEntries, "class")
	for _, cl := range scraped {
		if !known[cl] {
			classes = append(classes, cl)
		}
	}
	v.DLQTotal = topCount{Name: "dlq"}
	for _, cl := range classes {
		tc := c.count(cl, mDLQEntries, "class", cl)
		v.DLQTotal.Total += tc.Total
		v.DLQTotal.Rate += tc.Rate
		v.DLQTotal.HasRate = tc.HasRate
		if tc.Total > 0 || tc.Rate > 0 {
			v.DLQ = append(v.DLQ, tc)
		}
	}
	in := c.count("in", mRecordsIn, "", "")
	v.Records = []topCount{
		in,
		c.count("out", mRecordsOut, "", ""),
		c.count("filtered", mRecordsFiltered, "", ""),
		v.DLQTotal,
		c.count("units read", mUnits, "", ""),
		c.count("bytes read", mBytesRead, "", ""),
	}
	v.DLQLost, _ = topSum(f, mDLQLost, "", "")
	v.DLQEvicted, _ = topSum(f, mDLQEvicted, "", "")
	size, okSize := topSum(f, mDLQSize, "", "")
	limit, okLimit := topSum(f, mDLQLimit, "", "")
	v.DLQSize, v.DLQLimit, v.HasDLQSize = size, limit, okSize && okLimit
	if a, ok := topSum(f, mFallbackActive, "", ""); ok {
		v.HasFallback, v.FallbackActive = true, a != 0
		v.FallbackEntries, _ = topSum(f, mFallbackEntries, "", "")
	}

	// Sources: /readyz names them (with their state); the metrics do
	// where they carry a source label.
	states := map[string]topReadyComponent{}
	var names []string
	if r := cur.Ready; r != nil {
		v.Ready, v.Uptime = r.Status, r.Uptime
		v.Job = r.Components["job"].State
		comps := make([]string, 0, len(r.Components))
		for k := range r.Components {
			comps = append(comps, k)
		}
		sort.Strings(comps)
		for _, k := range comps {
			st := r.Components[k]
			if !st.Ready {
				why := st.State
				if st.Error != "" {
					why += ": " + st.Error
				}
				v.NotReady = append(v.NotReady, k+" "+why)
			}
			if name, ok := strings.CutPrefix(k, "source/"); ok {
				states[name] = st
				names = append(names, name)
			}
		}
	}
	bySource, srcNames := topByLabel(f, mRecordsIn, "source")
	v.PerSource = len(srcNames) > 0
	lags := map[string]float64{}
	lagUnit := map[string]string{}
	for fam, mf := range f {
		lm := sourceLagFamily.FindStringSubmatch(fam)
		if lm == nil {
			continue
		}
		unit := lm[2]
		if unit == "" {
			unit = lagUnits[lm[1]]
		}
		for _, m := range mf.GetMetric() {
			if s := topLabel(m, "source"); s != "" {
				lags[s] += topValue(m)
				lagUnit[s] = unit
			}
		}
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	for _, n := range append(srcNames, sortedKeys(lags)...) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		st := states[n]
		s := topSource{Name: n, State: st.State, Error: st.Error, Ready: st.Ready || cur.Ready == nil}
		switch {
		case v.PerSource:
			_, s.HasIn = bySource[n]
			s.In = c.count(n, mRecordsIn, "source", n)
		case len(names) == 1:
			// One source: the job-wide count is its count.
			s.In, s.HasIn = in, true
			s.In.Name = n
		}
		s.Lag, s.HasLag = lags[n]
		s.LagUnit = lagUnit[n]
		v.Sources = append(v.Sources, s)
	}

	// Sinks, by the sink label of their records counter.
	_, sinks := topByLabel(f, mSinkRecords, "sink")
	for _, n := range sinks {
		s := topSink{Name: n, Records: c.count(n, mSinkRecords, "sink", n)}
		s.Batches, _ = topSum(f, mSinkBatches, "sink", n)
		s.Failures, _ = topSum(f, mSinkFailures, "sink", n)
		s.Retries, _ = topSum(f, mSinkRetries, "sink", n)
		s.GaveUp, _ = topSum(f, mSinkGaveUp, "sink", n)
		s.RetryQueue, _ = topSum(f, mSinkQueue, "sink", n)
		if b, ok := topSum(f, mSinkBreaker, "sink", n); ok {
			switch b {
			case 1:
				s.Breaker = "open"
			case 2:
				s.Breaker = "half_open"
			default:
				s.Breaker = "closed"
			}
		}
		v.Sinks = append(v.Sinks, s)
	}

	if lag, ok := topSum(f, mWindowLag, "", ""); ok {
		w := &topWindows{Lag: lag}
		w.Open, _ = topSum(f, mWindowOpen, "", "")
		w.Memory, _ = topSum(f, mWindowMemory, "", "")
		w.Closed, _ = topSum(f, mWindowClosed, "", "")
		w.Overflow, _ = topSum(f, mWindowOverflow, "", "")
		for _, p := range []string{"dlq", "drop", "update", "expired"} {
			w.Late = append(w.Late, c.count(p, mWindowLate, "policy", p))
		}
		v.Windows = w
	}
	v.CheckpointAge, v.HasCheckpointAge = topSum(f, mCheckpointAge, "", "")
	return v
}

func sortedKeys(m map[string]float64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// The kinds of line top draws; the terminal view gives each its style,
// the plain snapshot ignores them.
type topStyle int

const (
	styleNormal topStyle = iota
	styleHeader
	styleSection
	styleAlert
	styleDim
)

type topLine struct {
	Text  string
	Style topStyle
}

// topStatus is what the renderer knows besides the view: where it
// scrapes, when the last scrape was, and the last error (empty when the
// last scrape worked).
type topStatus struct {
	URL    string
	Now    time.Time
	LastOK time.Time // zero before the first good scrape
	Err    string
	Retry  time.Duration
	Plain  bool // a snapshot: no "q quits" hint
}

// renderTop lays out the view as lines of text (v nil before the first
// good scrape).
func renderTop(v *topView, st topStatus) []topLine {
	var out []topLine
	add := func(style topStyle, format string, a ...any) {
		out = append(out, topLine{Text: fmt.Sprintf(format, a...), Style: style})
	}
	head := "pipeline top  " + st.URL
	if v != nil && v.Version != "" {
		head += "  build " + v.Version
		if v.GoVersion != "" {
			head += " (" + v.GoVersion + ")"
		}
	}
	add(styleHeader, "%s", head)
	scraped := "never scraped"
	if !st.LastOK.IsZero() {
		scraped = fmt.Sprintf("scraped %s (%s ago)", st.LastOK.Format("15:04:05"), fmtAge(st.Now.Sub(st.LastOK)))
	}
	if v != nil && v.Job != "" {
		scraped += fmt.Sprintf("  job %s, %s, up %s", v.Job, v.Ready, fmtSeconds(v.Uptime))
	}
	if v != nil && v.Interval > 0 {
		scraped += fmt.Sprintf("  rates over %s", fmtAge(v.Interval))
	}
	if !st.Plain {
		scraped += "  (q quits)"
	}
	add(styleDim, "%s", scraped)
	if st.Err != "" {
		add(styleAlert, "cannot reach %s: %s (retrying every %s)", st.URL, st.Err, st.Retry)
	}
	if v == nil {
		return out
	}
	for _, nr := range v.NotReady {
		add(styleAlert, "not ready: %s", nr)
	}

	add(styleNormal, "")
	add(styleSection, "%-22s %14s %12s", "RECORDS", "total", "per second")
	for _, r := range v.Records {
		total, rate := fmtCount(r.Total), fmtRate(r)
		if r.Name == "bytes read" {
			total = fmtBytes(r.Total)
			if r.HasRate {
				rate = fmtBytes(r.Rate) + "/s"
			}
		}
		add(styleNormal, "  %-20s %14s %12s", r.Name, total, rate)
	}

	add(styleNormal, "")
	add(styleSection, "%-22s %-10s %14s %12s %14s", "SOURCE", "state", "records in", "per second", "lag")
	if len(v.Sources) == 0 {
		add(styleDim, "  (no source named by /readyz or the metrics)")
	}
	for _, s := range v.Sources {
		in, rate := "-", "-"
		if s.HasIn {
			in, rate = fmtCount(s.In.Total), fmtRate(s.In)
		}
		lag := "-"
		if s.HasLag {
			lag = fmtCount(s.Lag)
			if s.LagUnit == "bytes" {
				lag = fmtBytes(s.Lag)
			} else if s.LagUnit != "" {
				lag += " " + s.LagUnit
			}
		}
		state := s.State
		if state == "" {
			state = "-"
		}
		style := styleNormal
		if !s.Ready {
			style = styleAlert
		}
		add(style, "  %-20s %-10s %14s %12s %14s", s.Name, state, in, rate, lag)
	}
	if len(v.Sources) > 1 && !v.PerSource {
		add(styleDim, "  (the endpoint counts records job-wide: see RECORDS)")
	}

	add(styleNormal, "")
	add(styleSection, "%-22s %14s %12s %9s %9s %9s %9s %-9s %6s", "SINK", "records", "per second", "batches", "failures", "retries", "gave up", "breaker", "queue")
	for _, s := range v.Sinks {
		br := s.Breaker
		if br == "" {
			br = "-"
		}
		style := styleNormal
		if br == "open" || br == "half_open" || s.RetryQueue > 0 {
			style = styleAlert
		}
		add(style, "  %-20s %14s %12s %9s %9s %9s %9s %-9s %6s", s.Name, fmtCount(s.Records.Total), fmtRate(s.Records),
			fmtCount(s.Batches), fmtCount(s.Failures), fmtCount(s.Retries), fmtCount(s.GaveUp), br, fmtCount(s.RetryQueue))
	}

	add(styleNormal, "")
	add(styleSection, "%-22s %14s %12s", "DLQ", "entries", "per second")
	if len(v.DLQ) == 0 {
		add(styleDim, "  (no entries)")
	}
	for _, d := range v.DLQ {
		add(styleNormal, "  %-20s %14s %12s", d.Name, fmtCount(d.Total), fmtRate(d))
	}
	var dlq []string
	if v.HasDLQSize {
		s := fmt.Sprintf("size %s of %s", fmtBytes(v.DLQSize), fmtBytes(v.DLQLimit))
		if v.DLQLimit > 0 {
			s += fmt.Sprintf(" (%.1f%%)", 100*v.DLQSize/v.DLQLimit)
		}
		dlq = append(dlq, s)
	}
	dlq = append(dlq, "lost "+fmtCount(v.DLQLost), "evicted "+fmtCount(v.DLQEvicted))
	style := styleDim
	if v.DLQLost > 0 || (v.HasDLQSize && v.DLQLimit > 0 && v.DLQSize >= 0.9*v.DLQLimit) {
		style = styleAlert
	}
	add(style, "  %s", strings.Join(dlq, ", "))
	if v.HasFallback {
		fb := "fallback idle"
		style := styleDim
		if v.FallbackActive {
			fb, style = "FALLBACK ACTIVE: entries go to the local file DLQ", styleAlert
		}
		add(style, "  %s, %s entries handed to it", fb, fmtCount(v.FallbackEntries))
	}

	if w := v.Windows; w != nil {
		add(styleNormal, "")
		add(styleSection, "WINDOWS")
		add(styleNormal, "  watermark lag %s, open %s, closed %s, memory %s, overflow %s",
			fmtSeconds(w.Lag), fmtCount(w.Open), fmtCount(w.Closed), fmtBytes(w.Memory), fmtCount(w.Overflow))
		late := make([]string, 0, len(w.Late))
		for _, l := range w.Late {
			late = append(late, fmt.Sprintf("%s %s (%s/s)", l.Name, fmtCount(l.Total), fmtRate(l)))
		}
		add(styleNormal, "  late: %s", strings.Join(late, ", "))
	}
	if v.HasCheckpointAge {
		add(styleNormal, "")
		add(styleNormal, "checkpoint age %s", fmtSeconds(v.CheckpointAge))
	}
	return out
}

func fmtCount(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	return fmt.Sprintf("%.0f", f)
}

func fmtRate(c topCount) string {
	if !c.HasRate {
		return "-"
	}
	if c.Rate >= 100 {
		return fmt.Sprintf("%.0f", c.Rate)
	}
	return fmt.Sprintf("%.1f", c.Rate)
}

func fmtBytes(f float64) string {
	const unit = 1024
	if f < unit {
		return fmt.Sprintf("%.0f B", f)
	}
	exp, div := 0, float64(unit)
	for n := f / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", f/div, "KMGTP"[exp])
}

func fmtSeconds(s float64) string {
	return fmtAge(time.Duration(s * float64(time.Second)))
}

// fmtAge is a duration as a person reads it: milliseconds below a second,
// tenths of a second below a minute, whole seconds past it.
func fmtAge(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// topScraper fetches /metrics and /readyz from one endpoint.
type topScraper struct {
	url, readyURL string
	client        *http.Client
}

func newTopScraper(target string, interval time.Duration) *topScraper {
	sc := &topScraper{url: target, client: &http.Client{Timeout: max(2*time.Second, interval)}}
	if u, err := url.Parse(target); err == nil {
		u.Path, u.RawQuery = "/readyz", ""
		sc.readyURL = u.String()
	}
	return sc
}

// maxScrape bounds what top reads of a response: far more than a
// tracepipe endpoint serves, and no way for a wrong port to fill memory.
const maxScrape = 32 << 20

func (sc *topScraper) scrape(ctx context.Context) (topSample, error) {
	get := func(u string, accept string) ([]byte, int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, 0, err
		}
		req.Header.Set("Accept", accept)
		resp, err := sc.client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxScrape))
		return body, resp.StatusCode, err
	}
	body, code, err := get(sc.url, "text/plain;version=0.0.4")
	at := time.Now()
	if err != nil {
		return topSample{}, err
	}
	if code != http.StatusOK {
		return topSample{}, fmt.Errorf("%s answered %d %s", sc.url, code, http.StatusText(code))
	}
	var ready []byte
	if sc.readyURL != "" {
		// 503 is a not-ready instance, and its body says why: kept.
		if b, code, err := get(sc.readyURL, "application/json"); err == nil && (code == http.StatusOK || code == http.StatusServiceUnavailable) {
			ready = b
		}
	}
	return parseTopSample(bytes.NewReader(body), ready, at)
}

// topSnapshot prints one plain-text view: two scrapes an interval apart,
// so that the rates are there too.
func topSnapshot(ctx context.Context, sc *topScraper, interval time.Duration, stdout, stderr io.Writer) int {
	first, err := sc.scrape(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: top: cannot reach %s: %v\n", sc.url, err)
		return exitFailed
	}
	prev, cur := (*topSample)(nil), first
	select {
	case <-ctx.Done():
	case <-time.After(interval):
		// A second scrape that fails leaves the first, without rates.
		if second, err := sc.scrape(ctx); err == nil {
			prev, cur = &first, second
		}
	}
	v := computeTop(prev, cur)
	for _, l := range renderTop(&v, topStatus{URL: sc.url, Now: time.Now(), LastOK: cur.At, Plain: true}) {
		fmt.Fprintln(stdout, strings.TrimRight(l.Text, " "))
	}
	return exitOK
}

type topResult struct {
	s   topSample
	err error
}

// topLive runs the terminal view until q, Esc, Ctrl-C or a signal. The
// scrapes run in their own goroutine so that a slow endpoint never keeps
// a key from being read.
func topLive(ctx context.Context, sc *topScraper, interval time.Duration, stderr io.Writer) (code int) {
	scr, err := tcell.NewScreen()
	if err == nil {
		err = scr.Init()
	}
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: top: terminal: %v (use --once for a plain snapshot)\n", err)
		return exitFailed
	}
	// The terminal is restored however top ends, a panic included (then
	// re-raised once the screen is readable again).
	defer func() {
		r := recover()
		scr.Fini()
		if r != nil {
			panic(r)
		}
	}()
	scr.HideCursor()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	results := make(chan topResult)
	wg.Go(func() {
		for {
			s, err := sc.scrape(ctx)
			select {
			case results <- topResult{s, err}:
			case <-ctx.Done():
				return
			}
			select {
			case <-time.After(interval):
			case <-ctx.Done():
				return
			}
		}
	})
	events := make(chan tcell.Event, 16)
	quit := make(chan struct{})
	defer close(quit)
	go scr.ChannelEvents(events, quit)

	var prev *topSample
	var view *topView
	st := topStatus{URL: sc.url, Retry: interval}
	tick := time.NewTicker(time.Second) // the "ago" in the header
	defer tick.Stop()
	for {
		st.Now = time.Now()
		drawTop(scr, renderTop(view, st))
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		case r := <-results:
			if r.err != nil {
				st.Err = r.err.Error()
				continue
			}
			v := computeTop(prev, r.s)
			view, st.Err, st.LastOK = &v, "", r.s.At
			s := r.s
			prev = &s
		case ev := <-events:
			switch ev := ev.(type) {
			case *tcell.EventKey:
				if ev.Key() == tcell.KeyCtrlC || ev.Key() == tcell.KeyEscape ||
					(ev.Key() == tcell.KeyRune && (ev.Rune() == 'q' || ev.Rune() == 'Q')) {
					return exitOK
				}
			case *tcell.EventResize:
				scr.Sync()
			}
		}
	}
}

// drawTop draws the lines from the top left, cut at the screen's edges.
func drawTop(scr tcell.Screen, lines []topLine) {
	styles := map[topStyle]tcell.Style{
		styleNormal:  tcell.StyleDefault,
		styleHeader:  tcell.StyleDefault.Bold(true).Reverse(true),
		styleSection: tcell.StyleDefault.Bold(true),
		styleAlert:   tcell.StyleDefault.Foreground(tcell.ColorRed).Bold(true),
		styleDim:     tcell.StyleDefault.Dim(true),
	}
	scr.Clear()
	w, h := scr.Size()
	for y, l := range lines {
		if y >= h {
			break
		}
		style := styles[l.Style]
		x := 0
		for _, r := range l.Text {
			if x >= w {
				break
			}
			scr.SetContent(x, y, r, nil, style)
			x++
		}
		if l.Style == styleHeader {
			for ; x < w; x++ {
				scr.SetContent(x, y, ' ', nil, style)
			}
		}
	}
	scr.Show()
}
