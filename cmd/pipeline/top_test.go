package main

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// topScrapeInterval is how far apart testdata/top's two scrapes of a real
// `pipeline run` were taken (the clock read before each request).
const topScrapeInterval = 1029441899 * time.Nanosecond

// loadTopSample parses testdata/top/metrics-N.prom (and readyz-N.json
// when ready) as if scraped at at.
func loadTopSample(t *testing.T, n int, ready bool, at time.Time, edit func(string) string) topSample {
	t.Helper()
	m, err := os.ReadFile(filepath.Join("testdata", "top", fmt.Sprintf("metrics-%d.prom", n)))
	if err != nil {
		t.Fatal(err)
	}
	text := string(m)
	if edit != nil {
		text = edit(text)
	}
	var r []byte
	if ready {
		if r, err = os.ReadFile(filepath.Join("testdata", "top", fmt.Sprintf("readyz-%d.json", n))); err != nil {
			t.Fatal(err)
		}
	}
	s, err := parseTopSample(strings.NewReader(text), r, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func topFind(cs []topCount, name string) (topCount, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c, true
		}
	}
	return topCount{}, false
}

// TestTopComputeFromRealScrapes: computeTop on two real scrapes of a
// `pipeline run` (testdata/top, one second apart, a file source "logs",
// sinks "records" and "sample", windows, a file DLQ) gives the totals of
// the second scrape and rates equal to the counters' deltas over the
// interval; a counter that went down counts as reset; without /readyz
// there is no source row (the records are counted job-wide); with
// per-source counters and a lag family (a newer endpoint) the source row
// takes them; a breaker's gauge maps to its state.
func TestTopComputeFromRealScrapes(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 2, 18, 39, 9, 8882468, time.UTC)
	t1 := t0.Add(topScrapeInterval)
	dt := topScrapeInterval.Seconds()

	type want struct {
		name        string
		total, rate float64
		hasRate     bool
	}
	cases := []struct {
		name    string
		prev    func(t *testing.T) *topSample
		cur     func(t *testing.T) topSample
		records []want // by name in v.Records
		dlq     []want // by class
		sinks   []want // by sink name (records)
		sources []want // by source name (records in)
		late    []want
		check   func(t *testing.T, v topView)
	}{{
		name: "first scrape: totals, no rates",
		cur:  func(t *testing.T) topSample { return loadTopSample(t, 1, true, t0, nil) },
		records: []want{{"in", 25000, 0, false}, {"out", 24513, 0, false}, {"filtered", 0, 0, false},
			{"dlq", 487, 0, false}, {"units read", 25000, 0, false}, {"bytes read", 15576037, 0, false}},
		dlq:     []want{{"invalid", 133, 0, false}, {"malformed", 354, 0, false}},
		sinks:   []want{{"records", 24513, 0, false}, {"sample", 24513, 0, false}},
		sources: []want{{"logs", 25000, 0, false}},
		late:    []want{{"dlq", 0, 0, false}, {"drop", 0, 0, false}, {"update", 59, 0, false}, {"expired", 0, 0, false}},
	}, {
		name: "one second later: rates from the deltas",
		prev: func(t *testing.T) *topSample { s := loadTopSample(t, 1, true, t0, nil); return &s },
		cur:  func(t *testing.T) topSample { return loadTopSample(t, 2, true, t1, nil) },
		records: []want{{"in", 37846, 12846 / dt, true}, {"out", 37121, 12608 / dt, true}, {"filtered", 0, 0, true},
			{"dlq", 682, 195 / dt, true}, {"units read", 37846, 12846 / dt, true}, {"bytes read", 23921000, (23921000 - 15576037) / dt, true}},
		dlq:     []want{{"invalid", 175, 42 / dt, true}, {"malformed", 507, 153 / dt, true}},
		sinks:   []want{{"records", 37121, 12608 / dt, true}, {"sample", 37121, 12608 / dt, true}},
		sources: []want{{"logs", 37846, 12846 / dt, true}},
		late:    []want{{"dlq", 0, 0, true}, {"drop", 0, 0, true}, {"update", 105, 46 / dt, true}, {"expired", 0, 0, true}},
		check: func(t *testing.T, v topView) {
			if v.Interval != topScrapeInterval {
				t.Errorf("interval %v", v.Interval)
			}
			if v.Version != "dev" || v.GoVersion != "go1.26.8" || v.Job != "running" || v.Ready != "ready" || len(v.NotReady) != 0 {
				t.Errorf("header: %q %q job %q ready %q not ready %v", v.Version, v.GoVersion, v.Job, v.Ready, v.NotReady)
			}
			if !v.HasDLQSize || v.DLQSize != 819477 || v.DLQLimit != 64<<20 || v.DLQLost != 0 || v.HasFallback {
				t.Errorf("dlq size %v/%v (%v) lost %v fallback %v", v.DLQSize, v.DLQLimit, v.HasDLQSize, v.DLQLost, v.HasFallback)
			}
			w := v.Windows
			if w == nil || w.Open != 1 || w.Closed != 1 || w.Memory != 121949 || math.Abs(w.Lag-2.901114696026485e+07) > 1e-3 {
				t.Errorf("windows %+v", w)
			}
			if !v.HasCheckpointAge || v.CheckpointAge != 0.020604788 {
				t.Errorf("checkpoint age %v %v", v.CheckpointAge, v.HasCheckpointAge)
			}
			for _, s := range v.Sinks {
				if s.Breaker != "closed" || s.Batches != 82 || s.RetryQueue != 0 || s.Failures != 0 {
					t.Errorf("sink %+v", s)
				}
			}
			if s := v.Sources[0]; s.State != "running" || !s.Ready || s.HasLag {
				t.Errorf("source %+v", s)
			}
		},
	}, {
		name:    "counters lower than before: a restart, the new value is the increase",
		prev:    func(t *testing.T) *topSample { s := loadTopSample(t, 2, true, t0, nil); return &s },
		cur:     func(t *testing.T) topSample { return loadTopSample(t, 1, true, t1, nil) },
		records: []want{{"in", 25000, 25000 / dt, true}, {"dlq", 487, 487 / dt, true}},
		dlq:     []want{{"invalid", 133, 133 / dt, true}, {"malformed", 354, 354 / dt, true}},
		sinks:   []want{{"records", 24513, 24513 / dt, true}},
	}, {
		name:  "no /readyz: no source is known, records stay job-wide",
		prev:  func(t *testing.T) *topSample { s := loadTopSample(t, 1, false, t0, nil); return &s },
		cur:   func(t *testing.T) topSample { return loadTopSample(t, 2, false, t1, nil) },
		sinks: []want{{"records", 37121, 12608 / dt, true}},
		check: func(t *testing.T, v topView) {
			if len(v.Sources) != 0 || v.Job != "" {
				t.Errorf("sources %+v job %q", v.Sources, v.Job)
			}
		},
	}, {
		name: "per-source counters and lag, an open breaker with a queue",
		prev: func(t *testing.T) *topSample {
			s := loadTopSample(t, 1, true, t0, topPerSource(25000-100, 100, 0))
			return &s
		},
		cur: func(t *testing.T) topSample {
			return loadTopSample(t, 2, true, t1, func(s string) string {
				s = topPerSource(37846-300, 300, 4096)(s)
				s = strings.Replace(s, `tracepipe_sink_breaker_state{sink="records"} 0`, `tracepipe_sink_breaker_state{sink="records"} 1`, 1)
				s = strings.Replace(s, `tracepipe_sink_breaker_state{sink="sample"} 0`, `tracepipe_sink_breaker_state{sink="sample"} 2`, 1)
				return strings.Replace(s, `tracepipe_sink_retry_queue_depth{sink="records"} 0`, `tracepipe_sink_retry_queue_depth{sink="records"} 3`, 1)
			})
		},
		records: []want{{"in", 37846, 12846 / dt, true}},
		sources: []want{{"logs", 37846 - 300, (37846 - 300 - 24900) / dt, true}, {"other", 300, 200 / dt, true}},
		check: func(t *testing.T, v topView) {
			if !v.PerSource {
				t.Error("PerSource false")
			}
			lags := map[string]string{}
			for _, s := range v.Sources {
				lags[s.Name] = fmt.Sprintf("%v %v %s", s.HasLag, s.Lag, s.LagUnit)
			}
			if lags["logs"] != "true 4096 bytes" || lags["other"] != "false 0 " {
				t.Errorf("lags %v", lags)
			}
			if v.Sinks[0].Breaker != "open" || v.Sinks[0].RetryQueue != 3 || v.Sinks[1].Breaker != "half_open" {
				t.Errorf("sinks %+v", v.Sinks)
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var prev *topSample
			if tc.prev != nil {
				prev = tc.prev(t)
			}
			v := computeTop(prev, tc.cur(t))
			eq := func(what string, got topCount, ok bool, w want) {
				t.Helper()
				if !ok {
					t.Errorf("%s %s: no row", what, w.name)
					return
				}
				if got.Total != w.total || got.HasRate != w.hasRate || math.Abs(got.Rate-w.rate) > 1e-6 {
					t.Errorf("%s %s: total %v rate %v (%v), want %v %v (%v)", what, w.name, got.Total, got.Rate, got.HasRate, w.total, w.rate, w.hasRate)
				}
			}
			for _, w := range tc.records {
				got, ok := topFind(v.Records, w.name)
				eq("records", got, ok, w)
			}
			for _, w := range tc.dlq {
				got, ok := topFind(v.DLQ, w.name)
				eq("dlq", got, ok, w)
			}
			if tc.dlq != nil && len(v.DLQ) != len(tc.dlq) {
				t.Errorf("dlq rows %+v, want only the classes with entries", v.DLQ)
			}
			sinks := map[string]topCount{}
			for _, s := range v.Sinks {
				sinks[s.Name] = s.Records
			}
			for _, w := range tc.sinks {
				got, ok := sinks[w.name]
				eq("sink", got, ok, w)
			}
			srcs := map[string]topCount{}
			for _, s := range v.Sources {
				if s.HasIn {
					srcs[s.Name] = s.In
				}
			}
			for _, w := range tc.sources {
				got, ok := srcs[w.name]
				eq("source", got, ok, w)
			}
			if tc.sources != nil && len(v.Sources) != len(tc.sources) {
				t.Errorf("sources %+v", v.Sources)
			}
			for _, w := range tc.late {
				if v.Windows == nil {
					t.Fatal("no windows")
				}
				got, ok := topFind(v.Windows.Late, w.name)
				eq("late", got, ok, w)
			}
			if tc.check != nil {
				tc.check(t, v)
			}
		})
	}
}

