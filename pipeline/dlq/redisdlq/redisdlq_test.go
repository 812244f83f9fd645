package redisdlq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

const testStream = "t:dlq"

// testEntry returns a valid entry whose payload names i.
func testEntry(i int, class string) *dlq.Entry {
	now := time.Now().UTC()
	e := &dlq.Entry{
		ID: dlq.NewID(now), Time: now, Stage: "parse", Component: "jsonl", Host: "host-1", PipelineVersion: "test",
		Source:   dlq.Source{Kind: "file", Path: "/var/log/app.jsonl", Format: "jsonl", Offset: int64(i) * 100, Line: int64(i) + 1},
		Error:    dlq.Error{Class: class, Code: "json_syntax", Message: "unexpected end of input"},
		Attempts: 1, FirstFailure: now, LastFailure: now,
	}
	e.SetPayload(fmt.Appendf(nil, `{"trace_id":"%032x","i":%d,"msg":"a <b> & c","pad":"%s"}`, i, i, strings.Repeat("x", 100)), 0, 0)
	return e
}

// richEntries returns entries that use every field and payload shape.
func richEntries() []*dlq.Entry {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	ws, we := t0.Truncate(time.Minute), t0.Truncate(time.Minute).Add(time.Minute)
	var out []*dlq.Entry
	full := testEntry(0, "late")
	full.EventTime, full.WindowStart, full.WindowEnd = &t0, &ws, &we
	full.TraceID, full.SpanID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	full.ReplayCount, full.ReplayedFrom = 2, dlq.NewID(t0)
	full.Attempts, full.FirstFailure = 5, t0
	full.Source = dlq.Source{Kind: "kafka", Topic: "logs", Partition: 3, KafkaOff: 991, Offset: 12, Format: "otlp"}
	full.Error.Message = "line 1:\n\ttab, \"quotes\", ünïcödé, \x00 nul"
	out = append(out, full)

	bin := testEntry(1, "malformed")
	bin.SetPayload([]byte{'{', 0xff, 0xfe, 0, '\n', '"', 0xc3}, 0, 0) // invalid UTF-8
	out = append(out, bin)

	empty := testEntry(2, "invalid")
	empty.SetPayload(nil, 0, 0)
	out = append(out, empty)

	cut := testEntry(3, "too_large")
	cut.SetPayload(bytes.Repeat([]byte("é"), 600), 5<<20, 1001) // cut inside a rune: backs off
	out = append(out, cut)

	redisSrc := testEntry(4, "sink_exhausted")
	redisSrc.Source = dlq.Source{Kind: "redis", Stream: "in", StreamID: "1700000000000-7"}
	redisSrc.Stage, redisSrc.Component = "sink", "kafka"
	out = append(out, redisSrc)

	crlf := testEntry(5, "malformed")
	crlf.SetPayload([]byte("a\r\nb\x00c"), 0, 0)
	out = append(out, crlf)
	return out
}

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

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func dlqConfig(s *testredis.Server, maxLen int64) config.DLQRedis {
	return config.DLQRedis{
		Redis:  config.Redis{Addr: s.Addr(), Password: config.NewSecret(s.Password()), Timeout: 2 * time.Second},
		Stream: testStream,
		MaxLen: maxLen,
		Group:  "procs",
	}
}

func openBackend(t *testing.T, cfg config.DLQRedis, opts Options) (*Backend, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	if opts.Logger == nil {
		opts.Logger = logs.logger()
	}
	b, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b, logs
}

