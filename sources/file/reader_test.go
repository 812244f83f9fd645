package file

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tracepipe/tracepipe/pipeline"
)

// result is what a Run delivered.
type result struct {
	units   map[string][]string // path -> rendered units, in order
	errs    []FileError
	batches int
}

// collect runs a Reader over files and checks the batch contract on the way:
// one Source per batch and per file, a resolved format, units in order.
//
// It also checks OnFileDone: once per file, with the file's index (its
// batches' Source.ID) and exactly the number of its batches sent; and Seq:
// the batches of each file numbered 1, 2, 3... in the order received.
func collect(t *testing.T, opts Options, files []File) result {
	t.Helper()
	var doneMu sync.Mutex
	done := map[int]int64{}
	opts.OnFileDone = func(id int, batches int64) {
		doneMu.Lock()
		defer doneMu.Unlock()
		if _, twice := done[id]; twice {
			t.Errorf("OnFileDone twice for file %d", id)
		}
		done[id] = batches
	}
	r, err := NewReader(opts)
	if err != nil {
		t.Fatal(err)
	}
	res := result{units: map[string][]string{}}
	var mu sync.Mutex
	out := make(chan *pipeline.Batch, 4)
	go func() {
		r.Run(context.Background(), files, out, func(fe FileError) {
			mu.Lock()
			res.errs = append(res.errs, fe)
			mu.Unlock()
		})
		close(out)
	}()
	sources := map[string]*pipeline.Origin{}
	lastOffset := map[string]int64{}
	perID := map[int]int64{}
	for b := range out {
		res.batches++
		src := b.Origin
		if src != nil {
			perID[src.ID]++
			if b.Seq != uint64(perID[src.ID]) {
				t.Fatalf("batch %d of %s has Seq %d", perID[src.ID], src.Path, b.Seq)
			}
			if src.ID < 0 || src.ID >= len(files) || files[src.ID].Path != src.Path {
				t.Fatalf("batch of %s has Source.ID %d", src.Path, src.ID)
			}
		}
		if src == nil || src.Kind != "file" || src.Format == pipeline.FormatAuto || len(b.Units) == 0 {
			t.Fatalf("bad batch: source %+v, %d units", src, len(b.Units))
		}
		if prev, ok := sources[src.Path]; ok && prev != src {
			t.Fatalf("%s: batches of one file with different Sources", src.Path)
		}
		sources[src.Path] = src
		for i, u := range b.Units {
			if last, ok := lastOffset[src.Path]; ok && u.Offset <= last {
				t.Fatalf("%s: unit at %d after one at %d", src.Path, u.Offset, last)
			}
			lastOffset[src.Path] = u.Offset
			res.units[src.Path] = append(res.units[src.Path], renderUnit(unit{
				Data: b.UnitBytes(i), Offset: u.Offset, Line: u.Line, Size: u.Size, Flags: u.Flags,
			}))
		}
		pipeline.PutBatch(b)
	}
	if got := r.FilesDone(); got != int64(len(files)) {
		t.Fatalf("FilesDone %d, want %d", got, len(files))
	}
	if len(done) != len(files) {
		t.Fatalf("OnFileDone for %d files, want %d", len(done), len(files))
	}
	for id, n := range done {
		if perID[id] != n {
			t.Fatalf("file %d: OnFileDone says %d batches, %d were received", id, n, perID[id])
		}
	}
	return res
}

