package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
)

// retryClock is a simulated clock: it moves only when told to, and its
// Sleep moves it by the wait instead of waiting.
type retryClock struct {
	base time.Time
	ns   atomic.Int64
}

func newRetryClock() *retryClock {
	return &retryClock{base: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *retryClock) Now() time.Time          { return c.base.Add(time.Duration(c.ns.Load())) }
func (c *retryClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *retryClock) Elapsed() time.Duration  { return time.Duration(c.ns.Load()) }

func (c *retryClock) Sleep(ctx context.Context, d time.Duration) error {
	c.Advance(d)
	return ctx.Err()
}

// testRetrier: the given policy on the simulated clock, Rand 0.5, no budget,
// no breaker, stats.
func testRetrier(clk *retryClock, p Policy) *Retrier {
	return &Retrier{
		Policy: p,
		Stats:  &RetryStats{},
		Now:    clk.Now,
		Sleep:  clk.Sleep,
		Rand:   func() float64 { return 0.5 },
	}
}

var testPolicy = Policy{
	Initial:     100 * time.Millisecond,
	Multiplier:  2,
	MaxInterval: 2 * time.Second,
	MaxElapsed:  time.Minute,
	MaxAttempts: 8,
}

// failing returns an op that fails with err n times, then succeeds, and a
// pointer to its call count.
func failing(n int, err error) (func(context.Context) error, *atomic.Int64) {
	var calls atomic.Int64
	return func(context.Context) error {
		if calls.Add(1) <= int64(n) {
			return err
		}
		return nil
	}, &calls
}

func asGiveUp(t *testing.T, err error) *GiveUpError {
	t.Helper()
	g, ok := errors.AsType[*GiveUpError](err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *GiveUpError", err, err)
	}
	return g
}

type testNetError struct{ timeout, temporary bool }

func (e testNetError) Error() string   { return fmt.Sprintf("net error %v %v", e.timeout, e.temporary) }
func (e testNetError) Timeout() bool   { return e.timeout }
func (e testNetError) Temporary() bool { return e.temporary }

var _ net.Error = testNetError{}

type testTemporary struct{ temporary bool }

func (e testTemporary) Error() string   { return "temporary?" }
func (e testTemporary) Temporary() bool { return e.temporary }

func TestErrorCodeAndDefaultClassification(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	pipe := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}
	plain := errors.New("boom")
	for _, tc := range []struct {
		name string
		err  error
		code string
		want Decision
	}{
		{"nil", nil, "", GiveUp},
		{"coded", WithCode("message_too_large", plain), "message_too_large", Retry},
		{"outermost code wins", WithCode("outer", WithCode("inner", plain)), "outer", Retry},
		{"empty code falls through", WithCode("", io.EOF), "eof", Retry},
		{"net timeout", testNetError{timeout: true}, "timeout", Retry},
		{"deadline exceeded", fmt.Errorf("call: %w", context.DeadlineExceeded), "timeout", Retry},
		{"os deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), "timeout", Retry},
		{"refused", refused, "connection_refused", Retry},
		{"refused errno", syscall.ECONNREFUSED, "connection_refused", Retry},
		{"reset", reset, "connection_reset", Retry},
		{"broken pipe", pipe, "connection_reset", Retry},
		{"eof", fmt.Errorf("read: %w", io.EOF), "eof", Retry},
		{"unexpected eof", io.ErrUnexpectedEOF, "eof", Retry},
		{"canceled", fmt.Errorf("op: %w", context.Canceled), "canceled", GiveUp},
		{"coded canceled", WithCode("x", context.Canceled), "x", GiveUp},
		{"permanent", Permanent(plain), "permanent", GiveUp},
		{"permanent coded", Permanent(WithCode("schema_rejected", plain)), "schema_rejected", GiveUp},
		{"permanent eof: code names the cause", Permanent(io.EOF), "eof", GiveUp},
		{"wrapped permanent", fmt.Errorf("sink: %w", Permanent(plain)), "permanent", GiveUp},
		{"temporary true", testTemporary{true}, "error", Retry},
		{"temporary false is not permanent", testTemporary{false}, "error", Retry},
		{"net error, neither", testNetError{}, "error", Retry},
		{"unknown", plain, "error", Retry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrorCode(tc.err); got != tc.code {
				t.Errorf("ErrorCode = %q, want %q", got, tc.code)
			}
			if got := (*Classifier)(nil).Classify(tc.err); got != tc.want {
				t.Errorf("nil Classifier: Classify = %v, want %v", got, tc.want)
			}
			c, err := NewClassifier(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Classify(tc.err); got != tc.want {
				t.Errorf("Classify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestClassifierOverrides(t *testing.T) {
	c, err := NewClassifier(map[string]string{
		"message_too_large": "permanent",
		"throttled":         "retry",
		"timeout":           "permanent",
		"canceled":          "retry",
		"x":                 "retry",
		"permanent":         "retry",
	})
	if err != nil {
		t.Fatal(err)
	}
	plain := errors.New("boom")
	for _, tc := range []struct {
		name string
		err  error
		want Decision
	}{
		{"code forced permanent", WithCode("message_too_large", plain), GiveUp},
		{"override beats ErrPermanent", Permanent(WithCode("throttled", plain)), Retry},
		{"override beats ErrPermanent, no code", Permanent(plain), Retry},
		{"builtin code overridden", testNetError{timeout: true}, GiveUp},
		{"cancellation beats override", context.Canceled, GiveUp},
		{"cancellation beats a coded override", WithCode("x", context.Canceled), GiveUp},
		{"no override: default", WithCode("other", plain), Retry},
		{"no override: permanent", Permanent(WithCode("other", plain)), GiveUp},
	} {
		if got := c.Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify = %v, want %v", tc.name, got, tc.want)
		}
	}

	if _, err := NewClassifier(map[string]string{"a": "retry", "b": "sometimes"}); err == nil || !strings.Contains(err.Error(), `"sometimes"`) {
		t.Errorf("NewClassifier with a bad value: err = %v", err)
	}
}

func TestBackoffBoundsAndGrowth(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Multiplier: 2, MaxInterval: time.Second}
	below1 := math.Nextafter(1, 0)
	ceilings := []time.Duration{ // n = 1, 2, ...
		100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, time.Second, time.Second, time.Second,
	}
	for i, ceil := range ceilings {
		n := i + 1
		if got := p.Backoff(n, 0); got != 0 {
			t.Errorf("Backoff(%d, 0) = %v, want 0", n, got)
		}
		if got := p.Backoff(n, 0.5); got != ceil/2 {
			t.Errorf("Backoff(%d, 0.5) = %v, want %v", n, got, ceil/2)
		}
		if got := p.Backoff(n, below1); got >= ceil || got < ceil-time.Microsecond {
			t.Errorf("Backoff(%d, 1-ε) = %v, want just below %v", n, got, ceil)
		}
	}
	// Out of contract inputs stay in range.
	for _, tc := range []struct {
		n    int
		rnd  float64
		want time.Duration
	}{
		{0, 0.5, 50 * time.Millisecond},  // n < 1 is the first retry
		{-3, 0.5, 50 * time.Millisecond}, //
		{1, 1, 100*time.Millisecond - 1}, // rnd 1: just below the ceiling
		{1, 7, 100*time.Millisecond - 1}, //
		{1, -1, 0},                       //
		{1, math.NaN(), 0},               //
		{1 << 30, 0.5, 500 * time.Millisecond},
		{math.MaxInt, 0.5, 500 * time.Millisecond},
	} {
		if got := p.Backoff(tc.n, tc.rnd); got != tc.want {
			t.Errorf("Backoff(%d, %v) = %v, want %v", tc.n, tc.rnd, got, tc.want)
		}
	}
	// No cap (hand-built policy): saturates, never overflows or goes negative.
	huge := Policy{Initial: time.Hour, Multiplier: 10}
	for _, n := range []int{1, 10, 100, 1000, math.MaxInt} {
		if got := huge.Backoff(n, below1); got < 0 {
			t.Errorf("uncapped Backoff(%d) = %v, negative", n, got)
		}
	}
	// Multiplier 1: constant ceiling.
	flat := Policy{Initial: time.Second, Multiplier: 1, MaxInterval: time.Minute}
	for n := 1; n < 10; n++ {
		if got := flat.Backoff(n, 0.25); got != 250*time.Millisecond {
			t.Errorf("flat Backoff(%d) = %v", n, got)
		}
	}
}

func TestBackoffFullJitterRange(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Multiplier: 2, MaxInterval: time.Second}
	const steps = 1000
	for n := 1; n <= 6; n++ {
		ceil := min(time.Second, 100*time.Millisecond<<(n-1))
		var lo, hi, prev time.Duration = math.MaxInt64, -1, -1
		var sum float64
		for i := range steps {
			d := p.Backoff(n, float64(i)/steps)
			if d < 0 || d >= ceil {
				t.Fatalf("Backoff(%d, %v) = %v, outside [0, %v)", n, float64(i)/steps, d, ceil)
			}
			if d < prev {
				t.Fatalf("Backoff(%d, ·) not monotone in rnd", n)
			}
			prev, lo, hi = d, min(lo, d), max(hi, d)
			sum += float64(d)
		}
		// The whole range is used: from 0 to within one grid step of the
		// ceiling, and a uniform rnd gives a mean of half the ceiling.
		if lo != 0 || hi < ceil-ceil/steps-1 {
			t.Errorf("n=%d: range [%v, %v], want [0, ~%v)", n, lo, hi, ceil)
		}
		if mean := sum / steps; math.Abs(mean-float64(ceil)/2) > float64(ceil)/steps {
			t.Errorf("n=%d: mean %v, want ~%v", n, time.Duration(mean), ceil/2)
		}
	}
}

func TestPolicyFromAndNewRetrier(t *testing.T) {
	c := config.Retry{
		Initial: 50 * time.Millisecond, Multiplier: 3, MaxInterval: 5 * time.Second,
		MaxAttempts: 4, MaxElapsed: 30 * time.Second,
		Budget:  config.RetryBudget{Ratio: 0.2, MinPerSecond: 5},
		Breaker: config.Breaker{Failures: 3, OpenFor: time.Second},
		Codes:   map[string]string{"message_too_large": "permanent"},
	}
	want := Policy{Initial: 50 * time.Millisecond, Multiplier: 3, MaxInterval: 5 * time.Second, MaxAttempts: 4, MaxElapsed: 30 * time.Second}
	if got := PolicyFrom(c); got != want {
		t.Errorf("PolicyFrom = %+v, want %+v", got, want)
	}
	r, err := NewRetrier(c)
	if err != nil {
		t.Fatal(err)
	}
	if r.Policy != want || r.Budget == nil || r.Breaker == nil || r.Stats == nil || r.Classifier.Overrides["message_too_large"] != GiveUp {
		t.Errorf("NewRetrier = %+v", r)
	}

	// The shipped defaults wire up.
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRetrier(cfg.Retry); err != nil {
		t.Errorf("NewRetrier(defaults): %v", err)
	}

	// An undefaulted or invalid config is refused, naming every field.
	_, err = NewRetrier(config.Retry{Codes: map[string]string{"x": "never"}})
	if err == nil {
		t.Fatal("NewRetrier(config.Retry{}) succeeded")
	}
	for _, field := range []string{"initial", "multiplier", "max_attempts", "max_elapsed", "breaker.failures", "breaker.open_for", "codes.x"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
}

func TestMaxAttemptsCountsTheFirst(t *testing.T) {
	for _, max := range []int{1, 2, 5} {
		clk := newRetryClock()
		p := testPolicy
		p.MaxAttempts = max
		r := testRetrier(clk, p)
		var sleeps int
		r.Sleep = func(ctx context.Context, d time.Duration) error { sleeps++; return clk.Sleep(ctx, d) }
		op, calls := failing(100, io.EOF)
		g := asGiveUp(t, r.Do(context.Background(), op))
		if g.Reason != ReasonExhausted || g.Attempts != max || calls.Load() != int64(max) || sleeps != max-1 {
			t.Errorf("MaxAttempts %d: %+v, %d calls, %d sleeps", max, g, calls.Load(), sleeps)
		}
		if !errors.Is(g, io.EOF) || errors.Is(g, ErrPermanent) {
			t.Errorf("MaxAttempts %d: %v should wrap the last error and not be permanent", max, g)
		}
		s := r.Stats.Snapshot()
		if s.Attempts != int64(max) || s.Retries != int64(max-1) || s.GaveUpExhausted != 1 || s.Successes != 0 {
			t.Errorf("MaxAttempts %d: stats %+v", max, s)
		}
	}
}

func TestMaxElapsedStopsBeforeExceeding(t *testing.T) {
	for _, rnd := range []float64{0, 0.3, 0.999999} {
		clk := newRetryClock()
		p := Policy{Initial: time.Second, Multiplier: 2, MaxInterval: time.Hour, MaxElapsed: 10 * time.Second, MaxAttempts: 100}
		r := testRetrier(clk, p)
		r.Rand = func() float64 { return rnd }
		var lastCall time.Duration
		op := func(context.Context) error {
			lastCall = clk.Elapsed()
			clk.Advance(250 * time.Millisecond) // each call takes time too
			return io.EOF
		}
		g := asGiveUp(t, r.Do(context.Background(), op))
		if g.Reason != ReasonExhausted {
			t.Fatalf("rnd %v: reason %q", rnd, g.Reason)
		}
		// No retry starts past MaxElapsed (the call itself may end past it:
		// bounding one call is the sink's timeout's job).
		if lastCall > p.MaxElapsed {
			t.Errorf("rnd %v: a retry started at %v, past MaxElapsed %v", rnd, lastCall, p.MaxElapsed)
		}
		elapsed := clk.Elapsed()
		if next := p.Backoff(g.Attempts, rnd); elapsed+next <= p.MaxElapsed {
			t.Errorf("rnd %v: stopped at %v after %d attempts though the next wait %v fit", rnd, elapsed, g.Attempts, next)
		}
		if rnd == 0.999999 && g.Attempts != 4 {
			t.Errorf("rnd %v: %d attempts, want 4", rnd, g.Attempts)
		}
	}
	// rnd 0.999999: waits just under 1 s, 2 s, 4 s: 4 calls at 0.25 s; the
	// next wait (~8 s) would end at ~15 s.
}

func TestFlakyOpSucceeds(t *testing.T) {
	clk := newRetryClock()
	r := testRetrier(clk, testPolicy)
	var waits []time.Duration
	r.Sleep = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return clk.Sleep(ctx, d) }
	op, calls := failing(3, testNetError{timeout: true})
	if err := r.Do(context.Background(), op); err != nil {
		t.Fatalf("Do = %v", err)
	}
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} // half of 100, 200, 400 ms
	if calls.Load() != 4 || fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("%d calls, waits %v, want 4 and %v", calls.Load(), waits, want)
	}
	s := r.Stats.Snapshot()
	if s != (RetryStatsSnapshot{Attempts: 4, Retries: 3, Successes: 1}) {
		t.Errorf("stats %+v", s)
	}
}

func TestPermanentIsNotRetried(t *testing.T) {
	clk := newRetryClock()
	r := testRetrier(clk, testPolicy)
	r.Sleep = func(context.Context, time.Duration) error { t.Error("slept"); return nil }
	cause := errors.New("400 bad request")
	op, calls := failing(100, Permanent(cause))
	err := r.Do(context.Background(), op)
	g := asGiveUp(t, err)
	if g.Reason != ReasonPermanent || g.Attempts != 1 || calls.Load() != 1 {
		t.Errorf("%+v after %d calls", g, calls.Load())
	}
	if !errors.Is(err, ErrPermanent) || !errors.Is(err, cause) || ErrorCode(err) != "permanent" {
		t.Errorf("errors.Is/ErrorCode on %v", err)
	}
	if s := r.Stats.Snapshot(); s.GaveUpPermanent != 1 || s.Retries != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestOverrideForcesPermanent(t *testing.T) {
	clk := newRetryClock()
	r := testRetrier(clk, testPolicy)
	r.Classifier, _ = NewClassifier(map[string]string{"message_too_large": "permanent"})
	op, calls := failing(100, WithCode("message_too_large", errors.New("kafka: message too large")))
	err := r.Do(context.Background(), op)
	g := asGiveUp(t, err)
	if g.Reason != ReasonPermanent || calls.Load() != 1 {
		t.Errorf("%+v after %d calls", g, calls.Load())
	}
	// Permanent by override, not by ErrPermanent: still errors.Is permanent.
	if !errors.Is(err, ErrPermanent) || ErrorCode(err) != "message_too_large" {
		t.Errorf("errors.Is(ErrPermanent) = %v, code %q", errors.Is(err, ErrPermanent), ErrorCode(err))
	}
}

func TestOverrideRetriesAPermanentError(t *testing.T) {
	// The override wins over ErrPermanent: a sink that called a throttling
	// answer permanent is retried when the config says so.
	clk := newRetryClock()
	r := testRetrier(clk, testPolicy)
	r.Classifier, _ = NewClassifier(map[string]string{"throttled": "retry"})
	op, calls := failing(2, Permanent(WithCode("throttled", errors.New("429"))))
	if err := r.Do(context.Background(), op); err != nil {
		t.Fatalf("Do = %v", err)
	}
	if calls.Load() != 3 {
		t.Errorf("%d calls, want 3", calls.Load())
	}
}

func TestCancelDuringSleep(t *testing.T) {
	// The real sleep (a timer honouring ctx) with an hour's wait.
	for _, name := range []string{"cancel", "deadline"} {
		t.Run(name, func(t *testing.T) {
			p := Policy{Initial: time.Hour, Multiplier: 2, MaxInterval: time.Hour, MaxElapsed: 24 * time.Hour, MaxAttempts: 5}
			r := &Retrier{Policy: p, Stats: &RetryStats{}, Rand: func() float64 { return 0.999 }}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if name == "deadline" { // the caller's deadline passes during the wait
				ctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
				defer cancel()
			}
			sleeping := make(chan struct{})
			r.Sleep = func(ctx context.Context, d time.Duration) error {
				close(sleeping)
				return sleepContext(ctx, d) // the default
			}
			op, calls := failing(100, io.EOF)
			done := make(chan error, 1)
			go func() { done <- r.Do(ctx, op) }()
			<-sleeping
			if name == "cancel" {
				cancel()
			}
			select {
			case err := <-done:
				g := asGiveUp(t, err)
				if g.Reason != ReasonCanceled || g.Attempts != 1 || calls.Load() != 1 || !errors.Is(err, io.EOF) {
					t.Errorf("%+v after %d calls", g, calls.Load())
				}
				if s := r.Stats.Snapshot(); s.GaveUpCanceled != 1 {
					t.Errorf("stats %+v", s)
				}
			case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
				t.Fatal("Do did not return after its context was cancelled")
			}
		})
	}
	t.Run("nil Sleep uses the timer", func(t *testing.T) {
		r := &Retrier{Policy: Policy{Initial: time.Hour, Multiplier: 1, MaxInterval: time.Hour, MaxAttempts: 3}}
		ctx, cancel := context.WithCancel(context.Background())
		op := func(context.Context) error { cancel(); return io.EOF }
		done := make(chan error, 1)
		go func() { done <- r.Do(ctx, op) }()
		select {
		case err := <-done:
			if g := asGiveUp(t, err); g.Reason != ReasonCanceled {
				t.Errorf("%+v", g)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Do did not return after its context was cancelled")
		}
	})
	t.Run("sleepContext", func(t *testing.T) {
		if err := sleepContext(context.Background(), 0); err != nil {
			t.Error(err)
		}
		if err := sleepContext(context.Background(), time.Microsecond); err != nil {
			t.Error(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := sleepContext(ctx, time.Hour); !errors.Is(err, context.Canceled) {
			t.Errorf("sleepContext(cancelled) = %v", err)
		}
	})
}

func TestOpReturningCanceledGivesUp(t *testing.T) {
	clk := newRetryClock()
	r := testRetrier(clk, testPolicy)
	op, calls := failing(100, fmt.Errorf("send: %w", context.Canceled))
	g := asGiveUp(t, r.Do(context.Background(), op))
	if g.Reason != ReasonCanceled || calls.Load() != 1 {
		t.Errorf("%+v after %d calls", g, calls.Load())
	}
}

func TestBreakerOpensAfterConsecutiveFailures(t *testing.T) {
	clk := newRetryClock()
	b := NewBreaker(3, 10*time.Second, clk.Now)
	b.Record(false)
	b.Record(false)
	b.Record(true) // resets: consecutive failures only
	b.Record(false)
	b.Record(false)
	if !b.Allow() || b.State() != "closed" {
		t.Fatalf("after 2 consecutive failures: %s", b.State())
	}
	b.Record(false)
	if b.State() != "open" {
		t.Fatalf("after 3 consecutive failures: %s", b.State())
	}
	for range 5 {
		if b.Allow() {
			t.Fatal("open breaker allowed an attempt")
		}
		clk.Advance(time.Second)
	}
	b.Record(true) // a late result while open changes nothing
	clk.Advance(5*time.Second - 1)
	if b.Allow() || b.State() != "open" {
		t.Fatalf("allowed before OpenFor: %s", b.State())
	}
	clk.Advance(1)
	if b.State() != "half_open" {
		t.Fatalf("after OpenFor: %s", b.State())
	}
	if !b.Allow() {
		t.Fatal("no probe after OpenFor")
	}
	if b.Allow() {
		t.Fatal("a second probe while the first is out")
	}
	b.Record(true)
	if b.State() != "closed" {
		t.Fatalf("after the probe's success: %s", b.State())
	}
	// Closed again, with a fresh count.
	b.Record(false)
	b.Record(false)
	if !b.Allow() {
		t.Fatal("re-closed breaker kept old failures")
	}
}

func TestBreakerProbeFailureReopens(t *testing.T) {
	clk := newRetryClock()
	b := NewBreaker(1, time.Second, clk.Now)
	b.Record(false)
	clk.Advance(time.Second)
	if !b.Allow() {
		t.Fatal("no probe")
	}
	b.Record(false)
	if b.State() != "open" || b.Allow() {
		t.Fatalf("after the probe failed: %s", b.State())
	}
	clk.Advance(time.Second - 1)
	if b.Allow() {
		t.Fatal("re-opened for less than OpenFor")
	}
	clk.Advance(1)
	if !b.Allow() {
		t.Fatal("no second probe")
	}
}

func TestBreakerLostProbeIsReplaced(t *testing.T) {
	clk := newRetryClock()
	b := NewBreaker(1, time.Second, clk.Now)
	b.Record(false)
	clk.Advance(time.Second)
	if !b.Allow() {
		t.Fatal("no probe")
	}
	// The probe never reports.
	clk.Advance(time.Second - 1)
	if b.Allow() {
		t.Fatal("second probe before OpenFor")
	}
	clk.Advance(1)
	if !b.Allow() {
		t.Fatal("a lost probe blocks the breaker for good")
	}
	// A released (neutral) probe lets the next caller probe at once.
	b.record(brkNeutral)
	if b.State() != "half_open" || !b.Allow() {
		t.Fatalf("after a neutral result: %s", b.State())
	}
}

func TestBreakerHalfOpenAllowsExactlyOneConcurrentProbe(t *testing.T) {
	clk := newRetryClock()
	b := NewBreaker(2, 5*time.Second, clk.Now)
	b.Record(false)
	b.Record(false)
	clk.Advance(5 * time.Second)
	for round := range 20 {
		const callers = 64
		var allowed atomic.Int64
		var ready, wg sync.WaitGroup
		start := make(chan struct{})
		ready.Add(callers)
		for range callers {
			wg.Go(func() {
				ready.Done()
				<-start
				if b.Allow() {
					allowed.Add(1)
				}
			})
		}
		ready.Wait()
		close(start)
		wg.Wait()
		if allowed.Load() != 1 {
			t.Fatalf("round %d: %d probes allowed at once, want 1", round, allowed.Load())
		}
		b.Record(false) // the probe failed: open again
		clk.Advance(5 * time.Second)
	}
	if !b.Allow() {
		t.Fatal("no probe")
	}
	b.Record(true)
	for range 100 {
		if !b.Allow() {
			t.Fatal("closed breaker refused")
		}
	}
}

func TestRetrierWithBreaker(t *testing.T) {
	clk := newRetryClock()
	r := testRetrier(clk, testPolicy) // MaxElapsed 1 min, 8 attempts
	r.Breaker = NewBreaker(3, 10*time.Second, clk.Now)
	dead := errors.New("503")
	op, calls := failing(1000, dead)

	// Three failed attempts open it; then the caller waits for each probe
	// (10 s apart) instead of hammering, until the policy is spent.
	g := asGiveUp(t, r.Do(context.Background(), op))
	if !errors.Is(g, dead) || calls.Load() > int64(testPolicy.MaxAttempts) || calls.Load() < 4 {
		t.Fatalf("%+v after %d calls", g, calls.Load())
	}
	if el := clk.Elapsed(); el > testPolicy.MaxElapsed || el < 10*time.Second {
		t.Fatalf("gave up after %s of simulated time, want a wait for at least one probe within MaxElapsed", el)
	}
	if s := r.Stats.Snapshot(); s.BreakerWaits == 0 || s.Attempts != calls.Load() {
		t.Errorf("stats %+v", s)
	}
	if r.Breaker.State() != "open" {
		t.Fatalf("state %s", r.Breaker.State())
	}

	// While open: Attempt is refused without calling op.
	n := calls.Load()
	err := r.Attempt(context.Background(), op)
	if !errors.Is(err, ErrBreakerOpen) || ErrorCode(err) != "breaker_open" || calls.Load() != n {
		t.Fatalf("Attempt while open = %v (%s), %d calls", err, ErrorCode(err), calls.Load())
	}

	// A short outage costs a pause, not the data: the dependency is back,
	// Resume after the refusal waits for the probe, which succeeds.
	before := clk.Elapsed()
	if err := r.Resume(context.Background(), func(context.Context) error { return nil }, fmt.Errorf("sink: %w", err), clk.Now()); err != nil {
		t.Fatalf("Resume after a refusal, dependency back: %v", err)
	}
	if r.Breaker.State() != "closed" || clk.Elapsed() == before {
		t.Fatalf("probe: state %s, waited %s", r.Breaker.State(), clk.Elapsed()-before)
	}

	// An outage already as long as MaxElapsed: give up at once, no waiting
	// (the DLQ takes the records while the dependency stays down).
	r2 := testRetrier(clk, Policy{Initial: time.Second, Multiplier: 2, MaxInterval: time.Second, MaxElapsed: 15 * time.Second, MaxAttempts: 100})
	r2.Breaker = NewBreaker(1, 5*time.Second, clk.Now)
	op2, calls2 := failing(1000, dead)
	_ = r2.Do(context.Background(), op2) // opens it, waits for probes until the policy ends
	clk.Advance(30 * time.Second)
	r2.Breaker.Allow()       // the probe...
	r2.Breaker.Record(false) // ...fails: the outage goes on
	n2 := calls2.Load()
	t0 := clk.Elapsed()
	g = asGiveUp(t, r2.Do(context.Background(), op2))
	if g.Reason != ReasonBreakerOpen || g.Attempts != 0 || calls2.Load() != n2 || clk.Elapsed() != t0 || !errors.Is(g, ErrBreakerOpen) {
		t.Fatalf("Do during a long outage: %+v, %d calls, waited %s", g, calls2.Load()-n2, clk.Elapsed()-t0)
	}
}

func TestBreakerIgnoresPermanentAndCanceled(t *testing.T) {
	// A permanent error means the dependency answered: it does not count
	// toward opening. A cancelled caller says nothing about it either.
	clk := newRetryClock()
	r := testRetrier(clk, testPolicy)
	r.Breaker = NewBreaker(2, time.Second, clk.Now)
	for range 10 {
		r.Do(context.Background(), func(context.Context) error { return Permanent(errors.New("413")) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 10 {
		r.Attempt(ctx, func(ctx context.Context) error { return ctx.Err() })
		r.Attempt(context.Background(), func(ctx context.Context) error { return context.Canceled })
	}
	if r.Breaker.State() != "closed" {
		t.Fatalf("breaker %s", r.Breaker.State())
	}

	// A cancelled probe is released, not judged: the next caller probes.
	r.Attempt(context.Background(), func(context.Context) error { return io.EOF })
	r.Attempt(context.Background(), func(context.Context) error { return io.EOF })
	if r.Breaker.State() != "open" {
		t.Fatalf("breaker %s after 2 failures", r.Breaker.State())
	}
	clk.Advance(time.Second)
	r.Attempt(ctx, func(ctx context.Context) error { return ctx.Err() })
	if r.Breaker.State() != "half_open" {
		t.Fatalf("breaker %s after a cancelled probe", r.Breaker.State())
	}
	if err := r.Attempt(context.Background(), func(context.Context) error { return nil }); err != nil || r.Breaker.State() != "closed" {
		t.Fatalf("second probe: %v, %s", err, r.Breaker.State())
	}
}

func TestBudget(t *testing.T) {
	clk := newRetryClock()
	take := func(b *Budget) (n int) {
		for b.TryRetry() {
			n++
		}
		return n
	}

	b := NewBudget(0.5, 0, clk.Now)
	if n := take(b); n != 10 { // starts full at the cap, max(10, 0)
		t.Fatalf("initial tokens %d, want 10", n)
	}
	for range 7 {
		b.Request()
	}
	if n := take(b); n != 3 { // 3.5 tokens
		t.Fatalf("after 7 requests at 0.5: %d, want 3", n)
	}
	b.Request() // 0.5 + 0.5
	if n := take(b); n != 1 {
		t.Fatalf("fractions carry: %d, want 1", n)
	}
	for range 1000 {
		b.Request()
	}
	if n := take(b); n != 10 {
		t.Fatalf("capped at %d, want 10", n)
	}

	b = NewBudget(0.1, 2, clk.Now)
	take(b)
	clk.Advance(1500 * time.Millisecond)
	if n := take(b); n != 3 {
		t.Fatalf("1.5 s at 2/s: %d, want 3", n)
	}
	clk.Advance(250 * time.Millisecond)
	if n := take(b); n != 0 {
		t.Fatalf("0.25 s at 2/s: %d, want 0", n)
	}
	clk.Advance(250 * time.Millisecond)
	if n := take(b); n != 1 {
		t.Fatalf("another 0.25 s: %d, want 1 (time is not lost)", n)
	}
	clk.Advance(24 * time.Hour)
	if n := take(b); n != 10 {
		t.Fatalf("after a long pause: %d, want the cap 10", n)
	}
	clk.Advance(-time.Hour) // a clock stepping back pays nothing, takes nothing
	if n := take(b); n != 0 {
		t.Fatalf("clock back: %d", n)
	}

	b = NewBudget(0, 50, clk.Now) // cap is MinPerSecond when above 10
	clk.Advance(time.Hour)
	if n := take(b); n != 50 {
		t.Fatalf("cap: %d, want 50", n)
	}
}

// TestRetryStorm: a dead dependency and many concurrent callers over a
// simulated 10 s. The budget bounds the retries:
// retries <= ratio*requests + minPerSecond*10 + cap.
func TestRetryStorm(t *testing.T) {
	const (
		ratio        = 0.1
		minPerSecond = 1.0
		span         = 10 * time.Second
		callers      = 64
		opCost       = time.Millisecond // simulated time per call
	)
	clk := newRetryClock()
	r := testRetrier(clk, Policy{Initial: 10 * time.Millisecond, Multiplier: 2, MaxInterval: time.Second, MaxElapsed: 2 * time.Second, MaxAttempts: 10})
	// Waits pass simulated time (a caller waiting for a token must see the
	// bucket refill) shared by all callers sleeping at once, so the bound
	// below uses the time that really passed.
	r.Sleep = func(ctx context.Context, d time.Duration) error {
		clk.Advance(max(d/callers, 10*time.Microsecond))
		return ctx.Err()
	}
	r.Budget = NewBudget(ratio, minPerSecond, clk.Now)
	dead := func(context.Context) error {
		// Advance the clock, but never past span.
		for {
			v := clk.ns.Load()
			if v >= int64(span) || clk.ns.CompareAndSwap(v, min(v+int64(opCost), int64(span))) {
				return syscall.ECONNREFUSED
			}
		}
	}
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for clk.Elapsed() < span {
				if err := r.Do(context.Background(), dead); err == nil {
					t.Error("dead op succeeded")
					return
				}
			}
		})
	}
	wg.Wait()

	s := r.Stats.Snapshot()
	requests := s.Attempts - s.Retries
	capTokens := max(10, minPerSecond)
	bound := ratio*float64(requests) + minPerSecond*clk.Elapsed().Seconds() + capTokens
	t.Logf("%d requests, %d retries (bound %.1f), %d denied; without a budget up to %d retries",
		requests, s.Retries, bound, s.BudgetDenied, requests*9)
	if float64(s.Retries) > bound {
		t.Errorf("%d retries, over the bound %.1f", s.Retries, bound)
	}
	// The budget made callers wait, and every Do ended in exactly one
	// give-up (the op never succeeds).
	if s.BudgetDenied == 0 || s.GaveUpBudget+s.GaveUpExhausted != requests {
		t.Errorf("stats %+v", s)
	}
}

// TestConcurrentDo exercises everything at once under -race: a shared
// Retrier with budget, breaker and stats, a moving clock, ops failing in
// every way. Every Do ends in exactly one counter.
func TestConcurrentDo(t *testing.T) {
	clk := newRetryClock()
	r := testRetrier(clk, Policy{Initial: time.Millisecond, Multiplier: 2, MaxInterval: 100 * time.Millisecond, MaxElapsed: time.Second, MaxAttempts: 5})
	r.Budget = NewBudget(0.2, 100, clk.Now)
	r.Breaker = NewBreaker(4, 20*time.Millisecond, clk.Now)
	r.Classifier, _ = NewClassifier(map[string]string{"slow": "permanent"})
	r.Rand = rand.Float64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := []error{nil, nil, nil, io.EOF, syscall.ECONNRESET, Permanent(errors.New("400")), WithCode("slow", io.EOF), context.Canceled}

	const callers, calls = 16, 2000
	var ops, dos atomic.Int64
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range calls {
				dos.Add(1)
				clk.Advance(time.Duration(rng.IntN(int(50 * time.Microsecond)))) // time passes between calls
				c := ctx
				if i%97 == 0 {
					var cc context.CancelFunc
					c, cc = context.WithCancel(ctx)
					cc()
				}
				err := r.Do(c, func(context.Context) error {
					ops.Add(1)
					clk.Advance(time.Duration(rng.IntN(int(time.Millisecond))))
					return errs[rng.IntN(len(errs))]
				})
				if err != nil {
					if g := asGiveUp(t, err); g.Reason == "" {
						t.Error("no reason")
					}
				}
				_ = r.Breaker.State()
			}
		})
	}
	wg.Wait()
	s := r.Stats.Snapshot()
	ended := s.Successes + s.GaveUpPermanent + s.GaveUpExhausted + s.GaveUpCanceled + s.GaveUpBudget + s.GaveUpBreaker
	if ended != dos.Load() || s.Attempts != ops.Load() {
		t.Errorf("%d Do, %d ops; stats %+v (ended %d)", dos.Load(), ops.Load(), s, ended)
	}
	b, _ := json.Marshal(s)
	t.Logf("%s", b)
}

func TestGiveUpError(t *testing.T) {
	last := WithCode("broker_unavailable", errors.New("kafka: no brokers"))
	e := &GiveUpError{Reason: ReasonExhausted, Attempts: 8, Err: last}
	msg := e.Error()
	for _, part := range []string{"exhausted", "8 attempts", "kafka: no brokers"} {
		if !strings.Contains(msg, part) {
			t.Errorf("%q does not name %q", msg, part)
		}
	}
	if e.Unwrap() != last || ErrorCode(e) != "broker_unavailable" || errors.Is(e, ErrPermanent) || errors.Is(e, ErrBreakerOpen) {
		t.Errorf("exhausted: Unwrap/Is/ErrorCode wrong")
	}
	var wrapped error = fmt.Errorf("sink redis: %w", &GiveUpError{Reason: ReasonPermanent, Attempts: 1, Err: last})
	if !errors.Is(wrapped, ErrPermanent) {
		t.Error("a permanent GiveUpError is not ErrPermanent")
	}
	if g, ok := errors.AsType[*GiveUpError](wrapped); !ok || g.Reason != ReasonPermanent {
		t.Error("errors.AsType")
	}
	if (&GiveUpError{Reason: ReasonBudget}).Error() == "" {
		t.Error("empty message without Err")
	}
	b, err := json.Marshal(RetryStatsSnapshot{GaveUpPermanent: 2})
	if err != nil || !strings.Contains(string(b), `"gave_up_permanent":2`) {
		t.Errorf("snapshot JSON %s %v", b, err)
	}
}

func TestResumeNilAndNilFields(t *testing.T) {
	var r Retrier // zero: no retry, no budget, no breaker, no stats
	if err := r.Resume(context.Background(), nil, nil, time.Now()); err != nil {
		t.Errorf("Resume(nil first) = %v", err)
	}
	if err := r.Do(context.Background(), func(context.Context) error { return nil }); err != nil {
		t.Errorf("zero Retrier Do = %v", err)
	}
	op, calls := failing(1, io.EOF)
	if g := asGiveUp(t, r.Do(context.Background(), op)); g.Reason != ReasonExhausted || calls.Load() != 1 {
		t.Errorf("zero Retrier: %+v, %d calls", g, calls.Load())
	}
}

func TestAttemptHappyPathAllocatesNothing(t *testing.T) {
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRetrier(cfg.Retry)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	op := func(context.Context) error { return nil }
	if n := testing.AllocsPerRun(1000, func() { _ = r.Attempt(ctx, op) }); n != 0 {
		t.Errorf("Attempt: %v allocs/op", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _ = r.Do(ctx, op) }); n != 0 {
		t.Errorf("Do: %v allocs/op", n)
	}
	// A refused attempt does not allocate either.
	for range cfg.Retry.Breaker.Failures {
		r.Attempt(ctx, func(context.Context) error { return io.EOF })
	}
	if n := testing.AllocsPerRun(1000, func() { _ = r.Attempt(ctx, op) }); n != 0 {
		t.Errorf("refused Attempt: %v allocs/op", n)
	}
}
