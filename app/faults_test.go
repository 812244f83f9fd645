package app

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// The fault-injection tests of this package: each checks what is really on
// disk (lines in the output files, entries in the DLQ) against the report,
// not only the report.

var spanIDRe = regexp.MustCompile(`"span_id":"([0-9a-f]+)"`)

// tmpfs mounts a size-limited tmpfs at a new directory and unmounts it at
// the end of the test: a real full disk. It needs root (CI runs as root);
// elsewhere the test is skipped, saying why.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount a %s tmpfs at %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// outputIDs reads every file the file sink left in dir and returns the
// span ids of its lines, failing on a line that is not whole JSON (a torn
// last line) and on a file that is not finished (*.part).
func outputIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, de := range entries {
		if strings.HasSuffix(de.Name(), ".part") {
			t.Errorf("unfinished output file %s left behind", de.Name())
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s ends in a partial line: %q", de.Name(), data[max(0, len(data)-80):])
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			m := spanIDRe.FindSubmatch(sc.Bytes())
			if m == nil || !bytes.HasSuffix(sc.Bytes(), []byte("}")) {
				t.Errorf("%s: line is not a whole record: %.120q", de.Name(), sc.Bytes())
				continue
			}
			ids[string(m[1])]++
		}
	}
	return ids
}

