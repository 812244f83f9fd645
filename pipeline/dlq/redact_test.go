package dlq

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// rh is the hash mode's replacement text for a value whose JSON text is s.
func rh(s string) string {
	sum := sha256.Sum256([]byte(s))
	return `"sha256:` + hex.EncodeToString(sum[:])[:16] + `"`
}

func mustRedactor(t testing.TB, mode string, fields ...string) *Redactor {
	t.Helper()
	r, err := NewRedactor(fields, mode)
	if err != nil || r == nil {
		t.Fatalf("NewRedactor(%q, %q) = %v, %v", fields, mode, r, err)
	}
	return r
}

// checkRedact runs r on in and checks the invariants every case shares:
// the input is left alone, changed says whether out differs, out is in
// itself when unchanged, valid JSON stays valid and a second pass over it
// changes nothing.
func checkRedact(t *testing.T, r *Redactor, in []byte) ([]byte, bool) {
	t.Helper()
	orig := bytes.Clone(in)
	out, changed := r.Redact(in)
	if !bytes.Equal(in, orig) {
		t.Fatalf("Redact modified its input: %q", in)
	}
	if changed == bytes.Equal(out, in) {
		t.Fatalf("changed = %v, but out == in is %v:\n in: %q\nout: %q", changed, bytes.Equal(out, in), in, out)
	}
	if !changed && len(in) > 0 && &out[0] != &in[0] {
		t.Fatalf("unchanged output is a copy")
	}
	if json.Valid(in) {
		if !json.Valid(out) {
			t.Fatalf("valid input gave invalid output:\n in: %q\nout: %q", in, out)
		}
		if again, ch := r.Redact(out); ch {
			t.Fatalf("second pass changed again:\n1st: %q\n2nd: %q", out, again)
		}
	}
	return out, changed
}

