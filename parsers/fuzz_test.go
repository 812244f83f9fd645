package parsers

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/tracepipe/tracepipe/pipeline"
)

// fuzzSeeds adds the JSONTestSuite files, the samples and the typical units.
func fuzzSeeds(f *testing.F, extra ...string) {
	for _, data := range suiteFiles(f) {
		f.Add(data)
	}
	for _, c := range typicalUnits {
		f.Add([]byte(c.line))
	}
	for _, pattern := range extra {
		paths, _ := filepath.Glob(filepath.Join("..", "testdata", pattern))
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
			for _, line := range bytes.Split(data, []byte("\n")) {
				if len(line) > 0 {
					f.Add(line)
				}
			}
		}
	}
}

// strictAccepts is the reference: RFC 8259 JSON and valid UTF-8.
func strictAccepts(data []byte) bool { return json.Valid(data) && utf8.Valid(data) }

// tooDeepOK reports whether a disagreement is the documented depth limit.
func tooDeepOK(data []byte) bool { return nestingDepth(data) >= fastjsonDepthSlack }

// fastjsonDepthSlack: fastjson counts the innermost scalar as a level.
const fastjsonDepthSlack = 299

var fuzzReplace = func() *Options {
	o := DefaultOptions()
	o.InvalidUTF8 = "replace"
	o.MissingTraceID = "keep"
	if err := o.Prepare(); err != nil {
		panic(err)
	}
	return &o
}()

// fuzzDecode decodes data as f under the default and the replace options
// and checks the differential and the record invariants.
func fuzzDecode(t *testing.T, data []byte, f pipeline.Format) {
	b := decodeUnit(t, nil, data, f)
	checkInvariants(t, b)
	malformed := len(b.Records) > 0 && b.Records[0].Failure.Class == pipeline.ClassMalformed
	if malformed && len(b.Records) != 1 {
		t.Fatalf("malformed unit with %d records", len(b.Records))
	}
	ok := strictAccepts(data)
	if !malformed && !ok {
		t.Fatalf("accepted a unit encoding/json+utf8 reject: %q", data)
	}
	if malformed && ok && !(b.Records[0].Failure.Code == codeTooDeep && tooDeepOK(data)) {
		t.Fatalf("rejected valid JSON (%s: %s): %q", b.Records[0].Failure.Code, b.Records[0].Failure.Message, data)
	}
	if !malformed && len(b.Records) == 0 && f == pipeline.FormatJSONL {
		t.Fatalf("jsonl unit without a record")
	}
	checkOutputs(t, b, true)

	// Without the fast view every read goes through fastjson's public API
	// and every string is copied into the arena: the records must be the
	// same (the views into the unit must hold the decoded text).
	if fastView {
		fastView = false
		slow := decodeUnit(t, nil, data, f)
		fastView = true
		if got, want := renderBatch(b), renderBatch(slow); !bytes.Equal(got, want) {
			t.Fatalf("fast view and public API disagree on %q:\n%s\nvs\n%s", data, got, want)
		}
	}

	// Replace mode, records without trace ids kept (so the jsonl success
	// path runs on every object): the same differential without UTF-8,
	// and all it copies is valid UTF-8.
	b = decodeUnit(t, fuzzReplace, data, f)
	checkInvariants(t, b)
	malformed = len(b.Records) > 0 && b.Records[0].Failure.Class == pipeline.ClassMalformed
	ok = json.Valid(data)
	if !malformed && !ok {
		t.Fatalf("replace mode accepted a unit encoding/json rejects: %q", data)
	}
	if malformed && ok && !(b.Records[0].Failure.Code == codeTooDeep && tooDeepOK(data)) {
		t.Fatalf("replace mode rejected valid JSON (%s: %s): %q", b.Records[0].Failure.Code, b.Records[0].Failure.Message, data)
	}
	checkOutputs(t, b, true)
}

// checkOutputs checks that JSON values and payloads the decoder wrote are
// valid JSON, and with utf8 set, that every copied string is valid UTF-8.
func checkOutputs(t *testing.T, b *pipeline.Batch, utf8Too bool) {
	t.Helper()
	for i := range b.Records {
		r := &b.Records[i]
		if r.Failure.Class == pipeline.ClassMalformed {
			continue
		}
		if r.Payload != nil && !json.Valid(r.Payload) {
			t.Fatalf("record %d: payload is not JSON: %q", i, r.Payload)
		}
		fields := [][]byte{r.TraceID, r.SpanID, r.ParentID, r.Service, r.Name, r.Kind, r.Status, r.Severity, r.Payload}
		for _, a := range r.Attrs {
			fields = append(fields, a.Key, a.Value)
			if a.Type == pipeline.AttrJSON && !json.Valid(a.Value) {
				t.Fatalf("record %d: attr %q is not JSON: %q", i, a.Key, a.Value)
			}
			if a.Type == pipeline.AttrNumber && !validNumber(a.Value) && !json.Valid(a.Value) {
				t.Fatalf("record %d: attr %q is not a number: %q", i, a.Key, a.Value)
			}
		}
		if utf8Too {
			for _, v := range fields {
				if !utf8.Valid(v) {
					t.Fatalf("record %d: invalid UTF-8 in %q", i, v)
				}
			}
		}
	}
}

func FuzzStrict(f *testing.F) {
	fuzzSeeds(f)
	f.Add([]byte("[\"\\ud800\"]\n"))
	f.Add([]byte("{\"a\":\t\"b\\u00e9\"}"))
	d := GetDecoder(nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		fl := d.check(data)
		got := fl.code == ""
		want := strictAccepts(data)
		if got != want && !(fl.code == codeTooDeep && tooDeepOK(data)) {
			t.Fatalf("strict=%v (%s: %s), encoding/json+utf8=%v: %q", got, fl.code, fl.msg, want, data)
		}
		if len(fl.msg) > pipeline.MaxErrorMessage+4 {
			t.Fatalf("message of %d bytes", len(fl.msg))
		}
	})
}

func FuzzJSONL(f *testing.F) {
	fuzzSeeds(f, "parsers/jsonl/*.jsonl")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, data, pipeline.FormatJSONL) })
}

func FuzzOTLP(f *testing.F) {
	fuzzSeeds(f, "otlp/*.json", "otlp/*.jsonl", "otlp/v0/*.jsonl", "parsers/otlp/*")
	// Ids in each form otlpID reads, and bytes around their lengths.
	for _, id := range []string{"W47/95gDgQPSabYzgT/GDA==", "-_9_Gis8TV5vcIGSo7TF1g", "NWI4ZWZmZjc5ODAzODEwM2QyNjliNjMzODEzZmM2MGM=",
		"AAAAAAAAAAAAAAAAAAAAAA==", "W47/95gDgQPSabYzgT/GD===", "W47/95gDgQPSabYzgT/G===", "5B8EFFF798038103D269B633813FC60C"} {
		f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"` + id + `","spanId":"7uGbfsPBsXQ=","parentSpanId":"ZWVlMTliN2VjM2MxYjE3NA=="}]}]}]}`))
	}
	f.Add([]byte(`{"resource_logs":[{"instrumentation_library_logs":[{"logs":[{"severity_number":"SEVERITY_NUMBER_FATAL4","body":{"string_value":"x"}}]}]}],"resourceMetrics":[{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, data, pipeline.FormatOTLP) })
}

func FuzzZipkin(f *testing.F) {
	fuzzSeeds(f, "parsers/zipkin/*")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, data, pipeline.FormatZipkin) })
}