func openStore(t *testing.T, cfg config.DLQRedis) *Store {
	t.Helper()
	s, err := OpenStore(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openFallback(t *testing.T, opts dlq.FileOptions) *dlq.File {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "dlq")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f, err := dlq.OpenFile(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	return f
}

func scanAll(t *testing.T, s *Store) []*dlq.Entry {
	t.Helper()
	var out []*dlq.Entry
	if err := s.Scan(t.Context(), func(e *dlq.Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func scanFiles(t *testing.T, dir string) []*dlq.Entry {
	t.Helper()
	var out []*dlq.Entry
	err := dlq.Scan(dir, func(e *dlq.Entry, _ dlq.Position) error {
		out = append(out, e)
		return nil
	}, func(c dlq.Corruption) { t.Errorf("corruption: %v", c) })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalEntries(t *testing.T, got, want []*dlq.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// TestFieldsCoverEntry fills every field of an Entry with a distinct
// non-zero value and checks the fields round-trip: a field added to
// dlq.Entry without a stream field fails here.
func TestFieldsCoverEntry(t *testing.T) {
	for _, binary := range []bool{false, true} {
		var e dlq.Entry
		fill(t, reflect.ValueOf(&e).Elem(), 1)
		if binary {
			e.Payload = ""
		} else {
			e.PayloadBase64 = nil
		}
		args, n := appendFields(nil, &e)
		if n <= 0 || len(args)%2 != 0 {
			t.Fatalf("appendFields: %d args, %d bytes", len(args), n)
		}
		values := map[string]any{}
		for i := 0; i < len(args); i += 2 {
			name := args[i].(string)
			if _, dup := values[name]; dup {
				t.Fatalf("field %s twice", name)
			}
			switch v := args[i+1].(type) {
			case string:
				values[name] = v
			case []byte:
				values[name] = string(v) // as Redis gives it back
			default:
				t.Fatalf("field %s: value of type %T", name, v)
			}
		}
		got, err := decodeEntry(values)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, &e) {
			t.Fatalf("round trip (binary %t):\n got %+v\nwant %+v", binary, got, &e)
		}
	}
}

// fill sets every field of v to a non-zero value derived from n.
func fill(t *testing.T, v reflect.Value, n int) int {
	t.Helper()
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, n, time.UTC)))
		return n + 1
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			n = fill(t, v.Field(i), n)
		}
		return n
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d-ü", n))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		switch v.Type().Elem().Kind() {
		case reflect.Uint8:
			v.SetBytes([]byte{0xff, byte(n), 0})
		case reflect.String:
			v.Set(reflect.ValueOf([]string{fmt.Sprintf("s%d", n), "b"}))
		default:
			t.Fatalf("unexpected slice %s", v.Type())
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		n = fill(t, p.Elem(), n)
		v.Set(p)
		return n
	default:
		t.Fatalf("unexpected field kind %s", v.Kind())
	}
	return n + 1
}

func TestDecodeRejects(t *testing.T) {
	f := func(values map[string]any, want string) {
		t.Helper()
		_, err := decodeEntry(values)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("decode %v: %v, want %q", values, err, want)
		}
	}
	f(map[string]any{"foo": "bar"}, "not a DLQ entry")
	f(map[string]any{"id": "X", "v": "3"}, "newer")
	f(map[string]any{"id": "X", "attempts": "many"}, "attempts")
	f(map[string]any{"id": "X", "time": "yesterday"}, "time")
	f(map[string]any{"id": "X", "truncated": "yes"}, "truncated")
}

