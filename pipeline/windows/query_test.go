package windows

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// qtT0 is the start of the first window in these tests (1m windows).
var qtT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// qtValues returns prefix+i for i in [lo, hi).
func qtValues(prefix string, lo, hi int) []string {
	vs := make([]string, 0, hi-lo)
	for i := lo; i < hi; i++ {
		vs = append(vs, prefix+strconv.Itoa(i))
	}
	return vs
}

// qtRow builds a row of metric m for window w (minutes after qtT0) whose
// sketch holds values.
func qtRow(t testing.TB, m string, w int, p int, inst string, rev int, keys, vals []string, values []string) Row {
	t.Helper()
	sk, err := NewSketch(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		sk.InsertHash(HashValue([]byte(v)))
	}
	est, b, err := Encode(sk)
	if err != nil {
		t.Fatal(err)
	}
	start := qtT0.Add(time.Duration(w) * time.Minute)
	return Row{
		Metric: m, Start: start, End: start.Add(time.Minute),
		GroupKeys: keys, GroupValues: vals,
		Estimate: est, Records: int64(len(values)), Revision: rev,
		Instance: inst, Precision: p, Sketch: b,
	}
}

// qtMem is a RowReader over rows in memory. It does not filter by range,
// so Run's own check is tested too.
type qtMem []Row

