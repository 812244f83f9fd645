package file

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tracepipe/tracepipe/pipeline"
)

// splitAll runs a splitter over in, read through src, and renders its units
// as "line@offset data", with " [too_large SIZE]" and " [truncated]" when
// flagged. err is the splitter's read error.
func splitAll(src io.Reader, lim splitterLimits) (units []string, err error) {
	var s splitter
	s.reset(src, lim)
	for {
		u, ok := s.next()
		if !ok {
			return units, s.err
		}
		units = append(units, renderUnit(u))
	}
}

func renderUnit(u unit) string {
	r := fmt.Sprintf("%d@%d %s", u.Line, u.Offset, u.Data)
	if u.Flags&pipeline.UnitTooLarge != 0 {
		r += fmt.Sprintf(" [too_large %d]", u.Size)
	}
	if u.Flags&pipeline.UnitTruncated != 0 {
		r += " [truncated]"
	}
	return r
}

// readers returns ways of reading in that must all split the same: at once,
// a byte at a time, and in small pieces.
func readers(in string) map[string]func() io.Reader {
	return map[string]func() io.Reader{
		"whole":   func() io.Reader { return strings.NewReader(in) },
		"onebyte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
		"half":    func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) },
	}
}

func TestSplitFraming(t *testing.T) {
	lim := splitterLimits{maxLine: 1 << 10, maxDoc: 1 << 12, keep: 8}
	f := func(in string, want ...string) {
		t.Helper()
		for _, readSize := range []int{16, 17, 64, 1 << 16} {
			for name, r := range readers(in) {
				lim.readSize = readSize
				got, err := splitAll(r(), lim)
				if err != nil {
					t.Fatalf("%q (%s, buffer %d): error %v", in, name, readSize, err)
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("%q (%s, buffer %d):\ngot:\n%s\nwant:\n%s", in, name, readSize,
						strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			}
		}
	}
	// Empty and blank inputs.
	f("")
	f(" \n\r\n\t \n")
	f("\xef\xbb\xbf")
	// NDJSON: blank lines and CRLF skipped, no final newline, offsets and lines.
	f(`{"a":1}`+"\r\n\r\n  \n"+`{"b":2}`+"\n", `1@0 {"a":1}`, `4@14 {"b":2}`)
	f(`{"a":1}`+"\n"+`{"b":2}`, `1@0 {"a":1}`, `2@8 {"b":2}`)
	f("\n\n  "+`{"a":1}`+"\n  "+`{"b":2}`, `3@4 {"a":1}`, `4@12   {"b":2}`)
	f("\xef\xbb\xbf"+`{"a":1}`+"\n", `1@3 {"a":1}`)
	// A complete first line means NDJSON, even when a later line is broken.
	f(`{"a":"{["}`+"\n"+`{"b":`+"\n"+`2}`, `1@0 {"a":"{["}`, `2@11 {"b":`, `3@17 2}`)
	// Junk is NDJSON: each line a unit, for the parser to reject.
	f("hello\nworld \n\n", "1@0 hello", "2@6 world ")
	// A pretty document.
	f("{\n  \"resourceSpans\": [\n    {\"x\": \"}\\\"]\"}\n  ]\n}\n",
		"1@0 {\n  \"resourceSpans\": [\n    {\"x\": \"}\\\"]\"}\n  ]\n}")
	// Concatenated documents, on one line and over several.
	f(`{"a":1}{"b":`+"\n2}\n\n"+`[3] {"c":[]}`,
		`1@0 {"a":1}`, `1@7 {"b":`+"\n2}", `4@17 [3]`, `4@21 {"c":[]}`)
	// A Zipkin span array over many lines.
	f("[\n  {\"traceId\": \"a\"},\n  {\"traceId\": \"b\"}\n]\n",
		"1@0 [\n  {\"traceId\": \"a\"},\n  {\"traceId\": \"b\"}\n]")
	// Junk between documents: up to the end of its line.
	f("[1]\nxx {\"a\":1}\r\n[2] yy\n  ", "1@0 [1]", "2@4 xx {\"a\":1}", "3@16 [2]", "3@20 yy")
	// A document still open at the end of the input: its bad part runs
	// to the next line that starts with a bracket, and so on.
	f("[1,\n[2,\n", "1@0 [1,", "2@4 [2, [truncated]")
	f("{\"a\":\"]}", "1@0 {\"a\":\"]} [truncated]")
	// Escapes: an escaped backslash ends before the quote.
	f(`["\\"] ["\""]`, `1@0 ["\\"]`, `1@7 ["\""]`)
}

func TestSplitTooLarge(t *testing.T) {
	lim := splitterLimits{maxLine: 10, maxDoc: 20, keep: 4}
	f := func(in string, want ...string) {
		t.Helper()
		for _, readSize := range []int{16, 17, 64, 1 << 16} {
			for name, r := range readers(in) {
				lim.readSize = readSize
				got, err := splitAll(r(), lim)
				if err != nil {
					t.Fatalf("%q (%s, buffer %d): error %v", in, name, readSize, err)
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("%q (%s, buffer %d):\ngot:\n%s\nwant:\n%s", in, name, readSize,
						strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			}
		}
	}
	long := strings.Repeat("x", 40)
	// Lines: at the limit, over it (with and without CRLF), in the middle, at the end.
	f("x\n0123456789\n01234567890\r\ny", "1@0 x", "2@2 0123456789", "3@13 0123 [too_large 11]", "4@26 y")
	f("0123456789\r\n", "1@0 0123456789")
	f("a\n"+long+"\r\nb\n", "1@0 a", "2@2 xxxx [too_large 40]", "3@44 b")
	f("a\n"+long, "1@0 a", "2@2 xxxx [too_large 40]")
	// An over-long blank line is still blank.
	f("a\n"+strings.Repeat(" ", 40)+"\nb", "1@0 a", "3@43 b")
	// A first line over the line limit is a line too, complete or not.
	f(`{"a":"`+long+`"}`+"\n{}\n", `1@0 {"a" [too_large 48]`, "2@49 {}")
	f(`{"a":"`+long+"\n{}\n", `1@0 {"a" [too_large 46]`, "2@47 {}")
	// Documents.
	doc := "[\n" + strings.Repeat(`"x",`+"\n", 10) + "0]"
	f("[1]\n"+doc+"\n[2]", "1@0 [1]", "2@4 [\n\"x [too_large 54]", "14@59 [2]")
	f("[1] "+doc[:30], "1@0 [1]", "1@4 [\n\"x [too_large 30]")
	f("[1]\n"+long+"\n[2]", "1@0 [1]", "2@4 xxxx [too_large 40]", "3@45 [2]")
	f(strings.Repeat("[", 40)+strings.Repeat("]", 40)+"\n[]", "1@0 [[[[ [too_large 80]", "2@81 []")
}

// TestSplitDeepNesting checks the document scanner is linear: 100,000 '['
// fail as too deep and make one unit (no line starts inside), at once.
func TestSplitDeepNesting(t *testing.T) {
	in := strings.Repeat("[", 100_000)
	got, err := splitAll(strings.NewReader(in), splitterLimits{maxLine: 1 << 20, maxDoc: 1 << 20, keep: 16, readSize: 4096})
	if err != nil || len(got) != 1 || len(got[0]) != 100_000+len("1@0 ") {
		t.Fatalf("got %d units, err %v", len(got), err)
	}
}

// TestSplitReadError checks a read error ends the stream after the complete
// units and drops the unit it cut short.
func TestSplitReadError(t *testing.T) {
	boom := fmt.Errorf("boom")
	f := func(in string, want ...string) {
		t.Helper()
		src := io.MultiReader(strings.NewReader(in), iotest.ErrReader(boom))
		got, err := splitAll(src, splitterLimits{maxLine: 8, maxDoc: 16, keep: 2, readSize: 16})
		if err != boom {
			t.Fatalf("%q: error %v, want boom", in, err)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%q:\ngot:\n%s\nwant:\n%s", in, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	f("")
	f("a\nb", "1@0 a")
	f("a\nbbbbbbbbbbbbbbbbbbbb", "1@0 a")
	f("[1] [2", "1@0 [1]")
	f("[1] [222222222222222222222222222222", "1@0 [1]")
}

// FuzzSplit checks, on any input and however it is read, that the splitter
// ends, that its units are where they say they are, in order and within
// bounds, and that every byte outside all units is whitespace (or the BOM).
func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		"", "{\"a\":1}\n{\"b\":2}\r\n\n", "{\n\"a\": [1, {\"b\": \"]}\\\"\"}]\n}\n{}",
		"[1]\njunk\n[2", "\xef\xbb\xbf  [\"\\\\\"]", strings.Repeat("[", 300), "x\n" + strings.Repeat("y", 100) + "\nz",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(0x85))
	}
	f.Fuzz(func(t *testing.T, in []byte, knob uint8) {
		lim := splitterLimits{maxLine: 8 + int(knob%32), maxDoc: 16 + int(knob%64), keep: 1 + int(knob%8), readSize: 16}
		if knob&0x80 != 0 {
			lim.readSize = 256 // larger than any unit limit: the buffer never grows
		}
		var ref []unit
		for i, src := range []io.Reader{
			bytes.NewReader(in),
			iotest.OneByteReader(bytes.NewReader(in)),
			iotest.HalfReader(bytes.NewReader(in)),
		} {
			var s splitter
			s.reset(src, lim)
			var got []unit
			for {
				u, ok := s.next()
				if !ok {
					break
				}
				if len(got) > len(in) {
					t.Fatalf("more units than input bytes")
				}
				u.Data = bytes.Clone(u.Data)
				got = append(got, u)
			}
			if s.err != nil {
				t.Fatalf("read error %v", s.err)
			}
			if cap(s.buf) > max(lim.readSize, lim.maxDoc+2, lim.maxLine+2) {
				t.Fatalf("buffer grew to %d", cap(s.buf))
			}
			if i == 0 {
				ref = got
				checkUnits(t, in, got, s.lim)
				continue
			}
			if len(got) != len(ref) {
				t.Fatalf("reader %d: %d units, want %d", i, len(got), len(ref))
			}
			for j := range got {
				if renderUnit(got[j]) != renderUnit(ref[j]) || got[j].Size != ref[j].Size {
					t.Fatalf("reader %d, unit %d: %q, want %q", i, j, renderUnit(got[j]), renderUnit(ref[j]))
				}
			}
		}
	})
}

func checkUnits(t *testing.T, in []byte, units []unit, lim splitterLimits) {
	t.Helper()
	covered := 0 // bytes before this offset are accounted for
	if bytes.HasPrefix(in, []byte("\xef\xbb\xbf")) {
		covered = 3
	}
	line, counted := int64(1), 0 // line number at offset counted
	for i, u := range units {
		end := u.Offset + u.Size
		if u.Offset < int64(covered) || end > int64(len(in)) || u.Size <= 0 {
			t.Fatalf("unit %d at [%d,%d) out of order or bounds (covered %d, input %d)", i, u.Offset, end, covered, len(in))
		}
		if !isBlank(in[covered:u.Offset]) {
			t.Fatalf("unit %d: non-blank bytes %q before it are in no unit", i, in[covered:u.Offset])
		}
		if !bytes.Equal(u.Data, in[u.Offset:u.Offset+int64(len(u.Data))]) {
			t.Fatalf("unit %d: data %q is not the input at %d", i, u.Data, u.Offset)
		}
		line += int64(bytes.Count(in[counted:u.Offset], []byte{'\n'}))
		counted = int(u.Offset)
		if u.Line != line {
			t.Fatalf("unit %d: line %d, want %d", i, u.Line, line)
		}
		if isSpace(u.Data[0]) && isBlank(in[u.Offset:end]) {
			t.Fatalf("unit %d is blank", i)
		}
		if u.Flags&pipeline.UnitTooLarge != 0 {
			if len(u.Data) != lim.keep || u.Size <= int64(lim.maxLine) {
				t.Fatalf("unit %d: too large with %d bytes kept of %d", i, len(u.Data), u.Size)
			}
		} else if int64(len(u.Data)) != u.Size || u.Size > int64(lim.maxDoc) {
			t.Fatalf("unit %d: %d bytes, size %d", i, len(u.Data), u.Size)
		}
		covered = int(end)
	}
	if !isBlank(in[covered:]) {
		t.Fatalf("non-blank tail %q is in no unit", in[covered:])
	}
}