func TestRedactTable(t *testing.T) {
	type tc struct {
		name   string
		fields []string
		in     string
		remove string // want in mode remove ("" = unchanged)
		hash   string // want in mode hash ("" = unchanged, skip = not tested)
	}
	const skip = "-"
	cases := []tc{
		// Matching rules on valid JSON.
		{"nested", []string{"user.email"},
			`{"user":{"email":"a@b.c","id":7},"msg":"hi"}`,
			`{"user":{"id":7},"msg":"hi"}`,
			`{"user":{"email":` + rh(`"a@b.c"`) + `,"id":7},"msg":"hi"}`},
		{"flat dotted key", []string{"user.email"},
			`{"user.email":"a@b.c","n":1}`,
			`{"n":1}`,
			`{"user.email":` + rh(`"a@b.c"`) + `,"n":1}`},
		{"mix flat inside nested", []string{"user.address.city"},
			`{"user":{"address.city":"Oslo","zip":"0150"}}`,
			`{"user":{"zip":"0150"}}`,
			`{"user":{"address.city":` + rh(`"Oslo"`) + `,"zip":"0150"}}`},
		{"mix nested inside flat", []string{"user.address.city"},
			`{"user.address":{"city":"Oslo"},"x":{"user":{"address":{"city":"Oslo"}}}}`,
			`{"user.address":{},"x":{"user":{"address":{}}}}`,
			`{"user.address":{"city":` + rh(`"Oslo"`) + `},"x":{"user":{"address":{"city":` + rh(`"Oslo"`) + `}}}}`},
		{"path starts at any depth", []string{"user.email"},
			`{"data":{"user":{"email":"a"}},"tags":{"user.email":"b"}}`,
			`{"data":{"user":{}},"tags":{}}`,
			`{"data":{"user":{"email":` + rh(`"a"`) + `}},"tags":{"user.email":` + rh(`"b"`) + `}}`},
		{"path is not split across unrelated levels", []string{"user.email"},
			`{"user":{"x":{"email":"a"}},"useremail":1,"user.emailx":2,"user":{"emailx":3},"users":{"email":4}}`,
			"", ""},
		{"case-sensitive", []string{"user.email"},
			`{"User":{"email":"a"},"user":{"Email":"b"},"USER.EMAIL":"c"}`,
			"", ""},
		{"escaped key", []string{"user.email"},
			`{"user\u002eemail":"a","us\u0065r":{"\u0065mail":"b"}}`,
			`{"us\u0065r":{}}`,
			`{"user\u002eemail":` + rh(`"a"`) + `,"us\u0065r":{"\u0065mail":` + rh(`"b"`) + `}}`},
		{"arrays of objects", []string{"users.email"},
			`{"users":[{"email":"a","n":1},{"email":"b"},3,[{"email":"c"}],{"x":{"email":"d"}}]}`,
			`{"users":[{"n":1},{},3,[{}],{"x":{"email":"d"}}]}`,
			`{"users":[{"email":` + rh(`"a"`) + `,"n":1},{"email":` + rh(`"b"`) + `},3,[{"email":` + rh(`"c"`) + `}],{"x":{"email":"d"}}]}`},
		{"root array", []string{"email"},
			`[{"email":"a"},{"id":1,"email":"b"}]`,
			`[{},{"id":1}]`,
			`[{"email":` + rh(`"a"`) + `},{"id":1,"email":` + rh(`"b"`) + `}]`},
		{"whole object value", []string{"user"},
			`{"user": {"b": [true, null], "a": 1.0}, "k": 2}`,
			`{"k": 2}`,
			`{"user": ` + rh(`{"b":[true,null],"a":1.0}`) + `, "k": 2}`},
		{"field and its parent", []string{"user.email", "user"},
			`{"user":{"email":"a"},"z":0}`,
			`{"z":0}`,
			`{"user":` + rh(`{"email":"a"}`) + `,"z":0}`},
		{"key order and number literals kept", []string{"email"},
			`{"z":1.50,"email":"x","a":1E+2,"m":-0.0e-0,"big":123456789012345678901234567890,"s":"\u00e9\n"}`,
			`{"z":1.50,"a":1E+2,"m":-0.0e-0,"big":123456789012345678901234567890,"s":"\u00e9\n"}`,
			`{"z":1.50,"email":` + rh(`"x"`) + `,"a":1E+2,"m":-0.0e-0,"big":123456789012345678901234567890,"s":"\u00e9\n"}`},
		{"number value hashed as written", []string{"user.id"},
			`{"user":{"id":1.50e3}}`,
			`{"user":{}}`,
			`{"user":{"id":` + rh(`1.50e3`) + `}}`},
		{"already hashed", []string{"email"},
			`{"email":"sha256:0123456789abcdef"}`,
			`{}`,
			""},

		// Commas.
		{"remove first", []string{"email"}, `{"email":1, "a":2, "b":3}`, `{"a":2, "b":3}`, `{"email":` + rh(`1`) + `, "a":2, "b":3}`},
		{"remove middle", []string{"email"}, `{"a":2, "email":1, "b":3}`, `{"a":2, "b":3}`, `{"a":2, "email":` + rh(`1`) + `, "b":3}`},
		{"remove last", []string{"email"}, `{"a":2, "b":3, "email":1}`, `{"a":2, "b":3}`, `{"a":2, "b":3, "email":` + rh(`1`) + `}`},
		{"remove only", []string{"email"}, `{"email":1}`, `{}`, `{"email":` + rh(`1`) + `}`},
		{"remove all", []string{"email", "id"}, `{ "email" : 1 , "id" : 2 , "email" : 3 }`, `{  }`,
			`{ "email" : ` + rh(`1`) + ` , "id" : ` + rh(`2`) + ` , "email" : ` + rh(`3`) + ` }`},
		{"remove first two", []string{"email", "id"}, `{"email":1,"id":2,"k":3}`, `{"k":3}`, skip},
		{"remove last two", []string{"email", "id"}, `{"k":3,"email":1,"id":2}`, `{"k":3}`, skip},
		{"remove around kept", []string{"email", "id"}, `{"email":1,"k":3,"id":2}`, `{"k":3}`, skip},
		{"remove alternating", []string{"email"}, `{"email":1,"a":2,"email":3,"b":4,"email":5}`, `{"a":2,"b":4}`, skip},
		{"remove pretty", []string{"email"},
			"{\n  \"a\": 1,\n  \"email\": \"x\",\n  \"b\": {\n    \"email\": \"y\"\n  }\n}\n",
			"{\n  \"a\": 1,\n  \"b\": {\n    \n  }\n}\n", skip},

		{"nothing to change", []string{"email", "user.id"}, `{"user":{"name":"x"},"mail":"y","a":[1,{"b":null}]}`, "", ""},
		{"scalar and empty containers", []string{"email"}, ` [ ] `, "", ""},
		{"top-level string", []string{"email"}, `"email"`, "", ""},
		{"json lines", []string{"email"},
			"{\"email\":\"a\"}\n{\"x\":1,\"email\":\"b\"}\n",
			"{}\n{\"x\":1}\n",
			"{\"email\":" + rh(`"a"`) + "}\n{\"x\":1,\"email\":" + rh(`"b"`) + "}\n"},

		// OTLP attribute lists (small; the testdata files are below).
		{"otlp attributes", []string{"user.email"},
			`{"attributes":[{"key":"a","value":{"intValue":"1"}},{"key":"user.email","value":{"stringValue":"a@b.c"}},{"value":{"stringValue":"x"},"key":"user.email"}]}`,
			`{"attributes":[{"key":"a","value":{"intValue":"1"}}]}`,
			`{"attributes":[{"key":"a","value":{"intValue":"1"}},{"key":"user.email","value":{"stringValue":` + rh(`"a@b.c"`) + `}},{"value":{"stringValue":` + rh(`"x"`) + `},"key":"user.email"}]}`},
		{"otlp attribute key must be whole", []string{"user.email"},
			`{"attributes":[{"key":"email","value":{"stringValue":"a"}},{"key":"user","value":{"stringValue":"b"}}],"other":[{"key":"user.email","value":{"stringValue":"c"}}]}`,
			"", ""},
		{"otlp attribute nested and complex", []string{"user.email"},
			`{"events":[{"attributes":[{"key":"user.email","value":{"arrayValue":{"values":[{"stringValue":"a"}, {"stringValue":"b"}]}}}]}]}`,
			`{"events":[{"attributes":[]}]}`,
			`{"events":[{"attributes":[{"key":"user.email","value":{"stringValue":` + rh(`{"arrayValue":{"values":[{"stringValue":"a"},{"stringValue":"b"}]}}`) + `}}]}]}`},
		{"otlp attribute already hashed", []string{"user.email"},
			`{"attributes":[{"key":"user.email","value":{"stringValue":"sha256:0123456789abcdef"}}]}`,
			`{"attributes":[]}`,
			""},

		// Input that is not valid JSON.
		{"truncated", []string{"user.email"},
			`{"user":{"email":"a@b.c","name":"Jo`,
			`{"user":{"email":"[redacted]","name":"Jo`,
			`{"user":{"email":` + rh(`"a@b.c"`) + `,"name":"Jo`},
		{"truncated inside the value", []string{"user.email"},
			`{"ts":1,"email":"a@b`,
			`{"ts":1,"email":"[redacted]"`,
			`{"ts":1,"email":` + rh(`"a@b`)},
		{"malformed flat key and tails", []string{"user.address.city"},
			`{"user.address.city":"a","address.city":"b","city":"c","ddress.city":"d",}`,
			`{"user.address.city":"[redacted]","address.city":"[redacted]","city":"[redacted]","ddress.city":"d",}`,
			`{"user.address.city":` + rh(`"a"`) + `,"address.city":` + rh(`"b"`) + `,"city":` + rh(`"c"`) + `,"ddress.city":"d",}`},
		{"malformed scalars", []string{"email"},
			`{"email": 12345 , "ok": true, "email" :null, "email":john@x.com}, "email":`,
			`{"email": "[redacted]" , "ok": true, "email" :"[redacted]", "email":"[redacted]"}, "email":`,
			`{"email": ` + rh(`12345`) + ` , "ok": true, "email" :` + rh(`null`) + `, "email":` + rh(`john@x.com`) + `}, "email":`},
		{"malformed subtree", []string{"user"},
			`{"user":{"email":"x","ids":[5,"y"]},"n":1`,
			`{"user":{"email":"[redacted]","ids":["[redacted]","[redacted]"]},"n":1`,
			`{"user":{"email":` + rh(`"x"`) + `,"ids":[` + rh(`5`) + `,` + rh(`"y"`) + `]},"n":1`},
		{"malformed otlp", []string{"user.email"},
			`{"attributes":[{"key":"user.email","value":{"stringValue":"a@b.c"}},{"key":"k","value":{"intValue":"3"}}`,
			`{"attributes":[{"key":"user.email","value":{"stringValue":"[redacted]"}},{"key":"k","value":{"intValue":"3"}}`,
			`{"attributes":[{"key":"user.email","value":{"stringValue":` + rh(`"a@b.c"`) + `}},{"key":"k","value":{"intValue":"3"}}`},
		{"malformed, name only inside a string", []string{"email"},
			`{"msg":"\"email\": \"x\"", "a":`,
			"", ""},
		{"malformed, already redacted", []string{"email"},
			`{"email":"[redacted]","email":"sha256:0123456789abcdef"`,
			`{"email":"[redacted]","email":"[redacted]"`,
			`{"email":` + rh(`"[redacted]"`) + `,"email":"sha256:0123456789abcdef"`},

		// Invalid UTF-8.
		{"invalid utf-8 in valid json", []string{"email"},
			"{\"email\":\"\xff\xfe\",\"note\":\"caf\xc3\",\"\xc3\":1}",
			"{\"note\":\"caf\xc3\",\"\xc3\":1}",
			"{\"email\":" + rh("\"\xff\xfe\"") + ",\"note\":\"caf\xc3\",\"\xc3\":1}"},
		{"invalid utf-8 in malformed", []string{"email"},
			"{\"note\":\"\xff\",\"email\":\"\xc3\x28",
			"{\"note\":\"\xff\",\"email\":\"[redacted]\"",
			"{\"note\":\"\xff\",\"email\":" + rh("\"\xc3\x28")},
	}
	for _, c := range cases {
		for _, mode := range []string{"remove", "hash"} {
			want := c.remove
			if mode == "hash" {
				want = c.hash
			}
			if want == skip {
				continue
			}
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				r := mustRedactor(t, mode, c.fields...)
				out, changed := checkRedact(t, r, []byte(c.in))
				if want == "" {
					if changed {
						t.Fatalf("changed:\n in: %s\nout: %s", c.in, out)
					}
					return
				}
				if !changed || string(out) != want {
					t.Fatalf("changed %v\n  in: %s\n got: %s\nwant: %s", changed, c.in, out, want)
				}
			})
		}
	}
}

