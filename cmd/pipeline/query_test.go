package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline/windows"
	redissink "github.com/tracepipe/tracepipe/sinks/redis"
)

var updateQueryGolden = flag.Bool("update", false, "rewrite the golden files in testdata/windows")

// qT0 is the first window's start in the query tests (1m windows).
var qT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const queryTestConfig = `sinks: [{type: discard}]
windows:
  metrics:
    - name: users_per_service
      count: attributes.user.id
      group_by: [service, name]
    - name: traces_per_service
      count: trace_id
      group_by: [service]
  sink:
    type: file
    file:
      dir: store
`

// qSrc is a window row and the exact values its sketch holds.
type qSrc struct {
	metric   string
	window   int // minutes after qT0
	instance string
	revision int
	keys     []string
	group    []string
	lo, hi   int // values user-lo .. user-(hi-1)
}

func (s qSrc) values() []string {
	var vs []string
	for i := s.lo; i < s.hi; i++ {
		vs = append(vs, fmt.Sprintf("user-%d", i))
	}
	return vs
}

func (s qSrc) row(t *testing.T) windows.Row {
	t.Helper()
	sk, err := windows.NewSketch(14)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range s.values() {
		sk.InsertHash(windows.HashValue([]byte(v)))
	}
	est, b, err := windows.Encode(sk)
	if err != nil {
		t.Fatal(err)
	}
	start := qT0.Add(time.Duration(s.window) * time.Minute)
	return windows.Row{
		Metric: s.metric, Start: start, End: start.Add(time.Minute),
		GroupKeys: s.keys, GroupValues: s.group,
		Estimate: est, Records: int64(2 * (s.hi - s.lo)), Revision: s.revision,
		Instance: s.instance, Precision: 14, Sketch: b,
	}
}

var (
	qUsers  = "users_per_service"
	qSvcKey = []string{"service", "name"}
	// Instance a writes its rows, then a late correction (revision 2);
	// instance b overlaps it. Window 10 is outside the narrow ranges.
	qRowsA = []qSrc{
		{qUsers, 0, "a", 1, qSvcKey, []string{"cart", "GET /cart"}, 0, 40},
		{qUsers, 0, "a", 1, qSvcKey, []string{"cart", "POST /checkout"}, 70, 90},
		{qUsers, 0, "a", 1, qSvcKey, []string{"shop", "GET /"}, 0, 5},
		{qUsers, 1, "a", 1, qSvcKey, []string{"cart", "GET /cart"}, 60, 100},
		{"traces_per_service", 0, "a", 1, []string{"service"}, []string{"cart"}, 0, 25},
	}
	qRowsALate = []qSrc{
		{qUsers, 0, "a", 2, qSvcKey, []string{"cart", "GET /cart"}, 0, 50},
	}
	qRowsB = []qSrc{
		{qUsers, 0, "b", 1, qSvcKey, []string{"cart", "GET /cart"}, 30, 80},
		{qUsers, 1, "b", 1, qSvcKey, []string{"shop", "GET /"}, 3, 10},
		{qUsers, 10, "b", 1, qSvcKey, []string{"cart", "GET /cart"}, 500, 520},
	}
)

// writeQueryStore writes the test rows into dir/store through the file
// store, one run per instance, and returns the files' contents.
func writeQueryStore(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	paths := map[string]string{}
	writeQueryRows(t, func(inst string) windows.RowWriter {
		w, err := windows.OpenFileWriter(filepath.Join(dir, "store"), inst)
		if err != nil {
			t.Fatal(err)
		}
		paths[inst] = w.Path()
		return w
	})
	files := map[string][]byte{}
	for inst, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[inst] = data
	}
	return files
}

