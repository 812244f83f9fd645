package parsers

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"

	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/pipeline"
)

// genLines returns the lines of generated jsonl (a tenth of them broken
// when malformed is set).
func genLines(t testing.TB, seed uint64, size int64, malformed bool) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	o := gen.Options{Format: gen.FormatJSONL, Size: size, Seed: seed}
	if malformed {
		o.Malformed = 0.1
	}
	if _, err := gen.Generate(&buf, o); err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	for _, line := range bytes.Split(buf.Bytes(), []byte("\n")) {
		if len(line) > 0 {
			lines = append(lines, line)
		}
	}
	return lines
}

// renderPlaces says where each []byte of the records lives: B in b.Buf, A
// elsewhere (the arena), e empty. Nil and empty are the same here except
// for Payload (an empty field is nil or not depending on whether the arena
// had grown yet, which the two paths do in a different order; only
// Payload's nil-ness means something, see Batch.Payload).
func renderPlaces(b *pipeline.Batch) string {
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b.Buf)))
	hi := lo + uintptr(cap(b.Buf))
	place := func(p []byte) byte {
		if len(p) == 0 {
			return 'e'
		}
		if a := uintptr(unsafe.Pointer(unsafe.SliceData(p))); a >= lo && a < hi {
			return 'B'
		}
		return 'A'
	}
	var w bytes.Buffer
	for i := range b.Records {
		r := &b.Records[i]
		for _, p := range [][]byte{r.TraceID, r.SpanID, r.ParentID, r.Service, r.Name, r.Kind, r.Status, r.Severity, r.Payload} {
			w.WriteByte(place(p))
		}
		fmt.Fprintf(&w, " payload=%v", r.Payload != nil)
		for _, a := range r.Attrs {
			w.WriteByte(' ')
			w.WriteByte(place(a.Key))
			w.WriteByte(place(a.Value))
		}
		fmt.Fprintf(&w, " attrs=%d nilattrs=%v\n", len(r.Attrs), r.Attrs == nil)
	}
	return w.String()
}

// spBatch decodes the units of lines into one batch, each with the single
// pass (as Decode does) when sp is set, else with the tree path only.
func spBatch(opts *Options, lines [][]byte, sp bool) *pipeline.Batch {
	b := &pipeline.Batch{}
	for _, l := range lines {
		b.AddUnit(l, 0, 1, int64(len(l)), 0)
	}
	d := GetDecoder(opts)
	defer PutDecoder(d)
	for u := range b.Units {
		if sp {
			d.Decode(b, u, pipeline.FormatJSONL)
		} else {
			d.decodeTree(b, u, pipeline.FormatJSONL)
		}
	}
	return b
}

var spOptions = []*Options{nil, fuzzReplace, func() *Options {
	o := DefaultOptions()
	o.MissingTraceID = "filter"
	o.TimeUnit = "ms"
	if err := o.Prepare(); err != nil {
		panic(err)
	}
	return &o
}()}

// spCompare decodes data (three times in one batch, around a typical line,
// so what a give-up leaves behind would show) with the single pass and with
// the tree path, under each of spOptions, and requires the same records:
// every field, attribute, type, flag and failure (message included), and
// the same text in b.Buf versus the arena.
func spCompare(t *testing.T, data []byte) {
	t.Helper()
	if !fastView {
		t.Skip("the single pass runs with the fast view only")
	}
	lines := [][]byte{data, []byte(jsonlDenseLine), data}
	for _, opts := range spOptions {
		got, want := spBatch(opts, lines, true), spBatch(opts, lines, false)
		if g, w := renderBatch(got), renderBatch(want); !bytes.Equal(g, w) {
			t.Fatalf("single pass and tree path disagree on %q:\n%s\nvs tree:\n%s", data, g, w)
		}
		if g, w := renderPlaces(got), renderPlaces(want); g != w {
			t.Fatalf("single pass and tree path put text in different places for %q:\n%s\nvs tree:\n%s", data, g, w)
		}
		checkInvariants(t, got)
		checkOutputs(t, got, opts != fuzzReplace)
	}
}

