// Package windows counts distinct values per event-time window with
// HyperLogLog: the window stage (per-worker partial sketches, no locks per
// record), the watermark and the closer that merges partials into
// axiomhq/hyperloglog sketches and writes one row per (metric, group,
// window) to a windows sink; and the stores and query that merge rows
// back. See docs/ARCHITECTURE.md (Windows).
package windows

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline"
)

// Late policies (windows.late_policy).
const (
	lateDLQ = iota
	lateDrop
	lateUpdate
)

// Options wire a window stage.
type Options struct {
	Config config.Windows
	// Workers is how many batches may be in the stage at once (the
	// runner's workers): one shard of partial sketches each.
	Workers int
	Sink    RowWriter
	// RowsFailed receives rows the sink refused, with its error; it must
	// keep them (the DLQ). Called from the closer goroutine.
	RowsFailed func(ctx context.Context, rows []Row, err error)
	Logger     *slog.Logger
	// Now is the wall clock max_future is judged against; nil means
	// time.Now (tests set it).
	Now func() time.Time
}

// Windows is the window stage (a pipeline.Stage) and its closer.
type Windows struct {
	o        Options
	c        *compiled
	size     int64 // ns
	lateness int64 // ns
	keep     int64 // closed windows kept for corrections (update)
	late     int
	p        uint8
	arena    *arena
	seed     maphash.Seed

	shards chan *shard
	all    []*shard

	maxEvent     atomic.Int64 // highest event time seen; MinInt64 = none
	closedBefore atomic.Int64 // windows numbered below this are closed
	evictBefore  atomic.Int64 // under update: closed windows below this are gone
	latePending  atomic.Bool  // late records wait in partials of closed windows

	maxFuture int64 // ns; 0: no limit
	maxMemory int64 // bytes; 0: no budget
	internCap int   // values a shard's intern table holds before it is cleared
	// openBytes is the estimated size of every shard's groups (see
	// memory.go), updated by the workers as groups are made and partials
	// grow, and by the closer as it takes them.
	openBytes atomic.Int64
	// keptBytes is the estimated size of the closed rows kept for
	// corrections; written by the closer only.
	keptBytes atomic.Int64
	// fullWin: new groups of windows up to this one count into __overflow__
	// (a window alone is over max_memory); MinInt64 = none. Set by the
	// closer.
	fullWin atomic.Int64

	srcMu    sync.Mutex
	sources  map[int]*source    // sources not finished, by Source.ID
	openWins map[int64]struct{} // windows holding counts, not yet closed

	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	groupPool []sync.Pool // per group set: groups are made by workers, freed by the closer

	// Owned by the closer.
	closed    map[int64]map[rowKey]*closedRow // retained for corrections
	keptByWin map[int64]int64                 // estimated bytes of closed's rows, per window
	settle    chan chan struct{}              // tests: run a cycle now and say when it is done
	releasing []hold                          // holds taken by collect, released once their rows are durable

	Stats Stats
}

// rowKey names a row within a window.
type rowKey struct {
	metric int
	group  string // values joined by \x00
}

// closedRow is a closed window's row, kept under late_policy update so
// that late records can correct it.
type closedRow struct {
	values   []string
	sk       *hyperloglog.Sketch
	records  int64
	revision int
	bytes    int64 // estimated size, counted in keptBytes
}

