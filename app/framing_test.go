package app

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// goodLines returns n valid records, one a line, with distinct span ids.
func goodLines(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"%016x","service":"cart","msg":"ok %d","ts":%d}`+"\n",
			i+1, i, 1700000000000+int64(i))
	}
	return b.Bytes()
}

// outputLines returns the lines of every file the file sink left in dir,
// failing on a file that does not end in a newline or that is not finished.
func outputLines(t *testing.T, dir string) [][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".jsonl") {
			t.Fatalf("unfinished output file %s", e.Name())
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Fatalf("%s ends in a partial line", e.Name())
		}
		lines = append(lines, bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))...)
	}
	return lines
}

// TestReplayFramingBadFirstLine: a bad first line (plain text starting with
// '[', an unclosed '[', an object cut by rotation) must not swallow the good
// lines behind it, whatever the file's name (lines by name, or framing
// detected from the content): all N come out, on disk, and the bad line is
// exactly one DLQ entry.
func TestReplayFramingBadFirstLine(t *testing.T) {
	const n = 1000
	good := goodLines(n)
	for _, bad := range []string{"[WARN queue backlog growing", "[", `{"partial": "cut by rotation`} {
		for _, name := range []string{"app.jsonl", "app.log.gz", "app.json", "app"} {
			t.Run(fmt.Sprintf("%s/%s", name, bad), func(t *testing.T) {
				in, out := t.TempDir(), t.TempDir()
				data := append([]byte(bad+"\n"), good...)
				if strings.HasSuffix(name, ".gz") {
					var z bytes.Buffer
					zw := gzip.NewWriter(&z)
					zw.Write(data)
					zw.Close()
					data = z.Bytes()
				}
				path := filepath.Join(in, name)
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
				rep, err := Run(context.Background(), testConfig(t, out, ""), Options{Paths: []string{path}, Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				if rep.RecordsIn != n+1 || rep.RecordsOut != n || rep.DLQ["total"] != 1 || !rep.Reconciled {
					t.Fatalf("report: in %d out %d dlq %v reconciled %v", rep.RecordsIn, rep.RecordsOut, rep.DLQ, rep.Reconciled)
				}

				// What is on disk: every good record once.
				lines := outputLines(t, filepath.Join(out, "records"))
				if len(lines) != n {
					t.Fatalf("the sink's files hold %d lines, want %d", len(lines), n)
				}
				seen := map[string]bool{}
				for _, l := range lines {
					var r struct {
						SpanID string `json:"span_id"`
					}
					if err := json.Unmarshal(l, &r); err != nil || r.SpanID == "" || seen[r.SpanID] {
						t.Fatalf("output line %q: err %v, duplicate %v", l, err, seen[r.SpanID])
					}
					seen[r.SpanID] = true
				}

				entries := readDLQ(t, filepath.Join(out, "dlq"))
				if len(entries) != 1 {
					t.Fatalf("DLQ holds %d entries, want 1", len(entries))
				}
				e := entries[0]
				if e.Error.Class != "malformed" || e.Payload != bad || e.Source.Path != path || e.Source.Line != 1 || e.Source.Offset != 0 {
					t.Fatalf("DLQ entry: class %s, payload %q, source %+v", e.Error.Class, e.Payload, e.Source)
				}
			})
		}
	}
}

// TestReplayFramingFIFO: a FIFO with no writer among the inputs neither
// blocks the replay nor is read: it is one file entry, and the other input
// is delivered.
func TestReplayFramingFIFO(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	fifo := filepath.Join(in, "pipe.jsonl")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := os.WriteFile(filepath.Join(in, "good.jsonl"), goodLines(10), 0o644); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		rep *Report
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		rep, err := Run(context.Background(), testConfig(t, out, ""), Options{Paths: []string{filepath.Join(in, "*.jsonl")}, Logger: quietLogger()})
		done <- outcome{rep, err}
	}()
	var o outcome
	select {
	case o = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the replay blocked on a FIFO with no writer")
	}
	if o.err != nil {
		t.Fatal(o.err)
	}
	if rep := o.rep; rep.Files != 2 || rep.FilesFailed != 1 || rep.RecordsOut != 10 || rep.DLQ["file"] != 1 || rep.DLQ["total"] != 1 || !rep.Reconciled {
		t.Fatalf("report %+v", rep)
	}
	if n := len(outputLines(t, filepath.Join(out, "records"))); n != 10 {
		t.Fatalf("%d records on disk", n)
	}
	entries := readDLQ(t, filepath.Join(out, "dlq"))
	if len(entries) != 1 || entries[0].Error.Class != "file" || entries[0].Error.Code != "not_regular" || entries[0].Source.Path != fifo {
		t.Fatalf("DLQ entries %+v", entries)
	}
}
