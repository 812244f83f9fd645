package tail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/state"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sources/file"
)

// spanLines returns about size bytes of ~600-byte JSON span lines (the
// shape of sources/file's benchmarks) and how many lines.
func spanLines(size int) ([]byte, int) {
	var buf bytes.Buffer
	buf.Grow(size + 1024)
	n := 0
	for i := 0; buf.Len() < size; i++ {
		fmt.Fprintf(&buf, `{"traceId":"%032x","spanId":"%016x","name":"GET /api/v1/orders/{id}","kind":"SPAN_KIND_SERVER",`+
			`"startTimeUnixNano":"%d","endTimeUnixNano":"%d","service":"checkout-%d","attributes":{"http.method":"GET",`+
			`"http.route":"/api/v1/orders/{id}","http.status_code":200,"user.id":"user-%06d","pad":"%s"}}`+"\n",
			i*7919, i*104729, 1700000000000000000+int64(i)*1000, 1700000000000500000+int64(i)*1000, i%17, i%100000,
			strings.Repeat("x", 200+i%200))
		n++
	}
	return buf.Bytes(), n
}

// BenchmarkCatchUp reads one large line-framed file through the tail (from
// its start, as a file found with start_at: beginning) and through the
// replay reader (one reader goroutine), in the same run: MB/s of each.
func BenchmarkCatchUp(b *testing.B) {
	size := 256 << 20
	if s := os.Getenv("TAIL_BENCH_MB"); s != "" {
		fmt.Sscan(s, &size)
		size <<= 20
	}
	data, n := spanLines(size)
	dir := b.TempDir()
	path := filepath.Join(dir, "spans.log")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	drain := func(out chan *pipeline.Batch, want int, done chan<- struct{}) {
		got := 0
		for bt := range out {
			got += len(bt.Units)
			if bt.Acker != nil {
				ackBoth(bt)
			}
			pipeline.PutBatch(bt)
			if got == want {
				close(done)
			}
		}
	}
	b.Run("tail", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			cfg := testCfg(filepath.Join(dir, "*.log"))
			src, err := New("bench", cfg, Options{
				Origin: pipeline.Origin{Format: pipeline.FormatJSONL}, IDs: &pipeline.OriginIDs{},
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			out := make(chan *pipeline.Batch, 8)
			done := make(chan struct{})
			go drain(out, n, done)
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error)
			go func() { ran <- src.Run(ctx, out) }()
			<-done
			cancel()
			<-ran
			close(out)
		}
	})
	b.Run("replay", func(b *testing.B) {
		o := file.DefaultOptions()
		o.Format = pipeline.FormatJSONL
		o.Concurrency = 1
		rd, err := file.NewReader(o)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			out := make(chan *pipeline.Batch, 8)
			done := make(chan struct{})
			go drain(out, n, done)
			rd.Run(context.Background(), []file.File{{Path: path, Size: int64(len(data))}}, out, nil)
			<-done
			close(out)
		}
	})
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdle follows 1,000 files that do not grow, at the default
// intervals (poll 250ms, scan 10s), and reports the CPU the process uses
// per second of wall time (cpu-%) and the change in live heap after a GC
// (heap-KiB) over the ops (2 s each). Nothing is asserted.
func BenchmarkIdle(b *testing.B) {
	for _, watch := range []string{"auto", "poll"} {
		b.Run(watch, func(b *testing.B) {
			dir := b.TempDir()
			const files = 1000
			for i := range files {
				sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%20))
				os.MkdirAll(sub, 0o755)
				os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d.log", i)), []byte(`{"i":`+fmt.Sprint(i)+`,"pad":"0123456789abcdef"}`+"\n"), 0o644)
			}
			cfg := testCfg(filepath.Join(dir, "**", "*.log"))
			cfg.Watch = watch
			cfg.ScanInterval, cfg.PollInterval = 10*time.Second, 250*time.Millisecond
			cfg.MaxOpenFiles = 1024
			src, err := New("idle", cfg, Options{
				Origin: pipeline.Origin{Format: pipeline.FormatJSONL}, IDs: &pipeline.OriginIDs{},
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			out := make(chan *pipeline.Batch, 64)
			got := make(chan struct{})
			go func() {
				n := 0
				for bt := range out {
					n += len(bt.Units)
					ackBoth(bt)
					pipeline.PutBatch(bt)
					if n == files {
						close(got)
					}
				}
			}()
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error)
			go func() { ran <- src.Run(ctx, out) }()
			<-got
			time.Sleep(time.Second) // past the first reads
			runtime.GC()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			c0, w0 := cpuTime(), time.Now()
			b.ResetTimer()
			for b.Loop() {
				time.Sleep(2 * time.Second)
			}
			b.StopTimer()
			c1, w1 := cpuTime(), time.Now()
			runtime.GC()
			runtime.ReadMemStats(&m1)
			b.ReportMetric(100*float64(c1-c0)/float64(w1.Sub(w0)), "cpu-%")
			b.ReportMetric(float64(int64(m1.HeapInuse)-int64(m0.HeapInuse))/1024, "heap-KiB")
			b.ReportMetric(float64(src.FilesOpen()), "open")
			cancel()
			<-ran
			close(out)
		})
	}
}