func testOptions() Options {
	o := DefaultOptions()
	o.Format = pipeline.FormatJSONL
	return o
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gzipBytes(data []byte) []byte {
	var buf bytes.Buffer
	w := stdgzip.NewWriter(&buf)
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func zstdBytes(data []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		panic(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// ndjson returns n lines {"i":K,"pad":"..."} and their rendered units.
func ndjson(n int) ([]byte, []string) {
	var buf bytes.Buffer
	var units []string
	for i := range n {
		off := buf.Len()
		fmt.Fprintf(&buf, `{"i":%d,"pad":"%s"}`, i, strings.Repeat("p", i%50))
		units = append(units, fmt.Sprintf("%d@%d %s", i+1, off, buf.Bytes()[off:]))
		buf.WriteByte('\n')
	}
	return buf.Bytes(), units
}

func fileOf(t *testing.T, path string) File {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return File{Path: path, Size: fi.Size()}
}

func TestReadCompressionAndFraming(t *testing.T) {
	dir := t.TempDir()
	lines, want := ndjson(3000)
	pretty := []byte("\xef\xbb\xbf{\n  \"resourceSpans\": [\n    {}\n  ]\n}\n")
	wantPretty := []string{"1@3 {\n  \"resourceSpans\": [\n    {}\n  ]\n}"}
	f := func(name string, data []byte, want []string) {
		t.Helper()
		p := writeFile(t, dir, name, data)
		res := collect(t, testOptions(), []File{fileOf(t, p)})
		if len(res.errs) != 0 {
			t.Fatalf("%s: errors %v", name, res.errs)
		}
		if got := res.units[p]; strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: got %d units, want %d; first got %q", name, len(got), len(want), got[:min(1, len(got))])
		}
	}
	f("plain.ndjson", lines, want)
	f("no-extension", gzipBytes(lines), want) // magic bytes, not the name
	f("multi.gz", append(gzipBytes(lines[:len(lines)/2]), gzipBytes(lines[len(lines)/2:])...), want)
	f("lines.zst", zstdBytes(lines), want)
	f("pretty.json.gz", gzipBytes(pretty), wantPretty)
	f("pretty.json.zst", zstdBytes(pretty), wantPretty)
	f("empty", nil, nil)
	f("empty.gz", gzipBytes(nil), nil)
	f("one", []byte("x"), []string{"1@0 x"})
}

func TestReadCorrupt(t *testing.T) {
	dir := t.TempDir()
	lines, want := ndjson(20000)
	gz, zs := gzipBytes(lines), zstdBytes(lines)
	flipped := bytes.Clone(gz)
	for i := len(gz) / 2; i < len(gz)/2+64; i++ {
		flipped[i] ^= 0x55
	}
	flippedZ := bytes.Clone(zs)
	for i := len(zs) / 2; i < len(zs)/2+64; i++ {
		flippedZ[i] ^= 0x55
	}
	// f checks that the units before the error arrive, whole and in order,
	// then exactly one FileError with code and an offset and line at or past
	// the last unit. atLeast is the fewest units expected; garbled says the
	// stream decodes to wrong bytes before its error is seen (a gzip
	// member's checksum is only checked at its end), so only the first
	// atLeast units must match.
	f := func(name string, data []byte, code string, atLeast int, garbled bool) {
		t.Helper()
		p := writeFile(t, dir, name, data)
		res := collect(t, testOptions(), []File{fileOf(t, p)})
		got := res.units[p]
		exact := len(got)
		if garbled {
			exact = atLeast
		}
		if len(got) < atLeast || len(got) > len(want) || strings.Join(got[:exact], "\n") != strings.Join(want[:exact], "\n") {
			t.Fatalf("%s: %d units, not a prefix of the file's %d", name, len(got), len(want))
		}
		if len(res.errs) != 1 {
			t.Fatalf("%s: errors %v, want one", name, res.errs)
		}
		fe := res.errs[0]
		if fe.Code != code || fe.Path != p || fe.Err == nil || !strings.Contains(fe.Error(), p) {
			t.Fatalf("%s: error %+v, want code %s", name, fe, code)
		}
		wantLine := int64(0) // nothing read
		if fe.Offset > 0 && fe.Offset <= int64(len(lines)) {
			wantLine = int64(bytes.Count(lines[:fe.Offset], []byte{'\n'}) + 1)
		}
		if !garbled && (fe.Offset > int64(len(lines)) || fe.Line != wantLine) {
			t.Fatalf("%s: error at offset %d line %d", name, fe.Offset, fe.Line)
		}
		if n := len(got); n > 0 && fe.Line < int64(n) {
			t.Fatalf("%s: error line %d before the last unit's %d", name, fe.Line, n)
		}
	}
	f("header-then-garbage.gz", append(bytes.Clone(gz[:10]), bytes.Repeat([]byte{0xff, 0x13}, 500)...), CodeGzip, 0, false)
	f("truncated.gz", gz[:len(gz)/2], CodeGzip, 1000, false)
	f("flipped.gz", flipped, CodeGzip, 1000, true)
	f("trailing-garbage.gz", append(bytes.Clone(gz), "garbage!"...), CodeGzip, len(want), false)
	f("truncated.zst", zs[:len(zs)/2], CodeZstd, 1000, false)
	f("flipped.zst", flippedZ, CodeZstd, 1000, false)
	f("short-header.gz", gz[:5], CodeGzip, 0, false)
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good", []byte("{}\n"))
	vanished := writeFile(t, dir, "vanished", []byte("{}\n"))
	files := []File{fileOf(t, good), fileOf(t, vanished), {Path: dir}}
	os.Remove(vanished)
	res := collect(t, testOptions(), files)
	codes := map[string]string{}
	for _, fe := range res.errs {
		codes[fe.Path] = fe.Code
	}
	if len(res.errs) != 2 || codes[vanished] != CodeNotFound || codes[dir] != CodeIsDir {
		t.Fatalf("errors %v", res.errs)
	}
	if len(res.units[good]) != 1 {
		t.Fatalf("good file: %v", res.units[good])
	}
}

func TestReadPermissionDenied(t *testing.T) {
	p := writeFile(t, t.TempDir(), "secret", []byte("{}\n"))
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	if f, err := os.Open(p); err == nil {
		f.Close()
		t.Skip("chmod 000 does not deny reading here (running as root?)")
	}
	res := collect(t, testOptions(), []File{{Path: p}})
	if len(res.errs) != 1 || res.errs[0].Code != CodePermission {
		t.Fatalf("errors %v", res.errs)
	}
}

func TestReadTooLarge(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.MaxLineBytes, opts.MaxDocumentBytes, opts.KeepBytes = 100, 200, 10
	long := `{"a":"` + strings.Repeat("x", 5000) + `"}`
	p := writeFile(t, dir, "lines", []byte("{}\n"+long+"\n{\"b\":1}\n"))
	doc := "[\n" + strings.Repeat("  {\"x\": \"]\"},\n", 100) + "  {}\n]\n"
	q := writeFile(t, dir, "docs.gz", gzipBytes([]byte("[1]\n"+doc+"[2]\n")))
	res := collect(t, opts, []File{fileOf(t, p), fileOf(t, q)})
	want := []string{"1@0 {}", `2@3 {"a":"xxxx [too_large 5008]`, `3@5012 {"b":1}`}
	if got := res.units[p]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines: %q", got)
	}
	want = []string{"1@0 [1]", "2@4 [\n  {\"x\":  [too_large 1408]", "105@1413 [2]"}
	if got := res.units[q]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("documents: %q", got)
	}
}

func TestReadConcurrent(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	var files []File
	want := map[string]int{}
	var disk, decoded int64
	for i := range 40 {
		var buf bytes.Buffer
		n := rng.IntN(3000)
		for j := range n {
			fmt.Fprintf(&buf, `{"file":%d,"line":%d}`+"\n", i, j)
		}
		data := buf.Bytes()
		decoded += int64(len(data))
		name := fmt.Sprintf("f%02d.ndjson", i)
		switch i % 3 {
		case 1:
			data = gzipBytes(data)
		case 2:
			data = zstdBytes(data)
		}
		disk += int64(len(data))
		files = append(files, fileOf(t, writeFile(t, dir, name, data)))
		want[files[i].Path] = n
	}
	opts := testOptions()
	opts.BatchUnits, opts.BatchBytes, opts.Concurrency, opts.ReadBufferBytes = 50, 700, 4, 4096
	r, err := NewReader(opts)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *pipeline.Batch)
	go func() {
		r.Run(context.Background(), files, out, func(fe FileError) { t.Errorf("unexpected %v", fe) })
		close(out)
	}()
	seen := map[string]bool{}
	got := map[string]int{}
	for b := range out {
		if len(b.Units) > opts.BatchUnits || (len(b.Units) > 1 && len(b.Buf) > opts.BatchBytes) {
			t.Fatalf("batch of %d units, %d bytes", len(b.Units), len(b.Buf))
		}
		var file, line int
		for i := range b.Units {
			u := b.UnitBytes(i)
			if _, err := fmt.Sscanf(string(u), `{"file":%d,"line":%d}`, &file, &line); err != nil {
				t.Fatalf("unit %q: %v", u, err)
			}
			if b.Origin.Path != files[file].Path || int64(line+1) != b.Units[i].Line {
				t.Fatalf("unit %q in batch of %s at line %d", u, b.Origin.Path, b.Units[i].Line)
			}
			key := string(u)
			if seen[key] {
				t.Fatalf("unit %q twice", u)
			}
			seen[key] = true
			got[b.Origin.Path]++
		}
		pipeline.PutBatch(b)
	}
	for p, n := range want {
		if got[p] != n {
			t.Fatalf("%s: %d units, want %d", p, got[p], n)
		}
	}
	if r.FilesDone() != 40 || r.BytesRead() != disk || r.BytesDecoded() != decoded {
		t.Fatalf("progress: files %d, read %d (want %d), decoded %d (want %d)",
			r.FilesDone(), r.BytesRead(), disk, r.BytesDecoded(), decoded)
	}
}

