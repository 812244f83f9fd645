package app

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/windows"
	"github.com/tracepipe/tracepipe/sinks"
)

// Report is the outcome of a replay, printed as a summary and written as
// JSON by --report. Keys are stable: scripts read them.
type Report struct {
	// Job is "run" for `pipeline run` (its files are those followed at
	// the end); empty for a replay.
	Job         string `json:"job,omitempty"`
	Files       int    `json:"files"`
	FilesFailed int    `json:"files_failed"`
	BytesIn     int64  `json:"bytes_in"`   // bytes parsed, after decompression
	BytesRead   int64  `json:"bytes_read"` // bytes read from disk
	Units       int64  `json:"units"`      // lines and documents read

	RecordsIn       int64 `json:"records_in"`
	RecordsOut      int64 `json:"records_out"`
	RecordsFiltered int64 `json:"records_filtered"`
	// DLQ holds "total" and one count per class, of entries the DLQ wrote
	// and synced (not merely sent).
	DLQ        map[string]int64 `json:"dlq"`
	DLQLost    int64            `json:"dlq_lost"`    // entries the DLQ refused or failed to write
	DLQEvicted int64            `json:"dlq_evicted"` // older entries removed by overflow: drop_oldest
	DLQDir     string           `json:"dlq_dir,omitempty"`
	// DLQWindowRows is how many DLQ entries (in dlq.total) are window rows
	// the windows sink refused rather than records.
	DLQWindowRows int64 `json:"dlq_window_rows"`
	// DLQAlready counts records whose entry the DLQ held already (dedupe:
	// a bad line read again after a restart); counted with dlq in the
	// record sum, not in dlq.total (what this run wrote).
	DLQAlready int64 `json:"dlq_already,omitempty"`
	// RecordsRewindowed counts records read again after a restart only to
	// rebuild open windows (they reached the sinks and the DLQ the first
	// time); outside the record sum.
	RecordsRewindowed int64 `json:"records_rewindowed,omitempty"`

	Seconds    float64 `json:"seconds"`
	MBPerSec   float64 `json:"mb_per_s"`
	Reconciled bool    `json:"reconciled"` // records_in = records_out + (dlq.total - dlq_window_rows) + records_filtered

	// Sinks is each sink's delivery: first attempts that failed, retries,
	// batches given up (their records are in the DLQ).
	Sinks []SinkReport `json:"sinks"`

	// Windows is the window stage's outcome; absent without metrics.
	Windows *WindowsReport `json:"windows,omitempty"`

	DLQFull     bool `json:"dlq_full,omitempty"`    // the run stopped early: DLQ at its cap, or failing
	Interrupted bool `json:"interrupted,omitempty"` // the run stopped early: a signal

	Sources []pipeline.SourceCount `json:"sources"`

	// Recovered lists the unfinished output files a process that died
	// (kill -9, power loss) had left, which this run found and finished:
	// cut to their last whole record and renamed so readers see them.
	Recovered []RecoveredFile `json:"recovered_files,omitempty"`
}

// RecoveredFile is one unfinished output file a dead process left.
type RecoveredFile struct {
	Sink string `json:"sink"`
	sinks.Recovered
}

// check reconciles the run: what the DLQ wrote matches what was sent to it,
// class by class, and in = out + dlq + filtered.
func (rep *Report) check(a *pipeline.Accounting) error {
	var errs []error
	for i, c := range pipeline.Classes {
		if sent, wrote := a.DLQSent[i].Load(), rep.DLQ[string(c)]; sent != wrote {
			errs = append(errs, fmt.Errorf("DLQ wrote %d of the %d %s entries sent to it", wrote, sent, c))
		}
	}
	if dlqRecords := rep.DLQ["total"] - rep.DLQWindowRows + rep.DLQAlready; rep.RecordsIn != rep.RecordsOut+dlqRecords+rep.RecordsFiltered {
		errs = append(errs, fmt.Errorf("records do not reconcile: in %d != out %d + dlq %d + filtered %d",
			rep.RecordsIn, rep.RecordsOut, dlqRecords, rep.RecordsFiltered))
	}
	if err := a.Check(); err != nil {
		errs = append(errs, err)
	}
	rep.Reconciled = len(errs) == 0
	return errors.Join(errs...)
}