func TestNewRedactor(t *testing.T) {
	if r, err := NewRedactor(nil, "remove"); r != nil || err != nil {
		t.Errorf("no fields: %v, %v", r, err)
	}
	if r, err := NewRedactor([]string{}, "bogus"); r != nil || err != nil {
		t.Errorf("no fields, any mode: %v, %v", r, err)
	}
	if _, err := NewRedactor([]string{"a"}, "Remove"); err == nil {
		t.Error("bad mode accepted")
	}
	if _, err := NewRedactor([]string{"a", ""}, "hash"); err == nil {
		t.Error("empty field accepted")
	}
	r := mustRedactor(t, "hash", "a", "a", "b")
	if len(r.fields) != 2 {
		t.Errorf("fields %q", r.fields)
	}
	var none *Redactor
	p := []byte(`{"a":1}`)
	if out, changed := none.Redact(p); changed || &out[0] != &p[0] {
		t.Error("nil Redactor changed something")
	}
}

func readTestdata(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return v
}

// onlyCut reports whether out is in with one contiguous run of bytes taken
// out (everything else kept byte for byte).
func onlyCut(in, out []byte) bool {
	if len(out) >= len(in) {
		return false
	}
	pre := 0
	for pre < len(out) && in[pre] == out[pre] {
		pre++
	}
	return bytes.Equal(in[len(in)-(len(out)-pre):], out[pre:])
}