func TestReadDetect(t *testing.T) {
	dir := t.TempDir()
	lines, _ := ndjson(100)
	a := writeFile(t, dir, "a", lines)
	b := writeFile(t, dir, "b", []byte(`{"resourceSpans":[]}`))
	var mu sync.Mutex
	calls := map[string]int{}
	opts := DefaultOptions()
	opts.BatchUnits = 10
	opts.Detect = func(b *pipeline.Batch) pipeline.Format {
		mu.Lock()
		calls[b.Origin.Path]++
		mu.Unlock()
		if len(b.Units) == 0 {
			t.Errorf("Detect on an empty batch")
		}
		if bytes.Contains(b.UnitBytes(0), []byte("resourceSpans")) {
			return pipeline.FormatOTLP
		}
		return pipeline.FormatAuto // unknown: taken as JSONL
	}
	r, err := NewReader(opts)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *pipeline.Batch, 100)
	r.Run(context.Background(), []File{fileOf(t, a), fileOf(t, b)}, out, func(fe FileError) { t.Error(fe) })
	close(out)
	formats := map[string]pipeline.Format{}
	for bt := range out {
		formats[bt.Origin.Path] = bt.Origin.Format
		pipeline.PutBatch(bt)
	}
	if calls[a] != 1 || calls[b] != 1 || formats[a] != pipeline.FormatJSONL || formats[b] != pipeline.FormatOTLP {
		t.Fatalf("calls %v, formats %v", calls, formats)
	}
	if _, err := NewReader(DefaultOptions()); err == nil {
		t.Fatal("NewReader accepted format auto without Detect")
	}
}

