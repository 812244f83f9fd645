package jsonstr

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// stdlib is encoding/json's quoting with HTML escaping off: the reference.
func stdlib(s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestMatchesEncodingJSON(t *testing.T) {
	f := func(in string) {
		t.Helper()
		if got, want := AppendString(nil, in), stdlib(in); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, want %s", in, got, want)
		}
	}
	f("")
	f("plain ascii, long enough to take the fast path twice over")
	f(`a"b\c`)
	f("\x00\x01\b\f\n\r\t\x1f\x7f")
	f("<html> & 'quotes'")
	f("héllo → ✓ Kraków 😀")
	f("bad \xff byte and cut \xe2\x9c")
	f("line\u2028sep\u2029")
	f(strings.Repeat("12345678", 5) + "\"" + strings.Repeat("x", 9) + "\\")
	// Every single byte, at every position of an 8-byte word.
	for c := range 256 {
		for pos := range 9 {
			f(strings.Repeat("a", pos) + string(rune(c)) + strings.Repeat("b", 12))
			f(strings.Repeat("a", pos) + string([]byte{byte(c)}) + strings.Repeat("b", 12))
		}
	}
}

func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "abc", "\"\\\x00", "héllo", "\xff\xfe", "\u2028", strings.Repeat("a", 20) + "\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := AppendString(nil, s), stdlib(s); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestAppendAllocs(t *testing.T) {
	dst := make([]byte, 0, 256)
	s := "some text with \"quotes\" and ✓"
	if n := testing.AllocsPerRun(100, func() { dst = AppendString(dst[:0], s) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

var benchText = []byte("GET /api/v1/pages/12303 → 200 in 39.890 ms; user_agent curl/8.11.0 from Kraków, host frontend-bc3bef477-fbpjc")

func BenchmarkAppend(b *testing.B) {
	dst := make([]byte, 0, 512)
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		dst = Append(dst[:0], benchText)
	}
}

// BenchmarkStdlib is the baseline: encoding/json marshalling the same text.
func BenchmarkStdlib(b *testing.B) {
	s := string(benchText)
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = json.Marshal(s)
	}
}
