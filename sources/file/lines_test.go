package file

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

// growing is a file being written: reads end (io.EOF) at n, which the test
// moves forward.
type growing struct {
	data []byte
	n    int
	pos  int
}

func (g *growing) Read(p []byte) (int, error) {
	if g.pos >= g.n {
		return 0, io.EOF
	}
	k := copy(p, g.data[g.pos:g.n])
	g.pos += k
	return k, nil
}

// replayUnits is what the replay reader makes of in as a line-framed file.
func replayUnits(in []byte, lim splitterLimits) []string {
	lim.framing = framingNDJSON
	lim.follow = false
	var s splitter
	s.reset(bytes.NewReader(in), lim)
	var out []string
	for {
		u, ok := s.next()
		if !ok {
			return out
		}
		out = append(out, renderUnitSize(u))
	}
}

func renderUnitSize(u Unit) string {
	r := renderUnit(u)
	if u.Flags&pipeline.UnitTooLarge == 0 && int64(len(u.Data)) != u.Size {
		r += " [size mismatch]"
	}
	return r
}

// followUnits frames in as it grows by the given steps (cut points, taken
// in order, clamped), detaching and reattaching the Lines to a fresh
// reader where detach says, and takes the held last line at the very end.
func followUnits(t *testing.T, in []byte, o Options, steps []int, detach func(step int) bool) []string {
	t.Helper()
	l, err := NewLines(o)
	if err != nil {
		t.Fatal(err)
	}
	g := &growing{data: in}
	l.Reset(g, LineState{})
	var out []string
	drain := func() {
		for {
			u, ok := l.Next()
			if !ok {
				break
			}
			out = append(out, renderUnitSize(u))
		}
		if l.Err() != nil {
			t.Fatal(l.Err())
		}
	}
	for i, cut := range steps {
		g.n = min(max(cut, g.n), len(in))
		drain()
		if detach(i) {
			st := l.State(nil)
			st.Keep = bytes.Clone(st.Keep)
			l2, _ := NewLines(o)
			g = &growing{data: in, n: g.n, pos: int(st.Offset)}
			l2.Reset(g, st)
			l = l2
		}
	}
	g.n = len(in)
	drain()
	if u, ok := l.TakePartial(); ok {
		out = append(out, renderUnitSize(u))
	}
	if l.Held() != 0 {
		t.Fatalf("held %d after TakePartial", l.Held())
	}
	return out
}

func TestLinesFollowLikeReplay(t *testing.T) {
	o := Options{MaxLineBytes: 20, KeepBytes: 4, ReadBufferBytes: 16}
	lim := splitterLimits{maxLine: 20, maxDoc: 20, keep: 4, readSize: 16}
	for _, in := range []string{
		"",
		"{\"a\":1}\n{\"b\":2}\r\n\n  \n{\"c\":3}",
		"\xef\xbb\xbf\n\n  {\"a\":1}\nxyz",
		"short\n" + strings.Repeat("L", 50) + "\nafter\n" + strings.Repeat(" ", 40) + "\nend\r\n",
		strings.Repeat("x", 100),
		strings.Repeat("y", 30) + "\r",
		"\r\n\r\n" + strings.Repeat("z", 21) + "\r\n",
	} {
		want := replayUnits([]byte(in), lim)
		for step := 1; step <= 7; step++ {
			var steps []int
			for n := 0; n < len(in); n += step {
				steps = append(steps, n)
			}
			for _, every := range []int{0, 1, 2, 3} {
				got := followUnits(t, []byte(in), o, steps, func(i int) bool { return every > 0 && i%every == 0 })
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Fatalf("%q by %d, detach every %d:\n got %q\nwant %q", in, step, every, got, want)
				}
			}
		}
	}
}

// TestLinesHoldsPartial: a last line with no newline is not returned until
// its newline comes; taken early, the rest of it is a new unit on the same
// line number.
func TestLinesHoldsPartial(t *testing.T) {
	l, err := NewLines(Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := &growing{data: []byte("{\"a\":1}\n{\"b\":\n2}\n{\"c\"")}
	l.Reset(g, LineState{})
	next := func() string {
		u, ok := l.Next()
		if !ok {
			return "-"
		}
		return renderUnit(u)
	}
	g.n = 12 // `{"a":1}\n{"b`
	if got := next(); got != `1@0 {"a":1}` {
		t.Fatal(got)
	}
	if got := next(); got != "-" || l.Held() != 4 {
		t.Fatalf("%s, held %d", got, l.Held())
	}
	g.n = 20 // the line is whole
	if got := next(); got != `2@8 {"b":` {
		t.Fatal(got)
	}
	if st := l.State(nil); st.Offset != 14 || st.Line != 3 {
		t.Fatalf("state %+v", st)
	}
	if got := next(); got != "3@14 2}" {
		t.Fatal(got)
	}
	g.n = len(g.data)
	if got := next(); got != "-" || l.Held() != 4 {
		t.Fatalf("%s, held %d", got, l.Held())
	}
	u, ok := l.TakePartial()
	if !ok || renderUnit(u) != `4@17 {"c"` {
		t.Fatalf("%v %s", ok, renderUnit(u))
	}
	g.data = append(g.data, ":3}\n"...)
	g.n = len(g.data)
	if got := next(); got != "4@21 :3}" {
		t.Fatal(got)
	}
	if got := next(); got != "-" || l.Held() != 0 {
		t.Fatalf("%s, held %d", got, l.Held())
	}
}

func FuzzLines(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n{\"b\":2}\r\n\n{\"c\""), []byte{3, 1, 7}, uint8(0))
	f.Add([]byte("\xef\xbb\xbf  x\n"+strings.Repeat("y", 40)+"\r\n  \nz"), []byte{1, 2, 30, 2}, uint8(0x85))
	f.Fuzz(func(t *testing.T, in []byte, cuts []byte, knob uint8) {
		o := Options{MaxLineBytes: 8 + int(knob%32), KeepBytes: 1 + int(knob%8), ReadBufferBytes: 16}
		if knob&0x80 != 0 {
			o.ReadBufferBytes = 256
		}
		lim := splitterLimits{maxLine: o.MaxLineBytes, maxDoc: o.MaxLineBytes, keep: o.KeepBytes, readSize: o.ReadBufferBytes}
		var steps []int
		n := 0
		for _, c := range cuts {
			n += int(c)
			steps = append(steps, n)
		}
		want := replayUnits(in, lim)
		got := followUnits(t, in, o, steps, func(i int) bool { return knob&0x40 != 0 && cuts[i]&1 != 0 })
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("got %q\nwant %q", got, want)
		}
	})
}