func TestRedactOTLPTrace(t *testing.T) {
	in := readTestdata(t, "otlp/trace.json")
	r := mustRedactor(t, "remove", "my.span.attr")
	out, changed := checkRedact(t, r, in)
	if !changed || !onlyCut(in, out) {
		t.Fatalf("changed %v, out:\n%s", changed, out)
	}
	want := decodeJSON(t, in)
	span := want.(map[string]any)["resourceSpans"].([]any)[0].(map[string]any)["scopeSpans"].([]any)[0].(map[string]any)["spans"].([]any)[0].(map[string]any)
	span["attributes"] = []any{}
	if got := decodeJSON(t, out); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}

	// Hash: the span attribute and the resource's service.name; the scope's
	// name is a plain member "name", not the field "service.name".
	r = mustRedactor(t, "hash", "my.span.attr", "service.name")
	out, _ = checkRedact(t, r, in)
	wantText := strings.Replace(string(in), "{\n                    \"stringValue\": \"some value\"\n                  }",
		`{"stringValue":`+rh(`"some value"`)+`}`, 1)
	wantText = strings.Replace(wantText, "{\n              \"stringValue\": \"my.service\"\n            }",
		`{"stringValue":`+rh(`"my.service"`)+`}`, 1)
	if strings.Count(wantText, "sha256:") != 2 {
		t.Fatalf("test expectation not built:\n%s", wantText)
	}
	if string(out) != wantText {
		t.Fatalf("got:\n%s\nwant:\n%s", out, wantText)
	}
}

