package windows

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
)

// TestAccuracyAgainstExactCounts counts generated values through the whole
// stage (two workers, partials, merge, sketch) and compares every row to
// the exact count: exact (or within 0.1%) below 1,000 distinct, within 2%
// from 10^4 to 10^6. The mean and max errors are logged (bench/README.md
// quotes them).
//
// It counts 3.5 million values: under -race that takes minutes and checks
// nothing the race tests of the stage do not, so it skips there; make test
// runs it without -race first.
func TestAccuracyAgainstExactCounts(t *testing.T) {
	if raceEnabled {
		t.Skip("slow under -race and not about concurrency; make test runs it without -race")
	}
	scales := []struct {
		distinct int
		groups   int // rows at this scale (one window each group)
		limit    float64
	}{
		{10, 20, 0.001}, {100, 20, 0.001}, {999, 20, 0.001},
		{10_000, 12, 0.02}, {100_000, 6, 0.02}, {1_000_000, 2, 0.02},
	}
	if testing.Short() {
		scales = scales[:4]
	}
	cfg := testConfig()
	w, sink := newStage(t, cfg, 2)
	exact := map[string]int{}
	// Each (scale, group) is its own service in its own window; values
	// repeat (every value twice) and interleave across two workers.
	var wg sync.WaitGroup
	ch := make(chan *pipeline.Batch, 2)
	for range 2 {
		wg.Go(func() {
			for b := range ch {
				w.Process(context.Background(), b)
				pipeline.PutBatch(b)
			}
		})
	}
	// Values are trace ids: 32 hex digits from a seeded generator.
	rng := rand.New(rand.NewPCG(1, 2))
	var ids [][]byte
	var hex [16]byte
	for si, sc := range scales {
		for g := range sc.groups {
			svc := fmt.Sprintf("s%d-%d", sc.distinct, g)
			exact[svc] = sc.distinct
			at := t0.Add(time.Duration(si) * time.Minute).UnixNano()
			b := pipeline.GetBatch()
			u := b.AddUnit([]byte("{}"), 0, 1, 2, 0)
			ids = ids[:0]
			for range sc.distinct {
				binary.LittleEndian.PutUint64(hex[:], rng.Uint64())
				binary.LittleEndian.PutUint64(hex[8:], rng.Uint64())
				ids = append(ids, []byte(fmt.Sprintf("%x", hex)))
			}
			for i := range 2 * sc.distinct {
				r := b.NewRecord(u)
				r.Time = at + int64(i%1000)
				r.Service = b.CopyString(svc)
				r.TraceID = b.Copy(ids[(i*7)%sc.distinct])
				if len(b.Records) == 4096 {
					ch <- b
					b = pipeline.GetBatch()
					u = b.AddUnit([]byte("{}"), 0, 1, 2, 0)
				}
			}
			ch <- b
		}
	}
	close(ch)
	wg.Wait()
	closeStage(t, w)

	type agg struct {
		n         int
		sum, maxE float64
	}
	errs := map[int]*agg{}
	for _, r := range sink.latest() {
		want := exact[r.GroupValues[0]]
		e := math.Abs(float64(r.Estimate)-float64(want)) / float64(want)
		a := errs[want]
		if a == nil {
			a = &agg{}
			errs[want] = a
		}
		a.n++
		a.sum += e
		a.maxE = max(a.maxE, e)
		// Below 1,000: within 0.1%, rounded up to a whole value (at 999
		// one value is 0.1001%).
		limit := 0.02
		if want < 1000 {
			limit = math.Ceil(0.001*float64(want)) / float64(want)
		}
		if e > limit {
			t.Errorf("%s: estimate %d, exact %d: error %.3f%% over %.1f%%", r.GroupValues[0], r.Estimate, want, 100*e, 100*limit)
		}
	}
	for _, sc := range scales {
		a := errs[sc.distinct]
		if a == nil || a.n != sc.groups {
			t.Fatalf("%d distinct: %v rows, want %d", sc.distinct, a, sc.groups)
		}
		t.Logf("distinct %9d: %2d rows, error mean %.3f%% max %.3f%%", sc.distinct, a.n, 100*a.sum/float64(a.n), 100*a.maxE)
	}
}