// New builds the window stage and starts its closer. Close it after the
// last batch.
func New(o Options) (*Windows, error) {
	cfg := o.Config
	if len(cfg.Metrics) == 0 {
		return nil, fmt.Errorf("windows: no metrics configured")
	}
	if o.Sink == nil {
		return nil, fmt.Errorf("windows: no sink")
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w := &Windows{
		o:        o,
		c:        compile(cfg.Metrics),
		size:     int64(cfg.Size),
		lateness: int64(cfg.AllowedLateness),
		p:        uint8(cfg.Precision),
		seed:     maphash.MakeSeed(),
		shards:   make(chan *shard, o.Workers),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		closed:   map[int64]map[rowKey]*closedRow{},
		sources:  map[int]*source{},
		openWins: map[int64]struct{}{},

		keptByWin: map[int64]int64{},
		settle:    make(chan chan struct{}),
		maxFuture: int64(cfg.MaxFuture),
		maxMemory: int64(cfg.MaxMemory),
	}
	if w.o.Now == nil {
		w.o.Now = time.Now
	}
	w.internCap = internCap(w.maxMemory, o.Workers)
	if w.size <= 0 || w.p < 4 || w.p > 18 {
		return nil, fmt.Errorf("windows: invalid size %s or precision %d", cfg.Size, cfg.Precision)
	}
	switch cfg.LatePolicy {
	case "dlq":
		w.late = lateDLQ
	case "drop":
		w.late = lateDrop
	default:
		w.late = lateUpdate
		w.keep = (int64(cfg.KeepClosedFor) + w.size - 1) / w.size
	}
	w.arena = newArena(w.p)
	w.groupPool = make([]sync.Pool, len(w.c.sets))
	for range o.Workers {
		s := w.newShard()
		w.all = append(w.all, s)
		w.shards <- s
	}
	w.maxEvent.Store(math.MinInt64)
	w.closedBefore.Store(math.MinInt64)
	w.evictBefore.Store(math.MinInt64)
	w.fullWin.Store(math.MinInt64)
	go w.closer()
	return w, nil
}

// Name implements pipeline.Stage.
func (w *Windows) Name() string { return "window" }

// source is the watermark state of one input (a file; a partition). The
// watermark of the stage is the lowest of its sources', so that a source
// read slower than another, or later, does not find its windows closed.
//
// A source's batches may finish the window stage in any order (workers
// run them side by side). When they are numbered (Batch.Seq 1, 2, 3... in
// read order), max covers only the batches of the contiguous prefix done
// so far: batch n's event times count once batches 1..n are all through.
// So on time-ordered input the watermark never passes a record that a
// batch still in flight holds, and what is late does not depend on which
// worker finished first. The maxima of batches done ahead of a gap wait in
// held until it fills: at most as many as there are batches in flight.
// Unnumbered batches (Seq 0) count at once, as they finish.
type source struct {
	max       int64            // highest event time over the batches counted; MinInt64 = none yet
	pending   bool             // expected (ExpectSources) but no batch seen yet
	inflight  int              // batches in Process now
	processed int64            // batches done
	total     int64            // batches the source sent, once known (SourceDone); -1 before
	next      uint64           // numbered batches: the lowest Seq not yet counted
	held      map[uint64]int64 // numbered batches done past a gap: Seq -> their highest event time
	idleAfter int64            // SourceIdle: idle once this many batches are done; -1 = not idle
}

// idle reports whether the source said it is idle and every batch it
// sent before is through.
func (st *source) idle() bool {
	return st.idleAfter >= 0 && st.processed >= st.idleAfter && st.inflight == 0 && len(st.held) == 0
}

// ExpectSources registers sources before their first batch: each holds
// every window open until its records start coming (a replay knows its
// files up front). Call it before the first batch.
func (w *Windows) ExpectSources(ids ...int) {
	w.srcMu.Lock()
	defer w.srcMu.Unlock()
	for _, id := range ids {
		if w.sources[id] == nil {
			w.sources[id] = &source{max: math.MinInt64, pending: true, total: -1, next: 1, idleAfter: -1}
		}
	}
}

// SourceDone says source id sent its last batch, batches in all: once
// they are through, it holds no window open any more.
func (w *Windows) SourceDone(id int, batches int64) {
	w.srcMu.Lock()
	if st := w.sources[id]; st != nil {
		st.total = batches
		if st.processed >= batches && st.inflight == 0 {
			delete(w.sources, id)
		}
	}
	w.srcMu.Unlock()
	w.poke()
}

// SourceIdle says source id has nothing to read for now (a followed file
// at its end for idle_timeout) after sending batches in all: once those
// are through, it no longer holds the watermark back, so a quiet file does
// not keep every window open. Its next batch makes it count again; its
// records may then be late, as with any source that was idle.
func (w *Windows) SourceIdle(id int, batches int64) {
	w.srcMu.Lock()
	if st := w.sources[id]; st != nil {
		st.idleAfter = batches
	}
	w.srcMu.Unlock()
	w.poke()
}

func (w *Windows) sourceStart(id int) {
	w.srcMu.Lock()
	st := w.sources[id]
	if st == nil {
		st = &source{max: math.MinInt64, total: -1, next: 1, idleAfter: -1}
		w.sources[id] = st
	}
	st.pending = false
	st.idleAfter = -1
	st.inflight++
	w.srcMu.Unlock()
}

// sourceEnd says a batch of source id, numbered seq (0: unnumbered), went
// through; maxT is its highest event time counted (MinInt64: none).
func (w *Windows) sourceEnd(id int, seq uint64, maxT int64) {
	w.srcMu.Lock()
	if st := w.sources[id]; st != nil {
		st.inflight--
		st.processed++
		st.done(seq, maxT)
		if st.total >= 0 && st.processed >= st.total && st.inflight == 0 {
			delete(w.sources, id)
		}
	}
	w.srcMu.Unlock()
	if maxT != math.MinInt64 {
		for cur := w.maxEvent.Load(); maxT > cur && !w.maxEvent.CompareAndSwap(cur, maxT); cur = w.maxEvent.Load() {
		}
	}
	w.poke()
}

// done counts batch seq's highest event time into the source's maximum
// once every batch numbered before it is done.
func (st *source) done(seq uint64, maxT int64) {
	switch {
	case seq == 0 || seq < st.next: // unnumbered (or a number seen twice: never from a reader)
		st.max = max(st.max, maxT)
	case seq > st.next:
		if st.held == nil {
			st.held = map[uint64]int64{}
		}
		st.held[seq] = maxT
	default:
		st.max = max(st.max, maxT)
		st.next++
		for {
			m, ok := st.held[st.next]
			if !ok {
				break
			}
			delete(st.held, st.next)
			st.max = max(st.max, m)
			st.next++
		}
	}
}

// poke wakes the closer to look at the watermark.
func (w *Windows) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// watermark is the lowest watermark of the unfinished, not idle sources (max event
// time - allowed lateness), or the highest event time's when none is
// left. ok is false while a source has not shown an event time yet (it
// holds every window open) and before any event time.
func (w *Windows) watermark() (wm int64, ok bool) {
	w.srcMu.Lock()
	defer w.srcMu.Unlock()
	wm = math.MaxInt64
	counted := 0
	for _, st := range w.sources {
		if st.idle() {
			continue
		}
		if st.max == math.MinInt64 {
			return 0, false
		}
		wm = min(wm, st.max-w.lateness)
		counted++
	}
	if counted == 0 {
		m := w.maxEvent.Load()
		if m == math.MinInt64 {
			return 0, false
		}
		wm = m - w.lateness
	}
	return wm, true
}

// noteWindow records that a shard holds counts of window win.
func (w *Windows) noteWindow(win int64) {
	w.srcMu.Lock()
	w.openWins[win] = struct{}{}
	w.srcMu.Unlock()
}

// floorDiv is the window number of event time t.
func (w *Windows) window(t int64) int64 {
	q := t / w.size
	if t%w.size < 0 {
		q--
	}
	return q
}

func (w *Windows) start(win int64) time.Time { return time.Unix(0, win*w.size).UTC() }

// shard is one worker's partial sketches. A batch holds one shard for its
// whole pass (taken from Windows.shards); the closer locks each in turn to
// take the partials of closed windows.
type shard struct {
	mu     sync.Mutex
	groups map[partKey]*group
	count  map[setWindow]int   // groups per (set, window), for max_groups
	cache  [][cacheWays]*group // per set: the groups found last, checked before hashing
	next   []uint8             // per set: the cache way to replace next
	attrs  [][]byte
	vals   [][]byte
	h      maphash.Hash
	intern map[string]string
	wins   map[int64]struct{} // windows this shard told the stage it holds
	closed int64              // closedBefore as read for the batch in hand
	// winBytes is the estimated size of this shard's groups per window
	// (see memory.go): the closer reads it to pick windows to close early.
	winBytes    map[int64]int64
	internBytes int64 // estimated size of intern
	// holds are the window acks of the batches that counted into this
	// shard's partials, in the order the batches went through, until
	// collect takes the partials of all their windows (see hold).
	holds []hold
}

// hold is the window ack a batch waits for (see pipeline.WindowAcker):
// it counted records into windows lo..hi of one shard (late ones too,
// under late_policy update), so once a collect of that shard has taken
// the windows up to hi, every count of the batch is in rows of that cycle
// or earlier ones; when they are written and flushed, the hold is
// released. A batch counts into one shard only (it holds it for its whole
// pass), and registers its hold before giving the shard back, so the
// shard's collect sees the hold exactly when it sees its counts: no
// generation number is needed. dead: rows holding some of its counts were
// refused (or not flushed): it is dropped, never released.
type hold struct {
	h      *pipeline.WindowHold
	lo, hi int64
	dead   bool
}

type partKey struct {
	win  int64
	set  int32
	hash uint64
}

type setWindow struct {
	win int64
	set int32
}

// cacheWays is how many recent groups per set are checked by value
// before the group is hashed and looked up: a batch usually holds a few
// services in turn.
const cacheWays = 8

// group is one (group set, group values, window) in a shard, with one
// partial per metric of the set.
type group struct {
	win      int64
	set      int32
	overflow bool
	values   []string
	parts    []partial
	bytes    int64 // estimated size without the partials' tables (see memory.go)
}

func (w *Windows) newShard() *shard {
	maxFields := 0
	for _, gs := range w.c.sets {
		maxFields = max(maxFields, len(gs.fields))
	}
	s := &shard{
		groups: map[partKey]*group{},
		count:  map[setWindow]int{},
		cache:  make([][cacheWays]*group, len(w.c.sets)),
		next:   make([]uint8, len(w.c.sets)),
		attrs:  make([][]byte, len(w.c.attrKeys)),
		vals:   make([][]byte, maxFields),
		intern: map[string]string{},
		wins:   map[int64]struct{}{},

		winBytes: map[int64]int64{},
	}
	s.h.SetSeed(w.seed)
	return s
}

// Process implements pipeline.Stage: it counts every record that is
// neither failed nor filtered into the window of its event time, or
// applies the late policy. A record dated more than max_future past the
// wall clock fails as invalid (future_time) and moves nothing. Records
// stay in the batch for the sinks.
//
// A batch whose Acker is a pipeline.WindowAcker and that counted at least
// one record into a window (a late correction included) is held: it is
// window-acked only once the rows of every window it counted into are
// written and flushed (see hold, emit). A batch that counted nothing is
// not held: the runner window-acks it right after its Ack.
func (w *Windows) Process(_ context.Context, b *pipeline.Batch) {
	s := <-w.shards
	s.mu.Lock()
	id := -1
	if b.Origin != nil {
		id = b.Origin.ID
	}
	w.sourceStart(id)
	maxT := int64(math.MinInt64)
	st := batchStats{winLo: math.MaxInt64, winHi: math.MinInt64}
	defer func() {
		if st.winHi != math.MinInt64 { // counted into a window: its ack waits for the row (even after a panic)
			w.hold(s, b, st.winLo, st.winHi)
		}
		s.mu.Unlock()
		w.shards <- s
		w.sourceEnd(id, b.Seq, maxT) // even after a panic: the source must not wait for this batch forever
	}()
	// Read after taking the shard: a closer that already took this
	// shard's partials of a window has published the window closed.
	closed, evict := w.closedBefore.Load(), w.evictBefore.Load()
	s.closed = closed
	future := w.futureLimit()
	for i := range b.Records {
		r := &b.Records[i]
		if r.Failed() || r.Filtered {
			continue
		}
		if r.Time == 0 {
			st.noTime++
			continue
		}
		if r.Time > future {
			st.future++
			r.Fail("window", pipeline.ClassInvalid, "future_time", w.futureMessage(r.Time))
			continue
		}
		w.record(s, r, closed, evict, &st)
		maxT = max(maxT, r.Time)
	}
	w.Stats.add(&st)
	if st.lateUpdated > 0 {
		w.latePending.Store(true)
	}
}

// futureLimit is the highest event time a record may have now: the wall
// clock plus max_future.
//
// Why the wall clock and not the newest event time seen in the source:
// a limit relative to the data is not a function of the record alone.
// Batches of one file finish on different workers in any order, so "the
// newest time seen so far" differs from run to run and the same record
// would be judged differently each time (the very randomness this guards
// against). It also has nothing to judge the first record by (a bad first
// record would become the reference and every good one after it would
// look old), and it would reject the first record after a legitimate gap
// in the data (a service silent for an hour). The clock has none of
// these problems: for a live run it is the true bound (an event cannot be
// from the future beyond clock skew), and a replay reads history, all of
// which lies before now, so any time past now + max_future is a bad
// clock or a unit error. What it cannot catch is a wrong time that is
// still in the past (a 2025 record among 2020 ones); the watermark is per
// source, so such a record moves its own source's watermark only.
func (w *Windows) futureLimit() int64 {
	if w.maxFuture <= 0 {
		return math.MaxInt64
	}
	now := w.o.Now().UnixNano()
	if now > math.MaxInt64-w.maxFuture {
		return math.MaxInt64
	}
	return now + w.maxFuture
}

func (w *Windows) futureMessage(t int64) string {
	return fmt.Sprintf("event time %s is more than max_future (%s) past the wall clock (%s): a wrong clock or time unit; it would move the watermark past every good record",
		time.Unix(0, t).UTC().Format(time.RFC3339Nano), time.Duration(w.maxFuture), w.o.Now().UTC().Format(time.RFC3339))
}

// record handles one record; a panic fails it alone.
func (w *Windows) record(s *shard, r *pipeline.Record, closed, evict int64, st *batchStats) {
	defer pipeline.RecoverRecord("window", r)
	win := w.window(r.Time)
	if win < closed {
		switch {
		case w.late == lateDrop:
			r.Filtered = true
			st.lateDropped++
			return
		case w.late == lateDLQ:
			st.lateDLQ++
			r.Fail("window", pipeline.ClassLate, "late", w.lateMessage(r.Time, win, closed))
			return
		case win < evict:
			st.lateExpired++
			r.Fail("window", pipeline.ClassLate, "window_expired", w.lateMessage(r.Time, win, closed)+
				fmt.Sprintf("; it is past keep_closed_for (%s), so it can no longer be corrected", w.o.Config.KeepClosedFor))
			return
		}
		st.lateUpdated++
	}
	w.count(s, r, win, st)
}

func (w *Windows) lateMessage(t, win, closed int64) string {
	return fmt.Sprintf("event time %s is in window [%s, %s), closed when the watermark passed %s (allowed_lateness %s)",
		time.Unix(0, t).UTC().Format(time.RFC3339Nano), w.start(win).Format(time.RFC3339), w.start(win+1).Format(time.RFC3339),
		w.start(closed).Format(time.RFC3339), w.o.Config.AllowedLateness)
}

// count adds r to the partials of its window, one per metric it passes.
func (w *Windows) count(s *shard, r *pipeline.Record, win int64, st *batchStats) {
	c := w.c
	c.extract(r, s.attrs)
	counted := false
	for si := range c.sets {
		gs := &c.sets[si]
		var g *group
		for slot, mi := range gs.metrics {
			m := &c.metrics[mi]
			if !m.passes(r, s.attrs) {
				continue
			}
			v := m.count.get(r, s.attrs)
			if len(v) == 0 {
				st.missing++
				continue
			}
			if g == nil {
				g = w.group(s, si, win, r, st)
			}
			if g.overflow {
				st.overflow++
			}
			if !counted { // before the partial changes: a panic past here leaves the count in it
				st.winLo, st.winHi = min(st.winLo, win), max(st.winHi, win)
			}
			pt := &g.parts[slot]
			if d := pt.insert(HashValue(v), w.arena); d != 0 {
				w.grew(s, g.win, int64(d))
			}
			pt.records++
			counted = true
		}
	}
	if counted {
		st.counted++
	}
}

func (m *metric) passes(r *pipeline.Record, attrs [][]byte) bool {
	for i := range m.where {
		if !m.where[i].holds(r, attrs) {
			return false
		}
	}
	return true
}

// group finds or makes r's group of set si in window win.
func (w *Windows) group(s *shard, si int, win int64, r *pipeline.Record, st *batchStats) *group {
	gs := &w.c.sets[si]
	vals := s.vals[:len(gs.fields)]
	for i, f := range gs.fields {
		vals[i] = f.get(r, s.attrs)
	}
	cache := &s.cache[si]
	for _, g := range cache {
		if g != nil && g.win == win && g.is(vals) {
			return g
		}
	}
	s.h.Reset()
	var n [4]byte
	for _, v := range vals {
		binary.LittleEndian.PutUint32(n[:], uint32(len(v)))
		_, _ = s.h.Write(n[:])
		_, _ = s.h.Write(v)
	}
	k := partKey{win: win, set: int32(si), hash: s.h.Sum64()}
	g := s.groups[k]
	switch {
	case g != nil && !g.is(vals):
		g = w.overflowGroup(s, si, win) // a 64-bit hash collision: never expected
	case g == nil:
		sw := setWindow{win, int32(si)}
		if s.count[sw] >= w.o.Config.MaxGroups {
			g = w.overflowGroup(s, si, win)
			break
		}
		if w.memoryFull(win) {
			st.memOverflow++
			g = w.overflowGroup(s, si, win)
			break
		}
		s.count[sw]++
		if _, ok := s.wins[win]; !ok && win >= s.closed {
			s.wins[win] = struct{}{}
			w.noteWindow(win)
		}
		g = w.newGroup(s, si, win, vals)
		s.groups[k] = g
	}
	if !g.overflow { // overflow never matches by value: keep it out
		cache[s.next[si]%cacheWays] = g
		s.next[si]++
	}
	return g
}

func (g *group) is(vals [][]byte) bool {
	if g.overflow {
		return false
	}
	for i, v := range vals {
		if g.values[i] != string(v) {
			return false
		}
	}
	return true
}

func (w *Windows) overflowGroup(s *shard, si int, win int64) *group {
	k := partKey{win: win, set: -int32(si) - 1}
	g := s.groups[k]
	if g == nil {
		vals := s.vals[:len(w.c.sets[si].fields)]
		for i := range vals {
			vals[i] = nil
		}
		g = w.newGroup(s, si, win, vals)
		g.overflow = true
		for i := range g.values {
			g.values[i] = OverflowGroup
		}
		s.groups[k] = g
		if _, ok := s.wins[win]; !ok && win >= s.closed {
			s.wins[win] = struct{}{}
			w.noteWindow(win)
		}
	}
	return g
}

func (w *Windows) newGroup(s *shard, si int, win int64, vals [][]byte) *group {
	g, _ := w.groupPool[si].Get().(*group)
	if g == nil {
		n := len(w.c.sets[si].fields)
		g = &group{values: make([]string, n), parts: make([]partial, len(w.c.sets[si].metrics))}
	}
	g.win, g.set, g.overflow = win, int32(si), false
	for i, v := range vals {
		g.values[i] = w.internValue(s, v)
	}
	g.bytes = w.groupBytes(si, vals)
	w.grew(s, win, g.bytes)
	return g
}

// internValue returns v as a string shared by every group of the shard
// with that value; the table is bounded (cleared when it grows past a
// hostile number of values).
// The table counts in the state's estimate (not in any window's).
func (w *Windows) internValue(s *shard, v []byte) string {
	if x, ok := s.intern[string(v)]; ok {
		return x
	}
	if len(s.intern) >= w.internCap {
		clear(s.intern)
		w.openBytes.Add(-s.internBytes)
		s.internBytes = 0
	}
	x := string(v)
	s.intern[x] = x
	n := int64(internFixed + len(x))
	s.internBytes += n
	w.openBytes.Add(n)
	return x
}

// Close closes every window, writes the last rows, flushes the sink,
// releases the holds of every batch counted into them (window-acking
// those the runner has acked) and stops the closer. Call it after the
// last batch went through Process.
func (w *Windows) Close(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("windows: closing: %w", ctx.Err())
	}
}

