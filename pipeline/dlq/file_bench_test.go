package dlq

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchEntry is a typical entry: a ~250-byte JSON line that failed to parse.
func benchEntry() *Entry {
	e := testEntry(1, "malformed")
	e.ID = NewID(e.Time)
	e.Version = SchemaVersion
	return e
}

// reportRate adds entries/s over the whole run, Close (drain and sync) included.
func reportRate(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkFilePut measures Put from one goroutine through to the durable
// write at Close.
func BenchmarkFilePut(b *testing.B) {
	f, err := OpenFile(FileOptions{Dir: b.TempDir(), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	e := benchEntry()
	line, _ := encodeItem(e)
	b.SetBytes(int64(len(line.line)))
	ctx := context.Background()
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if err := f.Put(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(ctx); err != nil {
		b.Fatal(err)
	}
	reportRate(b, start)
	if st := f.Stats(); st.Total != int64(b.N) {
		b.Fatalf("wrote %d of %d", st.Total, b.N)
	}
}

// BenchmarkFilePutParallel measures Put from GOMAXPROCS goroutines.
func BenchmarkFilePutParallel(b *testing.B) {
	f, err := OpenFile(FileOptions{Dir: b.TempDir(), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	line, _ := encodeItem(benchEntry())
	b.SetBytes(int64(len(line.line)))
	ctx := context.Background()
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		e := benchEntry()
		for pb.Next() {
			if err := f.Put(ctx, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := f.Close(ctx); err != nil {
		b.Fatal(err)
	}
	reportRate(b, start)
}

// BenchmarkBaselineMarshalWrite is the naive baseline: json.Marshal and one
// unbuffered write per entry, from the caller, no checksum, sync at the end.
func BenchmarkBaselineMarshalWrite(b *testing.B) {
	fh, err := os.OpenFile(filepath.Join(b.TempDir(), "baseline.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	e := benchEntry()
	js, _ := json.Marshal(e)
	b.SetBytes(int64(len(js) + 1))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		js, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := fh.Write(append(js, '\n')); err != nil {
			b.Fatal(err)
		}
	}
	if err := fh.Sync(); err != nil {
		b.Fatal(err)
	}
	fh.Close()
	reportRate(b, start)
}

// BenchmarkScan measures reading entries back.
func BenchmarkScan(b *testing.B) {
	dir := b.TempDir()
	f, err := OpenFile(FileOptions{Dir: dir, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	const n = 10_000
	e := benchEntry()
	for range n {
		f.Put(context.Background(), e)
	}
	f.Close(context.Background())
	b.SetBytes(f.Stats().Bytes)
	b.ReportAllocs()
	for b.Loop() {
		got := 0
		Scan(dir, func(*Entry, Position) error { got++; return nil }, nil)
		if got != n {
			b.Fatalf("scanned %d of %d", got, n)
		}
	}
}
