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

// refSplit is document framing as the spec states it, written the plain way
// (the input in memory, every document scanned from scratch, quadratic on
// bad input): after the BOM and leading whitespace, a byte that is not a
// bracket starts a junk line (one unit); a bracket starts a document, which
// ends where its depth comes back to zero, or fails: the input ends inside
// it, a string holds a raw newline, it nests deeper than maxDepth, or it
// does not end within maxDoc bytes. The bad part of a failed document runs
// to the newline before the next line that starts with '{' or '[' (or to
// the end) and is one unit; splitting starts again at that line. The
// splitter must cut every input exactly like this.
func refSplit(in []byte, lim splitterLimits) []unit {
	if lim.maxDepth == 0 {
		lim.maxDepth = DefaultMaxDepth
	}
	lim.keep = min(lim.keep, lim.maxLine, lim.maxDoc)
	pos := 0
	if bytes.HasPrefix(in, []byte("\xef\xbb\xbf")) {
		pos = 3
	}
	line, counted := int64(1), 0 // the line at in[counted]
	lineAt := func(off int) int64 {
		line += int64(bytes.Count(in[counted:off], []byte{'\n'}))
		counted = off
		return line
	}
	var out []unit
	for {
		for pos < len(in) && isSpace(in[pos]) {
			pos++
		}
		if pos == len(in) {
			return out
		}
		u := unit{Offset: int64(pos), Line: lineAt(pos)}
		if !isStart(in[pos]) {
			end, next := len(in), len(in)
			if nl := bytes.IndexByte(in[pos:], '\n'); nl >= 0 {
				end, next = pos+nl, pos+nl+1
			}
			p := bytes.TrimSuffix(in[pos:end], []byte("\r"))
			u.Data, u.Size = p, int64(len(p))
			if len(p) > lim.maxLine {
				u.Data, u.Flags = p[:lim.keep], pipeline.UnitTooLarge
			}
			out = append(out, u)
			pos = next
			continue
		}
		end, kind := refDoc(in, pos, lim)
		if kind == failNone {
			u.Data, u.Size = in[pos:end], int64(end-pos)
			out = append(out, u)
			pos = end
			continue
		}
		end, next := len(in), len(in)
		for i := pos + 1; i+1 < len(in); i++ {
			if in[i] == '\n' && isStart(in[i+1]) {
				end, next = i, i+1
				break
			}
		}
		p := in[pos:end]
		u.Size = int64(len(p))
		if next == len(in) && kind == failEOF {
			u.Flags = pipeline.UnitTruncated
		}
		if len(p) > lim.maxDoc {
			u.Data = p[:lim.keep]
			u.Flags |= pipeline.UnitTooLarge
		} else {
			p = bytes.TrimRight(p, " \t\r\n")
			u.Data, u.Size = p, int64(len(p))
		}
		out = append(out, u)
		pos = next
	}
}

// refDoc scans the document at in[pos], byte by byte: it returns the index
// just past its end, or how it failed.
func refDoc(in []byte, pos int, lim splitterLimits) (int, uint8) {
	depth, inStr, esc := 0, false, false
	for i := pos; i < len(in); i++ {
		if i-pos == lim.maxDoc {
			return 0, failBig
		}
		c := in[i]
		switch {
		case inStr && c == '\n':
			return 0, failNewline
		case esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case inStr && c == '"':
			inStr = false
		case inStr:
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			if depth == lim.maxDepth {
				return 0, failDeep
			}
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1, failNone
			}
		}
	}
	if len(in)-pos == lim.maxDoc {
		return 0, failBig
	}
	return 0, failEOF
}