func TestRedactOTLPLogs(t *testing.T) {
	in := readTestdata(t, "otlp/logs.json")
	fields := []string{"string.attribute", "boolean.attribute", "int.attribute", "double.attribute", "array.attribute", "map.attribute", "some.map.key"}
	out, changed := checkRedact(t, mustRedactor(t, "remove", fields...), in)
	if !changed {
		t.Fatal("unchanged")
	}
	want := decodeJSON(t, in)
	rec := want.(map[string]any)["resourceLogs"].([]any)[0].(map[string]any)["scopeLogs"].([]any)[0].(map[string]any)["logRecords"].([]any)[0].(map[string]any)
	rec["attributes"] = []any{}
	if got := decodeJSON(t, out); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %s", out)
	}

	out, _ = checkRedact(t, mustRedactor(t, "hash", fields...), in)
	got := decodeJSON(t, out)
	attrs := got.(map[string]any)["resourceLogs"].([]any)[0].(map[string]any)["scopeLogs"].([]any)[0].(map[string]any)["logRecords"].([]any)[0].(map[string]any)["attributes"].([]any)
	wantHash := map[string]string{
		"string.attribute":  rh(`"some string"`),
		"boolean.attribute": rh(`true`),
		"int.attribute":     rh(`"10"`),
		"double.attribute":  rh(`637.704`),
		"array.attribute":   rh(`{"arrayValue":{"values":[{"stringValue":"many"},{"stringValue":"values"}]}}`),
		// A kvlist is hashed whole: its own "values" list is not an
		// "attributes" list, so some.map.key is not looked for inside it.
		"map.attribute": rh(`{"kvlistValue":{"values":[{"key":"some.map.key","value":{"stringValue":"some value"}}]}}`),
	}
	if len(attrs) != len(wantHash) {
		t.Fatalf("%d attributes", len(attrs))
	}
	for _, a := range attrs {
		m := a.(map[string]any)
		k := m["key"].(string)
		v, _ := json.Marshal(m["value"])
		if w := `{"stringValue":` + wantHash[k] + `}`; string(v) != w {
			t.Errorf("%s: %s, want %s", k, v, w)
		}
	}
	if !bytes.Contains(out, []byte(`"stringValue": "Example log record"`)) || !bytes.Contains(out, []byte(`"severityNumber": 10,`)) {
		t.Error("untouched members changed")
	}
}

