package file

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

// TestReadOneSkip reads a gzip file through ReadOne twice: whole, then
// resuming past a unit, which drops exactly the units before it.
func TestReadOneSkip(t *testing.T) {
	lines, want := ndjson(5000)
	path := writeFile(t, t.TempDir(), "app.log.1.gz", gzipBytes(lines))
	o := testOptions()
	o.BatchUnits = 100
	r, err := NewReader(o)
	if err != nil {
		t.Fatal(err)
	}
	read := func(skip int64) []string {
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		origin := &pipeline.Origin{ID: 7, Kind: "file", Path: path, Format: pipeline.FormatJSONL}
		out := make(chan *pipeline.Batch, 1000)
		var seen []uint64
		sent, fe, failed := r.ReadOne(context.Background(), fh, path, origin, skip, func(b *pipeline.Batch) { seen = append(seen, b.Seq) }, out)
		close(out)
		if failed {
			t.Fatal(fe)
		}
		var got []string
		for b := range out {
			if b.Origin != origin {
				t.Fatal("batch of another origin")
			}
			for i := range b.Units {
				got = append(got, renderUnit(Unit{Data: b.UnitBytes(i), Offset: b.Units[i].Offset, Line: b.Units[i].Line}))
			}
			pipeline.PutBatch(b)
		}
		if int64(len(seen)) != sent || seen[0] != 1 || seen[len(seen)-1] != uint64(sent) {
			t.Fatalf("onSend saw %v, %d sent", seen, sent)
		}
		return got
	}
	if got := read(0); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("whole: %d units, want %d", len(got), len(want))
	}
	// Skip to one byte past the start of unit 1234: it and those before go.
	var skip int64
	for _, u := range want[1234:1235] {
		_, rest, _ := strings.Cut(u, "@")
		off, _, _ := strings.Cut(rest, " ")
		for _, c := range off {
			skip = skip*10 + int64(c-'0')
		}
	}
	if got := read(skip + 1); strings.Join(got, "\n") != strings.Join(want[1235:], "\n") {
		t.Fatalf("resumed: %d units, want %d", len(got), len(want)-1235)
	}
}
