package windows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/axiomhq/hyperloglog"
)

// Query asks for the distinct count of one metric over a range of windows,
// merged across groups, instances, revisions and runs.
//
// The range selects whole windows: a window is included when its start is
// in [From, To), so bounds that are not on window boundaries do not cut a
// window in two (a window starting before From is left out even if it ends
// after From; one starting just before To is in even though it ends after
// To). A zero From or To leaves that end open (back to 1900 and up to
// 2200: stores are always asked for a finite range).
type Query struct {
	Metric   string
	From, To time.Time
	// By are the group fields kept in the result, a subset of the metric's
	// group_by; the other fields are merged away. Empty: one total across
	// all groups.
	By []string
	// Where keeps only the rows whose group has these field values.
	Where map[string]string
	// PerWindow gives one result per window instead of one over the
	// whole range.
	PerWindow bool
}

// Result is one merged distinct count.
type Result struct {
	WindowStart, WindowEnd time.Time // zero unless Query.PerWindow
	GroupKeys, GroupValues []string  // Query.By and their values
	Estimate               uint64
	Windows                int      // distinct windows merged
	Rows                   int      // rows merged (revisions, instances, runs)
	Instances              []string // distinct instances merged, sorted
}

// The range a store is asked for when a Query end is open: every window
// that can be (windows align to midnight UTC and start at event times).
var (
	queryOpenFrom = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	queryOpenTo   = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Run reads every row of q.Metric in range from r and merges, for each
// result key (the window, with PerWindow, and the By values), the sketches
// of all its rows. Union is always right: a later revision's sketch holds
// the earlier one's values, and sketches of other instances and runs hold
// other records. Results are sorted by window start, then group values.
//
// Rows of different precisions cannot be merged into one result, and every
// row must have the By and Where fields: either is an error.
func Run(ctx context.Context, r RowReader, q Query) ([]Result, error) {
	if q.Metric == "" {
		return nil, errors.New("query: no metric")
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return nil, fmt.Errorf("query: the range end %s is not after its start %s",
			q.To.UTC().Format(time.RFC3339Nano), q.From.UTC().Format(time.RFC3339Nano))
	}
	for i, f := range q.By {
		if slices.Contains(q.By[:i], f) {
			return nil, fmt.Errorf("query: group field %q is listed twice", f)
		}
	}
	whereKeys := slices.Sorted(maps.Keys(q.Where)) // a stable first error

	// Stores are given a finite range: RowReader has no open ends.
	readFrom, readTo := q.From, q.To
	if readFrom.IsZero() {
		readFrom = queryOpenFrom
	}
	if readTo.IsZero() {
		readTo = queryOpenTo
	}

	accs := map[string]*queryAcc{}
	var key []byte
	values := make([]string, len(q.By))
	err := r.ReadRows(ctx, q.Metric, readFrom, readTo, func(row *Row) error {
		// Readers filter already; checking again keeps a loose one correct.
		if row.Metric != q.Metric || !startInQueryRange(row.Start, q.From, q.To) {
			return nil
		}
		for _, f := range whereKeys {
			v, err := queryGroupValue(row, f)
			if err != nil {
				return err
			}
			if v != q.Where[f] {
				return nil
			}
		}
		key = key[:0]
		if q.PerWindow {
			key = strconv.AppendInt(key, row.Start.UnixNano(), 10)
		}
		for i, f := range q.By {
			v, err := queryGroupValue(row, f)
			if err != nil {
				return err
			}
			values[i] = v
			key = append(key, 0)
			key = strconv.AppendInt(key, int64(len(v)), 10)
			key = append(key, ':')
			key = append(key, v...)
		}
		acc := accs[string(key)]
		if acc == nil {
			acc = &queryAcc{
				precision: row.Precision,
				windows:   map[int64]struct{}{},
				instances: map[string]struct{}{},
			}
			if len(values) > 0 {
				acc.values = slices.Clone(values)
			}
			if q.PerWindow {
				acc.start = row.Start
			}
			accs[string(key)] = acc
		}
		return acc.add(row)
	})
	if err != nil {
		return nil, err
	}

	out := make([]Result, 0, len(accs))
	for _, acc := range accs {
		est, _, err := Encode(acc.sketch)
		if err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		res := Result{
			GroupValues: acc.values,
			Estimate:    est,
			Windows:     len(acc.windows),
			Rows:        acc.rows,
			Instances:   slices.Sorted(maps.Keys(acc.instances)),
		}
		if len(q.By) > 0 {
			res.GroupKeys = slices.Clone(q.By)
		}
		if q.PerWindow {
			res.WindowStart, res.WindowEnd = acc.start, acc.end
		}
		out = append(out, res)
	}
	slices.SortFunc(out, func(a, b Result) int {
		return cmp.Or(a.WindowStart.Compare(b.WindowStart), slices.Compare(a.GroupValues, b.GroupValues))
	})
	return out, nil
}

// queryAcc merges the rows of one result.
type queryAcc struct {
	start, end time.Time
	values     []string
	precision  int
	sketch     *hyperloglog.Sketch
	windows    map[int64]struct{}
	instances  map[string]struct{}
	rows       int
}

func (a *queryAcc) add(row *Row) error {
	if row.Precision != a.precision {
		return fmt.Errorf("query: metric %q: cannot merge rows of precision %d with a row of precision %d (window %s, group %s, instance %q); query a range written with one precision",
			row.Metric, a.precision, row.Precision, row.Start.UTC().Format(time.RFC3339), row.GroupJSON(), row.Instance)
	}
	sk, err := Decode(row.Sketch)
	if err != nil {
		return fmt.Errorf("query: metric %q: row of window %s, group %s, instance %q: %w",
			row.Metric, row.Start.UTC().Format(time.RFC3339), row.GroupJSON(), row.Instance, err)
	}
	if a.sketch == nil {
		a.sketch = sk
	} else if err := a.sketch.Merge(sk); err != nil {
		return fmt.Errorf("query: metric %q: %w", row.Metric, err)
	}
	if row.End.After(a.end) {
		a.end = row.End
	}
	a.windows[row.Start.UnixNano()] = struct{}{}
	a.instances[row.Instance] = struct{}{}
	a.rows++
	return nil
}

// queryGroupValue is the value of group field f in row, or an error naming
// the fields the row does have.
func queryGroupValue(row *Row, f string) (string, error) {
	if i := slices.Index(row.GroupKeys, f); i >= 0 {
		return row.GroupValues[i], nil
	}
	have := "none: the metric has no group_by"
	if len(row.GroupKeys) > 0 {
		have = strings.Join(row.GroupKeys, ", ")
	}
	return "", fmt.Errorf("query: metric %q: rows have no group field %q (their fields: %s)", row.Metric, f, have)
}
