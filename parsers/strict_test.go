package parsers

import (
	"bytes"
	"encoding/json"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tracepipe/tracepipe/pipeline"
)

const suiteDir = "../testdata/JSONTestSuite/test_parsing"

// suiteFiles returns the JSONTestSuite files by name.
func suiteFiles(t testing.TB) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(suiteDir)
	if err != nil {
		t.Fatal(err)
	}
	files := make(map[string][]byte, len(entries))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(suiteDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	if len(files) < 300 {
		t.Fatalf("only %d JSONTestSuite files", len(files))
	}
	return files
}

// decodeUnit decodes data as the one unit of a new batch.
func decodeUnit(t testing.TB, opts *Options, data []byte, f pipeline.Format) *pipeline.Batch {
	t.Helper()
	b := &pipeline.Batch{}
	b.AddUnit(data, 0, 1, int64(len(data)), 0)
	d := GetDecoder(opts)
	defer PutDecoder(d)
	d.Decode(b, 0, f)
	return b
}

// nestingDepth returns the deepest bracket nesting of data outside strings.
func nestingDepth(data []byte) int {
	depth, deepest, inStr := 0, 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case !inStr && (c == '[' || c == '{'):
			depth++
			deepest = max(deepest, depth)
		case !inStr && (c == ']' || c == '}'):
			depth--
		}
	}
	return deepest
}

func TestJSONTestSuiteDecode(t *testing.T) {
	for name, data := range suiteFiles(t) {
		b := decodeUnit(t, nil, data, pipeline.FormatJSONL)
		recs := b.Records
		switch name[0] {
		case 'n':
			if len(recs) != 1 || recs[0].Failure.Class != pipeline.ClassMalformed {
				t.Errorf("%s: want one malformed record, got %d records: %+v", name, len(recs), recs)
				continue
			}
			if len(recs[0].Failure.Message) > pipeline.MaxErrorMessage+4 {
				t.Errorf("%s: message of %d bytes", name, len(recs[0].Failure.Message))
			}
		case 'y':
			if len(recs) != 1 {
				t.Errorf("%s: want one record, got %d", name, len(recs))
				continue
			}
			r := &recs[0]
			if c := r.Failure.Class; c != "" && c != pipeline.ClassInvalid {
				t.Errorf("%s: want accepted or invalid, got %s/%s: %s", name, c, r.Failure.Code, r.Failure.Message)
			}
			if data := strings.TrimSpace(string(data)); data[0] != '{' && r.Failure.Code != codeNotObject {
				t.Errorf("%s: bare %q: want not_object, got %q", name, data, r.Failure.Code)
			}
		case 'i':
			if len(recs) != 1 {
				t.Errorf("%s: want one record, got %d", name, len(recs))
			}
		}
	}
}

// TestJSONTestSuiteStrict checks the strict check alone against
// encoding/json.Valid && utf8.Valid on every file. The one allowed
// difference: nesting deeper than fastjson.MaxDepth is rejected (too_deep).
func TestJSONTestSuiteStrict(t *testing.T) {
	d := GetDecoder(nil)
	defer PutDecoder(d)
	for name, data := range suiteFiles(t) {
		want := json.Valid(data) && utf8.Valid(data)
		f := d.check(data)
		got := f.code == ""
		if f.code == codeTooDeep {
			if nestingDepth(data) < 299 {
				t.Errorf("%s: too_deep at depth %d", name, nestingDepth(data))
			}
			continue
		}
		if got != want {
			t.Errorf("%s: strict accepts=%v (%s: %s), encoding/json+utf8 says %v", name, got, f.code, f.msg, want)
		}
		if got != d.Valid(data) {
			t.Errorf("%s: Valid disagrees with check", name)
		}
	}
}

