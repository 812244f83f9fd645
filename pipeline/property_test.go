package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/sinks"
)

// chaos puts a real file sink behind random faults: each Write fails
// wholly (transient), takes a random part and reports the rest failed
// (transient or permanent), or delivers. What it reports failed never
// reached the file; what it reports taken did.
type chaos struct {
	*sinks.File
	mu  sync.Mutex
	rng *rand.Rand
}

func (c *chaos) Write(ctx context.Context, b *pipeline.Batch, recs []int32) error {
	c.mu.Lock()
	roll := c.rng.IntN(10)
	var take, fail []int32
	for _, i := range recs {
		if c.rng.IntN(3) == 0 {
			fail = append(fail, i)
		} else {
			take = append(take, i)
		}
	}
	c.mu.Unlock()
	switch {
	case roll < 2:
		return errConnRefused
	case roll < 5 && len(fail) > 0:
		if len(take) > 0 {
			if err := c.File.Write(ctx, b, take); err != nil {
				return err
			}
		}
		var err error = errConnRefused
		if roll == 4 {
			err = pipeline.Permanent(errors.New("413 record rejected"))
		}
		return &pipeline.PartialError{Failed: fail, Err: err}
	}
	return c.File.Write(ctx, b, recs)
}

// TestRunnerPropertyEveryRecordOnceInEachSinkOrItsEntry: three sinks with
// random whole, partial and permanent failures, many seeds. Afterwards,
// for every input record and every sink, the record is either in the
// sink's files exactly once or in exactly one DLQ entry that names that
// sink: never both, never neither, never twice; and the accounting holds.
func TestRunnerPropertyEveryRecordOnceInEachSinkOrItsEntry(t *testing.T) {
	t.Parallel()
	for seed := range uint64(12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			d, dlqDir := openDLQ(t)
			names := []string{"a", "b", "c"}
			var ss []pipeline.Sink
			var files []*sinks.File
			var dirs []string
			var deliveries []pipeline.SinkDelivery
			for i, n := range names {
				f, dir := fileSink(t, n)
				files, dirs = append(files, f), append(dirs, dir)
				ss = append(ss, &chaos{File: f, rng: rand.New(rand.NewPCG(seed, uint64(i)))})
				retry := fastRetry(t, func(c *config.Retry) {
					c.MaxAttempts = 1 + int(seed%4) // some seeds give up often
					c.MaxElapsed = 200e6
				})
				deliveries = append(deliveries, pipeline.SinkDelivery{Retry: retry, Queue: 1 + int(seed%3)})
			}
			r := pipeline.NewRunner(pipeline.RunnerOptions{
				Workers: 3, Stages: []pipeline.Stage{makeRecords{}}, Sinks: ss, Delivery: deliveries,
				DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), FlushEvery: 5e6, Logger: quiet(),
			})
			var batches [][]string
			const perBatch, nBatches = 17, 30
			for i := range nBatches {
				batches = append(batches, units(perBatch, i*perBatch))
			}
			feed(r, batches...)
			if err := d.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			// where[record][sink] counts the places the record is for the sink.
			where := map[string]map[string]int{}
			for i, n := range names {
				for _, l := range lines(t, files[i], dirs[i]) {
					var rec struct{ Name string }
					if err := json.Unmarshal([]byte(l), &rec); err != nil {
						t.Fatalf("sink %s: %v: %s", n, err, l)
					}
					if where[rec.Name] == nil {
						where[rec.Name] = map[string]int{}
					}
					where[rec.Name][n]++
				}
			}
			dead := 0
			for _, e := range entries(t, dlqDir) {
				dead++
				name := string(e.PayloadBytes())
				if e.Stage != "sink" || len(e.Sinks) == 0 {
					t.Fatalf("entry %+v: not a sink failure, or names no sink", e)
				}
				if where[name] == nil {
					where[name] = map[string]int{}
				}
				for _, s := range e.Sinks {
					where[name][s]++
				}
			}
			for _, u := range units(perBatch*nBatches, 0) {
				for _, n := range names {
					if c := where[u][n]; c != 1 {
						t.Fatalf("record %s is %d times in sink %s or its DLQ entries, want exactly 1 (%v)", u, c, n, where[u])
					}
				}
			}
			if err := r.Accounting().Check(); err != nil {
				t.Fatal(err)
			}
			t.Logf("seed %d: %d DLQ entries; sinks %+v", seed, dead, r.SinkStats())
		})
	}
}
