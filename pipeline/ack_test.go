package pipeline_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/sinks"
)

// TestAckTrackerCommitsOnlyTheContiguousPrefix acks 5,000 batches in a
// random order and checks after every ack that Acked is the highest seq
// whose predecessors are all acked, with its position.
func TestAckTrackerCommitsOnlyTheContiguousPrefix(t *testing.T) {
	const n = 5000 // past the tracker's compaction threshold
	tr := pipeline.NewAckTracker[int64](-1)
	for seq := uint64(1); seq <= n; seq++ {
		tr.Issue(seq, int64(seq)*10)
	}
	order := rand.New(rand.NewPCG(1, 2)).Perm(n)
	acked := make([]bool, n+1)
	want := uint64(0)
	for _, k := range order {
		seq := uint64(k + 1)
		tr.Ack(seq)
		tr.Ack(seq) // repeated: ignored
		acked[seq] = true
		for want < n && acked[want+1] {
			want++
		}
		got, pos := tr.Acked()
		wantPos := int64(want) * 10
		if want == 0 {
			wantPos = -1
		}
		if got != want || pos != wantPos {
			t.Fatalf("after acking %d: Acked = %d at %d, want %d at %d", seq, got, pos, want, wantPos)
		}
		if tr.InFlight() != int(n-want) {
			t.Fatalf("InFlight %d, want %d", tr.InFlight(), n-want)
		}
	}
	tr.Ack(n + 1) // never issued: ignored
	if got, _ := tr.Acked(); got != n {
		t.Fatalf("Acked %d", got)
	}
	// Issuing goes on after everything was acked.
	tr.Issue(n+1, 1)
	tr.Ack(n + 1)
	if got, pos := tr.Acked(); got != n+1 || pos != 1 {
		t.Fatalf("Acked %d at %d", got, pos)
	}
}

func TestAckTrackerWaitAndMisuse(t *testing.T) {
	tr := pipeline.NewAckTracker(0)
	tr.Issue(1, 1)
	tr.Issue(2, 2)
	done := make(chan error, 1)
	go func() { done <- tr.Wait(context.Background()) }()
	tr.Ack(2)
	select {
	case <-done:
		t.Fatal("Wait returned with batch 1 not acked")
	case <-time.After(20 * time.Millisecond):
	}
	tr.Ack(1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr.Issue(3, 3)
	cancel()
	if err := tr.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a batch in flight and ctx done: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("issuing out of order did not panic")
		}
	}()
	tr.Issue(5, 5)
}

// ackLog records acks and, at the moment of each, how many times the sink
// had been flushed.
type ackLog struct {
	mu      sync.Mutex
	seqs    []uint64
	flushes []int
	sink    *flushCounter
}

func (a *ackLog) Ack(seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seqs = append(a.seqs, seq)
	a.flushes = append(a.flushes, a.sink.flushes())
}

// flushCounter is a discard sink whose Flush can be made to fail.
type flushCounter struct {
	*sinks.Discard
	mu   sync.Mutex
	n    int
	fail error
}

func (f *flushCounter) Flush(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return f.fail
}

func (f *flushCounter) flushes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// TestRunnerAcksOnlyAfterABarrier: batches are acknowledged only by a
// barrier that flushed the sink after they were handled; a failed flush
// acknowledges nothing, the next good barrier does; a batch whose record
// the DLQ refused is never acknowledged.
func TestRunnerAcksOnlyAfterABarrier(t *testing.T) {
	file, _ := openDLQ(t)
	d := &refusing{File: file}
	sink := &flushCounter{Discard: sinks.NewDiscard("d")}
	acks := &ackLog{sink: sink}
	r := pipeline.NewRunner(pipeline.RunnerOptions{
		Workers: 2, Stages: []pipeline.Stage{makeRecords{}, panicBatch{}}, Sinks: []pipeline.Sink{sink},
		DLQ: dlq.NewRecorder(d, dlq.RecorderOptions{}), FlushEvery: time.Hour, Logger: quiet(),
	})
	src := &pipeline.Origin{Kind: "file", Path: "mem.jsonl", Format: pipeline.FormatJSONL}
	handle := func(seq uint64, units ...string) {
		b := pipeline.GetBatch()
		b.Origin, b.Seq, b.Acker = src, seq, acks
		for i, u := range units {
			b.AddUnit([]byte(u), int64(i), int64(i+1), int64(len(u)), 0)
		}
		r.Handle(context.Background(), b)
	}
	handle(1, "a", "b")
	handle(2, "c")
	if len(acks.seqs) != 0 {
		t.Fatalf("acked %v before any barrier", acks.seqs)
	}
	sink.fail = errors.New("disk gone")
	if err := r.Barrier(context.Background()); err == nil || len(acks.seqs) != 0 {
		t.Fatalf("a failed flush: err %v, acked %v", err, acks.seqs)
	}
	sink.fail = nil
	if err := r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	slices.Sort(acks.seqs)
	if !slices.Equal(acks.seqs, []uint64{1, 2}) || acks.flushes[0] != 2 {
		t.Fatalf("acked %v after flushes %v, want 1 and 2 after the second flush", acks.seqs, acks.flushes)
	}
	// A batch whose failed record the DLQ refuses is never acked; one
	// handled beside it is.
	d.refuse = true
	handle(3, "d")
	handle(4, "explode") // a panic: its records go to the DLQ, which refuses them
	if err := r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if slices.Contains(acks.seqs, 4) || !slices.Contains(acks.seqs, 3) {
		t.Fatalf("acked %v: want 3 (delivered) and never 4 (its record lost)", acks.seqs)
	}
	if err := file.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// refusing is a real file DLQ that can be made to refuse entries (a DLQ
// that fails), while Sync still works.
type refusing struct {
	*dlq.File
	refuse bool
}

func (r *refusing) Put(ctx context.Context, e *dlq.Entry) error {
	if r.refuse {
		return errors.New("dlq refuses")
	}
	return r.File.Put(ctx, e)
}

// FuzzAckTracker acks issued batches in the order the input gives (with
// repeats and unknown seqs) and checks after every ack, against a plain
// model, that the tracker's committable position is that of the highest
// contiguous acked batch: never past a gap, never behind it.
func FuzzAckTracker(f *testing.F) {
	f.Add([]byte{3, 1, 2, 0})
	f.Add([]byte{0, 0, 0, 200, 5, 4, 3, 2, 1})
	f.Add([]byte{9, 7, 5, 3, 1, 8, 6, 4, 2, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		tr := pipeline.NewAckTracker[int64](-1)
		var issued uint64
		acked := map[uint64]bool{}
		for i, op := range ops {
			// Issue a batch every third op (position = 10 x seq), so
			// acks interleave with issues as they do in a run.
			if i%3 == 0 {
				issued++
				tr.Issue(issued, int64(10*issued))
			}
			seq := uint64(op) % (issued + 2) // sometimes 0 or past the last issued: ignored
			tr.Ack(seq)
			if seq >= 1 && seq <= issued {
				acked[seq] = true
			}
			var want uint64
			for acked[want+1] {
				want++
			}
			gotSeq, gotPos := tr.Acked()
			wantPos := int64(10 * want)
			if want == 0 {
				wantPos = -1
			}
			if gotSeq != want || gotPos != wantPos {
				t.Fatalf("after op %d (ack %d): Acked() = %d, %d; want %d, %d", i, seq, gotSeq, gotPos, want, wantPos)
			}
			if n := tr.InFlight(); n != int(issued-want) {
				t.Fatalf("InFlight %d, want %d", n, issued-want)
			}
		}
	})
}
