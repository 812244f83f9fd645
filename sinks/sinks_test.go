package sinks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

func sampleRecord(b *pipeline.Batch) *pipeline.Record {
	b.AddUnit([]byte(`{}`), 0, 1, 2, 0)
	r := b.NewRecord(0)
	r.Signal = pipeline.SignalSpan
	r.Time = 1767225600123456789
	r.Duration = 1500
	r.TraceID = b.CopyString("5b8efff798038103d269b633813fc60c")
	r.SpanID = b.CopyString("eee19b7ec3c1b174")
	r.Service = b.CopyString("check\"out")
	r.Name = b.CopyString("GET /cart\n\x01")
	r.Kind = b.CopyString("server")
	start := len(b.Attrs)
	b.Attrs = append(b.Attrs,
		pipeline.Attr{Key: b.CopyString("http.status_code"), Value: b.CopyString("200"), Type: pipeline.AttrNumber},
		pipeline.Attr{Key: b.CopyString("big"), Value: b.CopyString("12345678901234567890123"), Type: pipeline.AttrNumber},
		pipeline.Attr{Key: b.CopyString("ok"), Value: b.CopyString("true"), Type: pipeline.AttrBool},
		pipeline.Attr{Key: b.CopyString("tags"), Value: b.CopyString(`["a",1]`), Type: pipeline.AttrJSON},
		pipeline.Attr{Key: b.CopyString("nil"), Type: pipeline.AttrNull},
		pipeline.Attr{Key: b.CopyString("emoji"), Value: b.CopyString("héllo ✓"), Type: pipeline.AttrString},
	)
	r.Attrs = b.Attrs[start:]
	return r
}

func TestAppendRecord(t *testing.T) {
	b := pipeline.GetBatch()
	defer pipeline.PutBatch(b)
	r := sampleRecord(b)
	got := string(AppendRecord(nil, r, nil))
	want := `{"time":"2026-01-01T00:00:00.123456789Z","time_unix_nano":1767225600123456789,"signal":"span",` +
		`"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174","service":"check\"out",` +
		`"name":"GET /cart\n\u0001","kind":"server","duration_ns":1500,"attributes":{"http.status_code":200,` +
		`"big":12345678901234567890123,"ok":true,"tags":["a",1],"nil":null,"emoji":"héllo ✓"}}` + "\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Fatal("not valid JSON")
	}
}

func TestAppendStringKeepsOutputValid(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		got := string(AppendString(nil, []byte(in)))
		if got != want {
			t.Fatalf("AppendString(%q) = %s, want %s", in, got, want)
		}
		if !json.Valid([]byte(got)) {
			t.Fatalf("%s is not valid JSON", got)
		}
	}
	f("", `""`)
	f("plain", `"plain"`)
	f("a\"b\\c", `"a\"b\\c"`)
	f("\t\r\n\x00\x1f", `"\t\r\n\u0000\u001f"`)
	f("bad \xff byte", `"bad \ufffd byte"`)
	f("cut \xe2\x9c", `"cut \ufffd\ufffd"`)
	f("✓ ok", `"✓ ok"`)
}

func TestAppendRecordAllocatesNothing(t *testing.T) {
	b := pipeline.GetBatch()
	defer pipeline.PutBatch(b)
	r := sampleRecord(b)
	dst := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(1000, func() { dst = AppendRecord(dst[:0], r, nil) }); n != 0 {
		t.Fatalf("AppendRecord allocates %v times per record", n)
	}
}

func TestFileSinkRotatesAndCompletes(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFile(FileOptions{Dir: dir, RotateBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	const batches, perBatch = 5, 4
	for range batches {
		b := pipeline.GetBatch()
		for range perBatch {
			sampleRecord(b)
		}
		// A failed and a filtered record are never written.
		b.NewRecord(0).Fail("parse", pipeline.ClassMalformed, "x", "y")
		b.NewRecord(0).Filtered = true
		if err := s.Write(context.Background(), b, pipeline.DeliverableRecords(b)); err != nil {
			t.Fatal(err)
		}
		pipeline.PutBatch(b)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "*.part"))
	if len(parts) == 0 {
		t.Fatal("want the file being written to be a .part file")
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A write after Close is an error, not a hang.
	late := pipeline.GetBatch()
	sampleRecord(late)
	if err := s.Write(context.Background(), late, pipeline.DeliverableRecords(late)); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Fatalf("write after Close: %v", err)
	}
	pipeline.PutBatch(late)
	parts, _ = filepath.Glob(filepath.Join(dir, "*.part"))
	if len(parts) != 0 {
		t.Fatalf(".part files left after Close: %v", parts)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "records-*.jsonl"))
	if len(files) < 2 {
		t.Fatalf("want rotation into several files, got %v", files)
	}
	lines := 0
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Mode().Perm() != 0o640 {
			t.Fatalf("%s has mode %v", f, st.Mode().Perm())
		}
		data, _ := os.ReadFile(f)
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if !json.Valid(sc.Bytes()) || !strings.Contains(sc.Text(), `"trace_id"`) {
				t.Fatalf("bad line %q", sc.Text())
			}
			lines++
		}
	}
	if lines != batches*perBatch {
		t.Fatalf("wrote %d lines, want %d", lines, batches*perBatch)
	}
}

