package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

var latIDRe = regexp.MustCompile(`"span_id":"([0-9a-f]{16})"`)

// BenchmarkRunLatency: a line appended to a followed file reaches the file
// sink's output how long after (the default settings: fsnotify, file sink
// written per batch). 1,000 lines, appended one at a time every 5ms;
// reports p50 and p99. A benchmark, not a test: nothing is asserted.
func BenchmarkRunLatency(b *testing.B) {
	bin, err := buildPipeline()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		dir := b.TempDir()
		cfg := filepath.Join(dir, "c.yaml")
		logs, out := filepath.Join(dir, "logs"), filepath.Join(dir, "records")
		if err := os.MkdirAll(logs, 0o755); err != nil {
			b.Fatal(err)
		}
		y := fmt.Sprintf("sinks: [{name: records, type: file, file: {dir: %q}}]\ndlq: {file: {dir: %q}}\nrun: {state_dir: %q}\ntelemetry: {enabled: false}\nsources: [{name: logs, type: file, file: {include: [%q]}}]\n",
			out, filepath.Join(dir, "dlq"), filepath.Join(dir, "state"), filepath.Join(logs, "*.jsonl"))
		if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
			b.Fatal(err)
		}
		f, err := os.OpenFile(filepath.Join(logs, "app.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		p := startRun(b, bin, cfg)
		time.Sleep(time.Second) // started, watching
		const n = 1000
		sent := make(map[string]time.Time, n)
		arrived := map[string]time.Duration{}
		done := make(chan struct{})
		go func() { // watch the sink's output
			defer close(done)
			deadline := time.Now().Add(60 * time.Second)
			for len(arrived) < n && time.Now().Before(deadline) {
				now := time.Now()
				des, _ := os.ReadDir(out)
				for _, de := range des {
					data, _ := os.ReadFile(filepath.Join(out, de.Name()))
					for _, m := range latIDRe.FindAllSubmatch(data, -1) {
						id := string(m[1])
						if _, ok := arrived[id]; ok {
							continue
						}
						if t, ok := sentAt(sent, id); ok {
							arrived[id] = now.Sub(t)
						}
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		for i := range n {
			id := fmt.Sprintf("%016x", 0xfeed0000+i)
			line := fmt.Sprintf(`{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":%q,"service.name":"lat","name":"x","time":"2026-01-01T00:00:00Z"}`+"\n", id)
			sentMu.Lock()
			sent[id] = time.Now()
			sentMu.Unlock()
			if _, err := f.Write([]byte(line)); err != nil {
				b.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		<-done
		f.Close()
		p.stop(b, syscall.SIGTERM)
		lat := make([]time.Duration, 0, len(arrived))
		for _, d := range arrived {
			lat = append(lat, d)
		}
		slices.Sort(lat)
		if len(lat) < n {
			b.Fatalf("%d of %d lines arrived", len(lat), n)
		}
		b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[n-1].Microseconds())/1000, "max-ms")
	}
}

var sentMu sync.Mutex

func sentAt(sent map[string]time.Time, id string) (time.Time, bool) {
	sentMu.Lock()
	defer sentMu.Unlock()
	t, ok := sent[id]
	return t, ok
}
