package file

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
)

func TestLineFramedName(t *testing.T) {
	for name, want := range map[string]bool{
		"a.jsonl": true, "a.ndjson": true, "a.log": true, "dir.json/a.LOG": true,
		"a.jsonl.gz": true, "a.ndjson.zst": true, "a.log.zstd": true, "a.jsonl.gz.zst": true,
		"a.json": false, "a": false, "a.json.gz": false, "a.log.1": false, "jsonl": false,
		"a.jsonl/b.json": false, "a.gz": false,
	} {
		if got := lineFramed(name); got != want {
			t.Errorf("lineFramed(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestReadFramingByName: a pretty document in a file named as lines is
// lines; named otherwise, it is one document.
func TestReadFramingByName(t *testing.T) {
	dir := t.TempDir()
	pretty := []byte("{\n  \"a\": [\n    1\n  ]\n}\n")
	asLines := []string{"1@0 {", `2@2   "a": [`, "3@11     1", "4@17   ]", "5@21 }"}
	asDoc := []string{"1@0 {\n  \"a\": [\n    1\n  ]\n}"}
	for name, want := range map[string][]string{
		"p.jsonl": asLines, "p.ndjson": asLines, "p.log": asLines, "P.JSONL.gz": asLines, "p.log.zst": asLines, "p.ndjson.zstd": asLines,
		"p.json": asDoc, "p": asDoc, "p.json.gz": asDoc, "p.log.1": asDoc,
	} {
		data := pretty
		switch {
		case strings.HasSuffix(name, ".gz"):
			data = gzipBytes(pretty)
		case strings.Contains(name, ".zst"):
			data = zstdBytes(pretty)
		}
		p := writeFile(t, dir, name, data)
		res := collect(t, testOptions(), []File{fileOf(t, p)})
		if len(res.errs) != 0 {
			t.Fatalf("%s: %v", name, res.errs)
		}
		if got := res.units[p]; strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\ngot  %q\nwant %q", name, got, want)
		}
	}
}

// TestReadBadFirstLine: whatever the first line and the file's name, the
// good lines behind a bad first line all come out, one unit each, and the
// bad line is one unit.
func TestReadBadFirstLine(t *testing.T) {
	dir := t.TempDir()
	lines, wantLines := ndjson(1000)
	for _, bad := range []string{"[WARN queue backlog growing", "[", `{"partial": "cut by rotation`} {
		for _, name := range []string{"a.jsonl", "a.log.gz", "a.json", "a", "a.json.zst"} {
			data := append([]byte(bad+"\n"), lines...)
			switch {
			case strings.HasSuffix(name, ".gz"):
				data = gzipBytes(data)
			case strings.HasSuffix(name, ".zst"):
				data = zstdBytes(data)
			}
			p := writeFile(t, filepath.Join(dir, fmt.Sprint(len(bad))), name, data)
			res := collect(t, testOptions(), []File{fileOf(t, p)})
			if len(res.errs) != 0 {
				t.Fatalf("%s: %v", name, res.errs)
			}
			want := []string{"1@0 " + bad}
			for i, u := range wantLines { // shifted by the bad line
				var off int
				fmt.Sscanf(u, "%d@%d", new(int), &off)
				want = append(want, fmt.Sprintf("%d@%d %s", i+2, off+len(bad)+1, u[strings.IndexByte(u, ' ')+1:]))
			}
			if got := res.units[p]; strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("%q in %s: got %d units, want %d; first %q", bad, name, len(got), len(want), got[:min(2, len(got))])
			}
		}
	}
}

// TestReadSeq: the batches of each file are numbered 1, 2, 3... (collect
// checks it), across many batches and files read concurrently.
func TestReadSeq(t *testing.T) {
	dir := t.TempDir()
	lines, _ := ndjson(5000)
	var files []File
	for i := range 6 {
		files = append(files, fileOf(t, writeFile(t, dir, fmt.Sprintf("f%d.jsonl", i), lines)))
	}
	opts := testOptions()
	opts.BatchUnits = 7
	opts.Concurrency = 3
	res := collect(t, opts, files)
	if want := 6 * ((5000 + 6) / 7); res.batches != want {
		t.Fatalf("%d batches, want %d", res.batches, want)
	}
}

// TestReadNonRegular: a FIFO with no writer, a device and a socket among
// the inputs are failed files, found without blocking; the regular file
// beside them is read.
func TestReadNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.jsonl")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lines, want := ndjson(10)
	good := writeFile(t, dir, "good.jsonl", lines)

	// Expand takes them all, named or globbed, without opening them.
	expanded, errs := Expand([]string{filepath.Join(dir, "*.jsonl"), sock, "/dev/null"})
	if len(errs) != 0 || len(expanded) != 4 {
		t.Fatalf("Expand: %v, errors %v", expanded, errs)
	}

	done := make(chan result)
	go func() { done <- collect(t, testOptions(), expanded) }()
	var res result
	select {
	case res = <-done:
	case <-time.After(time.Minute):
		t.Fatal("reading blocked on a FIFO with no writer")
	}
	if got := res.units[good]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("good file: %q", got)
	}
	codes := map[string]string{}
	for _, fe := range res.errs {
		codes[filepath.Base(fe.Path)] = fe.Code
	}
	// open(2) of a socket fails (ENXIO); the others open and are refused.
	if codes["pipe.jsonl"] != CodeNotRegular || codes["null"] != CodeNotRegular || codes["s.sock"] == "" || len(res.errs) != 3 {
		t.Fatalf("errors %v", res.errs)
	}
}

// TestReadFIFOInFolder: inside a folder only regular files are taken, so a
// FIFO there is not even listed.
func TestReadFIFOInFolder(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.jsonl"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	writeFile(t, dir, "a.jsonl", []byte("{}\n"))
	files, errs := Expand([]string{dir, filepath.Join(dir, "**", "*.jsonl")})
	if len(errs) != 0 || len(files) != 1 || filepath.Base(files[0].Path) != "a.jsonl" {
		t.Fatalf("files %v, errors %v", files, errs)
	}
}

// TestReadNonRegularNoSource: a refused file sends no batch.
func TestReadNonRegularNoSource(t *testing.T) {
	r, err := NewReader(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *pipeline.Batch, 1)
	var got []FileError
	r.Run(context.Background(), []File{{Path: os.DevNull}}, out, func(fe FileError) { got = append(got, fe) })
	if len(out) != 0 || len(got) != 1 || got[0].Code != CodeNotRegular || !strings.Contains(got[0].Error(), "character device") {
		t.Fatalf("%d batches, errors %v", len(out), got)
	}
}
