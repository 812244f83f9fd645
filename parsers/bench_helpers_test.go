package parsers

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/tracepipe/tracepipe/pipeline"
)

// benchUnits is how many copies of a unit a benchmark batch holds before
// its records are reset, like a real batch.
const benchUnits = 256

// benchDecode decodes line over and over, benchUnits units per batch.
func benchDecode(b *testing.B, line string, f pipeline.Format) {
	d := GetDecoder(nil)
	defer PutDecoder(d)
	batch := &pipeline.Batch{}
	for range benchUnits {
		batch.AddUnit([]byte(line), 0, 1, int64(len(line)), 0)
	}
	for u := range benchUnits { // warm up: grow the batch's slices once
		d.Decode(batch, u, f)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u := i % benchUnits
		if u == 0 {
			batch.Records = batch.Records[:0]
			batch.Arena = batch.Arena[:0]
			clear(batch.Attrs)
			batch.Attrs = batch.Attrs[:0]
		}
		d.Decode(batch, u, f)
	}
	b.StopTimer()
	if r := batch.Records[0]; r.Failed() {
		b.Fatalf("decode failed: %+v", r.Failure)
	}
}

// benchStd is the encoding/json baseline: Unmarshal into a struct with the
// same fields (Unmarshal validates the whole input first) plus utf8.Valid;
// withValid adds a separate json.Valid, as a validate-then-decode pipeline
// would do.
func benchStd[T any](b *testing.B, line string, withValid bool) {
	data := []byte(line)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		if withValid && !json.Valid(data) {
			b.Fatal("invalid")
		}
		var v T
		if err := json.Unmarshal(data, &v); err != nil || !utf8.Valid(data) {
			b.Fatal(err)
		}
	}
}

// benchValid measures the strict check alone (Parse plus the checks).
func benchValid(b *testing.B, line string) {
	d := GetDecoder(nil)
	defer PutDecoder(d)
	data := []byte(line)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		if !d.Valid(data) {
			b.Fatal("invalid")
		}
	}
}