// TestSuiteInsideObject puts every must-reject file inside a jsonl object
// with a valid trace id: the line must still be malformed, wherever the bad
// part sits (a field, an attribute, a nested value).
func TestSuiteInsideObject(t *testing.T) {
	for name, data := range suiteFiles(t) {
		if name[0] != 'n' || strings.Contains(name, "100000") || strings.Contains(name, "open_array_object") {
			continue
		}
		for _, wrap := range []string{
			`{"trace_id":"0123456789abcdef0123456789abcdef","x":%s}`,
			`{"trace_id":"0123456789abcdef0123456789abcdef","a":{"b":[%s]}}`,
			`{"trace_id":"0123456789abcdef0123456789abcdef","time":%s}`,
			`{"trace_id":%s}`,
		} {
			line := []byte(strings.Replace(wrap, "%s", string(data), 1))
			if json.Valid(line) && utf8.Valid(line) {
				continue // e.g. a lone-space file makes a valid line
			}
			b := decodeUnit(t, nil, line, pipeline.FormatJSONL)
			if len(b.Records) != 1 || b.Records[0].Failure.Class != pipeline.ClassMalformed {
				t.Errorf("%s in %s: want one malformed record, got %+v", name, wrap, b.Records)
			}
		}
	}
}

// TestDeepNestingFast feeds nesting up to 1 MiB deep: a super-linear
// check (fastjson's ValidateBytes takes 10 s on 20 KB) would not finish
// within the test timeout, so finishing is the assertion; the speed is
// measured by the benchmarks.
func TestDeepNestingFast(t *testing.T) {
	for _, n := range []int{300, 1000, 100000, 1 << 20} {
		for _, open := range []string{"[", `{"a":`, `[{"":`} {
			data := []byte(strings.Repeat(open, n))
			b := decodeUnit(t, nil, data, pipeline.FormatJSONL)
			if len(b.Records) != 1 || b.Records[0].Failure.Class != pipeline.ClassMalformed {
				t.Errorf("%d x %q: %+v", n, open, b.Records)
			}
			if m := b.Records[0].Failure.Message; len(m) > pipeline.MaxErrorMessage+4 {
				t.Errorf("%d x %q: message of %d bytes", n, open, len(m))
			}
		}
	}
}

func TestNumberGrammar(t *testing.T) {
	f := func(in string, want bool) {
		t.Helper()
		if got := validNumber([]byte(in)); got != want {
			t.Errorf("validNumber(%q) = %v, want %v", in, got, want)
		}
		if want != json.Valid([]byte(in)) {
			t.Errorf("test case %q disagrees with encoding/json", in)
		}
	}
	f("0", true)
	f("-0", true)
	f("123", true)
	f("-123.456e+7", true)
	f("1E2", true)
	f("1e-0", true)
	f("0.0", true)
	f("01", false)
	f("-01", false)
	f("1.", false)
	f(".5", false)
	f("1e", false)
	f("1e+", false)
	f("+1", false)
	f("-", false)
	f("NaN", false)
	f("Inf", false)
	f("-Infinity", false)
	f("1.2.3", false)
	f("1e5e5", false)
	f("0x10", false)
	f("", false)
	f("1-2", false)
}

