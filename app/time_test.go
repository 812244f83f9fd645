package app

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline/windows"
)

// timeStart is the first event time of the time tests' inputs: in the
// past, so that max_future (judged against the wall clock) keeps them.
var timeStart = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// orderedLines writes n jsonl records one second apart from timeStart, a
// distinct trace id each; bad maps a line index to a line put there
// instead (the record is then not one of the n good ones).
func orderedLines(t *testing.T, path string, n int, bad map[int]string) {
	t.Helper()
	var b bytes.Buffer
	for i := range n {
		if l, ok := bad[i]; ok {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, `{"trace_id":"%032x","span_id":"%016x","service":"svc-%d","msg":"m","time":"%s"}`+"\n",
			i+1, i+1, i%5, timeStart.Add(time.Duration(i)*time.Second).Format(time.RFC3339))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// windowsConfig is testConfig with a window stage writing rows under
// dir/windows, on workers workers.
func windowsConfig(t *testing.T, dir, latePolicy string, workers int) *config.Config {
	t.Helper()
	cfg := testConfig(t, dir, fmt.Sprintf(`
windows:
  late_policy: %s
  metrics:
    - name: traces
      count: trace_id
      group_by: [service]
  sink:
    type: file
    file:
      dir: %s/windows
`, latePolicy, dir))
	cfg.Pipeline.Workers = workers
	return cfg
}

// windowRows reads the rows on disk under dir/windows: the latest revision
// of each, as "start group records estimate" lines, sorted.
func windowRows(t *testing.T, dir string) []string {
	t.Helper()
	latest := map[string]*windows.Row{}
	err := windows.OpenFileReader(filepath.Join(dir, "windows"), func(msg string) { t.Error(msg) }).
		ReadRows(context.Background(), "traces", time.Time{}, time.Time{}, func(r *windows.Row) error {
			k := r.Start.Format(time.RFC3339) + r.GroupJSON()
			if o := latest[k]; o == nil || r.Revision > o.Revision {
				latest[k] = r
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k, r := range latest {
		out = append(out, fmt.Sprintf("%s %d %d [%s, %s)", k, r.Records, r.Estimate, r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339)))
	}
	slices.Sort(out)
	return out
}

// outputTraces returns the sorted trace ids in the records sink's files.
func outputTraces(t *testing.T, dir string) []string {
	t.Helper()
	var ids []string
	for _, r := range readOutput(t, filepath.Join(dir, "records")) {
		id, _ := r["trace_id"].(string)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestFarFutureRecordIsInvalid: one record dated 2200 among 20,000 one
// second apart is one invalid DLQ entry (future_time) and moves nothing:
// no record is late, and five runs on four workers leave the same output
// files, DLQ and window rows on disk.
func TestFarFutureRecordIsInvalid(t *testing.T) {
	in := t.TempDir()
	const n = 20000
	bad := `{"trace_id":"ffffffffffffffffffffffffffffffff","service":"svc-0","msg":"clock from the future","time":"2200-01-01T00:00:00Z"}`
	orderedLines(t, filepath.Join(in, "app.jsonl"), n, map[int]string{n / 2: bad})

	var first []string
	var firstRows []string
	for run := range 5 {
		out := t.TempDir()
		cfg := windowsConfig(t, out, "update", 4)
		if cfg.Windows.MaxFuture != 10*time.Minute {
			t.Fatalf("windows.max_future defaults to %s, want 10m", cfg.Windows.MaxFuture)
		}
		rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Reconciled || rep.RecordsIn != n+1 || rep.RecordsOut != n || rep.DLQ["total"] != 1 || rep.DLQ["invalid"] != 1 {
			t.Fatalf("run %d: in %d out %d dlq %v reconciled %v; want %d in, %d out, 1 invalid", run, rep.RecordsIn, rep.RecordsOut, rep.DLQ, rep.Reconciled, n+1, n)
		}
		if w := rep.Windows; w.LateUpdated+w.LateExpired+w.LateDLQ+w.LateDropped != 0 || w.FutureTime != 1 {
			t.Fatalf("run %d: windows %+v: want nothing late and one future_time", run, w.Snapshot)
		}
		entries := readDLQ(t, filepath.Join(out, "dlq"))
		if len(entries) != 1 {
			t.Fatalf("run %d: %d DLQ entries on disk, want 1", run, len(entries))
		}
		if e := entries[0]; e.Error.Class != "invalid" || e.Error.Code != "future_time" || e.Stage != "window" ||
			!strings.Contains(e.Payload, "2200-01-01") || !strings.Contains(e.Error.Message, "max_future") {
			t.Fatalf("run %d: DLQ entry %s/%s at %s: %s (payload %q)", run, e.Error.Class, e.Error.Code, e.Stage, e.Error.Message, e.Payload)
		}
		ids := outputTraces(t, out)
		rows := windowRows(t, out)
		if len(ids) != n || slices.Contains(ids, "ffffffffffffffffffffffffffffffff") {
			t.Fatalf("run %d: %d records in the output files, want the %d good ones", run, len(ids), n)
		}
		if want := (n + 59) / 60 * 5; len(rows) < want-5 || len(rows) > want+5 {
			t.Fatalf("run %d: %d window rows, want about %d", run, len(rows), want)
		}
		if run == 0 {
			first, firstRows = ids, rows
			continue
		}
		if !slices.Equal(ids, first) {
			t.Errorf("run %d: the output files hold other records than run 0", run)
		}
		if !slices.Equal(rows, firstRows) {
			t.Errorf("run %d: the window rows differ from run 0", run)
		}
	}
}

// TestTimeOutOfRangeIsInvalid: times outside 1970..2262 (int64-max
// nanoseconds, RFC 3339 years 0001 and 9999, before 1970) are invalid
// records (time_out_of_range); no window row is made of them.
func TestTimeOutOfRangeIsInvalid(t *testing.T) {
	in := t.TempDir()
	out := t.TempDir()
	tr := `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","service":"svc-0"`
	bad := map[int]string{
		10: `{` + tr + `,"time_unix_nano":9223372036854775807}`,
		20: `{` + tr + `,"time":"0001-01-01T00:00:00Z"}`,
		30: `{` + tr + `,"time":"9999-12-31T23:59:59Z"}`,
		40: `{` + tr + `,"time":"1969-07-20T20:17:40Z"}`,
		50: `{` + tr + `,"ts":-1}`,
	}
	orderedLines(t, filepath.Join(in, "app.jsonl"), 100, bad)
	rep, err := Run(context.Background(), windowsConfig(t, out, "dlq", 2), Options{Paths: []string{in}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Reconciled || rep.RecordsOut != 100 || rep.DLQ["invalid"] != 5 || rep.DLQ["total"] != 5 {
		t.Fatalf("out %d dlq %v: want 100 out, 5 invalid", rep.RecordsOut, rep.DLQ)
	}
	for _, e := range readDLQ(t, filepath.Join(out, "dlq")) {
		if e.Error.Class != "invalid" || e.Error.Code != "time_out_of_range" || e.Stage != "parse" {
			t.Errorf("line %d: %s/%s at %s: %s", e.Source.Line, e.Error.Class, e.Error.Code, e.Stage, e.Error.Message)
		}
	}
	rows := windowRows(t, out)
	if len(rows) == 0 {
		t.Fatal("no window rows")
	}
	for _, r := range rows {
		if !strings.Contains(r, "[2025-06-01T") {
			t.Errorf("window row outside the input's minutes: %s", r)
		}
	}
	if len(outputTraces(t, out)) != 100 {
		t.Errorf("output files hold %d records, want 100", len(outputTraces(t, out)))
	}
}

// TestTimeOrderedInputNothingLate: a time-ordered file read by four
// workers, in batches of 64 records one second apart (each batch spans
// more than the 30 s allowed lateness, so any batch finishing before an
// earlier one used to close a window under it), makes nothing late, run
// after run, under late_policy dlq; the rows are those of one worker.
func TestTimeOrderedInputNothingLate(t *testing.T) {
	if testing.Short() {
		t.Skip("several replays of 200,000 records")
	}
	in := t.TempDir()
	const n = 200_000 // 3,125 batches, 3,334 windows
	orderedLines(t, filepath.Join(in, "ordered.jsonl"), n, nil)
	var want []string
	for run := range 8 {
		out := t.TempDir()
		workers := 4
		if run == 0 {
			workers = 1
		}
		rep, err := Run(context.Background(), windowsConfig(t, out, "dlq", workers), Options{Paths: []string{in}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if rep.RecordsOut != n || rep.DLQ["total"] != 0 || rep.Windows.LateDLQ != 0 {
			t.Fatalf("run %d (%d workers): %d out, DLQ %v, %d late; want all %d out, nothing late", run, workers, rep.RecordsOut, rep.DLQ, rep.Windows.LateDLQ, n)
		}
		rows := windowRows(t, out)
		if run == 0 {
			want = rows
			continue
		}
		if !slices.Equal(rows, want) {
			t.Errorf("run %d: window rows differ from one worker's", run)
		}
	}
}

// TestWindowsTimeAndMemoryKeys: the defaults of windows.max_future and
// windows.max_memory, and what validate refuses.
func TestWindowsTimeAndMemoryKeys(t *testing.T) {
	cfg, err := config.Decode(config.Default, "default", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Windows.MaxFuture != 10*time.Minute || cfg.Windows.MaxMemory != 256<<20 {
		t.Errorf("shipped config: max_future %s, max_memory %s; want 10m and 256MiB", cfg.Windows.MaxFuture, cfg.Windows.MaxMemory)
	}
	for _, c := range []struct{ yaml, want string }{
		{"max_memory: 1KiB", "windows.max_memory"},
		{"max_memory: 2TiB", "windows.max_memory"},
		{"max_future: -1s", "windows.max_future"},
	} {
		_, err := config.Decode([]byte("sinks: [{name: d, type: discard}]\nwindows:\n  "+c.yaml+"\n"), "t.yaml", func(string) (string, bool) { return "", false })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.yaml, err, c.want)
		}
	}
}