// closer runs the cycles: when a window can close, on a timer when late
// records wait (update), and once more for everything at Close.
func (w *Windows) closer() {
	defer close(w.done)
	ctx := context.Background()
	every := w.o.Config.UpdateEvery
	if every <= 0 {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-w.wake:
			w.cycle(ctx, false)
		case done := <-w.settle:
			w.cycle(ctx, false)
			close(done)
		case <-tick.C:
			if w.latePending.Load() {
				w.cycle(ctx, false)
			}
		case <-w.stop:
			w.cycle(ctx, true)
			return
		}
	}
}

// cycle publishes the new boundaries, takes the partials of closed
// windows from every shard, merges them into sketches, writes the rows,
// and forgets windows past keep_closed_for. Past max_memory it also
// forgets kept windows and closes open ones early (see capMemory).
func (w *Windows) cycle(ctx context.Context, final bool) {
	w.noteState()
	prev := w.closedBefore.Load()
	before := prev
	onTime := int64(math.MaxInt64) // windows from here on close by the watermark
	wm, ok := w.watermark()
	if ok {
		w.Stats.Watermark.Store(wm)
		onTime = max(before, w.window(wm)) // the first window whose end the watermark has not passed
		before = onTime
	}
	before = max(before, w.capOpen(before))
	forcedTo := before // windows from onTime to here close early by max_open_windows
	before = max(before, w.capMemory(before))
	if final {
		before, onTime, forcedTo = math.MaxInt64, math.MaxInt64, math.MaxInt64
	}
	if before == prev && !final && !w.latePending.Load() {
		w.forgetKept(ctx)
		w.noteState()
		return // nothing closes, nothing to correct
	}
	w.closedBefore.Store(before)
	evict := int64(math.MinInt64)
	switch {
	case final || w.late != lateUpdate:
		evict = before
	case before-w.keep > evict && before != math.MinInt64:
		evict = before - w.keep
	}
	evict = max(evict, w.evictBefore.Load()) // forgetKept may have moved it past before - keep
	w.evictBefore.Store(evict)
	w.latePending.Store(false)

	w.emit(ctx, before, onTime, forcedTo)
	for win := range w.closed {
		if win < evict {
			w.dropKept(win)
		}
	}
	w.forgetKept(ctx)
	w.srcMu.Lock()
	for win := range w.openWins {
		if win < before {
			delete(w.openWins, win)
		}
	}
	w.Stats.OpenWindows.Store(int64(len(w.openWins)))
	w.srcMu.Unlock()
	w.noteState()
}