func BenchmarkAppendRecord(b *testing.B) {
	batch := pipeline.GetBatch()
	r := sampleRecord(batch)
	dst := AppendRecord(nil, r, nil)
	b.SetBytes(int64(len(dst)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendRecord(dst[:0], r, nil)
	}
}

// TestFileRecoversDeadWritersParts: NewFile finishes the .part files a
// dead process left (cut to the last whole record, renamed), removes one
// with no whole record, and leaves alone one a live writer holds.
func TestFileRecoversDeadWritersParts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("records-a-000001.jsonl.part", "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":")
	write("records-b-000001.jsonl.part", "{\"torn")
	live := write("records-c-000001.jsonl.part", "{\"c\":1}\n")
	lf, err := os.OpenFile(live, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	s, err := NewFile(FileOptions{Name: "f", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	rec := s.Recovered()
	if len(rec) != 2 || rec[0].Records != 3 || rec[0].Dropped != 5 || rec[0].Path != filepath.Join(dir, "records-a-000001.jsonl") ||
		rec[1].Records != 0 || rec[1].Path != "" {
		t.Fatalf("recovered %+v", rec)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "records-a-000001.jsonl")); err != nil || string(data) != "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n" {
		t.Fatalf("recovered file %q (%v)", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "records-b-000001.jsonl.part")); !os.IsNotExist(err) {
		t.Fatalf("the empty part is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("the live writer's part was touched: %v", err)
	}
}

// Reopen (SIGHUP) finishes the file being written, so a log rotator finds
// it complete under its final name, and the next write starts a new one.
func TestFileSinkReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFile(FileOptions{Dir: dir, RotateBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	write := func() {
		b := pipeline.GetBatch()
		defer pipeline.PutBatch(b)
		sampleRecord(b)
		if err := s.Write(context.Background(), b, pipeline.DeliverableRecords(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Reopen(); err != nil { // nothing open yet: nothing to do
		t.Fatal(err)
	}
	write()
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	// Flush waits for the completer: the first file is final now.
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	done, _ := filepath.Glob(filepath.Join(dir, "records-*.jsonl"))
	parts, _ := filepath.Glob(filepath.Join(dir, "*.part"))
	if len(done) != 1 || len(parts) != 0 {
		t.Fatalf("after reopen: complete %v, parts %v", done, parts)
	}
	if err := s.Reopen(); err != nil { // an empty new file is not made
		t.Fatal(err)
	}
	write()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(); err == nil {
		t.Fatal("reopen after close succeeded")
	}
	done, _ = filepath.Glob(filepath.Join(dir, "records-*.jsonl"))
	if len(done) != 2 {
		t.Fatalf("files: %v", done)
	}
	for _, f := range done {
		data, _ := os.ReadFile(f)
		if bytes.Count(data, []byte("\n")) != 1 {
			t.Fatalf("%s: %q", f, data)
		}
	}
}

// TestFileRecoveringSeesThePartBeforeItsRename: Recovering is handed the
// .part already cut to whole records, under its unfinished name; when it
// fails, NewFile fails and the .part stays for the next start.
func TestFileRecoveringSeesThePartBeforeItsRename(t *testing.T) {
	dir := t.TempDir()
	part := filepath.Join(dir, "records-a-000001.jsonl.part")
	if err := os.WriteFile(part, []byte("{\"a\":1}\n{\"a\":"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := NewFile(FileOptions{Name: "f", Dir: dir, Recovering: func(p string) error {
		if data, err := os.ReadFile(p); p != part || err != nil || string(data) != "{\"a\":1}\n" {
			t.Errorf("Recovering(%s): %q, %v", p, data, err)
		}
		return errors.New("store down")
	}})
	if err == nil || !strings.Contains(err.Error(), "store down") {
		t.Fatalf("NewFile: %v", err)
	}
	if _, err := os.Stat(part); err != nil {
		t.Fatalf("the .part was not left for the next start: %v", err)
	}
	var seen []string
	s, err := NewFile(FileOptions{Name: "f", Dir: dir, Recovering: func(p string) error { seen = append(seen, p); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if len(seen) != 1 || seen[0] != part {
		t.Fatalf("Recovering saw %v", seen)
	}
	if _, err := os.Stat(strings.TrimSuffix(part, ".part")); err != nil {
		t.Fatalf("not renamed after Recovering: %v", err)
	}
}