// writeQueryRows writes the test rows through the writers open returns,
// one per instance (instance a in two calls: its rows, then the late
// correction), and closes them.
func writeQueryRows(t *testing.T, open func(instance string) windows.RowWriter) {
	t.Helper()
	for _, inst := range []string{"a", "b"} {
		batches := [][]qSrc{qRowsA, qRowsALate}
		if inst == "b" {
			batches = [][]qSrc{qRowsB}
		}
		w := open(inst)
		for _, srcs := range batches {
			var rows []windows.Row
			for _, s := range srcs {
				rows = append(rows, s.row(t))
			}
			if err := w.WriteRows(context.Background(), rows); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// checkGolden compares got with testdata/windows/name, or rewrites it
// with -update.
func checkGolden(t *testing.T, goldenDir, name string, got []byte) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if *updateQueryGolden {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/pipeline -run TestQueryGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s\nwant:\n%s", name, got, want)
	}
}

// exactUnion is the reference query: the exact number of distinct values
// per result key, from the values the rows were built from.
func exactUnion(from, to time.Time, by []string, where map[string]string, perWindow bool) map[string]int {
	sets := map[string]map[string]bool{}
	all := slices.Concat(qRowsA, qRowsALate, qRowsB)
	for _, s := range all {
		start := qT0.Add(time.Duration(s.window) * time.Minute)
		if s.metric != qUsers || (!from.IsZero() && start.Before(from)) || (!to.IsZero() && !start.Before(to)) {
			continue
		}
		val := func(f string) string { return s.group[slices.Index(s.keys, f)] }
		ok := true
		for k, v := range where {
			ok = ok && val(k) == v
		}
		if !ok {
			continue
		}
		key := ""
		if perWindow {
			key = start.Format(time.RFC3339) + " "
		}
		for _, f := range by {
			key += val(f) + "|"
		}
		if sets[key] == nil {
			sets[key] = map[string]bool{}
		}
		for _, v := range s.values() {
			sets[key][v] = true
		}
	}
	out := map[string]int{}
	for k, s := range sets {
		out[k] = len(s)
	}
	return out
}

// queryGoldenCase is one query the goldens hold, with what the reference
// union needs to know of it.
type queryGoldenCase struct {
	name      string
	args      []string
	from, to  time.Time
	by        []string
	where     map[string]string
	perWindow bool
}

var (
	qDay             = []string{"--from", "2026-01-01", "--to", "2026-01-02"}
	qNarrow          = []string{"--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:02:00Z"}
	queryGoldenCases = []queryGoldenCase{
		{name: "by_service", args: append([]string{"--by", "service"}, qNarrow...),
			from: qT0, to: qT0.Add(2 * time.Minute), by: []string{"service"}},
		{name: "total_all", args: nil},
		{name: "per_window_by_service_name", args: []string{"--by", "service,name", "--per-window"},
			by: []string{"service", "name"}, perWindow: true},
		{name: "where_cart_by_name", args: append([]string{"--by", "name", "--where", "service=cart"}, qDay...),
			from: qT0, to: qT0.Add(24 * time.Hour), by: []string{"name"}, where: map[string]string{"service": "cart"}},
		{name: "per_window_where", args: append([]string{"--per-window", "--where", "service=cart", "--where", "name=GET /cart"}, qNarrow...),
			from: qT0, to: qT0.Add(2 * time.Minute), where: map[string]string{"service": "cart", "name": "GET /cart"}, perWindow: true},
		{name: "empty", args: []string{"--from", "2026-01-02", "--to", "2026-01-03", "--by", "service"},
			from: qT0.Add(24 * time.Hour), to: qT0.Add(48 * time.Hour), by: []string{"service"}},
	}
)

func queryGoldenDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "..", "testdata", "windows"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestQueryGolden(t *testing.T) {
	goldenDir := queryGoldenDir(t)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "c.yaml"), queryTestConfig)
	files := writeQueryStore(t, dir)
	// The rows files themselves: the store's format, byte for byte.
	checkGolden(t, goldenDir, "rows_a.jsonl.golden", files["a"])
	checkGolden(t, goldenDir, "rows_b.jsonl.golden", files["b"])
	runQueryGoldenCases(t, dir, "c.yaml", goldenDir)
}

// runQueryGoldenCases runs every golden query, table and --json, against
// the store config cfg names, checks both against the goldens (unless
// goldenDir is "") and every count against the exact union of the values
// written.
func runQueryGoldenCases(t *testing.T, dir, cfg, goldenDir string) {
	for _, c := range queryGoldenCases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"query", "-c", cfg, "--metric", qUsers}, c.args...)
			code, table, stderr := runIn(t, dir, args...)
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			if goldenDir != "" {
				checkGolden(t, goldenDir, "query_"+c.name+".golden", []byte(table))
			}

			code, js, stderr := runIn(t, dir, append(args, "--json")...)
			if code != exitOK || stderr != "" {
				t.Fatalf("--json: exit %d, stderr:\n%s", code, stderr)
			}
			if goldenDir != "" {
				checkGolden(t, goldenDir, "query_"+c.name+".json.golden", []byte(js))
			}

			// Small sets stay sparse, where the estimate is exact: every
			// merged count equals the union of the values written.
			var doc struct {
				Metric  string
				From    *string
				To      *string
				Results []struct {
					WindowStart string `json:"window_start"`
					Group       map[string]string
					Distinct    int
				}
			}
			if err := json.Unmarshal([]byte(js), &doc); err != nil {
				t.Fatal(err)
			}
			want := exactUnion(c.from, c.to, c.by, c.where, c.perWindow)
			got := map[string]int{}
			for _, r := range doc.Results {
				key := ""
				if r.WindowStart != "" {
					key = r.WindowStart + " "
				}
				for _, f := range c.by {
					key += r.Group[f] + "|"
				}
				got[key] = r.Distinct
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("distinct counts %v, want the exact unions %v", got, want)
			}
			if doc.Metric != qUsers || (doc.From == nil) != c.from.IsZero() || doc.Results == nil {
				t.Fatalf("document: %s", js)
			}
		})
	}
}

