package stages_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/pipeline/stages"
	"github.com/tracepipe/tracepipe/sinks"
)

// genLines returns n generated good lines of format.
func genLines(t testing.TB, format string, n int64) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := gen.Generate(&buf, gen.Options{Format: format, Records: n, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
}

// hotPath wires parse, filter and the runner to a real sink, with the
// default retry policy as replay sets it, and a real DLQ.
func hotPath(t testing.TB, sink pipeline.Sink) (*pipeline.Runner, *dlq.File) {
	t.Helper()
	opts := parsers.DefaultOptions()
	if err := opts.Prepare(); err != nil {
		t.Fatal(err)
	}
	d, err := dlq.OpenFile(dlq.FileOptions{Dir: filepath.Join(t.TempDir(), "dlq")})
	if err != nil {
		t.Fatal(err)
	}
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers:  1,
		Stages:   []pipeline.Stage{parsers.NewStage(&opts), stages.NewFilter(nil, []string{"no-such-service"})},
		Sinks:    []pipeline.Sink{sink},
		Delivery: []pipeline.SinkDelivery{{Retry: defaultRetrier(t)}},
		DLQ:      dlq.NewRecorder(d, dlq.RecorderOptions{}),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return r, d
}

// TestHotPathAllocsPerRecord runs whole batches (get, fill,
// parse, filter, encode, write to a file, account, put back) and asserts
// zero allocations per batch in steady state, for each format.
func TestHotPathAllocsPerRecord(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops objects); make test runs this without -race")
	}
	for _, format := range []string{"jsonl", "otlp", "zipkin"} {
		t.Run(format, func(t *testing.T) {
			lines := genLines(t, format, 300)
			sink, err := sinks.NewFile(sinks.FileOptions{Dir: t.TempDir(), RotateBytes: 1 << 40})
			if err != nil {
				t.Fatal(err)
			}
			r, d := hotPath(t, sink)
			f, _ := pipeline.ParseFormat(format)
			src := &pipeline.Origin{Kind: "file", Path: "gen." + format, Format: f}
			ctx := context.Background()
			one := func() {
				b := pipeline.GetBatch()
				b.Origin = src
				for i, l := range lines {
					b.AddUnit(l, int64(i), int64(i+1), int64(len(l)), 0)
				}
				r.Handle(ctx, b)
			}
			for range 5 {
				one() // warm the pools
			}
			allocs := testing.AllocsPerRun(50, one)
			perRecord := allocs / float64(len(lines))
			t.Logf("%s: %.2f allocs per batch of %d units", format, allocs, len(lines))
			// sync.Pool may drop an object at a GC: allow a stray
			// allocation per batch, never one per record.
			if allocs > 1 || perRecord > 0.01 {
				t.Fatalf("%.2f allocs per batch of %d units", allocs, len(lines))
			}
			if err := sink.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if n := r.Accounting().DLQSentTotal(); n != 0 {
				t.Fatalf("%d good records went to the DLQ", n)
			}
			if err := r.Accounting().Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func BenchmarkHotPath(b *testing.B) {
	for _, format := range []string{"jsonl", "otlp", "zipkin"} {
		b.Run(format, func(b *testing.B) {
			lines := genLines(b, format, 1000)
			var size int64
			for _, l := range lines {
				size += int64(len(l)) + 1
			}
			r, d := hotPath(b, sinks.NewDiscard(""))
			f, _ := pipeline.ParseFormat(format)
			src := &pipeline.Origin{Kind: "file", Path: "gen", Format: f}
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				batch := pipeline.GetBatch()
				batch.Origin = src
				for i, l := range lines {
					batch.AddUnit(l, int64(i), int64(i+1), int64(len(l)), 0)
				}
				r.Handle(context.Background(), batch)
			}
			_ = d.Close(context.Background())
		})
	}
}

// defaultRetrier is the retry policy of the shipped config.
func defaultRetrier(t testing.TB) *pipeline.Retrier {
	t.Helper()
	cfg, err := config.Decode(config.Default, "default", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	r, err := pipeline.NewRetrier(cfg.Retry)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
