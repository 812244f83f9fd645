package windows_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/windows"
)

// discardRows is a windows sink that keeps nothing (benchmarks only).
type discardRows struct{}

func (discardRows) Name() string                                   { return "discard" }
func (discardRows) WriteRows(context.Context, []windows.Row) error { return nil }
func (discardRows) Flush(context.Context) error                    { return nil }
func (discardRows) Close() error                                   { return nil }

// defaultWindows is the shipped config's windows section (3 metrics).
func defaultWindows(t testing.TB) config.Windows {
	t.Helper()
	cfg, err := config.Decode(config.Default, "default", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Windows.Metrics) != 3 {
		t.Fatalf("the default config declares %d metrics, the benchmark assumes 3", len(cfg.Windows.Metrics))
	}
	return cfg.Windows
}

// parsedBatch returns a batch of n generated jsonl lines and a function
// that refills it (the units) as the reader would.
func genLines(t testing.TB, n int64) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := gen.Generate(&buf, gen.Options{Format: "jsonl", Records: n, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
}

func fill(b *pipeline.Batch, lines [][]byte, src *pipeline.Origin) {
	b.Origin = src
	for i, l := range lines {
		b.AddUnit(l, int64(i), int64(i+1), int64(len(l)), 0)
	}
}

func newParse(t testing.TB) *parsers.Stage {
	opts := parsers.DefaultOptions()
	if err := opts.Prepare(); err != nil {
		t.Fatal(err)
	}
	return parsers.NewStage(&opts)
}

// TestWindowAllocsPerRecord: once its (metric, group, window) partials
// exist, counting a batch allocates nothing.
func TestWindowAllocsPerRecord(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops objects); make test runs this without -race")
	}
	lines := genLines(t, 512)
	w, err := windows.New(windows.Options{Config: defaultWindows(t), Workers: 1, Sink: discardRows{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close(context.Background()) }()
	parse := newParse(t)
	src := &pipeline.Origin{Kind: "file", Path: "gen.jsonl", Format: pipeline.FormatJSONL}
	b := pipeline.GetBatch()
	fill(b, lines, src)
	parse.Process(context.Background(), b)
	ctx := context.Background()
	w.Process(ctx, b) // the partials now exist
	allocs := testing.AllocsPerRun(100, func() { w.Process(ctx, b) })
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch of %d records, want 0", allocs, len(b.Records))
	}
	if w.Stats.Counted.Load() == 0 {
		t.Fatal("nothing was counted: the benchmark data does not match the metrics")
	}
}

// windowAcks is a pipeline.WindowAcker that ignores its calls.
type windowAcks struct{}

func (windowAcks) Ack(uint64)       {}
func (windowAcks) WindowAck(uint64) {}

// TestWindowHoldAllocsPerBatch: a batch whose Acker is a WindowAcker
// takes a hold (pooled: in a run it goes back to the pool once its window
// row is durable); nothing more, and nothing per record. Here no window
// ever closes, so every Process takes a fresh hold: at most 1 allocation
// per batch of 512 records.
func TestWindowHoldAllocsPerBatch(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops objects); make test runs this without -race")
	}
	lines := genLines(t, 512)
	w, err := windows.New(windows.Options{Config: defaultWindows(t), Workers: 1, Sink: discardRows{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close(context.Background()) }()
	parse := newParse(t)
	src := &pipeline.Origin{Kind: "file", Path: "gen.jsonl", Format: pipeline.FormatJSONL}
	b := pipeline.GetBatch()
	fill(b, lines, src)
	parse.Process(context.Background(), b)
	ctx := context.Background()
	w.Process(ctx, b) // the partials now exist
	b.Acker = windowAcks{}
	allocs := testing.AllocsPerRun(100, func() { w.Process(ctx, b) })
	if allocs > 1 {
		t.Errorf("%.1f allocations per held batch of %d records, want at most 1 (its hold)", allocs, len(b.Records))
	}
	if n := w.Stats.Holds.Load(); n < 100 {
		t.Fatalf("%d holds: the batches were not held", n)
	}
}

// BenchmarkWindowStage runs parse alone and parse + the window stage with
// the default 3 metrics on the same generated lines, side by side; the
// window stage's cost is the difference (bench/README.md).
func BenchmarkWindowStage(b *testing.B) {
	lines := genLines(b, 2048)
	var size int64
	for _, l := range lines {
		size += int64(len(l)) + 1
	}
	src := &pipeline.Origin{Kind: "file", Path: "gen.jsonl", Format: pipeline.FormatJSONL}
	parse := newParse(b)
	w, err := windows.New(windows.Options{Config: defaultWindows(b), Workers: 1, Sink: discardRows{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = w.Close(context.Background()) }()
	ctx := context.Background()
	// The window stage alone, on one parsed batch counted again and again
	// (its partials exist: the steady state).
	b.Run("windows", func(b *testing.B) {
		batch := pipeline.GetBatch()
		fill(batch, lines, src)
		parse.Process(ctx, batch)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			w.Process(ctx, batch)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(lines)), "ns/record")
		pipeline.PutBatch(batch)
	})
	for _, withWindows := range []bool{false, true} {
		name := "parse"
		if withWindows {
			name = "parse+windows"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				batch := pipeline.GetBatch()
				fill(batch, lines, src)
				parse.Process(ctx, batch)
				if withWindows {
					w.Process(ctx, batch)
				}
				pipeline.PutBatch(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(lines)), "ns/record")
		})
	}
}
