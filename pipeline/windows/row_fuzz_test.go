package windows

import (
	"bytes"
	"testing"
	"time"
)

// FuzzParseRow: any bytes (a store's contents are not trusted) give a row
// or an error, never a panic; a row that parses writes back to JSON that
// parses to the same row, and its sketch either decodes or is refused.
func FuzzParseRow(f *testing.F) {
	sk, _ := NewSketch(14)
	sk.InsertHash(HashValue([]byte("a")))
	_, b, _ := Encode(sk)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	row := Row{Metric: "m", Start: start, End: start.Add(time.Minute), GroupKeys: []string{"service", "x"},
		GroupValues: []string{"api", "\u00e9\"\\"}, Estimate: 1, Records: 2, Revision: 1, Instance: "i", Precision: 14, Sketch: b}
	f.Add(row.AppendJSON(nil))
	f.Add([]byte(`{"metric":"m","window_start":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRow(line)
		if err != nil {
			return
		}
		again, err := ParseRow(r.AppendJSON(nil))
		if err != nil {
			t.Fatalf("a parsed row does not parse once written back: %v\n%s", err, r.AppendJSON(nil))
		}
		if !bytes.Equal(again.AppendJSON(nil), r.AppendJSON(nil)) {
			t.Fatalf("round trip changed the row:\n%s\n%s", r.AppendJSON(nil), again.AppendJSON(nil))
		}
		if sk, err := Decode(r.Sketch); err == nil {
			sk.Estimate()
		}
	})
}