// splitUnits runs the splitter over src and returns its units (data copied),
// failing t on a read error, a region rescan that disagreed with its scan,
// or a buffer grown past its bound.
func splitUnits(t *testing.T, src io.Reader, lim splitterLimits) ([]unit, *splitter) {
	t.Helper()
	s := new(splitter)
	s.reset(src, lim)
	var got []unit
	for {
		u, ok := s.next()
		if !ok {
			break
		}
		u.Data = bytes.Clone(u.Data)
		got = append(got, u)
	}
	if s.err != nil {
		t.Fatalf("read error %v", s.err)
	}
	if s.fallbacks != 0 {
		t.Fatalf("%d region rescans disagreed with the failed scan", s.fallbacks)
	}
	if cap(s.buf) > max(s.lim.readSize, s.lim.maxDoc+2, s.lim.maxLine+2) {
		t.Fatalf("buffer grew to %d", cap(s.buf))
	}
	return got, s
}

func renderUnits(us []unit) string {
	var b strings.Builder
	for _, u := range us {
		fmt.Fprintf(&b, "%s (size %d)\n", renderUnit(u), u.Size)
	}
	return b.String()
}

// checkAgainstModel splits in with document framing forced, read whole, a
// byte at a time and in halves, and compares with refSplit. It also checks
// that the document-mode work stays within 3 passes over the input.
func checkAgainstModel(t *testing.T, in []byte, lim splitterLimits) {
	t.Helper()
	lim.framing = framingDocument
	want := renderUnits(refSplit(in, lim))
	for name, src := range map[string]io.Reader{
		"whole":   bytes.NewReader(in),
		"onebyte": iotest.OneByteReader(bytes.NewReader(in)),
		"half":    iotest.HalfReader(bytes.NewReader(in)),
	} {
		units, s := splitUnits(t, src, lim)
		if got := renderUnits(units); got != want {
			t.Fatalf("%q (%s, limits %+v):\ngot:\n%swant:\n%s", in, name, lim, got, want)
		}
		if s.work > 3*int64(len(in))+64 {
			t.Fatalf("%s: scanned %d bytes for an input of %d", name, s.work, len(in))
		}
	}
}

