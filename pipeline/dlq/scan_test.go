package dlq

import (
	"bytes"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	good := func(js string) string {
		var b [8]byte
		putCRC(b[:], crc32c([]byte(js)))
		return string(b[:]) + " " + js
	}
	f := func(line, wantReason string) {
		t.Helper()
		js, reason := parseLine([]byte(line))
		if wantReason == "" {
			if reason != "" || string(js) != line[9:] {
				t.Errorf("parseLine(%q) = %q, %q; want the JSON", line, js, reason)
			}
			return
		}
		if js != nil || !strings.Contains(reason, wantReason) {
			t.Errorf("parseLine(%q) = %q, %q; want a reason with %q", line, js, reason, wantReason)
		}
	}
	f(good(`{"v":1}`), "")
	f(good(`{}`), "")
	f("", "not an entry line")
	f("0123abcd", "not an entry line")
	f("0123abcd ", "not an entry line")
	f("0123abcd{}", "not an entry line")
	f("0123abcdx{}", "not an entry line")
	f("0123ABCD {}", "lowercase hex")
	f("0123abcg {}", "lowercase hex")
	f("00000000 {}", "checksum mismatch")
	f(strings.ToUpper(good(`{}`)[:8])+" {}", "lowercase hex")
	f(good(`{"v":1}`)[:len(good(`{"v":1}`))-1], "checksum mismatch")
}

// writeSegment puts n entries through a File into a fresh directory and
// returns the directory and the single segment's path.
func writeSegment(t *testing.T, n int) (string, string) {
	t.Helper()
	f := openTest(t, FileOptions{}, fileHooks{})
	for i := range n {
		mustPut(t, f, testEntry(i, "malformed"))
	}
	mustClose(t, f)
	paths, _ := segmentsIn(t, f.Dir())
	if len(paths) != 1 {
		t.Fatalf("want one segment, got %v", paths)
	}
	return f.Dir(), paths[0]
}

