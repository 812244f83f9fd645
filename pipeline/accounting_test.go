package pipeline

import (
	"fmt"
	"testing"
)

// TestAccountingSeriesBoundedAndSummed: the records by (source, format)
// sum to the job-wide counters, and distinct pairs beyond MaxSeries are
// counted under OverflowSeries instead of growing the table: a source
// name that varied per input could not make the telemetry unbounded.
func TestAccountingSeriesBoundedAndSummed(t *testing.T) {
	var a Accounting
	pairs := MaxSeries + 40
	for i := range pairs {
		k := seriesKey{fmt.Sprintf("src%d", i), Format(i % 4)}
		a.add(fmt.Sprintf("/in/%d", i), k, &batchCount{in: 3, out: 1, filtered: 1, dlq: [NumClasses]int64{1}}, false)
	}
	series := a.Series()
	if len(series) > MaxSeries+4 {
		t.Fatalf("%d series, want at most MaxSeries %d plus one overflow pair per format", len(series), MaxSeries)
	}
	var in, out, filtered, overflow int64
	for _, s := range series {
		in += s.In
		out += s.Out
		filtered += s.Filtered
		if s.Source == OverflowSeries {
			overflow += s.In
		}
	}
	if in != a.RecordsIn.Load() || out != a.RecordsOut.Load() || filtered != a.RecordsFiltered.Load() {
		t.Fatalf("series sum to in %d out %d filtered %d; job-wide %d %d %d", in, out, filtered,
			a.RecordsIn.Load(), a.RecordsOut.Load(), a.RecordsFiltered.Load())
	}
	if in != int64(3*pairs) || overflow == 0 {
		t.Fatalf("in %d (want %d), overflow %d (want > 0)", in, 3*pairs, overflow)
	}
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
}
