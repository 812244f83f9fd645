package pipeline

import (
	"context"
	"testing"

	"github.com/tracepipe/tracepipe/config"
)

// benchOp is a package variable so that the direct call is a real indirect
// call, as through Attempt, not inlined away.
var benchOp = func(context.Context) error { return nil }

// BenchmarkHappyPath: an operation that succeeds, called directly and
// through the retry policy (breaker, budget and stats wired from the
// shipped defaults). Attempt must allocate nothing.
func BenchmarkHappyPath(b *testing.B) {
	cfg, err := config.Load("")
	if err != nil {
		b.Fatal(err)
	}
	newRetrier := func(b *testing.B) *Retrier {
		r, err := NewRetrier(cfg.Retry)
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	ctx := context.Background()

	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := benchOp(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Attempt", func(b *testing.B) {
		r := newRetrier(b)
		b.ReportAllocs()
		for b.Loop() {
			if err := r.Attempt(ctx, benchOp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Do", func(b *testing.B) { // Attempt plus reading the clock for MaxElapsed
		r := newRetrier(b)
		b.ReportAllocs()
		for b.Loop() {
			if err := r.Do(ctx, benchOp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Attempt-parallel", func(b *testing.B) { // one Retrier shared by every worker, as a sink does
		r := newRetrier(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := r.Attempt(ctx, benchOp); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