// capOpen returns the boundary that leaves at most max_open_windows of the
// windows holding counts open: the oldest close early.
//
// Only windows up to the horizon count: the highest event time of any
// source's contiguous prefix of batches. The windows past it were opened by
// batches that finished ahead of an earlier batch still in flight; closing
// the oldest windows because of them would close the windows that earlier
// batch is about to fill (a worker descheduled for a few milliseconds lets
// the others run a hundred batches ahead). They count once the gap fills;
// until then they are bounded by the batches in flight, and max_memory
// bounds them whatever happens.
func (w *Windows) capOpen(before int64) int64 {
	w.srcMu.Lock()
	defer w.srcMu.Unlock()
	if len(w.openWins) <= w.o.Config.MaxOpenWindows {
		return before
	}
	horizon := w.maxEvent.Load()
	if len(w.sources) > 0 {
		horizon = math.MinInt64
		for _, st := range w.sources {
			horizon = max(horizon, st.max)
		}
	}
	if horizon == math.MinInt64 {
		return before
	}
	last := w.window(horizon)
	wins := make([]int64, 0, len(w.openWins))
	for win := range w.openWins {
		if win >= before && win <= last {
			wins = append(wins, win)
		}
	}
	if len(wins) <= w.o.Config.MaxOpenWindows {
		return before
	}
	slices.Sort(wins)
	return wins[len(wins)-w.o.Config.MaxOpenWindows]
}