func TestScan(t *testing.T) {
	f := func(in, wantCode string, wantSurrogate bool) {
		t.Helper()
		st := scanText([]byte(in), false)
		if st.code != wantCode || st.surrogate != wantSurrogate {
			t.Errorf("scanText(%q) = %q surrogate=%v, want %q %v", in, st.code, st.surrogate, wantCode, wantSurrogate)
		}
	}
	f(`"plain ascii text that is long enough for words"`, "", false)
	f(`"tab	in string"`, codeControl, false)
	f("[\n\t\"a\",\r\n\"b\"]", "", false)
	f("[\n\"a\tb\"]", codeControl, false)
	f(`"\x"`, codeEscape, false)
	f(`"\u12"`, codeEscape, false)
	f(`"\u12G4"`, codeEscape, false)
	f(`"\"\\\/\b\f\n\r\t\u00e9"`, "", false)
	f(`"\ud834\udd1e"`, "", false)
	f(`"\ud834"`, "", true)
	f(`"\udd1e"`, "", true)
	f(`"\ud834\u0041"`, "", true)
	f(`"\ud834\uZZZZ"`, codeEscape, true)
	f("\"\x01\"", codeControl, false)
	f("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "", false)
	f("\"\xff\"", codeUTF8, false)
	f("\"\xc0\xaf\"", codeUTF8, false)         // overlong
	f("\"\xed\xa0\x80\"", codeUTF8, false)     // UTF-8 encoded surrogate
	f("\"abcdefgh\xe2\x82\"", codeUTF8, false) // truncated at the end
	f(`"\\"`, "", false)
	f(`"\\\\u"`, "", false)
	f("\"\x7f\"", "", false)
}

func TestEscapesDecoded(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		line := `{"trace_id":"0123456789abcdef0123456789abcdef","k":"` + in + `"}`
		b := decodeUnit(t, nil, []byte(line), pipeline.FormatJSONL)
		if len(b.Records) != 1 || b.Records[0].Failed() {
			t.Fatalf("%s: %+v", line, b.Records)
		}
		got, _ := b.Records[0].Attr("k")
		if string(got) != want {
			t.Errorf("%s: k = %q, want %q", in, got, want)
		}
		var v struct{ K string }
		if err := json.Unmarshal([]byte(line), &v); err == nil && v.K != want {
			t.Errorf("test case %s: encoding/json reads %q", in, v.K)
		}
	}
	f(`plain`, "plain")
	f(`a\"b\\c\/d`, `a"b\c/d`)
	f(`\b\f\n\r\t`, "\b\f\n\r\t")
	f(`\u00e9\u20AC`, "é€")
	f(`\ud83d\ude00`, "😀")
	f(`\ud800`, "\uFFFD")
	f(`x\udc00y`, "x\uFFFDy")
	f(`\ud800\u0041`, "\uFFFDA")
	f(`\udd1e\ud834`, "\uFFFD\uFFFD")
	f(`\ud800\ud800\n`, "\uFFFD\uFFFD\n")
	f(`\u0000`, "\x00")
	f(`\\ud800`, `\ud800`)
}

func TestInvalidUTF8Replace(t *testing.T) {
	opts := DefaultOptions()
	opts.InvalidUTF8 = "replace"
	if err := opts.Prepare(); err != nil {
		t.Fatal(err)
	}
	f := func(in, wantName, wantAttr string, wantFlag bool) {
		t.Helper()
		line := `{"trace_id":"0123456789abcdef0123456789abcdef","msg":"` + in + `","a":["` + in + `"]}`
		b := decodeUnit(t, &opts, []byte(line), pipeline.FormatJSONL)
		if len(b.Records) != 1 || b.Records[0].Failed() {
			t.Fatalf("%q: %+v", in, b.Records)
		}
		r := &b.Records[0]
		if string(r.Name) != wantName {
			t.Errorf("%q: name %q, want %q", in, r.Name, wantName)
		}
		if a, _ := r.Attr("a"); string(a) != wantAttr {
			t.Errorf("%q: attr %q, want %q", in, a, wantAttr)
		}
		if got := r.Flags&pipeline.FlagUTF8Replaced != 0; got != wantFlag {
			t.Errorf("%q: flag %v, want %v", in, got, wantFlag)
		}
	}
	f("ok", "ok", `["ok"]`, false)
	f("caf\xc3\xa9", "caf\xc3\xa9", "[\"caf\xc3\xa9\"]", false)
	f("a\xffb", "a\uFFFDb", "[\"a\uFFFDb\"]", true)
	f("\xc0\xaf", "\uFFFD\uFFFD", "[\"\uFFFD\uFFFD\"]", true)
	f("\xe2\x82", "\uFFFD\uFFFD", "[\"\uFFFD\uFFFD\"]", true)

	// Keys too, and the default rejects.
	line := []byte("{\"trace_id\":\"0123456789abcdef0123456789abcdef\",\"k\xff\":1}")
	b := decodeUnit(t, &opts, line, pipeline.FormatJSONL)
	if r := b.Records[0]; r.Failed() || string(r.Attrs[0].Key) != "k\uFFFD" {
		t.Errorf("replace key: %+v", r)
	}
	b = decodeUnit(t, nil, line, pipeline.FormatJSONL)
	if r := b.Records[0]; r.Failure.Class != pipeline.ClassMalformed || r.Failure.Code != codeUTF8 {
		t.Errorf("reject: %+v", r.Failure)
	}
}

