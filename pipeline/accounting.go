package pipeline

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// Accounting counts what a run took in and where each record went, so that
// every run can prove in = out + dlq + filtered, in total and per source.
// Counters move once per batch, never per record.
//
// A record is one canonical record out of a parser, or one unit that failed
// as a whole (a malformed line), or one file that failed as a whole: each
// DLQ entry stands for exactly one record in.
type Accounting struct {
	RecordsIn       atomic.Int64
	RecordsOut      atomic.Int64
	RecordsFiltered atomic.Int64
	// DLQSent counts entries handed to the DLQ, by class (index in Classes).
	// What the DLQ durably wrote is its own count; the two must agree at
	// the end of a run.
	DLQSent [NumClasses]atomic.Int64
	// DLQLost counts entries the DLQ refused (it was closed or the run was
	// cancelled while it was full). Never expected; always reported.
	DLQLost atomic.Int64
	// DLQOther counts DLQ entries that stand for no input record (window
	// rows the windows sink refused); they are also in DLQSent, and
	// DLQOtherLost in DLQLost. The record invariant leaves both out.
	DLQOther     atomic.Int64
	DLQOtherLost atomic.Int64
	Units        atomic.Int64
	// RecordsRewindowed counts the records of WindowsOnly batches: read
	// again after a restart only to rebuild window counts. They were
	// counted in (and out, to the DLQ or filtered) on their first read, so
	// they are in none of the other counters and the invariant leaves
	// them out.
	RecordsRewindowed atomic.Int64
	// DLQAlready counts records whose DLQ entry was not made because the
	// DLQ holds one for the same input already (dedupe after a restart:
	// pipeline.ErrAlreadyInDLQ). They are in the DLQ, so the invariant
	// counts them with dlq; the DLQ's own count of what it wrote does not
	// include them.
	DLQAlready atomic.Int64

	mu      sync.Mutex
	sources map[string]*SourceCount
	// series counts records by config source and format, for telemetry.
	// Unlike sources (one per input path, unbounded) its keys are few: the
	// config's sources (or a replay's "file" and "dlq") times four formats,
	// and MaxSeries bounds it whatever they are.
	series map[seriesKey]*SeriesCount
}

// MaxSeries bounds the distinct (source, format) pairs Accounting counts
// apart; the pairs beyond it are counted under source OverflowSeries.
const MaxSeries = 512

// OverflowSeries is the source name of the records of the pairs beyond
// MaxSeries.
const OverflowSeries = "other"

// Series says under which source and format a batch's records count.
type seriesKey struct {
	source string
	format Format
}

// SeriesCount is the records of one (source, format) pair: Source is the
// config source's name (a replay's inputs: "file", or "dlq"), Format the
// inputs' resolved format.
type SeriesCount struct {
	Source   string
	Format   Format
	In       int64
	Out      int64
	Filtered int64
}

// SourceCount is the accounting of one source (one file).
type SourceCount struct {
	Source   string `json:"source"`
	In       int64  `json:"records_in"`
	Out      int64  `json:"records_out"`
	Filtered int64  `json:"records_filtered"`
	DLQ      int64  `json:"dlq"`
	Failed   bool   `json:"failed,omitempty"` // the file itself failed (class file)
	// Rewindowed counts the records read again only for the windows (see
	// Accounting.RecordsRewindowed); not part of the invariant.
	Rewindowed int64 `json:"records_rewindowed,omitempty"`
}

// batchCount is one batch's contribution, summed without atomics and added
// once.
type batchCount struct {
	in, out, filtered, lost int64
	already                 int64 // entries the DLQ holds already (ErrAlreadyInDLQ)
	dlq                     [NumClasses]int64
}