// BenchmarkLatency appends lines one at a time to a followed file (1,000
// with notifications, 40 polling), each once the previous came out, at the
// default intervals, and reports how long each took to come out of Run
// (p50-ms, p99-ms). Nothing is asserted.
func BenchmarkLatency(b *testing.B) {
	for _, watch := range []string{"auto", "poll"} {
		b.Run(watch, func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, "app.log")
			os.WriteFile(path, []byte(`{"start":"0123456789abcdef"}`+"\n"), 0o644)
			cfg := testCfg(filepath.Join(dir, "*.log"))
			cfg.Watch = watch
			cfg.ScanInterval, cfg.PollInterval = 10*time.Second, 250*time.Millisecond
			src, err := New("lat", cfg, Options{
				Origin: pipeline.Origin{Format: pipeline.FormatJSONL}, IDs: &pipeline.OriginIDs{},
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			out := make(chan *pipeline.Batch, 64)
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error)
			go func() { ran <- src.Run(ctx, out) }()
			bt := <-out // the first line
			ackBoth(bt)
			pipeline.PutBatch(bt)
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			for b.Loop() {
				lat = lat[:0]
				n := 1000
				if watch == "poll" {
					n = 40 // each waits for a poll: ~poll_interval apiece
				}
				for i := range n {
					t0 := time.Now()
					fmt.Fprintf(f, `{"i":%d,"pad":"0123456789"}`+"\n", i)
					bt := <-out
					lat = append(lat, time.Since(t0))
					ackBoth(bt)
					pipeline.PutBatch(bt)
				}
			}
			f.Close()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			cancel()
			<-ran
		})
	}
}

// BenchmarkCommit is the cost of one checkpoint of 100 followed files that
// all moved since the previous one (so every commit writes): the positions
// encoded, written, fsynced, renamed, the folder fsynced. At the default
// checkpoint_every (5s) a source pays it once per 5s.
func BenchmarkCommit(b *testing.B) {
	st, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var p positions
	for i := range 100 {
		p.Files = append(p.Files, position{FP: strings.Repeat("ab", fpSize), FPLen: 1024, Dev: 2049, Ino: uint64(1000 + i),
			Path: fmt.Sprintf("/var/log/app/service-%03d.log", i), Offset: 1 << 30, Line: 1 << 20})
	}
	p.Released = []position{}
	for b.Loop() {
		for i := range p.Files {
			p.Files[i].Offset++
		}
		if err := st.Save("bench", Kind, p); err != nil {
			b.Fatal(err)
		}
	}
}