// countingHandler counts log records by level, to check that an error
// repeated for every record is logged once with a count.
type countingHandler struct {
	mu     sync.Mutex
	errors int
	msgs   map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Level >= slog.LevelError {
		h.errors++
		h.msgs[r.Message]++
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// TestDiskFullFileSink: the file sink's directory is a 2 MiB tmpfs and the
// input is 20,000 records (about 8 MB of output). The records that fit are
// in whole lines, the rest are in the DLQ naming the sink, none in both,
// none lost, and the report says exactly what is on disk.
func TestDiskFullFileSink(t *testing.T) {
	t.Parallel()
	full := tmpfs(t, "2m")
	in, out := t.TempDir(), t.TempDir()
	input := filepath.Join(in, "spans.jsonl")
	generate(t, input, "jsonl", 20000, false)

	cfg := testConfig(t, out, `
retry:
  initial: 5ms
  max_interval: 20ms
  max_elapsed: 200ms
`)
	cfg.Sinks[0].File.Dir = filepath.Join(full, "records")
	h := &countingHandler{msgs: map[string]int{}}
	rep, err := Run(context.Background(), cfg, Options{Paths: []string{input}, Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	got := outputIDs(t, cfg.Sinks[0].File.Dir)
	entries := readDLQ(t, filepath.Join(out, "dlq"))
	dead := map[string]int{}
	for _, e := range entries {
		m := spanIDRe.FindSubmatch(e.PayloadBytes())
		if m == nil {
			t.Fatalf("DLQ entry without a span id: %+v", e)
		}
		dead[string(m[1])]++
		// no_space, or breaker_open once the disk stayed full for
		// max_elapsed: either way the message says why.
		if e.Stage != "sink" || len(e.Sinks) != 1 || e.Sinks[0] != "records" ||
			(e.Error.Code != "no_space" && e.Error.Code != "breaker_open") || !strings.Contains(e.Error.Message, "no space left") {
			t.Fatalf("entry %s: stage %s, sinks %v, code %s, message %s", e.ID, e.Stage, e.Sinks, e.Error.Code, e.Error.Message)
		}
	}
	both := 0
	for id, n := range got {
		if n != 1 {
			t.Errorf("span %s is %d times in the output", id, n)
		}
		if dead[id] > 0 {
			both++
		}
	}
	t.Logf("report: %d in, %d out, %d dlq, %d lost; on disk: %d lines, %d entries; %d error log lines %v",
		rep.RecordsIn, rep.RecordsOut, rep.DLQ["total"], rep.DLQLost, len(got), len(entries), h.errors, h.msgs)
	if both > 0 {
		t.Errorf("%d records are both in the output and in the DLQ", both)
	}
	if rep.RecordsIn != 20000 || int64(len(got)) != rep.RecordsOut || int64(len(entries)) != rep.DLQ["total"] ||
		rep.RecordsOut+rep.DLQ["total"] != 20000 || rep.DLQLost != 0 || !rep.Reconciled {
		t.Errorf("the report does not say what is on disk: %+v", rep)
	}
	if len(got) == 0 || len(entries) == 0 {
		t.Errorf("the disk did not fill (%d out, %d dlq): the test tests nothing", len(got), len(entries))
	}
	if h.errors > 20 {
		t.Errorf("%d error log lines for one full disk: %v", h.errors, h.msgs)
	}
}

// TestDiskFullSinkAndDLQ: the sink and the DLQ share one full disk. What
// neither could store is counted LOST, the counts match the disk, no
// unfinished line is left, and the errors are logged with counts, not once
// per record.
func TestDiskFullSinkAndDLQ(t *testing.T) {
	t.Parallel()
	full := tmpfs(t, "2m")
	in := t.TempDir()
	input := filepath.Join(in, "spans.jsonl")
	generate(t, input, "jsonl", 20000, false)

	cfg := testConfig(t, full, `
retry:
  initial: 5ms
  max_interval: 20ms
  max_elapsed: 200ms
`)
	h := &countingHandler{msgs: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg, Options{Paths: []string{input}, Logger: slog.New(h)})
	t.Logf("run: %v", err)
	if rep == nil {
		t.Fatal("no report")
	}
	got := outputIDs(t, filepath.Join(full, "records"))
	entries := readDLQ(t, filepath.Join(full, "dlq"))
	t.Logf("report: %d in, %d out, %d dlq, %d lost, full %v; on disk: %d lines, %d entries; %d error log lines %v",
		rep.RecordsIn, rep.RecordsOut, rep.DLQ["total"], rep.DLQLost, rep.DLQFull, len(got), len(entries), h.errors, h.msgs)
	if int64(len(got)) != rep.RecordsOut || int64(len(entries)) != rep.DLQ["total"] {
		t.Errorf("the report does not say what is on disk: %d lines vs %d out, %d entries vs %d dlq",
			len(got), rep.RecordsOut, len(entries), rep.DLQ["total"])
	}
	if rep.RecordsIn != rep.RecordsOut+rep.DLQ["total"]+rep.DLQLost+rep.RecordsFiltered {
		t.Errorf("records unaccounted for: %+v", rep)
	}
	// A DLQ that cannot write stops the input, as a DLQ at its cap does:
	// what was not read is still in the input, not lost.
	if !rep.DLQFull || rep.RecordsIn >= 20000 || err == nil {
		t.Errorf("input did not stop when the DLQ failed (err %v): %+v", err, rep)
	}
	if h.errors > 40 {
		t.Errorf("%d error log lines for one full disk: %v", h.errors, h.msgs)
	}
}

// TestDLQReplayMemory: a DLQ replay of 100,000 entries (~70 MB of
// payload) keeps memory bounded by the batches in flight: the peak heap
// while it runs stays far below what holding the entries would take.
func TestDLQReplayMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("100,000 entries; measured without -race (make test runs it so)")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	const n = 100000
	for i := range n {
		fmt.Fprintf(w, `{"ts":"2026-01-01T00:%02d:%02dZ","tid":"%032x","span_id":"%016x","service.name":"cart","msg":"%s"}`+"\n",
			(i/60)%60, i%60, i+1, i+1, strings.Repeat("p", 560))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	// Every line is a log without a trace id (under "tid"), dead-lettered
	// by the one-value policy (logs are kept by default).
	before := testConfig(t, dir, "windows: {metrics: []}\nparse: {missing_trace_id: invalid}\n")
	if _, err := Run(context.Background(), before, Options{Paths: []string{in}, Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	after := testConfig(t, dir, "windows: {metrics: []}\nparse: {jsonl: {trace_id: [tid]}}\n")
	after.DLQ.KeepBytes = 4 << 10
	store, err := dlq.OpenFileStore(filepath.Join(dir, "dlq"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	rep, err := ReplayDLQ(context.Background(), after, store, DLQOptions{Logger: quietLogger()})
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("replayed %d, delivered %d, deleted %d; heap in use grew by at most %d MiB (payloads: %d MiB)",
		rep.Replayed, rep.Delivered, rep.Deleted, grew>>20, n*600>>20)
	if rep.Replayed != n || rep.Delivered != n || rep.Deleted != n {
		t.Fatalf("report %+v", rep)
	}
	if grew > 48<<20 {
		t.Fatalf("the heap grew by %d MiB during the replay: entries are held, not streamed", grew>>20)
	}
}
