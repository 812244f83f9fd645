package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/sinks"
)

// makeRecords is a stage that turns every unit into one record named after
// the unit's text: enough of a parser to drive the runner.
type makeRecords struct{}

func (makeRecords) Name() string { return "make" }
func (makeRecords) Process(_ context.Context, b *pipeline.Batch) {
	for u := range b.Units {
		r := b.NewRecord(u)
		r.Signal = pipeline.SignalLog
		r.TraceID = b.CopyString("4bf92f3577b34da6a3ce929d0e0e4736")
		r.Name = b.Copy(b.UnitBytes(u))
	}
}

// panicOn panics on records named "boom", inside the per-record guard.
type panicOn struct{}

func (panicOn) Name() string { return "panic-on" }
func (p panicOn) Process(_ context.Context, b *pipeline.Batch) {
	for i := range b.Records {
		p.one(&b.Records[i])
	}
}
func (p panicOn) one(r *pipeline.Record) {
	defer pipeline.RecoverRecord(p.Name(), r)
	if string(r.Name) == "boom" {
		var m map[string]int
		m["nil map"]++ // a real runtime panic
	}
}

// panicBatch panics outside any guard when a batch holds "explode".
type panicBatch struct{}

func (panicBatch) Name() string { return "panic-batch" }
func (panicBatch) Process(_ context.Context, b *pipeline.Batch) {
	for i := range b.Records {
		if string(b.Records[i].Name) == "explode" {
			panic("whole batch")
		}
	}
}

func openDLQ(t *testing.T) (*dlq.File, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dlq")
	d, err := dlq.OpenFile(dlq.FileOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return d, dir
}

func entries(t *testing.T, dir string) []dlq.Entry {
	t.Helper()
	var out []dlq.Entry
	if err := dlq.Scan(dir, func(e *dlq.Entry, _ dlq.Position) error { out = append(out, *e); return nil }, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func feed(r *pipeline.Runner, batches ...[]string) {
	ch := make(chan *pipeline.Batch, len(batches))
	src := &pipeline.Origin{Kind: "file", Path: "mem.jsonl", Format: pipeline.FormatJSONL}
	for _, units := range batches {
		b := pipeline.GetBatch()
		b.Origin = src
		for i, u := range units {
			b.AddUnit([]byte(u), int64(i*10), int64(i+1), int64(len(u)), 0)
		}
		ch <- b
	}
	close(ch)
	r.Run(context.Background(), ch)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestPanicsBecomeDLQEntriesAndWorkersLiveOn(t *testing.T) {
	d, dir := openDLQ(t)
	out := filepath.Join(t.TempDir(), "out")
	sink, err := sinks.NewFile(sinks.FileOptions{Dir: out})
	if err != nil {
		t.Fatal(err)
	}
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 1, // one worker: it must survive both panics to finish
		Stages:  []pipeline.Stage{makeRecords{}, panicOn{}, panicBatch{}},
		Sinks:   []pipeline.Sink{sink},
		DLQ:     dlq.NewRecorder(d, dlq.RecorderOptions{}),
		Logger:  quiet(),
	})
	feed(r, []string{"a", "boom", "b"}, []string{"c", "explode"}, []string{"d", "e"})
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	acct := r.Accounting()
	if err := acct.Check(); err != nil {
		t.Fatal(err)
	}
	if in, outN := acct.RecordsIn.Load(), acct.RecordsOut.Load(); in != 7 || outN != 4 {
		t.Fatalf("in %d out %d, want 7 and 4 (a, b, d, e)", in, outN)
	}
	es := entries(t, dir)
	if len(es) != 3 {
		t.Fatalf("%d DLQ entries, want 3 (boom, and c+explode failed with their batch)", len(es))
	}
	for _, e := range es {
		if e.Error.Class != "panic" || !strings.Contains(e.Error.Message, "goroutine") {
			t.Errorf("entry %s: class %s, message without a stack: %.80q", e.Payload, e.Error.Class, e.Error.Message)
		}
		if e.Source.Path != "mem.jsonl" || e.Source.Line == 0 {
			t.Errorf("entry %s: source %+v", e.Payload, e.Source)
		}
	}
	if d.Stats().Written["panic"] != 3 {
		t.Fatalf("stats %+v", d.Stats())
	}
}

func TestOneBrokenSinkDoesNotKeepRecordsFromTheOther(t *testing.T) {
	d, dir := openDLQ(t)
	base := t.TempDir()
	good, err := sinks.NewFile(sinks.FileOptions{Name: "good", Dir: filepath.Join(base, "good")})
	if err != nil {
		t.Fatal(err)
	}
	brokenDir := filepath.Join(base, "broken")
	broken, err := sinks.NewFile(sinks.FileOptions{Name: "broken", Dir: brokenDir})
	if err != nil {
		t.Fatal(err)
	}
	// Break the sink for real: its folder becomes a file, so it cannot
	// create its output.
	if err := os.RemoveAll(brokenDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(brokenDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 2,
		Stages:  []pipeline.Stage{makeRecords{}},
		Sinks:   []pipeline.Sink{broken, good},
		DLQ:     dlq.NewRecorder(d, dlq.RecorderOptions{}),
		Logger:  quiet(),
	})
	feed(r, []string{"a", "b"}, []string{"c"})
	_ = broken.Close(context.Background())
	if err := good.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(base, "good", "*.jsonl"))
	var lines int
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines += strings.Count(string(data), "\n")
	}
	if lines != 3 {
		t.Fatalf("good sink got %d records, want 3", lines)
	}
	es := entries(t, dir)
	if len(es) != 3 {
		t.Fatalf("%d DLQ entries, want 3", len(es))
	}
	for _, e := range es {
		// The file sink does not recover from a failed write: permanent.
		if e.Error.Class != "sink_permanent" || e.Component != "broken" || e.Stage != "sink" {
			t.Errorf("entry %+v", e)
		}
	}
	if err := r.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
}

// seen counts the batches a stage is given.
type seen struct{ n atomic.Int64 }

func (*seen) Name() string                                   { return "seen" }
func (s *seen) Process(_ context.Context, _ *pipeline.Batch) { s.n.Add(1) }

// TestStagesAfterAPanicStillSeeTheBatch: a stage that panics fails its
// batch, and the stages after it still get the batch (the window stage
// must see every batch of a source, or its watermark waits for it).
func TestStagesAfterAPanicStillSeeTheBatch(t *testing.T) {
	d, dir := openDLQ(t)
	after := &seen{}
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 2, Stages: []pipeline.Stage{makeRecords{}, panicBatch{}, after},
		Sinks: []pipeline.Sink{sinks.NewDiscard("d")}, DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), Logger: quiet(),
	})
	feed(r, []string{"a", "b"}, []string{"explode", "c"}, []string{"d"})
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := after.n.Load(); n != 3 {
		t.Fatalf("the stage after the panicking one saw %d of 3 batches", n)
	}
	if es := entries(t, dir); len(es) != 2 || es[0].Error.Class != "panic" {
		t.Fatalf("entries %+v, want the 2 units of the exploded batch as panic", es)
	}
}
