package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// TestIdempotentDelivery: with dedupe on, replaying the same input again
// (as after a crash, or a DLQ replay of records a sink had taken) writes
// nothing new; the records count as delivered. For the embedded store,
// persisted across runs, and the Redis one.
func TestIdempotentDelivery(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.jsonl")
			generate(t, in, "jsonl", 3000, false)
			extra := fmt.Sprintf("  path: %s/dedupe/keys\n", dir)
			if store == "redis" {
				srv := testredis.Start(t)
				extra = fmt.Sprintf("  store: redis\n  redis: {addr: %q}\n", srv.Addr())
			}
			y := fmt.Sprintf(`
sinks:
  - name: records
    type: file
    file: {dir: %[1]s/records}
dlq: {file: {dir: %[1]s/dlq}}
windows: {metrics: []}
dedupe:
  enabled: true
%[2]s`, dir, extra)
			cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
			if err != nil {
				t.Fatal(err)
			}
			for run := 1; run <= 2; run++ {
				rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger()})
				if err != nil || !rep.Reconciled {
					t.Fatalf("run %d: %v %+v", run, err, rep)
				}
				if rep.RecordsOut != 3000 {
					t.Fatalf("run %d: %d out, want 3000 (duplicates count as delivered)", run, rep.RecordsOut)
				}
			}
			if n := len(readOutput(t, filepath.Join(dir, "records"))); n != 3000 {
				t.Fatalf("%d records written over two runs of the same input, want 3000", n)
			}
		})
	}
}

// TestDedupeKeepsTheDLQToOneEntryPerBadLine: with dedupe on, the same
// input read again (as a source does after a restart) makes no second DLQ
// entry for its bad lines; the report counts them as already in the DLQ
// and still reconciles; the DLQ on disk holds one entry per bad line.
func TestDedupeKeepsTheDLQToOneEntryPerBadLine(t *testing.T) {
	for _, lostMarks := range []bool{false, true} {
		t.Run(fmt.Sprint("lost_marks=", lostMarks), func(t *testing.T) { testDedupeDLQ(t, lostMarks) })
	}
}

// testDedupeDLQ: with lostMarks, the marks file is removed between the
// runs, as if the first process died after writing its entries and
// before marking them: the second finds them in the DLQ's newest segments.
func testDedupeDLQ(t *testing.T, lostMarks bool) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	good := "{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\",\"service.name\":\"a\",\"name\":\"x\",\"time\":\"2026-01-01T00:00:00Z\"}\n"
	data := "[WARN queue backlog growing\n" + good + "{\"torn\":\n[WARN queue backlog growing\n"
	if err := os.WriteFile(in, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`
sinks: [{name: records, type: file, file: {dir: %[1]s/records}}]
dlq: {file: {dir: %[1]s/dlq}}
windows: {metrics: []}
dedupe: {enabled: true, path: %[1]s/dedupe/keys}
`, dir)
	cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		if run == 2 && lostMarks {
			if err := os.Remove(filepath.Join(dir, "dedupe", "keys")); err != nil {
				t.Fatal(err)
			}
		}
		rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger()})
		if err != nil || !rep.Reconciled {
			t.Fatalf("run %d: %v %+v", run, err, rep)
		}
		wantNew, wantAlready := int64(3), int64(0)
		if run == 2 {
			wantNew, wantAlready = 0, 3
		}
		if rep.DLQ["total"] != wantNew || rep.DLQAlready != wantAlready || rep.RecordsIn != 4 {
			t.Fatalf("run %d: dlq %v, already %d, in %d", run, rep.DLQ, rep.DLQAlready, rep.RecordsIn)
		}
	}
	s, err := dlq.OpenFileStore(filepath.Join(dir, "dlq"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	if err := s.Scan(context.Background(), func(*dlq.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("%d DLQ entries on disk after two runs, want 3 (one per bad line, the two identical ones included)", n)
	}
}
