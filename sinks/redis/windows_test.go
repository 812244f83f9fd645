package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline/windows"
)

const prefix = "t:"

// base is a window start well in the past, as a replay writes.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func storeConfig(s *testredis.Server, ttl time.Duration) config.WindowsRedis {
	return config.WindowsRedis{
		Redis:     config.Redis{Addr: s.Addr(), Password: config.NewSecret(s.Password()), Timeout: 5 * time.Second},
		KeyPrefix: prefix,
		TTL:       ttl,
	}
}

func openStore(t testing.TB, s *testredis.Server, ttl time.Duration) (*Windows, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	w, err := NewWindows(storeConfig(s, ttl), slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w, logs
}

func sketchOf(t testing.TB, p int, values ...string) (uint64, []byte) {
	t.Helper()
	sk, err := windows.NewSketch(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		sk.InsertHash(windows.HashValue([]byte(v)))
	}
	est, b, err := windows.Encode(sk)
	if err != nil {
		t.Fatal(err)
	}
	return est, b
}

func values(prefix string, n int) []string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return vs
}

func mkRow(t testing.TB, metric string, start time.Time, group []string, instance string, rev int, vals ...string) windows.Row {
	t.Helper()
	keys := []string{"service", "status"}[:len(group)]
	est, sk := sketchOf(t, 14, vals...)
	return windows.Row{
		Metric:      metric,
		Start:       start,
		End:         start.Add(time.Minute),
		GroupKeys:   keys,
		GroupValues: group,
		Estimate:    est,
		Records:     int64(len(vals)),
		Revision:    rev,
		Instance:    instance,
		Precision:   14,
		Sketch:      sk,
	}
}

func rowJSON(r *windows.Row) string { return string(r.AppendJSON(nil)) }