func TestSplitResync(t *testing.T) {
	lim := splitterLimits{maxLine: 1 << 10, maxDoc: 1 << 12, keep: 8, maxDepth: 8, readSize: 16}
	f := func(in string, want ...string) {
		t.Helper()
		for _, readSize := range []int{16, 17, 64, 1 << 16} {
			lim.readSize = readSize
			lim.framing = framingDocument
			for name, r := range readers(in) {
				units, _ := splitUnits(t, r(), lim)
				var got []string
				for _, u := range units {
					got = append(got, renderUnit(u))
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("%q (%s, buffer %d):\ngot:\n%s\nwant:\n%s", in, name, readSize,
						strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			}
			checkAgainstModel(t, []byte(in), lim)
		}
	}
	good := `{"a":1}` + "\n" + `{"b":"x]"}` + "\n"
	// The three bad first lines of the issue, then good lines.
	f("[WARN queue backlog growing\n"+good, "1@0 [WARN queue backlog growing", `2@28 {"a":1}`, `3@36 {"b":"x]"}`)
	f("[\n"+good, "1@0 [", `2@2 {"a":1}`, `3@10 {"b":"x]"}`)
	f(`{"partial": "cut by rotation`+"\n"+good, `1@0 {"partial": "cut by rotation`, `2@29 {"a":1}`, `3@37 {"b":"x]"}`)
	// A torn line whose quotes would flip every later string.
	f(`{"p": "cut`+"\n"+`{"a":"}"}`+"\n"+`{"b":"{"}`, `1@0 {"p": "cut`, `2@11 {"a":"}"}`, `3@21 {"b":"{"}`)
	// A backslash then a newline is torn too.
	f(`{"p": "C:\`+"\n{}", `1@0 {"p": "C:\`, "2@11 {}")
	// Lines that do not start with a bracket belong to the bad part.
	f("[oops\nplain\n  {\"indented\":1}\n\n{\"a\":1}", "1@0 [oops\nplain\n  {\"indented\":1}", `5@30 {"a":1}`)
	// A pretty document after the bad part is whole.
	f("[oops\n{\n  \"a\": [\n    1\n  ]\n}\n{\"b\":2}", "1@0 [oops", "2@6 {\n  \"a\": [\n    1\n  ]\n}", `7@29 {"b":2}`)
	// Torn inside a pretty document: the part runs to the next start.
	f("{\n  \"a\": \"torn\n}\n{\"b\":1}", "1@0 {\n  \"a\": \"torn\n}", `4@17 {"b":1}`)
	// Resync only after a failure: a valid document whose lines start with
	// a bracket, and one with an escaped newline before a brace, are whole.
	f("[\n{\"t\":\"a\"},\n{\"t\":\"b\"}\n]\n{}", "1@0 [\n{\"t\":\"a\"},\n{\"t\":\"b\"}\n]", "5@25 {}")
	f(`{"a":"x\n{y"}`+"\n{}", `1@0 {"a":"x\n{y"}`, "2@14 {}")
	// Documents open where the first failed (end of input): each fails.
	f("[\n{}\n[\n{}\n", "1@0 [", "2@2 {}", "3@5 [", "4@7 {}")
	f("[1,\n[2,\n", "1@0 [1,", "2@4 [2, [truncated]")
}

// TestSplitResyncLimits covers documents failing on the size and depth
// limits, where a document open at the failure goes on from there.
func TestSplitResyncLimits(t *testing.T) {
	goodLines := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `{"i":%d,"s":"]"}`+"\n", i)
		}
		return b.String()
	}
	pretty := "{\n  \"a\": [\n    {\"b\": 1}\n  ]\n}\n"
	for _, in := range []string{
		"[WARN\n" + goodLines(20),
		"[\n[\n" + goodLines(20) + "]",
		"[[[[[[[[[[\n" + goodLines(5) + "[[[[[[\n" + goodLines(5),
		"[\n[\n[\n[\n[\n[\n" + pretty + pretty + "]]]]]]\n{}",
		strings.Repeat("[", 9) + "\n" + pretty,
		"[x\n" + pretty + strings.Repeat(" ", 80) + "\n" + pretty,
		"{\"a\":\"" + strings.Repeat("x", 100) + "\"}\n" + goodLines(3),
		"[\n" + strings.Repeat("{\"k\":[1,2,3]}\r\n", 10) + "\"tail",
	} {
		for _, lim := range []splitterLimits{
			{maxLine: 24, maxDoc: 32, keep: 4, maxDepth: 3, readSize: 16},
			{maxLine: 40, maxDoc: 64, keep: 8, maxDepth: 4, readSize: 16},
			{maxLine: 40, maxDoc: 64, keep: 8, maxDepth: 4, readSize: 4096},
			{maxLine: 1 << 10, maxDoc: 1 << 12, keep: 8, maxDepth: 2, readSize: 32},
		} {
			checkAgainstModel(t, []byte(in), lim)
		}
	}
}

// TestSplitResyncLinear feeds inputs made to fail again and again and checks
// that the splitter's work stays linear (at most 3 passes), that the units
// cover the input, and that every good document comes out.
func TestSplitResyncLinear(t *testing.T) {
	good := func(n int) string { return strings.Repeat(`{"a":1,"s":"x"}`+"\n", n) }
	for _, tc := range []struct {
		name string
		in   string
		good int // units that are exactly {"a":1,"s":"x"}
	}{
		{"open brackets, one a line", strings.Repeat("[\n", 200_000), 0},
		{"open brackets and good lines", strings.Repeat("[\n"+good(1), 100_000), 100_000},
		{"torn strings", strings.Repeat(`{"a":"`+"\n", 100_000), 0},
		{"too deep then lines", strings.Repeat("[", 100_000) + "\n" + good(50_000), 50_000},
		{"too large", "[WARN\n" + good(100_000), 100_000},
		{"too large, deep", strings.Repeat("[\n", 500) + good(100_000), 100_000},
		{"nested bad lines", strings.Repeat("[\n[[\n{\n", 50_000) + good(1000), 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			lim := splitterLimits{maxLine: 1 << 12, maxDoc: 64 << 10, keep: 16, readSize: 16 << 10, framing: framingDocument}
			units, s := splitUnits(t, bytes.NewReader(in), lim)
			checkUnits(t, in, units, s.lim)
			if s.work > 3*int64(len(in))+64 {
				t.Fatalf("scanned %d bytes for an input of %d", s.work, len(in))
			}
			t.Logf("%d units, %.2f passes over the input", len(units), float64(s.work)/float64(len(in)))
			n := 0
			for _, u := range units {
				if string(u.Data) == `{"a":1,"s":"x"}` {
					n++
				}
			}
			if n != tc.good {
				t.Fatalf("%d good units, want %d (%d units)", n, tc.good, len(units))
			}
		})
	}
}

