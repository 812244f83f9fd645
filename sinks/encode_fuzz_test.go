package sinks

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
)

// FuzzEncodeParsed holds the contract AppendRecord's fast path relies on:
// whatever a parser made of the input, writing its records with verbatim
// strings (views into Batch.Buf unescaped) gives valid JSON that decodes to
// exactly what escaping every string gives.
func FuzzEncodeParsed(f *testing.F) {
	var buf bytes.Buffer
	for _, format := range []string{"jsonl", "otlp", "zipkin"} {
		buf.Reset()
		if _, err := gen.Generate(&buf, gen.Options{Format: format, Records: 30, Seed: 3, Malformed: 0.2}); err != nil {
			f.Fatal(err)
		}
		for _, line := range bytes.Split(buf.Bytes(), []byte("\n")) {
			f.Add(line, uint8(0))
		}
	}
	samples, _ := filepath.Glob("../testdata/otlp/*.json*")
	for _, p := range samples {
		data, _ := os.ReadFile(p)
		f.Add(data, uint8(1))
	}
	f.Add([]byte(`{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","msg":"a\"b\\c\u2028","k":"\ud800","x":"\xff"}`), uint8(1))

	optsReject, optsReplace := parsers.DefaultOptions(), parsers.DefaultOptions()
	optsReplace.InvalidUTF8 = "replace"
	for _, o := range []*parsers.Options{&optsReject, &optsReplace} {
		o.MissingTraceID = "keep"
		if err := o.Prepare(); err != nil {
			f.Fatal(err)
		}
	}
	formats := []pipeline.Format{pipeline.FormatJSONL, pipeline.FormatOTLP, pipeline.FormatZipkin}

	f.Fuzz(func(t *testing.T, unit []byte, mode uint8) {
		opts := &optsReject
		if mode&1 != 0 {
			opts = &optsReplace
		}
		b := pipeline.GetBatch()
		defer pipeline.PutBatch(b)
		b.AddUnit(unit, 0, 1, int64(len(unit)), 0)
		d := parsers.GetDecoder(opts)
		d.Decode(b, 0, formats[int(mode>>1)%len(formats)])
		parsers.PutDecoder(d)
		for i := range b.Records {
			r := &b.Records[i]
			if r.Failed() {
				continue
			}
			fast := AppendRecord(nil, r, b.Buf)
			safe := AppendRecord(nil, r, nil)
			if !json.Valid(fast) || !utf8.Valid(fast) {
				t.Fatalf("invalid JSON from %q:\n%s", unit, fast)
			}
			var a, c any
			if err := json.Unmarshal(fast, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(safe, &c); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, c) {
				t.Fatalf("verbatim and escaped encodings differ for %q:\n%s\n%s", unit, fast, safe)
			}
		}
	})
}