func TestRedactZipkin(t *testing.T) {
	in := readTestdata(t, "parsers/zipkin/spans.json")
	fields := []string{"localEndpoint.ipv4", "http.path", "remoteEndpoint"}
	out, changed := checkRedact(t, mustRedactor(t, "remove", fields...), in)
	if !changed {
		t.Fatal("unchanged")
	}
	want := decodeJSON(t, in)
	s0 := want.([]any)[0].(map[string]any)
	delete(s0["localEndpoint"].(map[string]any), "ipv4")
	delete(s0["tags"].(map[string]any), "http.path")
	delete(s0, "remoteEndpoint")
	if got := decodeJSON(t, out); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %s", out)
	}

	out, _ = checkRedact(t, mustRedactor(t, "hash", fields...), in)
	for _, sub := range []string{
		`"ipv4": ` + rh(`"192.168.99.1"`) + `, "port": 3306}`,
		`"http.path": ` + rh(`"/api"`) + `,`,
		`"remoteEndpoint": ` + rh(`{"serviceName":"backend","ipv4":"172.19.0.2","port":9000}`) + `,`,
		`"timestamp": 1556604172355737,`,
	} {
		if !bytes.Contains(out, []byte(sub)) {
			t.Errorf("no %s in\n%s", sub, out)
		}
	}
}

func TestRedactDeep(t *testing.T) {
	const n = 100_000
	for _, mode := range []string{"remove", "hash"} {
		r := mustRedactor(t, mode, "email", "a")
		for _, c := range []struct{ in, gone string }{
			{strings.Repeat("[", n) + `{"email":"x"}` + strings.Repeat("]", n), `"x"`},
			{strings.Repeat(`{"b":`, n) + `{"email":"x"}` + strings.Repeat("}", n), `"x"`},
			{strings.Repeat(`{"a":`, n) + `1` + strings.Repeat("}", n), `:1}`},
			{strings.Repeat(`[{"b":`, n) + `"email":"x"`, `"x"`}, // unclosed
			{strings.Repeat(`{"attributes":[`, n), ""},
		} {
			out, changed := checkRedact(t, r, []byte(c.in))
			if changed != (c.gone != "") || c.gone != "" && bytes.Contains(out, []byte(c.gone)) {
				t.Errorf("%s: changed %v, %.60s…", mode, changed, out[len(out)-60:])
			}
		}
	}

	// Just within the structured pass's depth, and just past it (where the
	// fallback keeps valid JSON valid and replaces instead of removing).
	for _, depth := range []int{redactMaxDepth - 2, redactMaxDepth + 2} {
		in := []byte(strings.Repeat(`[`, depth) + `{"email":"x","k":1}` + strings.Repeat(`]`, depth))
		out, _ := checkRedact(t, mustRedactor(t, "remove", "email"), in)
		want := `{"k":1}`
		if depth > redactMaxDepth {
			want = `{"email":"[redacted]","k":1}`
		}
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("depth %d: %.40s", depth, out[depth:])
		}
	}
}