// add counts one batch (or one failed file) of the input source, whose
// records belong to series k.
func (a *Accounting) add(source string, k seriesKey, c *batchCount, fileFailed bool) {
	a.RecordsIn.Add(c.in)
	a.RecordsOut.Add(c.out)
	a.RecordsFiltered.Add(c.filtered)
	a.DLQLost.Add(c.lost)
	a.DLQAlready.Add(c.already)
	dlq := c.already
	for i, n := range c.dlq {
		if n != 0 {
			a.DLQSent[i].Add(n)
			dlq += n
		}
	}
	a.mu.Lock()
	s := a.source(source)
	s.In += c.in
	s.Out += c.out
	s.Filtered += c.filtered
	s.DLQ += dlq + c.lost
	s.Failed = s.Failed || fileFailed
	// Under the lock taken anyway: the series costs a map lookup per
	// batch, and an allocation only the first time a pair is seen.
	sc := a.seriesOf(k)
	sc.In += c.in
	sc.Out += c.out
	sc.Filtered += c.filtered
	a.mu.Unlock()
}

// seriesOf returns the count of k, made on first use, or the overflow
// pair's once MaxSeries pairs exist. a.mu is held.
func (a *Accounting) seriesOf(k seriesKey) *SeriesCount {
	if sc := a.series[k]; sc != nil {
		return sc
	}
	if a.series == nil {
		a.series = map[seriesKey]*SeriesCount{}
	}
	if len(a.series) >= MaxSeries {
		k.source = OverflowSeries
		if sc := a.series[k]; sc != nil {
			return sc
		}
	}
	sc := &SeriesCount{Source: k.source, Format: k.format}
	a.series[k] = sc
	return sc
}

// Series returns the records by (source, format), sorted by source then
// format. Their sums are RecordsIn, RecordsOut and RecordsFiltered.
func (a *Accounting) Series() []SeriesCount {
	a.mu.Lock()
	out := make([]SeriesCount, 0, len(a.series))
	for _, sc := range a.series {
		out = append(out, *sc)
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Source != out[j].Source {
			return out[i].Source < out[j].Source
		}
		return out[i].Format < out[j].Format
	})
	return out
}

// addRewindowed counts n records of a WindowsOnly batch of source.
func (a *Accounting) addRewindowed(source string, n int64) {
	a.RecordsRewindowed.Add(n)
	a.mu.Lock()
	s := a.source(source)
	s.Rewindowed += n
	a.mu.Unlock()
}

// source returns the count of source, made on first use. a.mu is held.
func (a *Accounting) source(source string) *SourceCount {
	if a.sources == nil {
		a.sources = map[string]*SourceCount{}
	}
	s := a.sources[source]
	if s == nil {
		s = &SourceCount{Source: source}
		a.sources[source] = s
	}
	return s
}

// Sources returns the per-source counts, sorted by source.
func (a *Accounting) Sources() []SourceCount {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]SourceCount, 0, len(a.sources))
	for _, s := range a.sources {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out
}

// DLQSentTotal sums DLQSent over classes.
func (a *Accounting) DLQSentTotal() int64 {
	var n int64
	for i := range a.DLQSent {
		n += a.DLQSent[i].Load()
	}
	return n
}

// Check verifies in = out + dlq + filtered in total and per source, with
// dlq the entries handed to the DLQ (lost ones included, so a loss shows up
// as a mismatch against what the DLQ wrote, never as a silent gap here).
func (a *Accounting) Check() error {
	in, out, filt := a.RecordsIn.Load(), a.RecordsOut.Load(), a.RecordsFiltered.Load()
	dlq := a.DLQSentTotal() - a.DLQOther.Load() + a.DLQLost.Load() - a.DLQOtherLost.Load() + a.DLQAlready.Load()
	if in != out+dlq+filt {
		return fmt.Errorf("accounting: records in %d != out %d + dlq %d + filtered %d", in, out, dlq, filt)
	}
	for _, s := range a.Sources() {
		if s.In != s.Out+s.DLQ+s.Filtered {
			return fmt.Errorf("accounting: %s: records in %d != out %d + dlq %d + filtered %d", s.Source, s.In, s.Out, s.DLQ, s.Filtered)
		}
	}
	return nil
}