// collect takes from every shard the groups of windows below before.
func (w *Windows) collect(before int64) []*group {
	var out []*group
	for _, s := range w.all {
		s.mu.Lock()
		for k, g := range s.groups {
			if g.win < before {
				out = append(out, g)
				delete(s.groups, k)
				b := g.size()
				s.winBytes[g.win] -= b
				w.openBytes.Add(-b)
			}
		}
		for win := range s.winBytes {
			if win < before {
				delete(s.winBytes, win)
			}
		}
		for sw := range s.count {
			if sw.win < before {
				delete(s.count, sw)
			}
		}
		for win := range s.wins {
			if win < before {
				delete(s.wins, win)
			}
		}
		clear(s.cache)
		keep := s.holds[:0]
		for _, hd := range s.holds {
			if hd.hi < before {
				w.releasing = append(w.releasing, hd)
			} else {
				keep = append(keep, hd)
			}
		}
		clear(s.holds[len(keep):])
		s.holds = keep
		s.mu.Unlock()
	}
	return out
}

// hold registers b's window ack with the shard it counted into, while the
// batch still holds the shard (see hold). A batch whose Acker is no
// pipeline.WindowAcker has nothing to hold.
func (w *Windows) hold(s *shard, b *pipeline.Batch, lo, hi int64) {
	h := b.HoldWindowAck()
	if h == nil {
		return
	}
	s.holds = append(s.holds, hold{h: h, lo: lo, hi: hi})
	w.Stats.Holds.Add(1)
}