func TestRedactConcurrent(t *testing.T) {
	r := mustRedactor(t, "hash", "user.email", "my.span.attr")
	in := readTestdata(t, "otlp/trace.json")
	want, _ := r.Redact(in)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if out, _ := r.Redact(in); !bytes.Equal(out, want) {
					t.Error("different output")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// checkEdits checks the plan's invariant: edits in order, not overlapping,
// inside p.
func checkEdits(t *testing.T, r *Redactor, p []byte) {
	t.Helper()
	w := rdWalker{r: r, p: p}
	w.plan()
	pos := 0
	for _, e := range w.edits {
		if e.kind == rdNone {
			continue
		}
		if e.start < pos || e.end < e.start || e.end > len(p) || e.src0 > e.src1 || e.src1 > len(p) {
			t.Fatalf("bad edit %+v after %d in %q", e, pos, p)
		}
		pos = e.end
	}
}

func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		`{"user":{"email":"a@b.c","id":7},"msg":"hi"}`,
		`{"user.email":"a","a":[{"email":1,"x":2},{"key":"user.email","value":{"stringValue":"v"}}]}`,
		`{"attributes":[{"key":"user.email","value":{"stringValue":"a@b.c"}},{"key":"a","value":{"intValue":"1"}}]}`,
		`{"user":{"email":"a@b.c","name":"Jo`,
		`{"email": 12345 , "ok": true, "email":john@x.com}`,
		"{\"email\":\"\xff\",\"\xc3\":1}",
		`{"us\u0065r":{"\ud83d\ude00":1,"email":"\u00"}}`,
		"{\"a\":1}\n{\"email\":2}\n",
		`[[[[{"email":[1,{"a":{}}]}]]]]`,
	} {
		f.Add([]byte(s))
	}
	for _, rel := range []string{"otlp/trace.json", "otlp/logs.json", "parsers/zipkin/spans.json"} {
		f.Add(readTestdata(f, rel))
	}
	fields := []string{"email", "user.email", "a", "user", "service.name", "my.span.attr", "key", "value", "x.y.z"}
	rs := []*Redactor{mustRedactor(f, "remove", fields...), mustRedactor(f, "hash", fields...)}
	absent := []*Redactor{mustRedactor(f, "remove", "zq.zq"), mustRedactor(f, "hash", "zq")}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, r := range rs {
			checkRedact(t, r, in)
			checkEdits(t, r, in)
		}
		if bytes.Contains(in, []byte("zq")) || bytes.IndexByte(in, '\\') >= 0 {
			return
		}
		for _, r := range absent {
			if out, changed := r.Redact(in); changed || !bytes.Equal(out, in) {
				t.Fatalf("absent field changed %q to %q", in, out)
			}
		}
	})
}

func BenchmarkRedact(b *testing.B) {
	for _, c := range []struct{ name, mode, in string }{
		{"jsonl/remove", "remove", `{"ts":"2024-05-01T12:00:00Z","level":"error","msg":"payment failed","user":{"id":"u-123","email":"a@b.c"},"http":{"status":502,"path":"/pay"},"trace_id":"5b8efff798038103d269b633813fc60c"}`},
		{"jsonl/hash", "hash", `{"ts":"2024-05-01T12:00:00Z","level":"error","msg":"payment failed","user":{"id":"u-123","email":"a@b.c"},"http":{"status":502,"path":"/pay"},"trace_id":"5b8efff798038103d269b633813fc60c"}`},
		{"jsonl/untouched", "remove", `{"ts":"2024-05-01T12:00:00Z","level":"error","msg":"payment failed","http":{"status":502,"path":"/pay"},"trace_id":"5b8efff798038103d269b633813fc60c"}`},
		{"otlp-logs/hash", "hash", string(readTestdata(b, "otlp/logs.json"))},
		{"truncated/remove", "remove", `{"ts":"2024-05-01T12:00:00Z","level":"error","user":{"id":"u-123","email":"a@b.c","name":"Jo`},
	} {
		r := mustRedactor(b, c.mode, "user.email", "user.id", "string.attribute")
		in := []byte(c.in)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				r.Redact(in)
			}
		})
	}
}
