package tail

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/state"
	"github.com/tracepipe/tracepipe/pipeline"
)

// testCfg is a file source config with short intervals, so the tests run
// fast; nothing asserts how long anything takes.
func testCfg(include ...string) config.FileSource {
	t := true
	return config.FileSource{
		Include: include, StartAt: "beginning", ReadExisting: &t, Watch: "auto",
		ScanInterval: 50 * time.Millisecond, PollInterval: 10 * time.Millisecond,
		PartialLineTimeout: time.Hour, MaxOpenFiles: 64, CloseInactive: time.Hour,
		IdleTimeout: time.Hour, FingerprintBytes: 16,
	}
}

// collector stands in for the runner: it takes the source's batches,
// records every unit by content, and acks (as a durable barrier would)
// unless told to hold.
type collector struct {
	t  *testing.T
	mu sync.Mutex
	// count of each unit's content; units in order of arrival.
	seen  map[string]int
	order []string
	// per origin id: last seq, origin paths seen
	seq     map[int]uint64
	failed  []pipeline.SourceFailure
	done    map[int]int64
	idle    map[int]int
	batches map[int]int64
	hold    bool
	held    []*pipeline.Batch
	bad     []string
	// windowsOnly counts, per unit content, how often it came in a
	// WindowsOnly batch (seen counts those too).
	windowsOnly map[string]int
}

func newCollector(t *testing.T) *collector {
	return &collector{t: t, seen: map[string]int{}, seq: map[int]uint64{}, done: map[int]int64{}, idle: map[int]int{}, batches: map[int]int64{}, windowsOnly: map[string]int{}}
}

func (c *collector) events() pipeline.SourceEvents {
	return pipeline.SourceEvents{
		Failed: func(_ context.Context, f pipeline.SourceFailure) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.failed = append(c.failed, f)
		},
		OriginDone: func(id int, n int64) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if _, dup := c.done[id]; dup {
				c.bad = append(c.bad, fmt.Sprintf("origin %d done twice", id))
			}
			c.done[id] = n
		},
		Idle: func(id int, _ int64) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.idle[id]++
		},
	}
}

// take records b and acks it, or holds it.
func (c *collector) take(b *pipeline.Batch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := b.Origin.ID
	if b.Seq != c.seq[id]+1 {
		c.bad = append(c.bad, fmt.Sprintf("origin %d: batch %d after %d", id, b.Seq, c.seq[id]))
	}
	c.seq[id] = b.Seq
	c.batches[id]++
	if b.Origin.Kind != "file" || b.Origin.Format != pipeline.FormatJSONL || b.Acker == nil {
		c.bad = append(c.bad, fmt.Sprintf("origin %+v, acker %v", *b.Origin, b.Acker))
	}
	for i := range b.Units {
		s := string(b.UnitBytes(i))
		c.seen[s]++
		c.order = append(c.order, s)
		if b.WindowsOnly {
			c.windowsOnly[s]++
		}
	}
	if c.hold {
		c.held = append(c.held, b)
		return
	}
	ackBoth(b)
	pipeline.PutBatch(b)
}

func (c *collector) count(s string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[s]
}

func (c *collector) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.order)
}

// run is a Source running into a collector.
type run struct {
	t      *testing.T
	src    *Source
	c      *collector
	cancel context.CancelFunc
	done   chan error
}

// start runs a new Source over cfg.
func start(t *testing.T, cfg config.FileSource, c *collector, st *state.Dir, mod func(*Options)) *run {
	t.Helper()
	o := Options{
		Origin: pipeline.Origin{Format: pipeline.FormatJSONL}, IDs: &pipeline.OriginIDs{}, Events: c.events(),
		State: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&o)
	}
	src, err := New("test", cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan *pipeline.Batch, 4)
	r := &run{t: t, src: src, c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, out) }()
	go func() {
		for {
			select {
			case b := <-out:
				c.take(b)
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels Run and waits for it.
func (r *run) stop() {
	r.t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		r.t.Errorf("Run did not return after cancel")
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// bound (the tests are about what, never how fast).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// lines returns n distinct JSON lines tagged tag, each with its newline.
func lines(tag string, from, n int) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf(`{"f":%q,"i":%d,"pad":"%s"}`, tag, from+i, strings.Repeat("x", (from+i)%37))
	}
	return out
}

func joinLines(ls []string) []byte {
	if len(ls) == 0 {
		return nil
	}
	return []byte(strings.Join(ls, "\n") + "\n")
}

func appendFile(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitLines waits until every line of want has been delivered.
func (c *collector) waitLines(t *testing.T, want []string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d lines", len(want)), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, l := range want {
			if c.seen[l] == 0 {
				return false
			}
		}
		return true
	})
}

// exactlyOnce checks every line of want was delivered once and nothing
// else was.
func (c *collector) exactlyOnce(t *testing.T, want []string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.bad {
		t.Error(b)
	}
	wantSet := map[string]bool{}
	for _, l := range want {
		wantSet[l] = true
		if n := c.seen[l]; n != 1 {
			t.Errorf("line %s delivered %d times", l, n)
		}
	}
	var extra []string
	for l := range c.seen {
		if !wantSet[l] {
			extra = append(extra, l)
		}
	}
	sort.Strings(extra)
	for i, l := range extra {
		if i == 10 {
			t.Errorf("... %d more", len(extra)-10)
			break
		}
		t.Errorf("unexpected unit %q", l)
	}
}

// settle lets the source go through a few more scans and polls (counted,
// not timed), so that anything it would wrongly deliver (a re-read) has
// had its chance before the test checks.
func settle(r *run) {
	r.t.Helper()
	scans, polls := r.src.scans.Load(), r.src.polls.Load()
	waitFor(r.t, "3 more scans and 10 more polls", func() bool {
		return r.src.scans.Load() >= scans+3 && r.src.polls.Load() >= polls+10
	})
}

func mkdir(t *testing.T, parts ...string) string {
	t.Helper()
	d := filepath.Join(parts...)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// ackBoth acks b as the runner does when no window stage holds it: Ack,
// then WindowAck.
func ackBoth(b *pipeline.Batch) {
	b.Acker.Ack(b.Seq)
	if w, ok := b.Acker.(pipeline.WindowAcker); ok {
		w.WindowAck(b.Seq)
	}
}