// WriteSummary prints the human summary.
func (rep *Report) WriteSummary(w io.Writer) {
	var b strings.Builder
	failed := ""
	if rep.FilesFailed > 0 {
		failed = fmt.Sprintf(" (%d failed)", rep.FilesFailed)
	}
	job := rep.Job
	if job == "" {
		job = "replay"
	}
	fmt.Fprintf(&b, "%s: %d files%s, %s in %.2fs (%.1f MB/s), %d lines/documents\n",
		job, rep.Files, failed, HumanBytes(rep.BytesIn), rep.Seconds, rep.MBPerSec, rep.Units)
	mark := "reconciled"
	if !rep.Reconciled {
		mark = "NOT RECONCILED"
	}
	already := ""
	if rep.DLQAlready > 0 {
		already = fmt.Sprintf(" (%d already there)", rep.DLQAlready)
	}
	fmt.Fprintf(&b, "records: %d in = %d out + %d dlq%s + %d filtered  [%s]\n",
		rep.RecordsIn, rep.RecordsOut, rep.DLQ["total"]-rep.DLQWindowRows+rep.DLQAlready, already, rep.RecordsFiltered, mark)
	if rep.RecordsRewindowed > 0 {
		fmt.Fprintf(&b, "rewindowed: %d records read again after a restart only to rebuild open windows\n", rep.RecordsRewindowed)
	}
	if rep.DLQ["total"] > 0 || rep.DLQLost > 0 {
		var parts []string
		for _, c := range pipeline.Classes {
			if n := rep.DLQ[string(c)]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", c, n))
			}
		}
		fmt.Fprintf(&b, "dlq: %d entries in %s: %s\n", rep.DLQ["total"], rep.DLQDir, strings.Join(parts, ", "))
	}
	rep.writeSinkSummary(&b)
	if rep.DLQWindowRows > 0 {
		fmt.Fprintf(&b, "dlq: %d of the entries are window rows the windows sink refused (class sink_exhausted, stage window)\n", rep.DLQWindowRows)
	}
	if w := rep.Windows; w != nil {
		w.writeSummary(&b)
	}
	if rep.DLQLost > 0 {
		fmt.Fprintf(&b, "dlq: %d entries LOST (refused or not written): see the errors above\n", rep.DLQLost)
	}
	if rep.DLQEvicted > 0 {
		fmt.Fprintf(&b, "dlq: %d older entries evicted to stay under max_bytes (overflow: drop_oldest)\n", rep.DLQEvicted)
	}
	for _, r := range rep.Recovered {
		if r.Path == "" {
			fmt.Fprintf(&b, "recovered: sink %s: removed an empty unfinished file left by a process that died\n", r.Sink)
			continue
		}
		fmt.Fprintf(&b, "recovered: sink %s: %s, left unfinished by a process that died: %d whole records kept, %d torn bytes cut\n",
			r.Sink, r.Path, r.Records, r.Dropped)
	}
	if rep.DLQFull {
		b.WriteString("stopped early: the DLQ takes no more entries (max_bytes reached under overflow: fail, or a write failed: see the errors above); files were not all read\n")
	}
	if rep.Interrupted {
		b.WriteString("stopped early: interrupted; everything read was handled\n")
	}
	_, _ = io.WriteString(w, b.String())
}

// HumanBytes writes n with a binary unit.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// WindowsReport is the window stage's part of the report.
type WindowsReport struct {
	Metrics int    `json:"metrics"`
	Sink    string `json:"sink"` // where rows went: a file path or redis address
	windows.Snapshot
}

func (w *WindowsReport) writeSummary(b *strings.Builder) {
	fmt.Fprintf(b, "windows: %d metrics, %d windows closed, %d rows written to %s", w.Metrics, w.WindowsClosed, w.RowsWritten, w.Sink)
	if w.RowsUpdated > 0 {
		fmt.Fprintf(b, " (%d of them corrections of closed windows)", w.RowsUpdated)
	}
	b.WriteString("\n")
	var notes []string
	add := func(n int64, what string) {
		if n > 0 {
			notes = append(notes, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(w.LateUpdated, "late records corrected closed windows")
	add(w.LateDLQ, "late records went to the DLQ")
	add(w.LateExpired, "records too late to correct went to the DLQ")
	add(w.LateDropped, "late records dropped (counted as filtered)")
	add(w.Overflow, "counts went to the __overflow__ group (max_groups)")
	add(w.WindowsForced, "windows closed early (max_open_windows)")
	add(w.FutureTime, "records dated past max_future went to the DLQ (invalid, future_time)")
	add(w.ClosedEarly, "windows closed early to stay under max_memory")
	add(w.KeptForgotten, "closed windows forgotten early to stay under max_memory")
	add(w.MemoryOverflow, "new groups went to __overflow__ to stay under max_memory")
	add(w.NoTime, "records had no event time (not windowed)")
	add(w.RowsFailed, "rows the windows sink refused (in the DLQ)")
	if len(notes) > 0 {
		fmt.Fprintf(b, "windows: %s\n", strings.Join(notes, "; "))
	}
}

// SinkReport is one sink's delivery counters and its retry policy's.
type SinkReport struct {
	pipeline.SinkStats
	Retry pipeline.RetryStatsSnapshot `json:"retry"`
}

func sinkReports(st []pipeline.SinkStats, rs []*pipeline.Retrier) []SinkReport {
	out := make([]SinkReport, len(st))
	for i, s := range st {
		out[i].SinkStats = s
		if i < len(rs) && rs[i] != nil && rs[i].Stats != nil {
			out[i].Retry = rs[i].Stats.Snapshot()
		}
	}
	return out
}

func (rep *Report) writeSinkSummary(b *strings.Builder) {
	for _, s := range rep.Sinks {
		if s.Failed == 0 {
			continue
		}
		fmt.Fprintf(b, "sink %s: %d of %d batches failed a first write; %d recovered by retries (%d retries), %d gave up to the DLQ",
			s.Name, s.Failed, s.Batches, s.Recovered, s.Retry.Retries, s.GaveUp)
		if s.QueueFull > 0 {
			fmt.Fprintf(b, " (%d with the retry queue full)", s.QueueFull)
		}
		b.WriteString("\n")
	}
}
