package parsers

import (
	"bytes"
	"testing"

	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/pipeline"
)

// BenchmarkDecodeGen decodes a batch of generated lines (the shape of the
// end-to-end benchmark corpus, `pipeline gen --seed 1`): many keys, nested
// objects, arrays and non-ASCII text, beside the single-line benchmarks.
func BenchmarkDecodeGen(b *testing.B) {
	for _, format := range []string{gen.FormatJSONL, gen.FormatOTLP, gen.FormatZipkin} {
		b.Run(format, func(b *testing.B) {
			var buf bytes.Buffer
			if _, err := gen.Generate(&buf, gen.Options{Format: format, Size: 1 << 20, Seed: 1}); err != nil {
				b.Fatal(err)
			}
			f, _ := pipeline.ParseFormat(format)
			batch := &pipeline.Batch{}
			for _, line := range bytes.Split(buf.Bytes(), []byte("\n")) {
				if len(line) > 0 {
					batch.AddUnit(line, 0, 1, int64(len(line)), 0)
				}
			}
			d := GetDecoder(nil)
			defer PutDecoder(d)
			run := func() {
				batch.Records = batch.Records[:0]
				batch.Arena = batch.Arena[:0]
				clear(batch.Attrs)
				batch.Attrs = batch.Attrs[:0]
				for u := range batch.Units {
					d.Decode(batch, u, f)
				}
			}
			run()
			for i := range batch.Records {
				if r := &batch.Records[i]; r.Failed() {
					b.Fatalf("record %d failed: %+v", i, r.Failure)
				}
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(batch.Buf)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
		})
	}
}

// BenchmarkScanTextGen runs the strict byte pass alone over generated lines.
func BenchmarkScanTextGen(b *testing.B) {
	var buf bytes.Buffer
	if _, err := gen.Generate(&buf, gen.Options{Format: gen.FormatJSONL, Size: 1 << 20, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	b.SetBytes(int64(buf.Len()))
	for i := 0; i < b.N; i++ {
		for _, l := range lines {
			if st := scanText(l, false); st.code != "" {
				b.Fatal(st.code)
			}
		}
	}
}