// topPerSource rewrites a scrape as a newer endpoint would serve it:
// records in counted by source (logs and other), and, when lag > 0, the
// file source's bytes behind.
func topPerSource(logs, other, lag float64) func(string) string {
	return func(s string) string {
		i := strings.Index(s, "\ntracepipe_records_in_total ")
		j := strings.IndexByte(s[i+1:], '\n')
		s = s[:i] + fmt.Sprintf("\ntracepipe_records_in_total{source=\"logs\"} %v\ntracepipe_records_in_total{source=\"other\"} %v", logs, other) + s[i+1+j:]
		if lag > 0 {
			s += fmt.Sprintf("# TYPE tracepipe_source_file_lag_bytes gauge\ntracepipe_source_file_lag_bytes{source=\"logs\",file=\"a\"} %v\ntracepipe_source_file_lag_bytes{source=\"logs\",file=\"b\"} 0\n", lag)
		}
		return s
	}
}

// TestTopRender: the rows drawn from the real scrapes name the source,
// the sinks and the DLQ classes with their totals and rates, flag an open
// breaker, and an unreachable endpoint is one clear line above the last
// view.
func TestTopRender(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 2, 18, 39, 9, 0, time.UTC)
	s1 := loadTopSample(t, 1, true, t0, nil)
	s2 := loadTopSample(t, 2, true, t0.Add(time.Second), func(s string) string {
		return strings.Replace(s, `tracepipe_sink_breaker_state{sink="sample"} 0`, `tracepipe_sink_breaker_state{sink="sample"} 1`, 1)
	})
	v := computeTop(&s1, s2)
	lines := renderTop(&v, topStatus{URL: "http://127.0.0.1:9464/metrics", Now: t0.Add(1500 * time.Millisecond), LastOK: s2.At,
		Err: "connection refused", Retry: time.Second})
	var text []string
	styles := map[string]topStyle{}
	for _, l := range lines {
		text = append(text, l.Text)
		styles[strings.Fields(l.Text + " x")[0]] = l.Style
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{
		"pipeline top  http://127.0.0.1:9464/metrics  build dev (go1.26.8)",
		"scraped 18:39:10 (500ms ago)  job running, ready, up 4.1s  rates over 1s  (q quits)",
		"cannot reach http://127.0.0.1:9464/metrics: connection refused (retrying every 1s)",
		"  in                            37846        12846",
		"  dlq                             682          195",
		"  bytes read                 22.8 MiB    8.0 MiB/s",
		"  logs                 running             37846        12846              -",
		"  records                       37121        12608        82         0         0         0 closed         0",
		"  sample                        37121        12608        82         0         0         0 open           0",
		"  malformed                       507          153",
		"  invalid                         175         42.0",
		"  size 800.3 KiB of 64.0 MiB (1.2%), lost 0, evicted 0",
		"late: dlq 0 (0.0/s), drop 0 (0.0/s), update 105 (46.0/s), expired 0 (0.0/s)",
		"checkpoint age 21ms",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q in\n%s", want, all)
		}
	}
	if styles["cannot"] != styleAlert || styles["sample"] != styleAlert || styles["records"] != styleNormal {
		t.Errorf("styles %v", styles)
	}
	if got := renderTop(nil, topStatus{URL: "u", Err: "refused", Retry: time.Second}); len(got) != 3 || !strings.Contains(got[1].Text, "never scraped") {
		t.Errorf("before any scrape: %+v", got)
	}
}