// emit closes the windows below before: it takes their partials and the
// holds of the batches whose counts all lie there, writes the rows, makes
// them durable (the sink's Flush), and then releases those holds, which
// window-acks the batches (once the runner has acked them too). If a
// write or the flush failed, those holds are dropped, and so are, later,
// the holds still waiting that have counts in the windows written now
// (marked dead): their batches are never window-acked, and a restart
// reads them again to rebuild the rows.
func (w *Windows) emit(ctx context.Context, before, onTime, forcedTo int64) {
	groups := w.collect(before)
	wrote, failed := w.mergeAndWrite(ctx, groups, onTime, forcedTo)
	if (wrote || len(w.releasing) > 0) && !failed {
		if err := w.o.Sink.Flush(ctx); err != nil {
			failed = true
			w.o.Logger.Error("windows sink: flush failed; the batches counted into these rows are not window-acked (a restart reads them again)",
				"sink", w.o.Sink.Name(), "err", err)
		}
	}
	if failed {
		for _, s := range w.all {
			s.mu.Lock()
			for i := range s.holds {
				if s.holds[i].lo < before {
					s.holds[i].dead = true
				}
			}
			s.mu.Unlock()
		}
	}
	for i := range w.releasing {
		hd := &w.releasing[i]
		if hd.dead || failed {
			w.Stats.HoldsDropped.Add(1)
			hd.h.Drop()
		} else {
			hd.h.Release()
		}
	}
	w.Stats.Holds.Add(-int64(len(w.releasing)))
	clear(w.releasing)
	w.releasing = w.releasing[:0]
}

