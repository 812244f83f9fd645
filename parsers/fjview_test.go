package parsers

import (
	"testing"
	"unsafe"

	"github.com/tracepipe/tracepipe/pipeline"
)

func TestFastViewProbe(t *testing.T) {
	if !fastView {
		t.Errorf("the fastjson layout mirror does not match the fastjson in the build: decoding runs on the slower public API")
	}
}

// TestWithoutFastView runs the conformance, golden and table tests with
// every read going through fastjson's public API.
func TestWithoutFastView(t *testing.T) {
	saved := fastView
	fastView = false
	defer func() { fastView = saved }()
	for name, test := range map[string]func(*testing.T){
		"Golden":            TestGolden,
		"JSONTestSuite":     TestJSONTestSuiteDecode,
		"Strict":            TestJSONTestSuiteStrict,
		"SuiteInsideObject": TestSuiteInsideObject,
		"Escapes":           TestEscapesDecoded,
		"Replace":           TestInvalidUTF8Replace,
		"MalformedCodes":    TestMalformedCodes,
		"Paths":             TestJSONLPaths,
		"OTLPShapes":        TestOTLPShapes,
		"Typical":           TestTypicalUnitsDecode,
		"DecodeAllocs":      TestDecodeAllocs,
	} {
		t.Run(name, test)
	}
}

// TestUnitViews checks where decoded text lives: text taken verbatim from
// the unit is a view into b.Buf (also in a unit with escapes elsewhere),
// text unescaped, lowercased or built is in b.Arena.
func TestUnitViews(t *testing.T) {
	if !fastView {
		t.Skip("no fast view")
	}
	line := `  {"trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736","span_id":"00f067aa0ba902b7","duration":12,` +
		`"name":"GET /x","msg":"a\"b","n":-1.5e3,"http":{"method":"GET"},"plain":"p","esc\u00e9":"q"}`
	b := decodeUnit(t, nil, []byte(line), pipeline.FormatJSONL)
	if len(b.Records) != 1 || b.Records[0].Failed() {
		t.Fatalf("%s", renderBatch(b))
	}
	r := &b.Records[0]
	within := func(p, in []byte) bool {
		if len(p) == 0 || len(in) == 0 {
			return false
		}
		at := uintptr(unsafe.Pointer(&p[0])) - uintptr(unsafe.Pointer(&in[0]))
		return at < uintptr(len(in)) && uintptr(len(p)) <= uintptr(len(in))-at
	}
	inBuf := func(p []byte) bool { return within(p, b.Buf) }
	// The arena may have moved since: a copy is anywhere but in Buf.
	inArena := func(p []byte) bool { return len(p) > 0 && !inBuf(p) }
	check := func(what string, p []byte, want string, buf bool) {
		t.Helper()
		if string(p) != want {
			t.Errorf("%s = %q, want %q", what, p, want)
		}
		if buf && !inBuf(p) || !buf && !inArena(p) {
			t.Errorf("%s %q: in Buf %v, in Arena %v; want in Buf %v", what, p, inBuf(p), inArena(p), buf)
		}
	}
	check("trace id", r.TraceID, "4bf92f3577b34da6a3ce929d0e0e4736", false)
	check("span id", r.SpanID, "00f067aa0ba902b7", true)
	check("name", r.Name, "GET /x", true)
	want := map[string]struct {
		val      string
		key, buf bool
	}{
		"msg":         {`a"b`, true, false},
		"n":           {"-1.5e3", true, true},
		"http.method": {"GET", false, true},
		"plain":       {"p", true, true},
		"escé":        {"q", false, true},
	}
	if len(r.Attrs) != len(want) {
		t.Fatalf("%s", renderBatch(b))
	}
	for _, a := range r.Attrs {
		w, ok := want[string(a.Key)]
		if !ok {
			t.Fatalf("unexpected attr %q", a.Key)
		}
		check("key", a.Key, string(a.Key), w.key)
		check("value of "+string(a.Key), a.Value, w.val, w.buf)
	}
}
