package parsers

// Micro-benchmarks of the helpers on the jsonl hot path.

import (
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

func BenchmarkRFC3339(b *testing.B) {
	s := []byte("2024-05-14T09:21:07.123456789Z")
	for i := 0; i < b.N; i++ {
		if _, st := parseRFC3339(s); st != tOK {
			b.Fatal()
		}
	}
}

func BenchmarkDecimalNanos(b *testing.B) {
	s := []byte("1715678467.123456789")
	for i := 0; i < b.N; i++ {
		if _, st := decimalNanos(s, unitAuto); st != tOK {
			b.Fatal()
		}
	}
}

func BenchmarkCopyID(b *testing.B) {
	s := []byte("4BF92F3577B34DA6A3CE929D0E0E4736")
	batch := &pipeline.Batch{}
	for i := 0; i < b.N; i++ {
		batch.Arena = batch.Arena[:0]
		if _, ok := copyID(batch, s, nil, true); !ok {
			b.Fatal()
		}
	}
}

func BenchmarkScanText(b *testing.B) {
	data := []byte(jsonlSpanLine)
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		if st := scanText(data, false); st.code != "" {
			b.Fatal()
		}
	}
}

func BenchmarkKeyLookup(b *testing.B) {
	p := defaultPrepared()
	keys := []string{"timestamp", "trace_id", "span_id", "parent_span_id", "service", "name", "kind", "status",
		"duration_ms", "http", "net.peer.ip", "user_id", "region", "host", "retry"}
	for i := 0; i < b.N; i++ {
		for _, k := range keys {
			p.keys.lookup(k)
		}
	}
}