func (m qtMem) ReadRows(ctx context.Context, metric string, from, to time.Time, fn func(*Row) error) error {
	if from.IsZero() || to.IsZero() || !to.After(from) {
		return fmt.Errorf("reader asked for [%s, %s): RowReader ranges are finite", from, to)
	}
	for i := range m {
		r := m[i]
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}

func (qtMem) Close() error { return nil }

var (
	qtSvc      = []string{"service"}
	qtSvcRoute = []string{"service", "route"}
)

func qtRun(t *testing.T, rows qtMem, q Query) []Result {
	t.Helper()
	res, err := Run(context.Background(), rows, q)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestQueryUnionAcrossInstancesAndRevisions(t *testing.T) {
	rows := qtMem{
		qtRow(t, "users", 0, 14, "a", 1, qtSvc, []string{"cart"}, qtValues("u", 0, 100)),
		// Revision 2 of the same key holds revision 1's values and more.
		qtRow(t, "users", 0, 14, "a", 2, qtSvc, []string{"cart"}, qtValues("u", 0, 150)),
		// Another instance saw an overlapping set.
		qtRow(t, "users", 0, 14, "b", 1, qtSvc, []string{"cart"}, qtValues("u", 120, 200)),
		// The next window, overlapping the first.
		qtRow(t, "users", 1, 14, "b", 1, qtSvc, []string{"cart"}, qtValues("u", 180, 260)),
		// Another metric is not read.
		qtRow(t, "other", 0, 14, "a", 1, qtSvc, []string{"cart"}, qtValues("x", 0, 500)),
	}
	res := qtRun(t, rows, Query{Metric: "users"})
	if len(res) != 1 {
		t.Fatalf("got %d results, want 1: %+v", len(res), res)
	}
	r := res[0]
	if r.Estimate != 260 || r.Windows != 2 || r.Rows != 4 || strings.Join(r.Instances, ",") != "a,b" {
		t.Fatalf("got %+v, want estimate 260 over 2 windows, 4 rows, instances a,b", r)
	}
	if !r.WindowStart.IsZero() || r.GroupKeys != nil || r.GroupValues != nil {
		t.Fatalf("a total has no window or group: %+v", r)
	}

	// Merging the same rows twice (a run replayed) changes nothing.
	res = qtRun(t, append(rows, rows...), Query{Metric: "users"})
	if res[0].Estimate != 260 || res[0].Rows != 8 {
		t.Fatalf("rows twice: %+v", res[0])
	}
}

func TestQueryByAndWhere(t *testing.T) {
	rows := qtMem{
		qtRow(t, "m", 0, 14, "a", 1, qtSvcRoute, []string{"cart", "/a"}, qtValues("u", 0, 40)),
		qtRow(t, "m", 0, 14, "a", 1, qtSvcRoute, []string{"cart", "/b"}, qtValues("u", 30, 70)),
		qtRow(t, "m", 0, 14, "a", 1, qtSvcRoute, []string{"shop", "/a"}, qtValues("u", 0, 10)),
		qtRow(t, "m", 1, 14, "b", 1, qtSvcRoute, []string{"shop", "/b"}, qtValues("v", 0, 5)),
	}
	res := qtRun(t, rows, Query{Metric: "m", By: []string{"service"}})
	want := []struct {
		svc       string
		est       uint64
		win, rows int
	}{{"cart", 70, 1, 2}, {"shop", 15, 2, 2}}
	if len(res) != len(want) {
		t.Fatalf("got %+v", res)
	}
	for i, w := range want {
		r := res[i]
		if strings.Join(r.GroupKeys, ",") != "service" || r.GroupValues[0] != w.svc || r.Estimate != w.est || r.Windows != w.win || r.Rows != w.rows {
			t.Errorf("result %d: got %+v, want %+v", i, r, w)
		}
	}

	// By in another order than group_by, and a Where on a field not kept.
	res = qtRun(t, rows, Query{Metric: "m", By: []string{"route", "service"}, Where: map[string]string{"route": "/a"}})
	if len(res) != 2 || res[0].GroupValues[1] != "cart" || res[0].Estimate != 40 || res[1].GroupValues[1] != "shop" || res[1].Estimate != 10 {
		t.Fatalf("by route,service where route=/a: %+v", res)
	}
	res = qtRun(t, rows, Query{Metric: "m", Where: map[string]string{"service": "cart", "route": "/b"}})
	if len(res) != 1 || res[0].Estimate != 40 || res[0].Rows != 1 {
		t.Fatalf("where service=cart,route=/b: %+v", res)
	}
	if res := qtRun(t, rows, Query{Metric: "m", Where: map[string]string{"service": "nope"}}); len(res) != 0 {
		t.Fatalf("where matching nothing: %+v", res)
	}

	// A field the rows lack names itself and the fields they have.
	for _, q := range []Query{
		{Metric: "m", By: []string{"status"}},
		{Metric: "m", Where: map[string]string{"status": "ok"}},
	} {
		_, err := Run(context.Background(), rows, q)
		if err == nil || !strings.Contains(err.Error(), `"status"`) || !strings.Contains(err.Error(), "service, route") {
			t.Errorf("%+v: error %v", q, err)
		}
	}
	if _, err := Run(context.Background(), rows, Query{Metric: "m", By: []string{"service", "service"}}); err == nil {
		t.Error("a field listed twice: no error")
	}
}

func TestQueryPerWindowAndRange(t *testing.T) {
	rows := qtMem{
		qtRow(t, "m", 2, 14, "a", 1, qtSvc, []string{"shop"}, qtValues("u", 0, 3)),
		qtRow(t, "m", 0, 14, "a", 1, qtSvc, []string{"cart"}, qtValues("u", 0, 10)),
		qtRow(t, "m", 0, 14, "b", 1, qtSvc, []string{"cart"}, qtValues("u", 5, 20)),
		qtRow(t, "m", 1, 14, "a", 1, qtSvc, []string{"cart"}, qtValues("u", 0, 7)),
		qtRow(t, "m", 0, 14, "a", 1, qtSvc, []string{"api"}, qtValues("u", 0, 1)),
	}
	res := qtRun(t, rows, Query{Metric: "m", By: []string{"service"}, PerWindow: true})
	type rw struct {
		w   int
		svc string
		est uint64
	}
	var got []rw
	for _, r := range res {
		got = append(got, rw{int(r.WindowStart.Sub(qtT0) / time.Minute), r.GroupValues[0], r.Estimate})
		if r.Windows != 1 || !r.WindowEnd.Equal(r.WindowStart.Add(time.Minute)) {
			t.Errorf("per window: %+v", r)
		}
	}
	want := []rw{{0, "api", 1}, {0, "cart", 20}, {1, "cart", 7}, {2, "shop", 3}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}

	// A window is in when its start is in [From, To).
	count := func(from, to time.Time) (uint64, int) {
		t.Helper()
		res := qtRun(t, rows, Query{Metric: "m", From: from, To: to, Where: map[string]string{"service": "cart"}})
		if len(res) == 0 {
			return 0, 0
		}
		return res[0].Estimate, res[0].Windows
	}
	at := func(n int) time.Time { return qtT0.Add(time.Duration(n) * time.Minute) }
	for _, c := range []struct {
		from, to time.Time
		est      uint64
		windows  int
	}{
		{at(0), at(1), 20, 1},                  // from on a start is in, to on a start is out
		{at(1), at(2), 7, 1},                   //
		{at(0), at(2), 20, 2},                  // window 1 is a subset of window 0
		{at(0).Add(time.Second), at(2), 7, 1},  // window 0 started before from: out
		{at(0), at(1).Add(time.Second), 20, 2}, // window 1 starts before to: in
		{time.Time{}, at(1), 20, 1},            // open start
		{at(1), time.Time{}, 7, 1},             // open end
		{at(5), at(6), 0, 0},                   // nothing
	} {
		if est, w := count(c.from, c.to); est != c.est || w != c.windows {
			t.Errorf("[%s, %s): estimate %d over %d windows, want %d over %d", c.from, c.to, est, w, c.est, c.windows)
		}
	}
	if _, err := Run(context.Background(), rows, Query{Metric: "m", From: at(1), To: at(1)}); err == nil {
		t.Error("empty range: no error")
	}
	if _, err := Run(context.Background(), rows, Query{}); err == nil {
		t.Error("no metric: no error")
	}
}

func TestQueryPrecisionMismatch(t *testing.T) {
	rows := qtMem{
		qtRow(t, "m", 0, 14, "a", 1, qtSvc, []string{"cart"}, qtValues("u", 0, 10)),
		qtRow(t, "m", 1, 12, "a", 1, qtSvc, []string{"cart"}, qtValues("u", 0, 10)),
	}
	_, err := Run(context.Background(), rows, Query{Metric: "m"})
	if err == nil || !strings.Contains(err.Error(), "precision 14") || !strings.Contains(err.Error(), "precision 12") {
		t.Fatalf("error %v, want one naming precisions 14 and 12", err)
	}
	// Per window, each result holds one precision: fine.
	res, err := Run(context.Background(), rows, Query{Metric: "m", PerWindow: true})
	if err != nil || len(res) != 2 || res[0].Estimate != 10 || res[1].Estimate != 10 {
		t.Fatalf("per window: %+v, %v", res, err)
	}
}

func TestQueryCorruptSketch(t *testing.T) {
	r := qtRow(t, "m", 0, 14, "a", 1, qtSvc, []string{"cart"}, qtValues("u", 0, 10))
	r.Sketch = r.Sketch[:5]
	_, err := Run(context.Background(), qtMem{r}, Query{Metric: "m"})
	if err == nil || !strings.Contains(err.Error(), `instance "a"`) {
		t.Fatalf("error %v", err)
	}
}

func TestQueryDenseUnion(t *testing.T) {
	// Sketches past the sparse limit merge densely; the estimate stays
	// within a few standard errors (0.8% at precision 14) of the union.
	rows := qtMem{
		qtRow(t, "m", 0, 14, "a", 1, nil, nil, qtValues("u", 0, 30000)),
		qtRow(t, "m", 0, 14, "b", 1, nil, nil, qtValues("u", 20000, 50000)),
		qtRow(t, "m", 1, 14, "a", 1, nil, nil, qtValues("u", 0, 500)), // sparse into dense
	}
	res := qtRun(t, rows, Query{Metric: "m"})
	if got := float64(res[0].Estimate); got < 50000*0.97 || got > 50000*1.03 {
		t.Fatalf("estimate %v, want about 50000", got)
	}
	_, err := Run(context.Background(), rows, Query{Metric: "m", By: []string{"service"}})
	if err == nil || !strings.Contains(err.Error(), "no group_by") {
		t.Fatalf("by on a metric without groups: %v", err)
	}
}
