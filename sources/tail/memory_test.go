//go:build !race

package tail

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
)

// TestMemoryBoundedUnderBackpressure: 100 files of 2 MiB each, and a
// consumer that takes a batch only every 2ms (a slow sink): the tail
// reads no faster than it is drained, and the heap stays within the
// batches in flight plus the framing buffers, not the 200 MiB on disk.
// (Under -race the detector's shadow memory makes the figure meaningless:
// make test runs this without it.)
func TestMemoryBoundedUnderBackpressure(t *testing.T) {
	dir := t.TempDir()
	body, _ := spanLines(2 << 20)
	for i := range 100 {
		appendFile(t, filepath.Join(dir, fmt.Sprintf("f%03d.jsonl", i)), body)
	}
	cfg := testCfg(filepath.Join(dir, "*.jsonl"))
	src, err := New("mem", cfg, Options{Origin: pipeline.Origin{Format: pipeline.FormatJSONL}, IDs: &pipeline.OriginIDs{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan *pipeline.Batch, 4)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak uint64
	var read int64
	want := int64(100 * len(body))
	deadline := time.Now().Add(2 * time.Minute)
	for n := 0; read < want; n++ {
		select {
		case b := <-out:
			read += int64(len(b.Buf)) + int64(len(b.Units)) // units without their newline
			time.Sleep(2 * time.Millisecond)
			b.Acker.Ack(b.Seq)
			pipeline.PutBatch(b)
		case <-time.After(time.Until(deadline)):
			t.Fatalf("read %d of %d bytes", read, want)
		}
		if n%16 == 0 {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
		}
	}
	cancel()
	<-done
	// Batches in flight (4 queued, 1 taken, 1 being filled) of 512 KiB,
	// 4 framing buffers of 1 MiB, per-file state: well under 64 MiB over
	// the start; the files hold 200 MiB.
	if grown := int64(peak) - int64(base.HeapInuse); grown > 64<<20 {
		t.Fatalf("heap grew by %d MiB reading %d MiB through a slow consumer", grown>>20, want>>20)
	}
	t.Logf("heap grew by at most %.1f MiB over %d MiB read", float64(int64(peak)-int64(base.HeapInuse))/(1<<20), want>>20)
}