func TestMalformedCodes(t *testing.T) {
	f := func(in string, flags uint8, wantClass pipeline.Class, wantCode string) {
		t.Helper()
		b := &pipeline.Batch{}
		b.AddUnit([]byte(in), 0, 1, int64(len(in))*10, flags)
		d := GetDecoder(nil)
		d.Decode(b, 0, pipeline.FormatJSONL)
		PutDecoder(d)
		if len(b.Records) != 1 {
			t.Fatalf("%q: %d records", in, len(b.Records))
		}
		if fl := b.Records[0].Failure; fl.Class != wantClass || fl.Code != wantCode {
			t.Errorf("%q: got %s/%s (%s), want %s/%s", in, fl.Class, fl.Code, fl.Message, wantClass, wantCode)
		}
	}
	f(``, 0, pipeline.ClassMalformed, codeEmpty)
	f(" \n", 0, pipeline.ClassMalformed, codeEmpty)
	f(`{"a":`, 0, pipeline.ClassMalformed, codeSyntax)
	f(`{"a":`, pipeline.UnitTruncated, pipeline.ClassMalformed, codeTruncated)
	f(`{"a":1}`, pipeline.UnitTooLarge, pipeline.ClassTooLarge, codeTooLarge)
	f(`{"a":-01}`, 0, pipeline.ClassMalformed, codeNumber)
	f(`{"a":[1.]}`, 0, pipeline.ClassMalformed, codeNumber)
	f(`{"a":{"b":NaN}}`, 0, pipeline.ClassMalformed, codeNumber)
	f(`{"trace_id":-01}`, 0, pipeline.ClassMalformed, codeNumber)
	f(`{"trace_id":"0123456789abcdef0123456789abcdef","status":-01}`, 0, pipeline.ClassMalformed, codeNumber)
	f(`{"trace_id":"0123456789abcdef0123456789abcdef","level":+1}`, 0, pipeline.ClassMalformed, codeNumber)
	f(`{"a":"\x"}`, 0, pipeline.ClassMalformed, codeEscape)
	f("{\"a\":\"\x01\"}", 0, pipeline.ClassMalformed, codeControl)
	f("{\"a\":\n\"\t\"}", 0, pipeline.ClassMalformed, codeControl)
	f("{\"a\":\"\xff\"}", 0, pipeline.ClassMalformed, codeUTF8)
	f(strings.Repeat("[", 400)+strings.Repeat("]", 400), 0, pipeline.ClassMalformed, codeTooDeep)
	f(`[1]`, 0, pipeline.ClassInvalid, codeNotObject)
	f(`"x"`, 0, pipeline.ClassInvalid, codeNotObject)
	// A span without a trace id is invalid by default (a log record
	// without one is kept).
	f(`{"span_id":"0123456789abcdef","duration_ms":1}`, 0, pipeline.ClassInvalid, codeMissingTrace)
	f(`{"trace_id":12}`, 0, pipeline.ClassInvalid, codeWrongType)
	f(`{"trace_id":"xyz"}`, 0, pipeline.ClassInvalid, codeBadID)
	f(`{"trace_id":"0123456789abcdef0123456789abcdef","time":"yesterday"}`, 0, pipeline.ClassInvalid, codeBadTimestamp)
	f(`{"trace_id":"0123456789abcdef0123456789abcdef","time":{}}`, 0, pipeline.ClassInvalid, codeWrongType)
	f(`{"trace_id":"0123456789abcdef0123456789abcdef","duration":"-1s"}`, 0, pipeline.ClassInvalid, codeBadDuration)
	f(`{"trace_id":"0123456789abcdef0123456789abcdef","span_id":"0123"}`, 0, pipeline.ClassInvalid, codeBadID)
	// Invalid first, malformed found later in the walk: malformed wins.
	f(`{"trace_id":"zz","x":[01]}`, 0, pipeline.ClassMalformed, codeNumber)
	f(`{"x":[01]}`, 0, pipeline.ClassMalformed, codeNumber)
}

