package windows

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// fsWrite writes rows through one FileWriter into dir and returns its file.
func fsWrite(t *testing.T, dir, instance string, batches ...[]Row) string {
	t.Helper()
	w, err := OpenFileWriter(dir, instance)
	if err != nil {
		t.Fatal(err)
	}
	for _, rows := range batches {
		if err := w.WriteRows(context.Background(), rows); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Path()
}

// fsRead returns every row of metric in [from, to) in dir, as "instance
// window revision" strings, sorted, and the warnings.
func fsRead(t *testing.T, dir, metric string, from, to time.Time) ([]string, []string, *FileReader) {
	t.Helper()
	var warns []string
	r := OpenFileReader(dir, func(m string) { warns = append(warns, m) })
	var got []string
	err := r.ReadRows(context.Background(), metric, from, to, func(row *Row) error {
		got = append(got, row.Instance+" "+row.Start.Format("15:04")+" r"+string(rune('0'+row.Revision)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got, warns, r
}

func TestFileStoreRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out", "windows")
	a1 := qtRow(t, "users", 0, 14, "host/a b:1", 1, qtSvc, []string{"cart"}, qtValues("u", 0, 10))
	a2 := qtRow(t, "users", 0, 14, "host/a b:1", 2, qtSvc, []string{"cart"}, qtValues("u", 0, 12))
	a3 := qtRow(t, "users", 1, 14, "host/a b:1", 1, qtSvc, []string{"shop"}, qtValues("u", 0, 3))
	other := qtRow(t, "traces", 0, 14, "host/a b:1", 1, nil, nil, qtValues("t", 0, 3))
	path := fsWrite(t, dir, "host/a b:1", []Row{a1, a3, other}, nil, []Row{a2})

	name := filepath.Base(path)
	if !regexp.MustCompile(`^windows-host_a_b_1-\d{8}T\d{6}Z-\d+\.jsonl$`).MatchString(name) {
		t.Fatalf("file name %q", name)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	var want []byte
	for _, r := range []Row{a1, a3, other, a2} {
		want = r.AppendJSON(want)
	}
	if !bytes.Equal(data, want) {
		t.Fatalf("file holds:\n%s\nwant:\n%s", data, want)
	}

	// A second run (another instance) gets a file of its own.
	b1 := qtRow(t, "users", 1, 14, "b", 1, qtSvc, []string{"cart"}, qtValues("u", 5, 15))
	if p := fsWrite(t, dir, "b", []Row{b1}); p == path {
		t.Fatal("two runs, one file")
	}
	// Files not named *.jsonl and subfolders are not read.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not rows\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fsWrite(t, filepath.Join(dir, "old.jsonl"), "c", []Row{a1})

	got, warns, _ := fsRead(t, dir, "users", time.Time{}, time.Time{})
	if w := []string{"b 00:01 r1", "host/a b:1 00:00 r1", "host/a b:1 00:00 r2", "host/a b:1 00:01 r1"}; !slices.Equal(got, w) || len(warns) > 0 {
		t.Fatalf("read %q (warnings %q), want %q", got, warns, w)
	}
	got, _, _ = fsRead(t, dir, "users", qtT0.Add(time.Minute), qtT0.Add(2*time.Minute))
	if w := []string{"b 00:01 r1", "host/a b:1 00:01 r1"}; !slices.Equal(got, w) {
		t.Fatalf("window 1: read %q, want %q", got, w)
	}
	got, _, _ = fsRead(t, dir, "users", time.Time{}, qtT0.Add(time.Minute))
	if len(got) != 2 {
		t.Fatalf("window 0: read %q", got)
	}

	// Rows read back carry everything: the query over the store merges.
	res, err := Run(context.Background(), OpenFileReader(dir, nil), Query{Metric: "users", By: []string{"service"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].GroupValues[0] != "cart" || res[0].Estimate != 15 || res[0].Rows != 3 || res[1].Estimate != 3 {
		t.Fatalf("query: %+v", res)
	}
}

func TestFileWriterClose(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenFileWriter(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	if w.Name() != "file" {
		t.Errorf("Name() = %q", w.Name())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	row := qtRow(t, "m", 0, 14, "a", 1, nil, nil, qtValues("u", 0, 1))
	if err := w.WriteRows(context.Background(), []Row{row}); err == nil {
		t.Fatal("write after Close: no error")
	}
	// A run that wrote nothing leaves nothing behind.
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("empty run left %v", ents)
	}

	// Two writers of one instance in one process never share a file.
	var paths []string
	for range 3 {
		w, err := OpenFileWriter(dir, "a")
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, w.Path())
		defer w.Close()
	}
	slices.Sort(paths)
	if len(slices.Compact(paths)) != 3 {
		t.Fatalf("paths %q", paths)
	}
}

func TestFileReaderTornAndCorruptLines(t *testing.T) {
	dir := t.TempDir()
	r1 := qtRow(t, "m", 0, 14, "a", 1, nil, nil, qtValues("u", 0, 5))
	r2 := qtRow(t, "m", 1, 14, "a", 1, nil, nil, qtValues("u", 0, 6))
	r3 := qtRow(t, "m", 2, 14, "a", 1, nil, nil, qtValues("u", 0, 7))
	var data []byte
	data = r1.AppendJSON(data)
	data = append(data, "{\"metric\":\"m\",\"window_start\":\"garbage\n"...) // line 2: corrupt
	data = append(data, '\n')                                                // line 3: blank
	data = r2.AppendJSON(data)
	whole := r3.AppendJSON(nil)
	data = append(data, whole[:len(whole)/2]...) // torn: a writer crashed or is writing
	path := filepath.Join(dir, "windows-a.jsonl")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A complete row without its newline is still an unfinished write.
	if err := os.WriteFile(filepath.Join(dir, "windows-b.jsonl"), bytes.TrimSuffix(r3.AppendJSON(nil), []byte("\n")), 0o644); err != nil {
		t.Fatal(err)
	}

	got, warns, r := fsRead(t, dir, "m", time.Time{}, time.Time{})
	if w := []string{"a 00:00 r1", "a 00:01 r1"}; !slices.Equal(got, w) {
		t.Fatalf("read %q, want %q", got, w)
	}
	if len(warns) != 1 || !strings.HasPrefix(warns[0], path+":2: window row:") {
		t.Fatalf("warnings %q, want one for %s:2", warns, path)
	}
	if r.Skipped() != 1 {
		t.Fatalf("Skipped() = %d, want 1", r.Skipped())
	}

	// The writer finishes its line: the row is read.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(whole[len(whole)/2:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, _, _ = fsRead(t, dir, "m", time.Time{}, time.Time{})
	if len(got) != 3 {
		t.Fatalf("after the write finished: %q", got)
	}
}

func TestFileReaderLongLines(t *testing.T) {
	// A dense sketch (~22 KB of base64 at precision 14, ~87 KB at 16) is
	// longer than the reader's buffer.
	dir := t.TempDir()
	dense14 := qtRow(t, "m", 0, 14, "a", 1, nil, nil, qtValues("u", 0, 20000))
	dense16 := qtRow(t, "m", 1, 16, "a", 1, nil, nil, qtValues("u", 0, 80000))
	long := qtRow(t, "m", 2, 14, "a", 1, qtSvc, []string{strings.Repeat("x", 200<<10)}, qtValues("u", 0, 1))
	for _, r := range []Row{dense14, dense16} {
		if len(r.AppendJSON(nil)) < 20<<10 || r.Sketch[3] != 0 {
			t.Fatalf("precision %d: not a dense sketch (%d bytes)", r.Precision, len(r.Sketch))
		}
	}
	fsWrite(t, dir, "a", []Row{dense14, dense16, long})
	r := OpenFileReader(dir, func(m string) { t.Errorf("warning: %s", m) })
	var got []Row
	err := r.ReadRows(context.Background(), "m", time.Time{}, time.Time{}, func(row *Row) error {
		got = append(got, *row)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !bytes.Equal(got[0].Sketch, dense14.Sketch) || !bytes.Equal(got[1].Sketch, dense16.Sketch) || len(got[2].GroupValues[0]) != 200<<10 {
		t.Fatalf("read %d rows, not the ones written", len(got))
	}
}

func TestFileReaderErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "never")
	r := OpenFileReader(missing, nil)
	err := r.ReadRows(context.Background(), "m", time.Time{}, time.Time{}, func(*Row) error { return nil })
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "no windows were written there yet") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// fn's error stops the read and is returned as is.
	dir := t.TempDir()
	fsWrite(t, dir, "a", []Row{
		qtRow(t, "m", 0, 14, "a", 1, nil, nil, qtValues("u", 0, 1)),
		qtRow(t, "m", 1, 14, "a", 1, nil, nil, qtValues("u", 0, 1)),
	})
	stop := errors.New("stop")
	n := 0
	err = OpenFileReader(dir, nil).ReadRows(context.Background(), "m", time.Time{}, time.Time{}, func(*Row) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("fn error: %v after %d rows", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := OpenFileReader(dir, nil).ReadRows(ctx, "m", time.Time{}, time.Time{}, func(*Row) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