// mergeChunk is about how many groups are merged and written at once: a
// cycle that closes many windows (at Close, or early under max_memory)
// holds the rows of a few windows at a time, not of all of them.
const mergeChunk = 8192

// mergeAndWrite merges groups into rows and writes them, whole windows at
// a time in window order, about mergeChunk groups per write. wrote: the
// sink took rows; failed: it refused some.
func (w *Windows) mergeAndWrite(ctx context.Context, groups []*group, onTime, forcedTo int64) (wrote, failed bool) {
	slices.SortFunc(groups, func(a, b *group) int { return cmp.Compare(a.win, b.win) })
	for len(groups) > 0 {
		n := min(mergeChunk, len(groups))
		for n < len(groups) && groups[n].win == groups[n-1].win {
			n++
		}
		rows := w.merge(groups[:n], onTime, forcedTo)
		if len(rows) > 0 {
			if w.write(ctx, rows) {
				wrote = true
			} else {
				failed = true
			}
		}
		clear(groups[:n])
		groups = groups[n:]
	}
	return wrote, failed
}

// pending is what the shards hold for one row.
type pending struct {
	win     int64
	metric  int
	key     string
	values  []string
	parts   []*partial
	records int64
}

// merge turns collected groups into rows: new windows get revision 1,
// closed windows kept for corrections get their next revision. Windows
// from onTime on were closed early: by max_open_windows up to forcedTo,
// by max_memory from there.
func (w *Windows) merge(groups []*group, onTime, forcedTo int64) []Row {
	byKey := map[struct {
		win int64
		rk  rowKey
	}]*pending{}
	var order []*pending
	for _, g := range groups {
		gs := &w.c.sets[g.set]
		key := strings.Join(g.values, "\x00")
		for slot, mi := range gs.metrics {
			pt := &g.parts[slot]
			if pt.records == 0 {
				continue
			}
			k := struct {
				win int64
				rk  rowKey
			}{g.win, rowKey{mi, key}}
			p := byKey[k]
			if p == nil {
				p = &pending{win: g.win, metric: mi, key: key, values: slices.Clone(g.values)}
				byKey[k] = p
				order = append(order, p)
			}
			p.parts = append(p.parts, pt)
			p.records += pt.records
		}
	}
	order = w.capGroups(order)
	slices.SortFunc(order, func(a, b *pending) int {
		return cmp.Or(cmp.Compare(a.win, b.win), cmp.Compare(a.metric, b.metric), slices.Compare(a.values, b.values))
	})
	newWindows := map[int64]bool{}
	rows := make([]Row, 0, len(order))
	for _, p := range order {
		rows = append(rows, w.row(p, newWindows))
	}
	w.Stats.WindowsClosed.Add(int64(len(newWindows)))
	for win := range newWindows {
		switch {
		case win < onTime:
		case win < forcedTo:
			w.Stats.WindowsForced.Add(1)
		default:
			w.Stats.ClosedEarly.Add(1)
		}
	}
	for _, g := range groups {
		for i := range g.parts {
			g.parts[i].release(w.arena)
		}
		w.groupPool[g.set].Put(g)
	}
	return rows
}

// capGroups folds, per metric and window, the groups past max_groups
// (the ones with the fewest records; the shards each capped their own,
// so the union can exceed it) into the overflow group.
func (w *Windows) capGroups(ps []*pending) []*pending {
	type mw struct {
		win    int64
		metric int
	}
	n := map[mw]int{}
	for _, p := range ps {
		n[mw{p.win, p.metric}]++
	}
	over := false
	for _, c := range n {
		over = over || c > w.o.Config.MaxGroups
	}
	if !over {
		return ps
	}
	slices.SortFunc(ps, func(a, b *pending) int {
		return cmp.Or(cmp.Compare(a.win, b.win), cmp.Compare(a.metric, b.metric), cmp.Compare(b.records, a.records), strings.Compare(a.key, b.key))
	})
	out := ps[:0]
	kept := map[mw]int{}
	overflow := map[mw]*pending{}
	for _, p := range ps {
		k := mw{p.win, p.metric}
		if p.values[0] == OverflowGroup || kept[k] >= w.o.Config.MaxGroups {
			o := overflow[k]
			if o == nil {
				vals := make([]string, len(p.values))
				for i := range vals {
					vals[i] = OverflowGroup
				}
				o = &pending{win: p.win, metric: p.metric, key: strings.Join(vals, "\x00"), values: vals}
				overflow[k] = o
			}
			if p.values[0] != OverflowGroup {
				w.Stats.Overflow.Add(p.records)
			}
			o.parts = append(o.parts, p.parts...)
			o.records += p.records
			continue
		}
		kept[k]++
		out = append(out, p)
	}
	for _, o := range overflow {
		out = append(out, o)
	}
	return out
}