func readAll(t testing.TB, w *Windows, metric string, from, to time.Time) []string {
	t.Helper()
	var got []string
	err := w.ReadRows(t.Context(), metric, from, to, func(r *windows.Row) error {
		got = append(got, rowJSON(r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

func TestRoundTrip(t *testing.T) {
	srv := testredis.Start(t)
	w, logs := openStore(t, srv, 0)
	var rows []windows.Row
	for _, metric := range []string{"m1", "m2"} {
		for i := range 6 {
			start := base.Add(time.Duration(i) * time.Minute)
			for _, svc := range []string{"api", "db", `q"uote\t`} {
				for _, inst := range []string{"host-a", "host-b"} {
					group := []string{svc}
					if metric == "m2" {
						group = []string{svc, "ok"}
					}
					rows = append(rows, mkRow(t, metric, start, group, inst, 1, values(metric+svc+inst+start.String(), 3+i)...))
				}
			}
		}
	}
	if err := w.WriteRows(t.Context(), rows); err != nil {
		t.Fatal(err)
	}
	ranges := []struct{ from, to time.Time }{
		{base, base.Add(6 * time.Minute)},
		{base.Add(time.Minute), base.Add(3 * time.Minute)},
		{base.Add(59*time.Second + 500*time.Millisecond), base.Add(2*time.Minute + 1)},
		{base.Add(5 * time.Minute), base.Add(time.Hour)},
		{base.Add(-time.Hour), base},
		{base.Add(time.Minute), base.Add(time.Minute)},
		{base.Add(2 * time.Minute), base.Add(time.Minute)},
	}
	for _, metric := range []string{"m1", "m2", "m3"} {
		for _, rg := range ranges {
			var want []string
			for i := range rows {
				r := &rows[i]
				if r.Metric == metric && !r.Start.Before(rg.from) && r.Start.Before(rg.to) {
					want = append(want, rowJSON(r))
				}
			}
			slices.Sort(want)
			got := readAll(t, w, metric, rg.from, rg.to)
			if !slices.Equal(got, want) {
				t.Errorf("%s [%s, %s): got %d rows, want %d\ngot:  %q\nwant: %q", metric, rg.from, rg.to, len(got), len(want), got, want)
			}
		}
	}
	// The keys are the documented ones.
	c := srv.Client(t)
	n, err := c.HLen(t.Context(), fmt.Sprintf("%sw:m1:%d", prefix, base.Unix())).Result()
	if err != nil || n != 6 {
		t.Fatalf("HLEN of the first m1 window = %d, %v; want 6", n, err)
	}
	v, err := c.HGet(t.Context(), fmt.Sprintf("%sw:m2:%d", prefix, base.Unix()), "host-a\t{\"service\":\"api\",\"status\":\"ok\"}").Result()
	if err != nil || !strings.HasPrefix(v, `{"metric":"m2",`) || strings.HasSuffix(v, "\n") {
		t.Fatalf("stored value %q, %v", v, err)
	}
	score, err := c.ZScore(t.Context(), prefix+"wi:m1", fmt.Sprintf("%sw:m1:%d", prefix, base.Add(time.Minute).Unix())).Result()
	if err != nil || int64(score) != base.Add(time.Minute).Unix() {
		t.Fatalf("index score %v, %v", score, err)
	}
	if w.Skipped() != 0 || logs.String() != "" {
		t.Fatalf("skipped %d, logs %q", w.Skipped(), logs.String())
	}
}

// TestManyRows writes past one chunk, with the same field in two chunks.
func TestManyRows(t *testing.T) {
	srv := testredis.Start(t)
	w, _ := openStore(t, srv, 0)
	var rows []windows.Row
	for i := range 1100 {
		// Rows i, i+300, i+600 and i+900 share a field, in different
		// chunks of 500 and within one.
		start := base.Add(time.Duration(i%2) * time.Minute)
		rows = append(rows, mkRow(t, "m", start, []string{fmt.Sprint("svc", i%300)}, "a", 1, fmt.Sprint("v", i)))
	}
	if err := w.WriteRows(t.Context(), rows); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	for i := range rows {
		k := fmt.Sprint(rows[i].Start.Unix(), rows[i].GroupJSON())
		want[k] = append(want[k], fmt.Sprint("v", i))
	}
	n := 0
	err := w.ReadRows(t.Context(), "m", base, base.Add(time.Hour), func(r *windows.Row) error {
		n++
		vals := want[fmt.Sprint(r.Start.Unix(), r.GroupJSON())]
		est, sk := sketchOf(t, 14, vals...)
		if !bytes.Equal(r.Sketch, sk) || r.Estimate != est {
			t.Errorf("%s %s: estimate %d, want %d (sketch equal: %v)", r.Start, r.GroupJSON(), r.Estimate, est, bytes.Equal(r.Sketch, sk))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("read %d rows, want %d", n, len(want))
	}
}

func readOne(t testing.TB, w *Windows, metric, instance string, start time.Time) *windows.Row {
	t.Helper()
	var got *windows.Row
	err := w.ReadRows(t.Context(), metric, start, start.Add(time.Second), func(r *windows.Row) error {
		if r.Instance == instance {
			if got != nil {
				t.Fatalf("two rows of instance %s", instance)
			}
			c := *r
			got = &c
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got == nil {
		t.Fatalf("no row of instance %s", instance)
	}
	return got
}

func TestUpsert(t *testing.T) {
	srv := testredis.Start(t)
	w, _ := openStore(t, srv, 0)
	ctx := t.Context()
	a, b := values("a", 40), values("b", 25)
	rowA := mkRow(t, "m", base, []string{"api"}, "one", 1, a...)
	sketchBefore := slices.Clone(rowA.Sketch)

	// The same rows twice: nothing changes.
	for range 2 {
		if err := w.WriteRows(ctx, []windows.Row{rowA}); err != nil {
			t.Fatal(err)
		}
	}
	if got := readOne(t, w, "m", "one", base); rowJSON(got) != rowJSON(&rowA) {
		t.Fatalf("after writing twice:\n got %s\nwant %s", rowJSON(got), rowJSON(&rowA))
	}

	// Values B for the same key and instance: the union, revision max,
	// records the new row's.
	rowB := mkRow(t, "m", base, []string{"api"}, "one", 3, b...)
	if err := w.WriteRows(ctx, []windows.Row{rowB}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rowA.Sketch, sketchBefore) {
		t.Fatal("WriteRows modified the caller's sketch")
	}
	estAB, skAB := sketchOf(t, 14, append(slices.Clone(a), b...)...)
	got := readOne(t, w, "m", "one", base)
	if !bytes.Equal(got.Sketch, skAB) || got.Estimate != estAB || got.Revision != 3 || got.Records != int64(len(b)) {
		t.Fatalf("after A then B: estimate %d (want %d), revision %d, records %d, sketch equal %v",
			got.Estimate, estAB, got.Revision, got.Records, bytes.Equal(got.Sketch, skAB))
	}
	// An older revision holding A again changes nothing but records.
	if err := w.WriteRows(ctx, []windows.Row{rowA}); err != nil {
		t.Fatal(err)
	}
	got = readOne(t, w, "m", "one", base)
	if !bytes.Equal(got.Sketch, skAB) || got.Estimate != estAB || got.Revision != 3 {
		t.Fatalf("after replaying A: estimate %d, revision %d", got.Estimate, got.Revision)
	}

	// Another instance is another field: untouched by the first.
	rowOther := mkRow(t, "m", base, []string{"api"}, "two", 1, b...)
	if err := w.WriteRows(ctx, []windows.Row{rowOther}); err != nil {
		t.Fatal(err)
	}
	if got := readOne(t, w, "m", "two", base); rowJSON(got) != rowJSON(&rowOther) {
		t.Fatalf("instance two: %s", rowJSON(got))
	}
	if got := readOne(t, w, "m", "one", base); got.Estimate != estAB {
		t.Fatalf("instance one changed: %d", got.Estimate)
	}

	// Both in one batch: the union too.
	rowC := mkRow(t, "m", base.Add(time.Minute), []string{"api"}, "one", 1, a...)
	rowD := mkRow(t, "m", base.Add(time.Minute), []string{"api"}, "one", 2, b...)
	if err := w.WriteRows(ctx, []windows.Row{rowC, rowD}); err != nil {
		t.Fatal(err)
	}
	got = readOne(t, w, "m", "one", base.Add(time.Minute))
	if !bytes.Equal(got.Sketch, skAB) || got.Revision != 2 || got.Records != int64(len(b)) {
		t.Fatalf("one batch: estimate %d, revision %d, records %d", got.Estimate, got.Revision, got.Records)
	}
}

// TestUpsertDense merges sketches past the sparse threshold: the union is
// the sketch of all values, byte for byte.
func TestUpsertDense(t *testing.T) {
	srv := testredis.Start(t)
	w, _ := openStore(t, srv, 0)
	a, b := values("a", 20000), values("b", 30)
	for i, vals := range [][]string{a, b, a, b} {
		if err := w.WriteRows(t.Context(), []windows.Row{mkRow(t, "m", base, nil, "x", i+1, vals...)}); err != nil {
			t.Fatal(err)
		}
	}
	est, sk := sketchOf(t, 14, append(slices.Clone(a), b...)...)
	got := readOne(t, w, "m", "x", base)
	if !bytes.Equal(got.Sketch, sk) || got.Estimate != est || got.Revision != 4 {
		t.Fatalf("estimate %d, want %d; revision %d; sketch equal %v", got.Estimate, est, got.Revision, bytes.Equal(got.Sketch, sk))
	}
}

func TestPrecisionMismatch(t *testing.T) {
	srv := testredis.Start(t)
	w, _ := openStore(t, srv, 0)
	r14 := mkRow(t, "m", base, []string{"api"}, "one", 1, "x", "y")
	if err := w.WriteRows(t.Context(), []windows.Row{r14}); err != nil {
		t.Fatal(err)
	}
	r12 := r14
	_, r12.Sketch = sketchOf(t, 12, "z")
	r12.Precision = 12
	err := w.WriteRows(t.Context(), []windows.Row{r12})
	if err == nil || !strings.Contains(err.Error(), "precision 14") || !strings.Contains(err.Error(), "precision 12") {
		t.Fatalf("error %v; want one naming precisions 14 and 12", err)
	}
	if got := readOne(t, w, "m", "one", base); rowJSON(got) != rowJSON(&r14) {
		t.Fatalf("stored row changed: %s", rowJSON(got))
	}
	// Within one batch too.
	r14b := r14
	r14b.Start = base.Add(time.Minute)
	r12b := r12
	r12b.Start = r14b.Start
	if err := w.WriteRows(t.Context(), []windows.Row{r14b, r12b}); err == nil || !strings.Contains(err.Error(), "precision 12") {
		t.Fatalf("in one batch: %v", err)
	}
}

func TestRejectsBadRows(t *testing.T) {
	srv := testredis.Start(t)
	w, _ := openStore(t, srv, 0)
	r := mkRow(t, "m", base.Add(time.Millisecond), nil, "x", 1, "v")
	if err := w.WriteRows(t.Context(), []windows.Row{r}); err == nil {
		t.Fatal("a window start with a fraction of a second was accepted")
	}
	// One bad row fails the batch before anything is written.
	good := mkRow(t, "m", base, nil, "x", 1, "v")
	r = mkRow(t, "", base, nil, "x", 1, "v")
	if err := w.WriteRows(t.Context(), []windows.Row{good, r}); err == nil {
		t.Fatal("a row without a metric was accepted")
	}
	if got := readAll(t, w, "m", base, base.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("a failed batch wrote %d rows", len(got))
	}
}

func TestTTL(t *testing.T) {
	srv := testredis.Start(t)
	const ttl = time.Hour
	w, _ := openStore(t, srv, ttl)
	c := srv.Client(t)
	ctx := t.Context()
	// An old window (a replay): written now, it lives ttl from now and
	// stays in the index.
	if err := w.WriteRows(ctx, []windows.Row{mkRow(t, "m", base, nil, "x", 1, "v")}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{fmt.Sprintf("%sw:m:%d", prefix, base.Unix()), prefix + "wi:m"} {
		d, err := c.TTL(ctx, key).Result()
		if err != nil || d <= 0 || d > ttl {
			t.Fatalf("TTL %s = %v, %v; want in (0, %s]", key, d, err, ttl)
		}
	}
	if got := readAll(t, w, "m", base, base.Add(time.Minute)); len(got) != 1 {
		t.Fatalf("read %d rows of an old window, want 1", len(got))
	}
	// Without ttl, no expiry.
	w0, _ := openStore(t, srv, 0)
	if err := w0.WriteRows(ctx, []windows.Row{mkRow(t, "n", base, nil, "x", 1, "v")}); err != nil {
		t.Fatal(err)
	}
	if d, err := c.TTL(ctx, fmt.Sprintf("%sw:n:%d", prefix, base.Unix())).Result(); err != nil || d != -1 {
		t.Fatalf("TTL without ttl = %v, %v; want -1 (none)", d, err)
	}
}

// waitFor polls cond until it holds; the test's deadline bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting: %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestExpiryCleansIndex(t *testing.T) {
	srv := testredis.Start(t)
	const ttl = time.Second
	w, _ := openStore(t, srv, ttl)
	c := srv.Client(t)
	ctx := t.Context()
	key1 := fmt.Sprintf("%sw:m:%d", prefix, base.Unix())
	key2 := fmt.Sprintf("%sw:m:%d", prefix, base.Add(time.Minute).Unix())
	key3 := fmt.Sprintf("%sw:m:%d", prefix, base.Add(2*time.Minute).Unix())
	if err := w.WriteRows(ctx, []windows.Row{
		mkRow(t, "m", base, nil, "x", 1, "v"),
		mkRow(t, "m", base.Add(2*time.Minute), nil, "x", 1, "v"),
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the windows to expire", func() bool { return c.Exists(ctx, key1, key3).Val() == 0 })
	// A read of the first window finds it gone and unlists it.
	if got := readAll(t, w, "m", base, base.Add(time.Minute)); len(got) != 0 {
		t.Fatalf("read %d rows of an expired window", len(got))
	}
	if err := c.ZScore(ctx, prefix+"wi:m", key1).Err(); !errors.Is(err, goredis.Nil) {
		t.Fatalf("expired window still in the index after a read: %v", err)
	}
	// Writes unlist expired windows they did not read (key3), once per
	// ttl, and keep live ones (key2).
	waitFor(t, "a write to trim the index", func() bool {
		if err := w.WriteRows(ctx, []windows.Row{mkRow(t, "m", base.Add(time.Minute), nil, "x", 1, "v")}); err != nil {
			t.Fatal(err)
		}
		return errors.Is(c.ZScore(ctx, prefix+"wi:m", key3).Err(), goredis.Nil)
	})
	if err := c.ZScore(ctx, prefix+"wi:m", key2).Err(); err != nil {
		t.Fatalf("live window missing from the index: %v", err)
	}
	// When everything has expired, the index has too.
	waitFor(t, "the index to expire", func() bool { return c.Exists(ctx, prefix+"wi:m").Val() == 0 })
}

func TestSkipsBadValues(t *testing.T) {
	srv := testredis.Start(t)
	w, logs := openStore(t, srv, 0)
	c := srv.Client(t)
	ctx := t.Context()
	good := mkRow(t, "m", base, []string{"api"}, "x", 1, "v")
	if err := w.WriteRows(ctx, []windows.Row{good}); err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("%sw:m:%d", prefix, base.Unix())
	other := mkRow(t, "other", base, []string{"api"}, "x", 1, "v")
	if err := c.HSet(ctx, key, "y\t{}", "not json", "z\t{}", string(bytes.TrimSpace(other.AppendJSON(nil)))).Err(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, w, "m", base, base.Add(time.Minute))
	if len(got) != 1 || got[0] != rowJSON(&good) {
		t.Fatalf("read %q", got)
	}
	if w.Skipped() != 2 {
		t.Fatalf("Skipped = %d, want 2", w.Skipped())
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, key) || !strings.Contains(l, `field="y\t{}"`) {
		t.Fatalf("log %q lacks the key and field", l)
	}
	// A write over a value that is not a row replaces it.
	bad := mkRow(t, "m", base, nil, "y", 1, "w")
	if err := w.WriteRows(ctx, []windows.Row{bad}); err != nil {
		t.Fatal(err)
	}
	if w.Skipped() != 3 {
		t.Fatalf("Skipped = %d, want 3", w.Skipped())
	}
	if got := readOne(t, w, "m", "y", base); rowJSON(got) != rowJSON(&bad) {
		t.Fatalf("replaced row: %s", rowJSON(got))
	}
	// So does a write over a row whose sketch does not decode.
	broken := mkRow(t, "m", base, nil, "q", 1, "v")
	broken.Sketch = []byte{0xff, 0x01}
	if err := c.HSet(ctx, key, fieldOf(&broken), string(bytes.TrimSpace(broken.AppendJSON(nil)))).Err(); err != nil {
		t.Fatal(err)
	}
	fixed := mkRow(t, "m", base, nil, "q", 1, "v")
	before := w.Skipped()
	if err := w.WriteRows(ctx, []windows.Row{fixed}); err != nil {
		t.Fatal(err)
	}
	if w.Skipped() != before+1 {
		t.Fatalf("Skipped = %d, want %d", w.Skipped(), before+1)
	}
	if got := readOne(t, w, "m", "q", base); rowJSON(got) != rowJSON(&fixed) {
		t.Fatalf("replaced row: %s", rowJSON(got))
	}
}

func TestReadStopsOnError(t *testing.T) {
	srv := testredis.Start(t)
	w, _ := openStore(t, srv, 0)
	var rows []windows.Row
	for i := range 3 {
		rows = append(rows, mkRow(t, "m", base.Add(time.Duration(i)*time.Minute), nil, "x", 1, "v"))
	}
	if err := w.WriteRows(t.Context(), rows); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	n := 0
	err := w.ReadRows(t.Context(), "m", base, base.Add(time.Hour), func(*windows.Row) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("ReadRows = %v after %d rows; want stop after 1", err, n)
	}
}

// TestLargeWindow reads a hash that takes several HSCAN rounds, once each.
func TestLargeWindow(t *testing.T) {
	srv := testredis.Start(t)
	w, _ := openStore(t, srv, 0)
	var rows []windows.Row
	for i := range 3 * scanCount {
		rows = append(rows, mkRow(t, "m", base, []string{fmt.Sprint("s", i)}, "x", 1, "v"))
	}
	rows = append(rows, mkRow(t, "m", base.Add(time.Minute), nil, "x", 1, "v"))
	if err := w.WriteRows(t.Context(), rows); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, w, "m", base, base.Add(time.Hour))
	if len(got) != len(rows) || len(slices.Compact(got)) != len(rows) {
		t.Fatalf("read %d rows (%d distinct), want %d", len(got), len(slices.Compact(got)), len(rows))
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	const password, wrong = "s3cret-Pw-71", "wr0ng-Pw-93"
	srv := testredis.StartWith(t, testredis.Options{Password: password})
	libLogs := &logBuf{}
	redisconn.RouteLibraryLogs(slog.New(slog.NewTextHandler(libLogs, nil)))
	t.Cleanup(func() { redisconn.RouteLibraryLogs(slog.New(slog.DiscardHandler)) })

	cfg := storeConfig(srv, time.Hour)
	cfg.Password = config.NewSecret(wrong)
	logs := &logBuf{}
	_, err := NewWindows(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err == nil {
		t.Fatal("NewWindows succeeded with a wrong password")
	}
	t.Logf("error: %v", err)
	cfg.Username = "nobody"
	_, err2 := NewWindows(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err2 == nil {
		t.Fatal("NewWindows succeeded with a wrong user")
	}
	for _, text := range []string{err.Error(), err2.Error(), fmt.Sprintf("%+v %#v", err, err), logs.String(), libLogs.String()} {
		for _, secret := range []string{password, wrong} {
			if strings.Contains(text, secret) {
				t.Fatalf("a password leaked: %q", text)
			}
		}
	}

	// With the right password it works, and a failing write names no
	// secret either.
	w, logs2 := openStore(t, srv, time.Hour)
	if err := w.WriteRows(t.Context(), []windows.Row{mkRow(t, "m", base, nil, "x", 1, "v")}); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	werr := w.WriteRows(ctx, []windows.Row{mkRow(t, "m", base, nil, "x", 1, "w")})
	if werr == nil {
		t.Fatal("write to a killed server succeeded")
	}
	t.Logf("write error: %v", werr)
	for _, text := range []string{werr.Error(), logs2.String(), libLogs.String()} {
		if strings.Contains(text, password) {
			t.Fatalf("the password leaked: %q", text)
		}
	}
}

// benchRun numbers the calls of BenchmarkWriteRows/new across its runs.
var benchRun atomic.Int64

func BenchmarkWriteRows(b *testing.B) {
	srv := testredis.Start(b)
	w, _ := openStore(b, srv, time.Hour)
	const n = 1000
	// 1,000 rows of sparse sketches (20 values each) over 10 windows.
	rows := make([]windows.Row, n)
	for i := range rows {
		rows[i] = mkRow(b, "m", base.Add(time.Duration(i%10)*time.Minute), []string{fmt.Sprint("svc", i/10)}, "x", 1, values(fmt.Sprint(i), 20)...)
	}
	b.Run("new", func(b *testing.B) {
		// Each call writes fields not stored yet: nothing to merge.
		for b.Loop() {
			i := benchRun.Add(1)
			for j := range rows {
				rows[j].Instance = fmt.Sprint("new", i)
			}
			if err := w.WriteRows(b.Context(), rows); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("merge", func(b *testing.B) {
		// Each call updates stored fields with other values.
		other := slices.Clone(rows)
		for j := range other {
			other[j] = mkRow(b, "m", rows[j].Start, rows[j].GroupValues, "merge", 2, values(fmt.Sprint("o", j), 20)...)
			rows[j].Instance = "merge"
		}
		i := 0
		for b.Loop() {
			i++
			batch := rows
			if i%2 == 0 {
				batch = other
			}
			if err := w.WriteRows(b.Context(), batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
	})
}
