package dlq

import (
	"reflect"
	"testing"
	"time"
)

// TestFieldsCoverEntry: every Entry field but the payload is in Fields,
// and Get then Set gives it back. A field added to Entry without a row
// here fails (the flat codecs, Kafka headers and Redis fields, run over
// this table only).
func TestFieldsCoverEntry(t *testing.T) {
	for _, s := range []string{"x", "é€"} {
		var e Entry
		fill(t, reflect.ValueOf(&e).Elem(), s, 41, []byte("p\xff"), time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
		var got Entry
		seen := map[string]bool{}
		for _, f := range Fields {
			if seen[f.Path] || seen["redis:"+f.Redis] {
				t.Fatalf("%s / %s twice in Fields", f.Path, f.Redis)
			}
			seen[f.Path], seen["redis:"+f.Redis] = true, true
			v, zero := f.Get(&e)
			if zero {
				t.Fatalf("%s: zero for a filled entry", f.Path)
			}
			if err := f.Set(&got, v); err != nil {
				t.Fatalf("%s: Set(%q): %v", f.Path, v, err)
			}
		}
		got.Payload, got.PayloadBase64 = e.Payload, e.PayloadBase64
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip through Fields:\n got %+v\nwant %+v", got, e)
		}
	}
}
