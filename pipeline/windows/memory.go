package windows

import (
	"context"
	"maps"
	"math"
	"slices"
)

// The window state's memory budget (windows.max_memory).
//
// What is counted is an estimate of the heap behind the state, kept as
// running sums so that reading it costs nothing: every group a shard makes
// (its struct, its share of the maps that find it, its values' headers)
// and every partial's key table or registers, added by the worker when a
// group is made or a table grows, taken off by the closer when it takes
// the group; each shard's table of group values (see internCap); and
// every closed row kept for corrections (its sketch's encoded size and the
// same kind of overhead). The sizes below are for 64-bit platforms and are
// meant to be proportional to what the heap holds and the same on every run,
// not exact: TestMemoryEstimateTracksTheHeap checks them against
// runtime.MemStats.
//
// When the sum is past the budget, the closer, at its next cycle (one per
// batch done), frees in this order until it is under again:
//  1. closed windows kept for corrections (late_policy update) are
//     forgotten, oldest first (a late record for one then goes to the DLQ
//     as window_expired; Stats.KeptForgotten);
//  2. if the open windows alone are over the budget (those closing now by
//     the watermark apart), they close early, oldest first, their rows
//     written (Stats.ClosedEarly), never the newest window holding counts
//     (under update their kept rows are then forgotten as in 1);
//  3. if that one window is still over the budget alone, new groups of it
//     (and of older windows) count into __overflow__ (Stats.MemoryOverflow)
//     until it closes.
//
// Between two cycles the workers may add what one batch each makes; as a
// backstop, new groups also go to __overflow__ while the estimate is past
// one and a half budgets. Partials that already exist still grow, up to
// 2^(p+3) bytes each before they turn into 2^p registers: a window made of
// groups that each see thousands of distinct values can pass the budget by
// that much.
const (
	// groupFixed: the group struct, its entry in shard.groups (key, pointer
	// and the map's per-entry overhead), its share of shard.count.
	groupFixed = 160
	// partialFixed: one partial in group.parts.
	partialFixed = 56
	// stringFixed: a string header (each group value; each value of a kept row).
	stringFixed = 16
	// internFixed: an entry of a shard's table of group values (a value is
	// counted there once, and once more, as a string header, in each group).
	internFixed = 48
	// keptFixed: a kept row's closedRow, its entry in closed[win], its
	// hyperloglog.Sketch (struct, empty tmp set, list header), and the Row
	// and sketch bytes built when it is written.
	keptFixed = 400
)

// internCap is how many values a shard's intern table holds before it is
// cleared: 64Ki, or less so that the tables of all shards stay within a
// quarter of the budget (at 64 bytes a value).
func internCap(budget int64, workers int) int {
	if budget <= 0 {
		return 1 << 16
	}
	return int(min(1<<16, max(256, budget/4/int64(workers)/64)))
}

// groupBytes is the estimated size of a new group of set si with values
// vals, partials' tables apart.
func (w *Windows) groupBytes(si int, vals [][]byte) int64 {
	n := int64(groupFixed + partialFixed*len(w.c.sets[si].metrics))
	for _, v := range vals {
		n += stringFixed + int64(len(v))
	}
	return n
}

// size is the estimated size of the group with its partials' tables.
func (g *group) size() int64 {
	n := g.bytes
	for i := range g.parts {
		n += g.parts[i].size()
	}
	return n
}

// keptRowBytes is the estimated size of a closed row kept for
// corrections whose sketch encodes to encoded bytes (a sparse sketch's
// list is held as encoded; a dense one holds 2^p registers, the bulk of
// its 2^p + 8 bytes).
func keptRowBytes(p *pending, encoded int) int64 {
	return keptFixed + int64(len(p.key)+stringFixed*len(p.values)+encoded)
}

// grew adds d bytes to the estimate of window win's state in shard s. The
// worker holding s calls it, or the closer with s locked.
func (w *Windows) grew(s *shard, win int64, d int64) {
	s.winBytes[win] += d
	w.openBytes.Add(d)
}

// memoryFull says whether a new group of window win must go to
// __overflow__ because of max_memory.
func (w *Windows) memoryFull(win int64) bool {
	if w.maxMemory <= 0 {
		return false
	}
	return win <= w.fullWin.Load() || w.openBytes.Load()+w.keptBytes.Load() > w.maxMemory+w.maxMemory/2
}

// capMemory is what the closer does about max_memory before it takes the
// windows below before (which close anyway): it returns the boundary below
// which open windows close early (before when none need to) and publishes
// fullWin. Kept closed windows do not count here: forgetKept frees them
// first, after the merge.
func (w *Windows) capMemory(before int64) int64 {
	if w.maxMemory <= 0 {
		return before
	}
	if w.openBytes.Load()+w.keptBytes.Load() <= w.maxMemory {
		w.fullWin.Store(math.MinInt64)
		return before
	}
	// The open windows' sizes, summed over the shards; the windows below
	// before are taken this cycle (and kept, or freed).
	per := map[int64]int64{}
	over := -w.maxMemory
	for _, s := range w.all {
		s.mu.Lock()
		for win, n := range s.winBytes {
			if win >= before {
				per[win] += n
				over += n
			}
		}
		s.mu.Unlock()
	}
	open := slices.Sorted(maps.Keys(per))
	closeBefore := before
	for i := 0; over > 0 && i < len(open)-1; i++ {
		over -= per[open[i]]
		closeBefore = open[i] + 1
	}
	if over > 0 && len(open) > 0 {
		w.fullWin.Store(open[len(open)-1])
	} else {
		w.fullWin.Store(math.MinInt64)
	}
	return closeBefore
}

// forgetKept forgets kept closed windows, oldest first, while the state is
// over max_memory. The new boundary is published before the shards are
// looked at, so that corrections counted by batches that read the old one
// are taken and merged while their rows are still kept; then the rows go.
func (w *Windows) forgetKept(ctx context.Context) {
	if w.maxMemory <= 0 || len(w.keptByWin) == 0 {
		return
	}
	over := w.openBytes.Load() + w.keptBytes.Load() - w.maxMemory
	if over <= 0 {
		return
	}
	forget := w.evictBefore.Load()
	for _, win := range slices.Sorted(maps.Keys(w.keptByWin)) {
		if over <= 0 {
			break
		}
		over -= w.keptByWin[win]
		forget = max(forget, win+1)
	}
	w.evictBefore.Store(forget)
	w.emit(ctx, forget, math.MaxInt64, math.MaxInt64)
	for win := range w.closed {
		if win < forget {
			w.Stats.KeptForgotten.Add(1)
			w.dropKept(win)
		}
	}
}

// dropKept forgets the kept rows of closed window win.
func (w *Windows) dropKept(win int64) {
	delete(w.closed, win)
	w.keptBytes.Add(-w.keptByWin[win])
	delete(w.keptByWin, win)
}

// noteState publishes the estimate in Stats.
func (w *Windows) noteState() {
	n := w.openBytes.Load() + w.keptBytes.Load()
	w.Stats.StateBytes.Store(n)
	if n > w.Stats.PeakStateBytes.Load() {
		w.Stats.PeakStateBytes.Store(n) // the closer is the only writer
	}
}

// settleNow runs a closer cycle and returns once it is done: tests use it
// to make the closer's decisions happen at a known point.
func (w *Windows) settleNow() {
	done := make(chan struct{})
	w.settle <- done
	<-done
}