func TestReadCancel(t *testing.T) {
	dir := t.TempDir()
	lines, _ := ndjson(5000)
	var files []File
	for i := range 8 {
		files = append(files, fileOf(t, writeFile(t, dir, fmt.Sprint(i), lines)))
	}
	opts := testOptions()
	opts.BatchUnits = 10
	r, _ := NewReader(opts)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan *pipeline.Batch) // nobody reads past the first batch
	done := make(chan struct{})
	go func() {
		r.Run(ctx, files, out, func(fe FileError) { t.Error(fe) })
		close(done)
	}()
	pipeline.PutBatch(<-out)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestReadMemoryBounded reads a 64 MiB line with a 1 MiB line limit: the
// reader must not hold it, only its first bytes.
func TestReadMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB")
	}
	const size = 64 << 20
	p := filepath.Join(t.TempDir(), "huge")
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	fh.Write([]byte(`{"a":"`))
	for range size / len(chunk) {
		fh.Write(chunk)
	}
	fh.Write([]byte("\"}\n{}\n"))
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.MaxLineBytes = 1 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res := collect(t, opts, []File{fileOf(t, p)})
	runtime.ReadMemStats(&after)
	want := []string{fmt.Sprintf(`1@0 {"a":"%s [too_large %d]`, chunk[:4096-6], size+8), fmt.Sprintf("2@%d {}", size+9)}
	if got := res.units[p]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got %d units", len(got))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Fatalf("allocated %d MiB reading a %d MiB line", alloc>>20, size>>20)
	}
}

// TestSplitterBufferBounded checks the splitter's own buffer directly.
func TestSplitterBufferBounded(t *testing.T) {
	var s splitter
	lim := splitterLimits{maxLine: 1 << 20, maxDoc: 4 << 20, keep: 16, readSize: 64 << 10}
	s.reset(&endless{c: 'x'}, lim)
	if u, ok := s.next(); !ok || u.Flags&pipeline.UnitTooLarge == 0 {
		t.Fatalf("no too-large unit: %v", ok)
	}
	if cap(s.buf) > lim.maxLine+2 {
		t.Fatalf("buffer grew to %d", cap(s.buf))
	}
	s.reset(&endless{prefix: "[", c: '['}, lim)
	if u, ok := s.next(); !ok || u.Flags&pipeline.UnitTooLarge == 0 {
		t.Fatalf("no too-large unit: %v", ok)
	}
	if cap(s.buf) > lim.maxDoc+2 {
		t.Fatalf("buffer grew to %d", cap(s.buf))
	}
}

// endless yields prefix then 32 MiB of c, then a newline and EOF.
type endless struct {
	prefix string
	c      byte
	n      int
}

func (e *endless) Read(p []byte) (int, error) {
	const total = 32 << 20
	if e.n >= total+1 {
		return 0, io.EOF
	}
	if e.n == 0 && e.prefix != "" {
		e.n = copy(p, e.prefix)
		return e.n, nil
	}
	n := min(len(p), total-e.n)
	for i := range n {
		p[i] = e.c
	}
	if n == 0 {
		p[0], n = '\n', 1
	}
	e.n += n
	return n, nil
}
