package app

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/pipeline/windows"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testConfig returns a config writing into dir, with small limits so the
// bad cases stay small.
func testConfig(t *testing.T, dir string, extra string) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`
input:
  max_line_bytes: 64KiB
  concurrency: 3
pipeline:
  workers: 2
  batch_units: 64
sinks:
  - name: records
    type: file
    file:
      dir: %s/records
dlq:
  keep_bytes: 1KiB
  file:
    dir: %s/dlq
%s`, dir, dir, extra)
	cfg, err := config.Decode([]byte(yaml), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func generate(t *testing.T, path, format string, records int64, gz bool) gen.Stats {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var w io.Writer = f
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(f)
		w = zw
	}
	st, err := gen.Generate(w, gen.Options{Format: format, Records: records, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return st
}

// readOutput returns the records written by the file sink.
func readOutput(t *testing.T, dir string) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var out []map[string]any
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("output line is not JSON: %v: %s", err, sc.Text())
			}
			out = append(out, m)
		}
	}
	return out
}

func readDLQ(t *testing.T, dir string) []*dlq.Entry {
	t.Helper()
	var out []*dlq.Entry
	err := dlq.Scan(dir, func(e *dlq.Entry, _ dlq.Position) error {
		c := *e
		out = append(out, &c)
		return nil
	}, func(c dlq.Corruption) { t.Errorf("DLQ corruption: %v", c) })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestReplayGoodAndBadFiles(t *testing.T) {
	in := t.TempDir()
	out := t.TempDir()
	nested := filepath.Join(in, "nested", "deeper")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}

	// Good input, three formats, plain and gzip, line-delimited and pretty.
	good := int64(0)
	good += generate(t, filepath.Join(in, "app.jsonl"), "jsonl", 500, false).Records
	good += generate(t, filepath.Join(nested, "collector.otlp.jsonl.gz"), "otlp", 300, true).Records
	good += generate(t, filepath.Join(in, "zipkin.json"), "zipkin", 200, false).Records
	pretty, err := os.ReadFile("../testdata/otlp/trace.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(nested, "pretty-trace.json"), pretty, 0o644); err != nil {
		t.Fatal(err)
	}
	good++ // trace.json holds one span

	// An unreadable file: a dangling symlink (root reads through chmod 000,
	// so a file that is gone is the unreadable file every user can make).
	if err := os.Symlink(filepath.Join(in, "gone.jsonl"), filepath.Join(in, "dangling.jsonl")); err != nil {
		t.Fatal(err)
	}
	// A corrupt gzip: a real header, then garbage.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(bytes.Repeat([]byte(`{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`+"\n"), 1000))
	_ = zw.Close()
	corrupt := append([]byte(nil), gz.Bytes()[:12]...)
	corrupt = append(corrupt, bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 64)...)
	if err := os.WriteFile(filepath.Join(in, "corrupt.jsonl.gz"), corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	// Junk bytes, no newline in them: one unit, one malformed entry.
	junk := make([]byte, 3000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range junk {
		junk[i] = byte(rng.IntN(256))
		if junk[i] == '\n' || junk[i] == '{' || junk[i] == '[' {
			junk[i] = 'x'
		}
	}
	junk[0] = 'J'
	if err := os.WriteFile(filepath.Join(in, "junk.bin"), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	// An over-long line between two good ones.
	line := `{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","service":"cart","msg":"ok","ts":1700000000123}`
	long := line + "\n" + `{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","pad":"` + strings.Repeat("a", 200000) + `"}` + "\n" + line + "\n"
	if err := os.WriteFile(filepath.Join(in, "long.jsonl"), []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	good += 2

	cfg := testConfig(t, out, "")
	rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Reconciled {
		t.Fatal("not reconciled")
	}
	if rep.RecordsIn != rep.RecordsOut+rep.DLQ["total"]+rep.RecordsFiltered {
		t.Fatalf("invariant: %+v", rep)
	}
	if rep.RecordsOut != good {
		t.Errorf("records out %d, want every good record: %d (sources %+v)", rep.RecordsOut, good, rep.Sources)
	}
	if got := len(readOutput(t, filepath.Join(out, "records"))); int64(got) != good {
		t.Fatalf("output holds %d records, want %d", got, good)
	}

	entries := readDLQ(t, filepath.Join(out, "dlq"))
	if int64(len(entries)) != rep.DLQ["total"] {
		t.Fatalf("DLQ holds %d entries, report says %d", len(entries), rep.DLQ["total"])
	}
	type key struct{ base, class string }
	got := map[key]int{}
	for _, e := range entries {
		got[key{filepath.Base(e.Source.Path), e.Error.Class}]++
		if e.Error.Message == "" || e.ID == "" || e.Version != dlq.SchemaVersion {
			t.Errorf("incomplete entry %+v", e)
		}
	}
	want := map[key]int{
		{"dangling.jsonl", "file"}:   1,
		{"corrupt.jsonl.gz", "file"}: 1,
		{"junk.bin", "malformed"}:    1,
		{"long.jsonl", "too_large"}:  1,
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("DLQ entries for %v: %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if len(entries) != len(want) {
		t.Errorf("DLQ has %d entries, want %d: %v", len(entries), len(want), got)
	}
	if rep.FilesFailed != 2 {
		t.Errorf("files_failed = %d, want 2", rep.FilesFailed)
	}
	for _, e := range entries {
		switch filepath.Base(e.Source.Path) {
		case "long.jsonl":
			if !e.Truncated || e.PayloadSize <= 200000 || len(e.Payload) > 4096 || e.Source.Line != 2 {
				t.Errorf("too_large entry: truncated %v size %d kept %d line %d", e.Truncated, e.PayloadSize, len(e.Payload), e.Source.Line)
			}
		case "corrupt.jsonl.gz":
			if e.Error.Code != "gzip" {
				t.Errorf("corrupt gzip code %q", e.Error.Code)
			}
		case "junk.bin":
			if e.PayloadBase64 == nil && e.Payload == "" {
				t.Error("junk payload not kept")
			}
		}
	}
}

func TestReplayFilterAndMissingTraceID(t *testing.T) {
	in := t.TempDir()
	out := t.TempDir()
	lines := strings.Join([]string{
		`{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","service":"cart","msg":"a"}`,
		`{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","service":"noisy","msg":"b"}`,
		`{"service":"cart","msg":"no trace"}`,
		`{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","service":"cart","msg":"c"}`,
	}, "\n")
	if err := os.WriteFile(filepath.Join(in, "a.jsonl"), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, out, "filter:\n  exclude_services: [noisy]\nparse:\n  missing_trace_id: filter\n")
	rep, err := Run(context.Background(), cfg, Options{Paths: []string{filepath.Join(in, "*.jsonl")}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RecordsIn != 4 || rep.RecordsOut != 2 || rep.RecordsFiltered != 2 || rep.DLQ["total"] != 0 || !rep.Reconciled {
		t.Fatalf("report %+v", rep)
	}
}

func TestReplayNoInputIsAUsageError(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), "")
	_, err := Run(context.Background(), cfg, Options{Paths: []string{"/nonexistent/*.jsonl"}, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "no input") {
		t.Fatalf("err = %v", err)
	}
}

func TestReplayDLQFullStopsInput(t *testing.T) {
	in := t.TempDir()
	out := t.TempDir()
	// Every line is malformed; the DLQ cap is tiny.
	var junk bytes.Buffer
	for i := range 20000 {
		fmt.Fprintf(&junk, "not json %d %s\n", i, strings.Repeat("x", 200))
	}
	for i := range 4 {
		if err := os.WriteFile(filepath.Join(in, fmt.Sprintf("junk%d.jsonl", i)), junk.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t, out, "")
	cfg.DLQ.File.SegmentBytes = 64 << 10
	cfg.DLQ.File.MaxBytes = 256 << 10
	rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.DLQFull {
		t.Fatal("DLQ cap not reported")
	}
	if rep.RecordsIn >= 80000 {
		t.Fatalf("input did not stop: %d records in", rep.RecordsIn)
	}
	if !rep.Reconciled || int64(len(readDLQ(t, filepath.Join(out, "dlq")))) != rep.DLQ["total"] {
		t.Fatalf("entries in flight were not all written: %+v", rep)
	}
}

// TestReplayJSONTestSuite runs the conformance files through the whole
// replay (framing, detection, parsing, DLQ), not just the parsers: no n_
// file may yield a delivered record, no y_ file a malformed entry, and
// nothing may crash or hang (n_structure_100000_opening_arrays included).
func TestReplayJSONTestSuite(t *testing.T) {
	suite := "../testdata/JSONTestSuite/test_parsing/"
	for _, tc := range []struct{ glob, forbiddenClass string }{
		{"n_*.json", ""},
		{"y_*.json", "malformed"},
	} {
		out := t.TempDir()
		rep, err := Run(context.Background(), testConfig(t, out, ""), Options{Paths: []string{suite + tc.glob}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Reconciled || rep.Files < 95 {
			t.Fatalf("%s: %+v", tc.glob, rep)
		}
		if tc.forbiddenClass == "" && rep.RecordsOut != 0 {
			t.Errorf("%s: %d records delivered from must-reject files", tc.glob, rep.RecordsOut)
		}
		for _, e := range readDLQ(t, filepath.Join(out, "dlq")) {
			if e.Error.Class == tc.forbiddenClass {
				t.Errorf("%s: %s is %s (%s)", tc.glob, filepath.Base(e.Source.Path), e.Error.Class, e.Error.Message)
			}
		}
	}
}

// TestShippedConfigOnSampleLogs runs the shipped config.yaml, as it is but
// for its output folders, on testdata/logs: what `make replay` does. The
// counts are those of the sample mix (its bad lines are there on purpose).
func TestShippedConfigOnSampleLogs(t *testing.T) {
	cfg, err := config.Load("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cfg.Sinks[0].File.Dir = filepath.Join(out, "records")
	cfg.DLQ.File.Dir = filepath.Join(out, "dlq")
	cfg.Windows.Sink.File.Dir = filepath.Join(out, "windows")
	rep, err := Run(context.Background(), cfg, Options{Paths: []string{"../testdata/logs"}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("files %d failed %d in %d out %d filtered %d dlq %d (malformed %d, invalid %d) reconciled %v",
		rep.Files, rep.FilesFailed, rep.RecordsIn, rep.RecordsOut, rep.RecordsFiltered,
		rep.DLQ["total"], rep.DLQ["malformed"], rep.DLQ["invalid"], rep.Reconciled)
	const want = "files 7 failed 0 in 918 out 898 filtered 0 dlq 20 (malformed 8, invalid 12) reconciled true"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if n := len(readOutput(t, filepath.Join(out, "records"))); n != 898 {
		t.Fatalf("%d records written", n)
	}
	// Windows: files are read 4 at a time, so which records arrive late
	// (and how many corrections are written) varies; the final counts do
	// not (late_policy update).
	if rep.Windows == nil || rep.Windows.Metrics != 3 || rep.Windows.RowsFailed != 0 || rep.Windows.LateDLQ+rep.Windows.LateExpired != 0 {
		t.Fatalf("windows report: %+v", rep.Windows)
	}
	var lines []string
	for _, m := range cfg.Windows.Metrics {
		res, err := windows.Run(context.Background(), windows.OpenFileReader(filepath.Join(out, "windows"), func(msg string) { t.Error(msg) }),
			windows.Query{Metric: m.Name, By: []string{"service"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			lines = append(lines, fmt.Sprintf("%s %s=%d", m.Name, r.GroupValues[0], r.Estimate))
		}
	}
	got = strings.Join(lines, "\n")
	golden := filepath.Join("testdata", "shipped-windows.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantW, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got+"\n" != string(wantW) {
		t.Errorf("distinct counts per service over the sample logs:\n%s\nwant (%s):\n%s", got, golden, wantW)
	}
}

// TestReplayCustomJSONLPaths: field paths from config reach the parser.
func TestReplayCustomJSONLPaths(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	line := `{"tid":"4bf92f3577b34da6a3ce929d0e0e4736","sid":"00f067aa0ba902b7","app":"cart","op":"GET /x","took":12,"when":1700000000123}` + "\n"
	if err := os.WriteFile(filepath.Join(in, "a.jsonl"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, out, `parse:
  jsonl:
    trace_id: [tid]
    span_id: [sid]
    service: [app]
    name: [op]
    time: [when]
    duration: [{path: took, unit: ms}]
`)
	rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger()})
	if err != nil || rep.RecordsOut != 1 {
		t.Fatalf("err %v, report %+v", err, rep)
	}
	r := readOutput(t, filepath.Join(out, "records"))[0]
	for k, want := range map[string]any{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
		"service": "cart", "name": "GET /x", "duration_ns": float64(12e6), "time_unix_nano": float64(1700000000123e6)} {
		if r[k] != want {
			t.Errorf("%s = %v, want %v (record %v)", k, r[k], want, r)
		}
	}
}

// TestDLQRedaction: dlq.redact hashes (or removes) named fields from the
// payloads the DLQ keeps, valid JSON or not; the entry says so.
func TestDLQRedaction(t *testing.T) {
	for _, mode := range []string{"hash", "remove"} {
		t.Run(mode, func(t *testing.T) {
			in, out := t.TempDir(), t.TempDir()
			lines := `{"trace_id":"","user":{"email":"ann@example.com"},"msg":"no trace id"}
{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user.email":"bob@example.com","msg":"truncated
`
			if err := os.WriteFile(filepath.Join(in, "a.jsonl"), []byte(lines), 0o644); err != nil {
				t.Fatal(err)
			}
			// The trace-less log goes to the DLQ only under the one-value
			// policy (logs are kept by default).
			cfg := testConfig(t, out, fmt.Sprintf("  redact: {fields: [user.email], mode: %s}\nparse: {missing_trace_id: invalid}\n", mode))
			rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger()})
			if err != nil || rep.DLQ["total"] != 2 {
				t.Fatalf("%v %+v", err, rep)
			}
			for _, e := range readDLQ(t, filepath.Join(out, "dlq")) {
				p := string(e.PayloadBytes())
				if strings.Contains(p, "@example.com") || !e.Redacted {
					t.Errorf("%s entry: payload %s, redacted %v", e.Error.Class, p, e.Redacted)
				}
			}
		})
	}
}