func TestQueryRedisStore(t *testing.T) {
	srv := testredis.Start(t)
	dir := t.TempDir()
	cfg := config.WindowsRedis{Redis: config.Redis{Addr: srv.Addr(), Timeout: 5 * time.Second}, KeyPrefix: "q:"}
	writeQueryRows(t, func(string) windows.RowWriter {
		w, err := redissink.NewWindows(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return w
	})
	write(t, filepath.Join(dir, "r.yaml"), strings.Replace(queryTestConfig, "    type: file\n    file:\n      dir: store\n",
		"    type: redis\n    redis:\n      addr: "+srv.Addr()+"\n      key_prefix: \"q:\"\n", 1))
	// Redis keeps one row per (metric, group, window, instance), so the
	// rows column differs from the file store's: no goldens, but the same
	// exact unions.
	runQueryGoldenCases(t, dir, "r.yaml", "")
}

func TestQueryUsageErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "c.yaml"), queryTestConfig)
	write(t, filepath.Join(dir, "none.yaml"), "sinks: [{type: discard}]\n")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--metric", "nope"}, `metric "nope" is not configured; configured metrics: users_per_service, traces_per_service`},
		{nil, "--metric is needed; configured metrics: users_per_service, traces_per_service"},
		{[]string{"-c", "none.yaml"}, "no metrics are configured"},
		{[]string{"--metric", qUsers, "--by", "status"}, `no group field "status" (it groups by service, name)`},
		{[]string{"--metric", qUsers, "--where", "status=ok"}, `no group field "status"`},
		{[]string{"--metric", qUsers, "--where", "service"}, "want field=value"},
		{[]string{"--metric", qUsers, "--by", "service,service"}, `lists "service" twice`},
		{[]string{"--metric", qUsers, "--from", "yesterday"}, `--from "yesterday": want an RFC 3339 time`},
		{[]string{"--metric", qUsers, "--to", "2026-01-01T00:00:00"}, "want an RFC 3339 time"},
		{[]string{"--metric", qUsers, "--from", "2026-01-02", "--to", "2026-01-01"}, "is not after --from"},
		{[]string{"--metric", qUsers, "--last", "1h", "--from", "2026-01-01"}, "--last cannot be combined"},
		{[]string{"--metric", qUsers, "--last", "-1h"}, "must be positive"},
		{[]string{"--metric", qUsers, "--store", "s3"}, `--store "s3" is not one of file, redis`},
		{[]string{"--metric", qUsers, "--store", "redis"}, "the config has no windows.sink.redis"},
		{[]string{"--metric", qUsers, "stray"}, `unexpected argument "stray"`},
		{[]string{"--metric", qUsers, "--no-such-flag"}, "flag provided but not defined"},
	} {
		args := append([]string{"query"}, c.args...)
		if !slices.Contains(c.args, "-c") {
			args = append(args, "-c", "c.yaml")
		}
		code, out, stderr := runIn(t, dir, args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s\nwant exit %d and %q", c.args, code, out, stderr, exitUsage, c.want)
		}
	}
}

func TestQueryStoreErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "c.yaml"), queryTestConfig)

	// Nothing written yet: a store error, not a usage error.
	code, _, stderr := runIn(t, dir, "query", "-c", "c.yaml", "--metric", qUsers)
	if code != exitFailed || !strings.Contains(stderr, "store does not exist: no windows were written there yet") {
		t.Fatalf("missing store: exit %d, stderr:\n%s", code, stderr)
	}

	// A corrupt line is skipped with a warning naming file and line.
	writeQueryStore(t, dir)
	bad := filepath.Join(dir, "store", "windows-broken.jsonl")
	write(t, bad, "not a row\n")
	code, out, stderr := runIn(t, dir, "query", "-c", "c.yaml", "--metric", qUsers, "--by", "service")
	if code != exitOK || !strings.Contains(stderr, filepath.Join("store", "windows-broken.jsonl")+":1: window row:") || !strings.Contains(out, "cart") {
		t.Fatalf("corrupt line: exit %d, stdout:\n%s\nstderr:\n%s", code, out, stderr)
	}

	// Rows of another precision cannot be merged.
	r := qRowsB[0].row(t)
	sk, _ := windows.NewSketch(12)
	sk.InsertHash(windows.HashValue([]byte("x")))
	r.Precision = 12
	r.Start, r.End = qT0.Add(20*time.Minute), qT0.Add(21*time.Minute) // a window of its own
	r.Estimate, r.Sketch, _ = windows.Encode(sk)
	write(t, bad, string(r.AppendJSON(nil)))
	code, _, stderr = runIn(t, dir, "query", "-c", "c.yaml", "--metric", qUsers)
	if code != exitFailed || !strings.Contains(stderr, "precision 14") || !strings.Contains(stderr, "precision 12") {
		t.Fatalf("precision mismatch: exit %d, stderr:\n%s", code, stderr)
	}
	// Per window they are apart; --dir points elsewhere.
	if code, _, stderr := runIn(t, dir, "query", "-c", "c.yaml", "--metric", qUsers, "--per-window"); code != exitOK {
		t.Fatalf("per window: exit %d, stderr:\n%s", code, stderr)
	}
	code, _, stderr = runIn(t, dir, "query", "-c", "c.yaml", "--metric", qUsers, "--dir", "elsewhere")
	if code != exitFailed || !strings.Contains(stderr, "elsewhere") {
		t.Fatalf("--dir: exit %d, stderr:\n%s", code, stderr)
	}

	// An unreachable Redis store is a store error.
	write(t, filepath.Join(dir, "redis.yaml"), strings.Replace(queryTestConfig, "    type: file\n    file:\n      dir: store\n",
		"    type: redis\n    redis:\n      addr: 127.0.0.1:1\n      timeout: 200ms\n", 1))
	if code, _, stderr := runIn(t, dir, "query", "-c", "redis.yaml", "--metric", qUsers); code != exitFailed {
		t.Fatalf("unreachable redis: exit %d, stderr:\n%s", code, stderr)
	}
	if code, _, stderr := runIn(t, dir, "query", "-c", "redis.yaml", "--metric", qUsers, "--store", "redis", "--dir", "x"); code != exitUsage {
		t.Fatalf("--dir with redis: exit %d, stderr:\n%s", code, stderr)
	}
	// --store file on a redis config reads the default folder or --dir.
	if code, out, stderr := runIn(t, dir, "query", "-c", "redis.yaml", "--metric", qUsers, "--store", "file", "--dir", "store", "--per-window"); code != exitOK || !strings.Contains(out, "distinct") {
		t.Fatalf("--store file: exit %d, stdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
}

func TestQueryLastAndDefaultMetric(t *testing.T) {
	dir := t.TempDir()
	// One metric configured: --metric may be left out.
	write(t, filepath.Join(dir, "c.yaml"), strings.Replace(queryTestConfig,
		"    - name: traces_per_service\n      count: trace_id\n      group_by: [service]\n", "", 1))
	writeQueryStore(t, dir)
	old := queryNow
	queryNow = func() time.Time { return qT0.Add(90 * time.Second) }
	defer func() { queryNow = old }()

	// [00:-0:30, 00:01:30): windows 0 and 1 start in it.
	code, out, stderr := runIn(t, dir, "query", "-c", "c.yaml", "--last", "2m", "--json", "--where", "service=shop")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{`"metric": "users_per_service"`, `"from": "2025-12-31T23:59:30Z"`, `"to": "2026-01-01T00:01:30Z"`, `"distinct": 10`, `"windows": 2`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	// [00:00:30, 00:01:30): only window 1.
	code, out, _ = runIn(t, dir, "query", "-c", "c.yaml", "--last", "1m", "--where", "service=shop")
	if code != exitOK || !strings.Contains(out, "windows starting in [2026-01-01T00:00:30Z, 2026-01-01T00:01:30Z)") || !strings.Contains(out, "\n7 ") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestQueryHelpListsQuery(t *testing.T) {
	code, out, _ := runIn(t, t.TempDir(), "help")
	if code != exitOK || !strings.Contains(out, "pipeline query [-c config.yaml]") {
		t.Fatalf("help:\n%s", out)
	}
}