func FuzzJSONLSinglePass(f *testing.F) {
	fuzzSeeds(f, "parsers/jsonl/*.jsonl", "logs/*.jsonl", "parsers/layouts/*.jsonl")
	for _, seed := range []uint64{1, 2} {
		for _, l := range genLines(f, seed, 64<<10, seed == 2) {
			f.Add(l)
		}
	}
	for _, s := range []string{
		`{}`, ` {"a":{}} `, `{"a":[ 1 , {"b" : [ ] } ]}`, `{"service":{"name":"x"},"service.name":null}`,
		`{"resource":{"service":{"name":"s"}},"trace":{"id":"0123456789ABCDEF"}}`,
		`{"span":{"id":"0123456789abcdef"},"duration":"1.5ms","kind":2,"status":"STATUS_CODE_ERROR"}`,
		`{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":{"m":{"n":{"o":{"p":{"q":{"r":1}}}}}}}}}}}}}}}}}}`,
		`{"trace_id":"","span_id":"0000000000000000","level":"warn","msg":"m","name":true}`,
		`{"k\"ey":"v\u00e9\ud83d\ude00\ud800x","a":["\n\u0001\/",{"\t":"\\"}],"o":{"\u0062":{"c\n":1}}}`,
		`{"trace\u005fid":"0123456789ABCDEF0123456789abcdef","service":{"na\u006de":"s\"q"},"kind":"\u0073erver"}`,
		// The layouts of layouts.go: containers (escaped, empty, nested,
		// dotted), start/end pairs, status objects, severity numbers,
		// decimal ids.
		jsonlNestedLine,
		`{"attributes":{},"labels":[],"resource":{"attributes":{}},"Attributes":{"a":{}}}`,
		`{"attribute\u0073":{"user.id":"u","user":{"id":"v"},"a":[1,{"b":2}]},"attributes.x":1,"labels.y":{"z":true}}`,
		`{"resource":{"attributes":{"service.name":"s","h":1},"attributes.k":"v","x":null},"resource.attributes.q":[1]}`,
		`{"resource.attributes":{"service.name":"s"},"Resource":{"service.name":"t","v":2}}`,
		`{"trace_id":"0123456789abcdef","span_id":"0123456789abcdef","start":1718000000.5,"end":"1718000000.75"}`,
		`{"span_id":"0123456789abcdef","startTime":"2024-06-10T06:13:20Z","endTime":"2024-06-10T06:13:19Z"}`,
		`{"span_id":"0123456789abcdef","start_time_unix_nano":1,"end_time_unix_nano":2,"duration_ms":3,"time":4}`,
		`{"start":{"a":1},"end":true,"status":{"code":2,"message":"m"},"status.code":"STATUS_CODE_OK"}`,
		`{"severity_number":9,"SeverityNumber":"24","severityNumber":25,"body":{"a":1}}`,
		`{"dd.trace_id":"18446744073709551615","dd.span_id":1,"dd":{"trace_id":"0"}}`,
		`{"dd.trace_id":"18446744073709551616","dd.span_id":"12a"}`,
		`{"dd":{"trace_id":"0123456789ABCDEF0123456789abcdef","span_id":12345678901234567890}}`,
		`{"\u0064d.trace_id":12.5,"labels":{"\u0041":"\u00e9"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(spCompare)
}

// TestSinglePassGen checks that the single pass takes every generated line
// (the lines it gives up on cost a second decode), and runs the
// differential on a sample of them.
func TestSinglePassGen(t *testing.T) {
	if !fastView {
		t.Skip("the single pass runs with the fast view only")
	}
	lines := genLines(t, 1, 256<<10, false)
	d := GetDecoder(nil)
	defer PutDecoder(d)
	b := &pipeline.Batch{}
	took := 0
	for _, l := range lines {
		u := b.AddUnit(l, 0, 1, int64(len(l)), 0)
		if d.decodeJSONLSinglePass(b, u) {
			took++
		} else {
			t.Errorf("the single pass gave up on a generated line: %s", l)
		}
	}
	t.Logf("single pass took %d of %d generated lines", took, len(lines))
	for i := 0; i < len(lines); i += 64 {
		spCompare(t, lines[i])
	}
}