// row merges p into its sketch (a new one, or the kept row of a closed
// window) and returns the row to write.
func (w *Windows) row(p *pending, newWindows map[int64]bool) Row {
	rows := w.closed[p.win]
	if rows == nil {
		rows = map[rowKey]*closedRow{}
		w.closed[p.win] = rows
		newWindows[p.win] = true
	}
	rk := rowKey{p.metric, p.key}
	cr := rows[rk]
	if cr == nil {
		sk, _ := NewSketch(int(w.p))
		cr = &closedRow{values: p.values, sk: sk}
		rows[rk] = cr
	}
	w.mergeParts(cr.sk, p.parts, cr.revision == 0)
	cr.records += p.records
	cr.revision++
	est, b, err := Encode(cr.sk)
	if err != nil { // an initialized sketch always encodes
		panic(err)
	}
	if n := keptRowBytes(p, len(b)); n != cr.bytes {
		w.keptBytes.Add(n - cr.bytes)
		w.keptByWin[p.win] += n - cr.bytes
		cr.bytes = n
	}
	return Row{
		Metric:      w.c.metrics[p.metric].name,
		Start:       w.start(p.win),
		End:         w.start(p.win + 1),
		GroupKeys:   w.c.sets[w.c.metrics[p.metric].set].keys,
		GroupValues: p.values,
		Estimate:    est,
		Records:     cr.records,
		Revision:    cr.revision,
		Instance:    w.o.Config.Instance,
		Precision:   int(w.p),
		Sketch:      b,
	}
}

// mergeParts adds partials to sk so that sk ends equal to the sketch the
// library builds from all their values: sparse keys are inserted sorted
// (the sparse form is a sorted set, so order cannot show), dense
// registers through one dense sketch merged in. fresh says sk is empty.
func (w *Windows) mergeParts(sk *hyperloglog.Sketch, parts []*partial, fresh bool) {
	var regs []uint8
	var keys []uint32
	for _, pt := range parts {
		if pt.regs != nil {
			if regs == nil {
				regs = make([]uint8, 1<<w.p)
			}
			for i, r := range pt.regs {
				regs[i] = max(regs[i], r)
			}
			continue
		}
		pt.eachKey(func(k uint32) { keys = append(keys, k) })
	}
	if regs == nil {
		slices.Sort(keys)
		keys = slices.Compact(keys)
		switch {
		case !fresh:
			for _, k := range keys {
				sk.InsertHash(synth(k))
			}
			return
		case sparseBytes(keys) <= 1<<w.p:
			// What the library holds after inserting these keys and
			// compacting, in its documented version 2 format: built at
			// once, where inserting re-sorts a growing list every 2^p/100
			// new keys.
			if err := sk.UnmarshalBinary(sparseEncoding(w.p, keys)); err != nil {
				panic("windows: the sparse encoding was refused: " + err.Error())
			}
			return
		}
		// The library would end dense (its sparse list past 2^p bytes):
		// build the registers at once instead of through a hundred
		// re-sorts of a growing sparse list.
		regs = make([]uint8, 1<<w.p)
	}
	for _, k := range keys {
		i, r := posVal(synth(k), w.p)
		regs[i] = max(regs[i], r)
	}
	dense, _ := hyperloglog.NewSketch(w.p, false)
	for i, r := range regs {
		if r != 0 {
			dense.InsertHash(rankHash(uint32(i), r, w.p))
		}
	}
	_ = sk.Merge(dense) // same precision by construction
}

// sparseEncoding is the axiomhq/hyperloglog version 2 encoding of a
// sparse sketch of precision p whose tmp set is empty and whose list holds
// keys (sorted, distinct): header, tmp set count 0, list count, last key,
// size, delta varints.
func sparseEncoding(p uint8, keys []uint32) []byte {
	n := sparseBytes(keys)
	b := make([]byte, 0, 20+n)
	b = append(b, 2, p, 0, 1)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	last := uint32(0)
	if len(keys) > 0 {
		last = keys[len(keys)-1]
	}
	b = binary.BigEndian.AppendUint32(b, last)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	prev := uint32(0)
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(k-prev))
		prev = k
	}
	return b
}

// sparseBytes is the size of the library's sparse list holding the sorted
// distinct keys: varint-coded differences. Past 2^p bytes it turns dense.
func sparseBytes(keys []uint32) int {
	n, last := 0, uint32(0)
	for _, k := range keys {
		n += (bits.Len32(k-last|1) + 6) / 7
		last = k
	}
	return n
}

// write hands rows to the sink; rows it refuses go to RowsFailed. ok:
// the sink took them.
func (w *Windows) write(ctx context.Context, rows []Row) (ok bool) {
	if len(rows) == 0 {
		return true
	}
	updates := int64(0)
	for i := range rows {
		if rows[i].Revision > 1 {
			updates++
		}
	}
	if err := w.o.Sink.WriteRows(ctx, rows); err != nil {
		w.Stats.RowsFailed.Add(int64(len(rows)))
		w.o.Logger.Error("windows sink refused rows; they go to the DLQ", "sink", w.o.Sink.Name(), "rows", len(rows), "err", err)
		if w.o.RowsFailed != nil {
			w.o.RowsFailed(ctx, rows, err)
		}
		return false
	}
	w.Stats.RowsWritten.Add(int64(len(rows)))
	w.Stats.RowsUpdated.Add(updates)
	return true
}