// lineStarts returns the offset of each line of a segment.
func lineStarts(data []byte) []int64 {
	var starts []int64
	for off := 0; off < len(data); {
		starts = append(starts, int64(off))
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	return starts
}

func TestScanTornWrite(t *testing.T) {
	dir, seg := writeSegment(t, 10)
	data, _ := os.ReadFile(seg)
	starts := lineStarts(data)
	// A crash mid-write: half of one more line, no newline.
	half := data[starts[3]:starts[4]]
	half = half[:len(half)/2]
	if err := os.WriteFile(seg, append(append([]byte(nil), data...), half...), 0o600); err != nil {
		t.Fatal(err)
	}
	s := scanAll(t, dir)
	if len(s.entries) != 10 {
		t.Fatalf("scanned %d entries, want the 10 whole ones", len(s.entries))
	}
	if len(s.corruptions) != 1 {
		t.Fatalf("corruptions %v, want one torn line", s.corruptions)
	}
	c := s.corruptions[0]
	if c.Segment != seg || c.Offset != int64(len(data)) || !strings.Contains(c.Reason, "torn write") {
		t.Fatalf("corruption %+v, want torn at offset %d of %s", c, len(data), seg)
	}
	if !strings.Contains(c.Error(), seg) {
		t.Fatalf("Corruption.Error() %q does not name the file", c.Error())
	}
}

func TestScanFlippedByteAndGarbage(t *testing.T) {
	dir, seg := writeSegment(t, 10)
	data, _ := os.ReadFile(seg)
	starts := lineStarts(data)
	// Flip a byte inside line 2's JSON, and put a foreign line before line 7.
	data[starts[2]+40] ^= 0x01
	bad := append([]byte(nil), data[:starts[7]]...)
	bad = append(bad, "hello world\n\n"...)
	bad = append(bad, data[starts[7]:]...)
	if err := os.WriteFile(seg, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	s := scanAll(t, dir)
	if len(s.entries) != 9 {
		t.Fatalf("scanned %d entries, want 9", len(s.entries))
	}
	want := []struct {
		off    int64
		reason string
	}{
		{starts[2], "checksum mismatch"},
		{starts[7], "not an entry line"},
		{starts[7] + int64(len("hello world\n")), "not an entry line"},
	}
	if len(s.corruptions) != len(want) {
		t.Fatalf("corruptions %+v, want %d", s.corruptions, len(want))
	}
	for i, w := range want {
		c := s.corruptions[i]
		if c.Offset != w.off || !strings.Contains(c.Reason, w.reason) {
			t.Errorf("corruption %d: %+v, want offset %d and %q", i, c, w.off, w.reason)
		}
	}
	// Positions point at the lines, shifted by the inserted garbage.
	for i, pos := range s.positions {
		line := i
		if i >= 2 {
			line++ // line 2 was skipped
		}
		wantOff := starts[line]
		if line >= 7 {
			wantOff += int64(len("hello world\n\n"))
		}
		if pos.Segment != seg || pos.Offset != wantOff {
			t.Fatalf("entry %d at %+v, want offset %d", i, pos, wantOff)
		}
	}
}

func TestScanChecksumGoodButNotAnEntry(t *testing.T) {
	dir := t.TempDir()
	f := func(js string) []byte {
		var b [8]byte
		putCRC(b[:], crc32c([]byte(js)))
		return []byte(string(b[:]) + " " + js + "\n")
	}
	var data []byte
	data = append(data, f(`{"v":1,"id":`)...)      // bad JSON, right checksum
	data = append(data, f(`{"v":99,"id":"x"}`)...) // from a newer writer
	data = append(data, f(`{"v":1,"id":"ok"}`)...)
	os.WriteFile(filepath.Join(dir, "dlq-20300101T000000Z-000001-00000000.seg"), data, 0o600)
	s := scanAll(t, dir)
	if len(s.entries) != 1 || s.entries[0].ID != "ok" {
		t.Fatalf("entries %+v", s.entries)
	}
	if len(s.corruptions) != 2 || !strings.Contains(s.corruptions[0].Reason, "JSON") || !strings.Contains(s.corruptions[1].Reason, "newer") {
		t.Fatalf("corruptions %+v", s.corruptions)
	}
}

func TestScanOverlongLine(t *testing.T) {
	const limit = 1 << 20 // several bufio buffers
	lowerMaxLine(t, limit)
	dir := t.TempDir()
	long := bytes.Repeat([]byte("z"), limit+10)
	long = append(long, '\n')
	var b [8]byte
	putCRC(b[:], crc32c([]byte(`{"v":1,"id":"after"}`)))
	long = append(long, string(b[:])+` {"v":1,"id":"after"}`+"\n"...)
	os.WriteFile(filepath.Join(dir, "dlq-20300101T000000Z-000001-00000000.seg"), long, 0o600)
	s := scanAll(t, dir)
	if len(s.entries) != 1 || s.entries[0].ID != "after" || s.positions[0].Offset != limit+11 {
		t.Fatalf("entries %+v at %+v", s.entries, s.positions)
	}
	if len(s.corruptions) != 1 || !strings.Contains(s.corruptions[0].Reason, "longer than MaxLineBytes") {
		t.Fatalf("corruptions %+v", s.corruptions)
	}
}

func TestScanOrderAndOtherFiles(t *testing.T) {
	dir := t.TempDir()
	line := func(id string) []byte {
		js := `{"v":1,"id":"` + id + `"}`
		var b [8]byte
		putCRC(b[:], crc32c([]byte(js)))
		return []byte(string(b[:]) + " " + js + "\n")
	}
	os.WriteFile(filepath.Join(dir, "dlq-20300101T000001Z-000002-aaaaaaaa.seg"), line("b"), 0o600)
	os.WriteFile(filepath.Join(dir, "dlq-20300101T000000Z-000001-bbbbbbbb.seg"), line("a"), 0o600)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a segment\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "dlq-x.seg.tmp"), []byte("nope\n"), 0o600)
	os.Mkdir(filepath.Join(dir, "dlq-dir.seg"), 0o700)
	s := scanAll(t, dir)
	if len(s.entries) != 2 || s.entries[0].ID != "a" || s.entries[1].ID != "b" || len(s.corruptions) != 0 {
		t.Fatalf("entries %+v corruptions %+v", s.entries, s.corruptions)
	}

	stop := errors.New("stop")
	calls := 0
	err := Scan(dir, func(*Entry, Position) error { calls++; return stop }, nil)
	if err != stop || calls != 1 {
		t.Fatalf("Scan returned %v after %d calls, want fn's error after 1", err, calls)
	}
	if err := Scan(filepath.Join(dir, "missing"), func(*Entry, Position) error { return nil }, nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Scan of a missing directory: %v", err)
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// FuzzScan: whatever bytes a segment holds, Scan terminates without a
// panic, every entry it returns passed its checksum, and every bad line is
// reported as a corruption with an offset inside the file.
func FuzzScan(f *testing.F) {
	it, err := encodeItem(testEntry(1, "malformed"))
	if err != nil {
		f.Fatal(err)
	}
	good := append([]byte(nil), it.line...)
	f.Add(good)
	f.Add(append(append([]byte(nil), good...), good[:len(good)/2]...))
	f.Add([]byte("00000000 {}\nnot a line\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "dlq-20260101T000000Z-000001-00000000.seg"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		err := Scan(dir, func(e *Entry, pos Position) error {
			if pos.Offset < 0 || pos.Offset >= int64(len(data)) {
				t.Fatalf("entry at offset %d of %d bytes", pos.Offset, len(data))
			}
			return nil
		}, func(c Corruption) {
			if c.Offset < 0 || c.Offset > int64(len(data)) || c.Reason == "" {
				t.Fatalf("corruption %+v in %d bytes", c, len(data))
			}
		})
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
	})
}