func TestTopTarget(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := func(y string) string {
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", len(y)))
		if err := os.WriteFile(p, []byte(y+"\nsinks: [{type: discard}]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct{ cfg, url, want, err string }{
		{want: "http://127.0.0.1:9464/metrics"},
		{url: "127.0.0.1:1234", want: "http://127.0.0.1:1234/metrics"},
		{url: "http://[::1]:1234/", want: "http://[::1]:1234/metrics"},
		{url: "https://h:1/m", want: "https://h:1/m"},
		{url: "ftp://h:1/m", err: "want http"},
		{cfg: cfg(`telemetry: {listen: "0.0.0.0:9999"}`), want: "http://127.0.0.1:9999/metrics"},
		{cfg: cfg(`telemetry: {listen: "[::1]:9998"}`), want: "http://[::1]:9998/metrics"},
		{cfg: cfg(`telemetry: {listen: "127.0.0.1:0"}`), err: "port 0"},
		{cfg: cfg(`telemetry: {enabled: false}`), err: "telemetry.enabled is false"},
	} {
		got, err := topTarget(tc.cfg, tc.url)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("topTarget(%q, %q) = %q, %v; want %q, %q", tc.cfg, tc.url, got, err, tc.want, tc.err)
		}
	}
}

// freePort returns a loopback port nothing listened on a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tmuxSession is one tmux server of a test's own (its socket in the
// test's directory, no user config), so tests run at once.
type tmuxSession struct {
	t    *testing.T
	sock string
}

func (s *tmuxSession) run(args ...string) (string, error) {
	out, err := exec.Command("tmux", append([]string{"-S", s.sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
	return string(out), err
}

func (s *tmuxSession) capture() string {
	out, _ := s.run("capture-pane", "-p", "-t", "top")
	return out
}

func (s *tmuxSession) alternate() string {
	out, _ := s.run("display-message", "-p", "-t", "top", "#{alternate_on}")
	return strings.TrimSpace(out)
}

// waitScreen polls the pane until ok holds.
func (s *tmuxSession) waitScreen(what string, ok func(screen string) bool, stderr fmt.Stringer) string {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		scr := s.capture()
		if ok(scr) {
			return scr
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the screen never showed %s:\n%s\npipeline run stderr:\n%v", what, scr, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// topRow is the screen's line that starts (after its indent) with name
// and has more fields after it, split in fields.
func topRow(screen, name string) []string {
	for _, l := range strings.Split(screen, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == name && strings.HasPrefix(l, "  ") {
			return f
		}
	}
	return nil
}

// TestTopLiveUnderTmux: `pipeline top` in a real terminal (a tmux pane),
// started before the instance it watches: it says it cannot reach the
// endpoint and keeps trying; once a real `pipeline run` listens on that
// port and has taken 2000 records, the screen shows the source's row
// (logs, running, 2000 in), the sink's (records, 2000) and the job-wide
// records in. q exits 0, leaves the alternate screen and restores the
// terminal's modes (stty -g before and after are equal); a second top
// quits the same way on Ctrl-C. Not on a terminal, top prints one plain
// snapshot (no escape sequences) and exits 0, or 1 when the endpoint
// cannot be reached.
func TestTopLiveUnderTmux(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("TRACEPIPE_REQUIRE_TOOLS") == "1" { // make test: a missing tool fails
			t.Fatalf("tmux is not installed (scripts/ensure-tmux installs it): %v", err)
		}
		t.Skip("tmux is not installed (scripts/ensure-tmux installs it)")
	}
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := runConfig(t, dir, "")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, bytes.Replace(data, []byte(`listen: "127.0.0.1:0"`), []byte(`listen: "`+addr+`"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("snapshot of an unreachable endpoint", func(t *testing.T) {
		cmd := exec.Command(bin, "top", "-c", cfg)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if cmd.ProcessState.ExitCode() != exitFailed || !strings.Contains(stderr.String(), "cannot reach http://"+addr+"/metrics") {
			t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
		}
	})

	// stty -g prints the terminal's modes: the same before and after top
	// means raw mode and no-echo were undone.
	sock := filepath.Join(dir, "tmux.sock")
	tm := &tmuxSession{t: t, sock: sock}
	script := fmt.Sprintf(`cd %q; stty -g >before; %q top --url http://%s/metrics; echo $? >rc1; stty -g >after1; `+
		`%q top -c %q --interval 200ms; echo $? >rc2; stty -g >after2; echo TOP-DONE; exec sleep 300`, dir, bin, addr, bin, cfg)
	if out, err := tm.run("new-session", "-d", "-s", "top", "-x", "160", "-y", "60", "-e", "TERM=xterm-256color", "sh", "-c", script); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = tm.run("kill-server") })

	tm.waitScreen("the unreachable line", func(s string) bool {
		return strings.Contains(s, "cannot reach http://"+addr+"/metrics") && strings.Contains(s, "retrying every 1s")
	}, nil)
	if a := tm.alternate(); a != "1" {
		t.Errorf("alternate screen %q while top runs, want 1", a)
	}

	lines, _ := genLines(t, 2000, 11, 0)
	appendFile(t, filepath.Join(dir, "logs", "a.jsonl"), lines)
	p := startRun(t, bin, cfg)
	if got := waitTelemetryAddr(t, p.stderr, func() bool { return p.cmd.ProcessState != nil }); got != addr {
		t.Fatalf("pipeline run serves on %s, want %s", got, addr)
	}
	screen := tm.waitScreen("the rows of 2000 records", func(s string) bool {
		src, sink, in := topRow(s, "logs"), topRow(s, "records"), topRow(s, "in")
		return len(src) >= 3 && src[1] == "running" && src[2] == "2000" &&
			len(sink) >= 2 && sink[1] == "2000" && len(in) >= 2 && in[1] == "2000"
	}, p.stderr)
	for _, want := range []string{"pipeline top  http://" + addr + "/metrics  build ", "job running, ready", "SOURCE", "SINK", "DLQ", "checkpoint age"} {
		if !strings.Contains(screen, want) {
			t.Errorf("no %q on the screen:\n%s", want, screen)
		}
	}
	if strings.Contains(screen, "cannot reach") {
		t.Errorf("the unreachable line stayed after a good scrape:\n%s", screen)
	}

	t.Run("snapshot when stdout is not a terminal", func(t *testing.T) {
		out, err := exec.Command(bin, "top", "--url", addr, "--interval", "100ms").Output()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if bytes.IndexByte(out, 0x1b) >= 0 || topRow(string(out), "logs") == nil || topRow(string(out), "records") == nil ||
			!strings.Contains(string(out), "rates over ") || strings.Contains(string(out), "q quits") {
			t.Fatalf("snapshot:\n%q", out)
		}
	})

	if _, err := tm.run("send-keys", "-t", "top", "q"); err != nil {
		t.Fatal(err)
	}
	waitFile := func(name string) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
				return strings.TrimSpace(string(b))
			}
			if time.Now().After(deadline) {
				t.Fatalf("top did not exit (no %s):\n%s", name, tm.capture())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if rc := waitFile("rc1"); rc != "0" {
		t.Errorf("top exited %s after q, want 0", rc)
	}
	before := waitFile("before")
	if after := waitFile("after1"); after != before {
		t.Errorf("terminal modes after q %q, before %q", after, before)
	}

	// The second top (-c, the config's listen) shows its rows, then Ctrl-C.
	tm.waitScreen("the second top's rows", func(s string) bool {
		r := topRow(s, "logs")
		return len(r) >= 3 && r[2] == "2000"
	}, p.stderr)
	if _, err := tm.run("send-keys", "-t", "top", "C-c"); err != nil {
		t.Fatal(err)
	}
	if rc := waitFile("rc2"); rc != "0" {
		t.Errorf("top exited %s after Ctrl-C, want 0", rc)
	}
	if after := waitFile("after2"); after != before {
		t.Errorf("terminal modes after Ctrl-C %q, before %q", after, before)
	}
	final := tm.waitScreen("the shell's screen back", func(s string) bool { return strings.Contains(s, "TOP-DONE") }, p.stderr)
	if a := tm.alternate(); a != "0" || strings.Contains(final, "RECORDS") {
		t.Errorf("alternate screen %q after top, screen:\n%s", a, final)
	}
}