func TestRoundTrip(t *testing.T) {
	srv := testredis.Start(t)
	cfg := dlqConfig(srv, 0)
	b, _ := openBackend(t, cfg, Options{})
	ctx := t.Context()
	want := richEntries()
	for i := range 50 {
		want = append(want, testEntry(10+i, "malformed"))
	}
	// Zero version, time and id are filled by Put.
	bare := testEntry(99, "invalid")
	bare.Version, bare.ID = 0, ""
	want = append(want, bare)
	for _, e := range want {
		if err := b.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if bare.ID == "" || bare.Version != dlq.SchemaVersion {
		t.Fatalf("Put did not fill id and version: %q %d", bare.ID, bare.Version)
	}
	st := b.Stats()
	if st.Total != int64(len(want)) || st.Failed != 0 || st.Written["malformed"] != 52 || st.Bytes <= 0 || b.FellBack() != 0 {
		t.Fatalf("stats %+v, fell back %d", st, b.FellBack())
	}

	s := openStore(t, cfg)
	got := scanAll(t, s)
	equalEntries(t, got, want)
	if n, err := s.Len(ctx); err != nil || n != int64(len(want)) {
		t.Fatalf("Len = %d, %v", n, err)
	}

	// The binary payload is stored as raw bytes, not base64.
	msgs, err := srv.Client(t).XRange(ctx, testStream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if p := msgs[1].Values["payload"]; p != string(want[1].PayloadBase64) {
		t.Fatalf("binary payload stored as %q", p)
	}

	// Get by entry id.
	for _, i := range []int{0, 1, len(want) - 1} {
		e, err := s.Get(ctx, want[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(e, want[i]) {
			t.Fatalf("Get %s = %+v", want[i].ID, e)
		}
	}
	if _, err := s.Get(ctx, dlq.NewID(time.Now())); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an unknown id: %v", err)
	}

	// Delete by entry id and by stream id; unknown ids are not errors.
	n, err := s.Delete(ctx, []string{want[0].ID, msgs[2].ID, dlq.NewID(time.Now()), "0-1"})
	if err != nil || n != 2 {
		t.Fatalf("Delete = %d, %v; want 2", n, err)
	}
	equalEntries(t, scanAll(t, s), append([]*dlq.Entry{want[1]}, want[3:]...))

	// Scan stops at fn's error and returns it.
	stop := errors.New("enough")
	calls := 0
	if err := s.Scan(ctx, func(*dlq.Entry) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("Scan returned %v after %d calls", err, calls)
	}
}

func TestPutRefuses(t *testing.T) {
	srv := testredis.Start(t)
	b, _ := openBackend(t, dlqConfig(srv, 0), Options{})
	ctx := t.Context()
	bad := testEntry(1, "")
	if err := b.Put(ctx, bad); !errors.Is(err, dlq.ErrInvalidEntry) {
		t.Fatalf("Put of an entry without class: %v", err)
	}
	if err := b.Put(ctx, nil); err == nil {
		t.Fatal("Put(nil) succeeded")
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, testEntry(2, "invalid")); !errors.Is(err, dlq.ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := Open(config.DLQRedis{Redis: config.Redis{Addr: srv.Addr()}, MaxLen: -1}, Options{}); err == nil {
		t.Fatal("Open took a negative maxlen")
	}
}

func TestConcurrentPuts(t *testing.T) {
	srv := testredis.Start(t)
	cfg := dlqConfig(srv, 0)
	b, _ := openBackend(t, cfg, Options{})
	const writers, each = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := b.Put(t.Context(), testEntry(w*each+i, testClasses[i%len(testClasses)])); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := b.Stats()
	if st.Total != writers*each {
		t.Fatalf("stats %+v", st)
	}
	for _, c := range testClasses {
		if st.Written[c] != writers*each/int64(len(testClasses)) {
			t.Fatalf("class %s: %d", c, st.Written[c])
		}
	}
	if n, err := srv.Client(t).XLen(t.Context(), testStream).Result(); err != nil || n != writers*each {
		t.Fatalf("XLEN %d, %v", n, err)
	}
}

var testClasses = []string{"malformed", "invalid", "too_large", "late"}

func TestTrimmedIsCounted(t *testing.T) {
	srv := testredis.Start(t)
	cfg := dlqConfig(srv, 100)
	b, logs := openBackend(t, cfg, Options{})
	const n = 1000
	for i := range n {
		if err := b.Put(t.Context(), testEntry(i, "malformed")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	left, err := srv.Client(t).XLen(t.Context(), testStream).Result()
	if err != nil {
		t.Fatal(err)
	}
	trimmed := b.Trimmed()
	if trimmed == 0 || left+trimmed != n {
		t.Fatalf("%d left + %d trimmed != %d put", left, trimmed, n)
	}
	if left < 100 {
		t.Fatalf("%d left, under maxlen", left)
	}
	st := b.Stats()
	if st.Total != n || st.Evicted != trimmed {
		t.Fatalf("stats %+v, trimmed %d", st, trimmed)
	}
	if c := strings.Count(logs.String(), "reached its maxlen"); c != 1 {
		t.Fatalf("%d trim warnings, want 1:\n%s", c, logs)
	}
	// The entries kept are the newest.
	got := scanAll(t, openStore(t, cfg))
	if got[len(got)-1].Source.Line != n {
		t.Fatalf("last entry is line %d", got[len(got)-1].Source.Line)
	}
}

// waitFor polls cond; the test's own deadline bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestFallbackWhenRedisDies kills the server while entries are being put:
// every entry ends in Redis or in the file DLQ, and after a restart the
// backend goes back to Redis.
func TestFallbackWhenRedisDies(t *testing.T) {
	srv := testredis.StartWith(t, testredis.Options{AOF: true})
	cfg := dlqConfig(srv, 0)
	fdir := filepath.Join(t.TempDir(), "fallback")
	fb := openFallback(t, dlq.FileOptions{Dir: fdir})
	b, logs := openBackend(t, cfg, Options{Fallback: fb, RetryAfter: 10 * time.Millisecond})
	ctx := t.Context()

	const n = 3000
	want := make(map[string]*dlq.Entry, n)
	entries := make([]*dlq.Entry, n)
	for i := range entries {
		entries[i] = testEntry(i, testClasses[i%len(testClasses)])
		want[entries[i].ID] = entries[i]
	}
	putDone := make(chan error, 1)
	go func() {
		for _, e := range entries[:1500] {
			if err := b.Put(ctx, e); err != nil {
				putDone <- err
				return
			}
		}
		putDone <- nil
	}()
	waitFor(t, "entries in redis", func() bool { return b.Stats().Total >= 300 })
	srv.Kill() // mid-run: the putter goes on
	if err := <-putDone; err != nil {
		t.Fatal(err)
	}
	// More while the server is down: all of these fall back.
	for _, e := range entries[1500:2000] {
		if err := b.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every entry handled", func() bool { return redisTotal(b)+b.FellBack() == 2000 })
	if b.FellBack() < 500 {
		t.Fatalf("fell back %d, want at least the 500 put while down", b.FellBack())
	}

	// Back up (the AOF keeps what was acknowledged): new entries reach
	// Redis again once the backoff has passed.
	srv.Restart()
	c := srv.Client(t)
	before, err := c.XLen(ctx, testStream).Result()
	if err != nil {
		t.Fatal(err)
	}
	next := 2000
	waitFor(t, "redis to take entries again", func() bool {
		if next < n {
			if err := b.Put(ctx, entries[next]); err != nil {
				t.Fatal(err)
			}
			next++
		}
		l, err := c.XLen(ctx, testStream).Result()
		return err == nil && l > before
	})
	for _, e := range entries[next:] {
		if err := b.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}

	st := b.Stats()
	if st.Total != n || st.Failed != 0 {
		t.Fatalf("stats %+v; want %d written, none failed", st, n)
	}
	if fb := b.FellBack(); fb == 0 || fb >= n {
		t.Fatalf("fell back %d of %d", fb, n)
	}
	if !strings.Contains(logs.String(), "entries go to the fallback DLQ") || !strings.Contains(logs.String(), "redis answers again") {
		t.Fatalf("logs:\n%s", logs)
	}

	inRedis := scanAll(t, openStore(t, cfg))
	inFile := scanFiles(t, fdir)
	if int64(len(inFile)) != b.FellBack() {
		t.Fatalf("%d entries in the file DLQ, fell back %d", len(inFile), b.FellBack())
	}
	found := map[string]bool{}
	for _, e := range append(inRedis, inFile...) {
		w, ok := want[e.ID]
		if !ok {
			t.Fatalf("unknown entry %s", e.ID)
		}
		if !reflect.DeepEqual(e, w) {
			t.Fatalf("entry %s:\n got %+v\nwant %+v", e.ID, e, w)
		}
		found[e.ID] = true
	}
	if len(found) != n {
		t.Fatalf("%d of %d entries found in redis (%d) and the file DLQ (%d)", len(found), n, len(inRedis), len(inFile))
	}
	t.Logf("%d in redis, %d in the file DLQ (%d in both: written, reply lost)", len(inRedis), len(inFile), len(inRedis)+len(inFile)-n)
}

// redisTotal is how many entries Redis acknowledged.
func redisTotal(b *Backend) int64 { return b.Stored() }

// TestOpenWhileDown starts with Redis gone: entries go to the fallback,
// and Full follows the fallback's.
func TestOpenWhileDown(t *testing.T) {
	srv := testredis.Start(t)
	cfg := dlqConfig(srv, 0)
	cfg.Timeout = 300 * time.Millisecond
	srv.Kill()
	if _, err := Open(cfg, Options{Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Fatal("Open without a fallback succeeded with redis down")
	}
	if _, err := OpenStore(cfg, nil); err == nil {
		t.Fatal("OpenStore succeeded with redis down")
	}

	fdir := filepath.Join(t.TempDir(), "fallback")
	fb := openFallback(t, dlq.FileOptions{Dir: fdir, SegmentBytes: 4096, MaxBytes: 4096})
	b, logs := openBackend(t, cfg, Options{Fallback: fb})
	if !strings.Contains(logs.String(), "redis does not answer") {
		t.Fatalf("no warning:\n%s", logs)
	}
	select {
	case <-b.Full():
		t.Fatal("Full before anything was written")
	default:
	}
	for i := range 40 {
		if err := b.Put(t.Context(), testEntry(i, "invalid")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-b.Full():
	case <-t.Context().Done():
		t.Fatal("Full never closed with the fallback over its cap")
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Total != 40 || b.FellBack() != 40 {
		t.Fatalf("stats %+v, fell back %d", st, b.FellBack())
	}
	if got := scanFiles(t, fdir); len(got) != 40 {
		t.Fatalf("%d entries in the file DLQ", len(got))
	}
}

func TestNoFallbackCountsFailed(t *testing.T) {
	srv := testredis.Start(t)
	cfg := dlqConfig(srv, 0)
	cfg.Timeout = 300 * time.Millisecond
	b, _ := openBackend(t, cfg, Options{})
	srv.Kill()
	for i := range 5 {
		if err := b.Put(t.Context(), testEntry(i, "invalid")); err != nil {
			t.Fatal(err)
		}
	}
	err := b.Close(t.Context())
	if err == nil || !strings.Contains(err.Error(), "lost") {
		t.Fatalf("Close = %v, want the loss reported", err)
	}
	if st := b.Stats(); st.Failed != 5 || st.Total != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClaimFromDeadConsumer(t *testing.T) {
	srv := testredis.Start(t)
	cfg := dlqConfig(srv, 0)
	ctx := t.Context()
	s := openStore(t, cfg)
	if err := s.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureGroup(ctx); err != nil {
		t.Fatalf("EnsureGroup again: %v", err)
	}
	b, _ := openBackend(t, cfg, Options{})
	want := richEntries()
	for _, e := range want {
		if err := b.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// A reads everything and dies without acknowledging.
	gotA, idsA, err := s.Read(ctx, "A", 100)
	if err != nil {
		t.Fatal(err)
	}
	equalEntries(t, gotA, want)
	if more, _, err := s.Read(ctx, "A", 100); err != nil || len(more) != 0 {
		t.Fatalf("second Read: %d entries, %v", len(more), err)
	}

	// Not idle long enough: B gets nothing.
	if got, _, err := s.Claim(ctx, "B", time.Hour, 100); err != nil || len(got) != 0 {
		t.Fatalf("Claim with minIdle 1h: %d entries, %v", len(got), err)
	}
	// Idle: B takes them over. (Each call claims every entry idle for
	// minIdle, B's own included: it waits until all are.)
	var gotB []*dlq.Entry
	var idsB []string
	waitFor(t, "claimable entries", func() bool {
		var err error
		gotB, idsB, err = s.Claim(ctx, "B", time.Millisecond, 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(gotB) == len(want)
	})
	equalEntries(t, gotB, want)
	if !reflect.DeepEqual(idsA, idsB) {
		t.Fatalf("claimed ids %v, read %v", idsB, idsA)
	}
	c := srv.Client(t)
	pend, err := c.XPendingExt(ctx, &goredis.XPendingExtArgs{Stream: testStream, Group: "procs", Start: "-", End: "+", Count: 100}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pend {
		if p.Consumer != "B" || p.RetryCount < 2 {
			t.Fatalf("pending %+v, want owned by B, delivered twice", p)
		}
	}
	n, err := s.Ack(ctx, idsB...)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("Ack = %d, %v", n, err)
	}
	if sum, err := c.XPending(ctx, testStream, "procs").Result(); err != nil || sum.Count != 0 {
		t.Fatalf("pending after Ack: %+v, %v", sum, err)
	}
}

func TestUndecodableEntries(t *testing.T) {
	srv := testredis.Start(t)
	cfg := dlqConfig(srv, 0)
	ctx := t.Context()
	s := openStore(t, cfg)
	if err := s.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	c := srv.Client(t)
	good := testEntry(1, "invalid")
	if err := s.Move(ctx, "nosuch", "nogroup", "0-1", good); err == nil {
		t.Fatal("Move from a missing group succeeded")
	}
	bad, err := c.XAdd(ctx, &goredis.XAddArgs{Stream: testStream, Values: []any{"hello", "world"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := openBackend(t, cfg, Options{})
	if err := b.Put(ctx, good); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, ids, err := s.Read(ctx, "A", 10)
	var ue *UndecodableError
	if !errors.As(err, &ue) || len(ue.IDs) != 1 || ue.IDs[0] != bad {
		t.Fatalf("Read error %v, want an UndecodableError naming %s", err, bad)
	}
	if len(got) != 1 || len(ids) != 1 || !reflect.DeepEqual(got[0], good) {
		t.Fatalf("Read returned %d entries", len(got))
	}
	all := scanAll(t, s)
	if len(all) != 1 || s.Undecodable() != 2 {
		t.Fatalf("scan: %d entries, %d undecodable", len(all), s.Undecodable())
	}
}

func TestMove(t *testing.T) {
	srv := testredis.Start(t)
	cfg := dlqConfig(srv, 1000)
	ctx := t.Context()
	c := srv.Client(t)
	s := openStore(t, cfg)

	// A source stream with a consumer that failed two entries.
	if err := c.XGroupCreateMkStream(ctx, "src", "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	var srcIDs []string
	for i := range 3 {
		id, err := c.XAdd(ctx, &goredis.XAddArgs{Stream: "src", Values: []any{"record", fmt.Sprint("raw ", i)}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		srcIDs = append(srcIDs, id)
	}
	if err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "g", Consumer: "w", Streams: []string{"src", ">"}, Count: 10, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	pending := func() int64 {
		t.Helper()
		p, err := c.XPending(ctx, "src", "g").Result()
		if err != nil {
			t.Fatal(err)
		}
		return p.Count
	}
	if pending() != 3 {
		t.Fatal("setup: 3 pending expected")
	}

	e := testEntry(1, "sink_exhausted")
	e.Source = dlq.Source{Kind: "redis", Stream: "src", StreamID: srcIDs[0]}
	if err := s.Move(ctx, "src", "g", srcIDs[0], e); err != nil {
		t.Fatal(err)
	}
	equalEntries(t, scanAll(t, s), []*dlq.Entry{e})
	if pending() != 2 || s.Moved() != 1 {
		t.Fatalf("after Move: %d pending, %d moved", pending(), s.Moved())
	}

	// Moving it again changes nothing: it is no longer pending.
	err := s.Move(ctx, "src", "g", srcIDs[0], e)
	if !errors.Is(err, ErrNotPending) {
		t.Fatalf("second Move: %v", err)
	}
	if n, _ := s.Len(ctx); n != 1 {
		t.Fatalf("DLQ holds %d entries after a refused Move", n)
	}

	// A DLQ key that is not a stream: the script fails before writing,
	// and the source entry stays pending.
	if err := c.Set(ctx, "t:notastream", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	other := cfg
	other.Stream = "t:notastream"
	bad := openStore(t, other)
	e2 := testEntry(2, "sink_exhausted")
	err = bad.Move(ctx, "src", "g", srcIDs[1], e2)
	if err == nil || !errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("Move into a string key: %v, want a permanent WRONGTYPE", err)
	}
	if pending() != 2 {
		t.Fatalf("%d pending after a failed Move, want 2", pending())
	}
	if v, err := c.Get(ctx, "t:notastream").Result(); err != nil || v != "x" {
		t.Fatalf("the DLQ key changed: %q, %v", v, err)
	}
	// An invalid entry is refused before anything runs.
	if err := s.Move(ctx, "src", "g", srcIDs[1], &dlq.Entry{}); !errors.Is(err, dlq.ErrInvalidEntry) {
		t.Fatalf("Move of an invalid entry: %v", err)
	}
	if pending() != 2 {
		t.Fatalf("%d pending, want 2", pending())
	}
}

func TestMoveTrims(t *testing.T) {
	srv := testredis.Start(t)
	cfg := dlqConfig(srv, 10)
	ctx := t.Context()
	c := srv.Client(t)
	s := openStore(t, cfg)
	if err := c.XGroupCreateMkStream(ctx, "src", "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		if err := c.XAdd(ctx, &goredis.XAddArgs{Stream: "src", Values: []any{"i", i}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "g", Consumer: "w", Streams: []string{"src", ">"}, Count: n, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range res[0].Messages {
		if err := s.Move(ctx, "src", "g", m.ID, testEntry(i, "invalid")); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := s.Len(ctx)
	if s.Trimmed() == 0 || l+s.Trimmed() != n {
		t.Fatalf("%d left + %d trimmed != %d moved", l, s.Trimmed(), n)
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	const password, wrong = "s3cret-Dlq-83", "wr0ng-Dlq-27"
	srv := testredis.StartWith(t, testredis.Options{Password: password})
	libLogs := &logBuf{}
	redisconn.RouteLibraryLogs(libLogs.logger())
	t.Cleanup(func() { redisconn.RouteLibraryLogs(slog.New(slog.DiscardHandler)) })

	cfg := dlqConfig(srv, 0)
	cfg.Password = config.NewSecret(wrong)
	logs := &logBuf{}
	fb := openFallback(t, dlq.FileOptions{})
	var errs []error
	if _, err := Open(cfg, Options{Logger: logs.logger()}); err == nil {
		t.Fatal("Open succeeded with a wrong password")
	} else {
		errs = append(errs, err)
	}
	// A fallback does not hide a wrong password.
	if _, err := Open(cfg, Options{Logger: logs.logger(), Fallback: fb}); err == nil || !errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("Open with a fallback and a wrong password: %v", err)
	} else {
		errs = append(errs, err)
	}
	if _, err := OpenStore(cfg, logs.logger()); err == nil {
		t.Fatal("OpenStore succeeded with a wrong password")
	} else {
		errs = append(errs, err)
	}
	cfg.Username = "nobody"
	if _, err := OpenStore(cfg, logs.logger()); err == nil {
		t.Fatal("OpenStore succeeded with a wrong user")
	} else {
		errs = append(errs, err)
	}

	// With the right password it works; when the server dies, the
	// fallback warnings name no secret either.
	good := dlqConfig(srv, 0)
	b, blogs := openBackend(t, good, Options{Fallback: fb})
	if err := b.Put(t.Context(), testEntry(1, "invalid")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first entry", func() bool { return b.Stats().Total == 1 })
	srv.Kill()
	if err := b.Put(t.Context(), testEntry(2, "invalid")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if b.FellBack() != 1 {
		t.Fatalf("fell back %d", b.FellBack())
	}
	texts := []string{logs.String(), blogs.String(), libLogs.String()}
	for _, err := range errs {
		texts = append(texts, err.Error(), fmt.Sprintf("%+v %#v", err, err))
	}
	for _, text := range texts {
		for _, secret := range []string{password, wrong} {
			if strings.Contains(text, secret) {
				t.Fatalf("a password leaked: %q", text)
			}
		}
	}
}

func TestIDHelpers(t *testing.T) {
	now := time.Now()
	if ms, ok := idMillis(dlq.NewID(now)); !ok || int64(ms) != now.UnixMilli() {
		t.Fatalf("idMillis = %d, %t; want %d", ms, ok, now.UnixMilli())
	}
	if _, ok := idMillis("short"); ok {
		t.Fatal("idMillis took a short id")
	}
	for s, want := range map[string]bool{"1-0": true, "1700000000000-12": true, "1-": false, "-1": false, "a-1": false, dlq.NewID(now): false} {
		if isStreamID(s) != want {
			t.Fatalf("isStreamID(%q) = %t", s, !want)
		}
	}
}

// TestSyncWaitsUntilStored: after Sync returns, every entry Put before it
// is in the stream (the runner acks input only then).
func TestSyncWaitsUntilStored(t *testing.T) {
	srv := testredis.Start(t)
	b, _ := openBackend(t, dlqConfig(srv, 0), Options{})
	c := srv.Client(t)
	for round := 1; round <= 3; round++ {
		for i := range 500 {
			if err := b.Put(t.Context(), testEntry(round*1000+i, "malformed")); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n, err := c.XLen(t.Context(), testStream).Result(); err != nil || n != int64(round*500) {
			t.Fatalf("after Sync the stream holds %d entries (%v), want %d", n, err, round*500)
		}
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}