// FuzzResync checks document framing on any input, with small limits so that
// every way a document fails is reached: the splitter cuts exactly as the
// plain model of the spec does (refSplit), however the input is read; the
// units, with the whitespace between them, cover the input once, in order;
// none is empty; and the work stays within 3 passes.
func FuzzResync(f *testing.F) {
	for _, s := range []string{
		"[WARN queue backlog growing\n{\"a\":1}\n{\"b\":2}\n",
		"[\n{\"a\":1}\n",
		"{\"partial\": \"cut by rotation\n{\"a\":\"}\"}\n",
		"[\n{}\n[\n{}\n",
		"[[[[[[\n{\"a\":[1]}\n]]",
		"{\n  \"a\": \"torn\n}\n{\"b\":1}",
		"[x\n{\n  \"a\": [1,\n2]\n}\n\r\n[2] junk\n{\"c\":\"\\\\\"}",
		"[\n{\"t\":\"a\"},\n{\"t\":\"b\"}\n]\n{}",
		strings.Repeat("[\n", 40) + "{}",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(0x83))
	}
	f.Fuzz(func(t *testing.T, in []byte, knob uint8) {
		lim := splitterLimits{
			maxLine:  8 + int(knob%32),
			maxDoc:   16 + int(knob%64),
			keep:     1 + int(knob%8),
			maxDepth: 1 + int(knob%5),
			readSize: 16,
		}
		if knob&0x80 != 0 {
			lim.readSize = 256
		}
		checkAgainstModel(t, in, lim)
		lim.framing = framingDocument
		units, s := splitUnits(t, bytes.NewReader(in), lim)
		checkUnits(t, in, units, s.lim)
	})
}

// TestSplitNoAllocs checks the splitter allocates nothing per unit once
// warm, on lines, on documents, and on input that fails again and again.
func TestSplitNoAllocs(t *testing.T) {
	lines := spanLines(1 << 20)
	var docs bytes.Buffer
	for range 200 {
		docs.WriteString("{\n  \"resourceSpans\": [\n    {\"a\": \"]}\\\"\"}\n  ]\n}\n[1, [2], {\"x\": [3]}]\n")
	}
	bad := strings.Repeat("[WARN\n"+`{"a":1}`+"\n"+`{"p": "torn`+"\n"+strings.Repeat("[", 600)+"\n", 200)
	for _, tc := range []struct {
		name string
		in   []byte
		lim  splitterLimits
	}{
		{"lines", lines, splitterLimits{maxLine: 1 << 20, maxDoc: 1 << 20, keep: 64, readSize: 64 << 10}},
		{"documents", docs.Bytes(), splitterLimits{maxLine: 1 << 20, maxDoc: 1 << 20, keep: 64, readSize: 64 << 10}},
		{"resync", []byte(bad), splitterLimits{maxLine: 1 << 10, maxDoc: 1 << 10, keep: 64, readSize: 4 << 10, framing: framingDocument}},
	} {
		var s splitter
		var br bytes.Reader
		units := 0
		run := func() {
			br.Reset(tc.in)
			s.reset(&br, tc.lim)
			units = 0
			for {
				if _, ok := s.next(); !ok {
					break
				}
				units++
			}
		}
		run()
		if allocs := testing.AllocsPerRun(5, run); allocs != 0 {
			t.Errorf("%s: %v allocations per run of %d units", tc.name, allocs, units)
		}
	}
}
