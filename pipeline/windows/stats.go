package windows

import (
	"sync/atomic"
	"time"
)

// Stats are the window stage's counters, in one place for the report and
// for telemetry. All are totals since the stage started unless named
// otherwise.
type Stats struct {
	// Watermark is the lowest of the unfinished sources' highest event
	// time minus allowed lateness (Unix ns; 0 = none yet), as of the
	// closer's last cycle.
	Watermark atomic.Int64
	// OpenWindows is how many windows hold counts and are not closed (a
	// gauge; max_open_windows bounds it).
	OpenWindows atomic.Int64
	// StateBytes is the estimated size of the window state (partials,
	// groups, closed rows kept for corrections) as of the closer's last
	// cycle, the figure max_memory bounds; PeakStateBytes its highest.
	StateBytes     atomic.Int64
	PeakStateBytes atomic.Int64

	Counted      atomic.Int64 // records counted into at least one metric
	MissingValue atomic.Int64 // (record, metric) pairs skipped: the counted field was empty
	NoTime       atomic.Int64 // records without an event time: not windowed
	Overflow     atomic.Int64 // (record, metric) pairs counted into the __overflow__ group
	FutureTime   atomic.Int64 // records dated more than max_future past the wall clock: invalid, to the DLQ

	LateDLQ     atomic.Int64 // late records sent to the DLQ (late_policy dlq)
	LateDropped atomic.Int64 // late records dropped (late_policy drop)
	LateUpdated atomic.Int64 // late records that corrected a closed window (late_policy update)
	LateExpired atomic.Int64 // late records past keep_closed_for, sent to the DLQ (late_policy update)

	WindowsClosed atomic.Int64 // windows closed (each once)
	WindowsForced atomic.Int64 // of which closed early by max_open_windows
	// Past max_memory: windows closed early (each once), closed windows
	// forgotten before keep_closed_for (a late record for them then goes
	// to the DLQ as window_expired), and (record, group set) pairs that
	// would have made a new group and went to __overflow__ instead (also
	// counted in Overflow, per metric).
	ClosedEarly    atomic.Int64
	KeptForgotten  atomic.Int64
	MemoryOverflow atomic.Int64
	RowsWritten    atomic.Int64 // rows the windows sink took
	RowsUpdated    atomic.Int64 // of which corrections (revision > 1)
	RowsFailed     atomic.Int64 // rows the windows sink refused, handed to the DLQ

	// Holds is how many batches wait for their window rows to be durable
	// before they are window-acked (a gauge; only batches whose Acker is a
	// pipeline.WindowAcker are held, see Windows.Process): the batches
	// that counted into windows not yet closed, and, under late_policy
	// update, those whose corrections wait for the next cycle. HoldsDropped counts the batches never window-acked because
	// the windows sink refused (or failed to flush) rows holding their
	// counts: a restart reads them again.
	Holds        atomic.Int64
	HoldsDropped atomic.Int64
}

// Lag is how far the watermark is behind now: how stale the newest
// closable window is. Zero before any record.
func (s *Stats) Lag(now time.Time) time.Duration {
	w := s.Watermark.Load()
	if w == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, w))
}

// Snapshot is Stats as plain numbers, for reports.
type Snapshot struct {
	Watermark      string `json:"watermark,omitempty"`
	OpenWindows    int64  `json:"open_windows"`
	StateBytes     int64  `json:"state_bytes"`
	PeakStateBytes int64  `json:"peak_state_bytes"`
	Counted        int64  `json:"records_counted"`
	MissingValue   int64  `json:"missing_value"`
	NoTime         int64  `json:"no_time"`
	Overflow       int64  `json:"overflow"`
	FutureTime     int64  `json:"future_time"`
	LateDLQ        int64  `json:"late_dlq"`
	LateDropped    int64  `json:"late_dropped"`
	LateUpdated    int64  `json:"late_updated"`
	LateExpired    int64  `json:"late_expired"`
	WindowsClosed  int64  `json:"windows_closed"`
	WindowsForced  int64  `json:"windows_forced"`
	ClosedEarly    int64  `json:"closed_early"`
	KeptForgotten  int64  `json:"kept_forgotten"`
	MemoryOverflow int64  `json:"memory_overflow"`
	RowsWritten    int64  `json:"rows_written"`
	RowsUpdated    int64  `json:"rows_updated"`
	RowsFailed     int64  `json:"rows_failed"`
	Holds          int64  `json:"window_holds"`
	HoldsDropped   int64  `json:"window_holds_dropped"`
}

// Snapshot reads every counter.
func (s *Stats) Snapshot() Snapshot {
	out := Snapshot{
		OpenWindows:    s.OpenWindows.Load(),
		StateBytes:     s.StateBytes.Load(),
		PeakStateBytes: s.PeakStateBytes.Load(),
		Counted:        s.Counted.Load(),
		MissingValue:   s.MissingValue.Load(),
		NoTime:         s.NoTime.Load(),
		Overflow:       s.Overflow.Load(),
		FutureTime:     s.FutureTime.Load(),
		LateDLQ:        s.LateDLQ.Load(),
		LateDropped:    s.LateDropped.Load(),
		LateUpdated:    s.LateUpdated.Load(),
		LateExpired:    s.LateExpired.Load(),
		WindowsClosed:  s.WindowsClosed.Load(),
		WindowsForced:  s.WindowsForced.Load(),
		ClosedEarly:    s.ClosedEarly.Load(),
		KeptForgotten:  s.KeptForgotten.Load(),
		MemoryOverflow: s.MemoryOverflow.Load(),
		RowsWritten:    s.RowsWritten.Load(),
		RowsUpdated:    s.RowsUpdated.Load(),
		RowsFailed:     s.RowsFailed.Load(),
		Holds:          s.Holds.Load(),
		HoldsDropped:   s.HoldsDropped.Load(),
	}
	if w := s.Watermark.Load(); w != 0 {
		out.Watermark = time.Unix(0, w).UTC().Format(time.RFC3339Nano)
	}
	return out
}

// batchStats is one batch's contribution, added once.
type batchStats struct {
	counted, missing, noTime, overflow             int64
	lateDLQ, lateDropped, lateUpdated, lateExpired int64
	future, memOverflow                            int64
	// winLo and winHi are the lowest and highest window the batch counted
	// into (winHi MinInt64: none), for its hold.
	winLo, winHi int64
}

func (s *Stats) add(b *batchStats) {
	add := func(c *atomic.Int64, n int64) {
		if n != 0 {
			c.Add(n)
		}
	}
	add(&s.Counted, b.counted)
	add(&s.MissingValue, b.missing)
	add(&s.NoTime, b.noTime)
	add(&s.Overflow, b.overflow)
	add(&s.LateDLQ, b.lateDLQ)
	add(&s.LateDropped, b.lateDropped)
	add(&s.LateUpdated, b.lateUpdated)
	add(&s.LateExpired, b.lateExpired)
	add(&s.FutureTime, b.future)
	add(&s.MemoryOverflow, b.memOverflow)
}