// TestSpecialExhaustive checks the SWAR byte classifiers on every byte value
// in every position, and the lowest flag with mixed neighbours.
func TestSpecialExhaustive(t *testing.T) {
	want := func(c byte, quote bool) bool { return c < 0x20 || c >= 0x80 || c == '\\' || (quote && c == '"') }
	for pos := 0; pos < 8; pos++ {
		for c := 0; c < 256; c++ {
			for _, fill := range []byte{'a', ' ', '~', 0x5b, 0x5d} {
				var w uint64
				for i := 0; i < 8; i++ {
					b := fill
					if i == pos {
						b = byte(c)
					}
					w |= uint64(b) << (8 * i)
				}
				for _, quote := range []bool{false, true} {
					m := special(w)
					if quote {
						m = specialQ(w)
					}
					got := m != 0
					if got != want(byte(c), quote) {
						t.Fatalf("byte %#x at %d in %q quote=%v: flagged %v", c, pos, fill, quote, got)
					}
					if got && bits.TrailingZeros64(m)>>3 != pos {
						t.Fatalf("byte %#x at %d: lowest flag at %d", c, pos, bits.TrailingZeros64(m)>>3)
					}
				}
			}
		}
	}
}

// TestSpecialMixed checks the classifiers on words of mixed bytes, where a
// borrow out of one special byte may flag the bytes above it: the lowest
// flag must still be the first special byte, and no flag without one.
func TestSpecialMixed(t *testing.T) {
	pool := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 'a', 0x7f, 0x80, 0xc3, 0xff}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var w uint64
		var p [8]byte
		for i := range p {
			p[i] = pool[rng.IntN(len(pool))]
			w |= uint64(p[i]) << (8 * i)
		}
		for _, quote := range []bool{false, true} {
			first := 8
			for i, c := range p {
				if c < 0x20 || c >= 0x80 || c == '\\' || (quote && c == '"') {
					first = i
					break
				}
			}
			m := special(w)
			if quote {
				m = specialQ(w)
			}
			if got := bits.TrailingZeros64(m) >> 3; got != first {
				t.Fatalf("% x quote=%v: lowest flag at %d, first special at %d", p, quote, got, first)
			}
		}
	}
}

// TestValuesMatchEncodingJSON puts every accepted JSONTestSuite file inside
// a jsonl object and checks the attribute the decoder made of it means what
// encoding/json reads from the input: strings unescaped alike (lone
// surrogates become U+FFFD in both), number literals kept, arrays and
// objects re-encoded to equal JSON.
func TestValuesMatchEncodingJSON(t *testing.T) {
	checked := 0
	defer func() {
		if checked < 100 {
			t.Errorf("only %d files checked", checked)
		}
	}()
	for name, data := range suiteFiles(t) {
		if !strictAccepts(data) || nestingDepth(data) > 250 {
			continue
		}
		checked++
		line := []byte(`{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","v":[` + string(data) + `]}`)
		b := decodeUnit(t, nil, line, pipeline.FormatJSONL)
		r := &b.Records[0]
		if r.Failed() || len(r.Attrs) != 1 || r.Attrs[0].Type != pipeline.AttrJSON {
			t.Errorf("%s: %s", name, renderBatch(b))
			continue
		}
		var want, got any
		dec := json.NewDecoder(strings.NewReader(`[` + string(data) + `]`))
		dec.UseNumber()
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		dec = json.NewDecoder(bytes.NewReader(r.Attrs[0].Value))
		dec.UseNumber()
		if err := dec.Decode(&got); err != nil {
			t.Errorf("%s: re-encoded %q: %v", name, r.Attrs[0].Value, err)
			continue
		}
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: re-encoded %q, encoding/json reads %#v", name, r.Attrs[0].Value, want)
		}
	}
}
