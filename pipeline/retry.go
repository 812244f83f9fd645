package pipeline

// The one retry policy every sink follows (DESIGN.md, failure model:
// "transient sink error"): exponential backoff with full jitter, capped
// attempts and elapsed time, a retry budget, a circuit breaker per sink, and
// one classification of errors that config can override by code.
//
// A sink holds one Retrier (NewRetrier(cfg.RetryFor(sink))) and calls Do,
// or Attempt on its hot path and Resume when that attempt failed. What the
// Retrier gives up on comes back as a *GiveUpError; the records go to the
// DLQ: sink_permanent when Reason is "permanent", sink_exhausted otherwise.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tracepipe/tracepipe/config"
)

// Decision for a failed attempt.
type Decision int

const (
	// Retry: the failure may pass; try again under the policy.
	Retry Decision = iota
	// GiveUp: retrying cannot help (or the caller is gone).
	GiveUp
)

func (d Decision) String() string {
	switch d {
	case Retry:
		return "retry"
	case GiveUp:
		return "give_up"
	}
	return fmt.Sprintf("Decision(%d)", int(d))
}

// ErrBreakerOpen is what an attempt the circuit breaker refused wraps: the
// operation was not called.
var ErrBreakerOpen = errors.New("circuit breaker open")

// retryRejected is the error Attempt returns when the breaker refuses the
// attempt. It wraps ErrBreakerOpen and has the code "breaker_open". A
// zero-size value: returning it allocates nothing, and Resume recognises it
// (isRejected(err)) even when a caller wrapped it.
type retryRejected struct {
	cause string // the failure that last opened the breaker, for the reader
}

func (e *retryRejected) Error() string {
	if e.cause == "" {
		return "circuit breaker open: attempt not made"
	}
	return "circuit breaker open after: " + e.cause + ": attempt not made"
}
func (*retryRejected) Unwrap() error { return ErrBreakerOpen }
func (*retryRejected) Code() string  { return "breaker_open" }

// refusedNoCause is the refusal of a breaker with no recorded cause.
var refusedNoCause = &retryRejected{}

// isRejected reports whether err is (or wraps) the breaker's refusal.
func isRejected(err error) bool {
	var rr *retryRejected
	return errors.As(err, &rr)
}

// ErrorCode returns a short stable code for err, the key of config's
// retry.codes and the code of a DLQ entry. The first that holds, in order:
//
//   - "" for nil;
//   - the Code() of the first Coded error in err's tree (a non-empty one);
//   - "timeout": a Timeout() true error (net.Error and others),
//     context.DeadlineExceeded, os.ErrDeadlineExceeded;
//   - "connection_refused": syscall.ECONNREFUSED;
//   - "connection_reset": syscall.ECONNRESET, syscall.EPIPE;
//   - "eof": io.EOF, io.ErrUnexpectedEOF;
//   - "canceled": context.Canceled;
//   - "permanent": ErrPermanent (Permanent(err) with no code above);
//   - "error" for anything else.
//
// The code names the cause; whether it is permanent is Classify's business:
// Permanent(io.EOF) has the code "eof" and is still classified GiveUp.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	if c, ok := errors.AsType[Coded](err); ok {
		if code := c.Code(); code != "" {
			return code
		}
	}
	switch {
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection_reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ErrPermanent):
		return "permanent"
	}
	return "error"
}

type retryTimeouter interface {
	error
	Timeout() bool
}

// isTimeout: context.DeadlineExceeded and os.ErrDeadlineExceeded, or the
// first error in the tree with a Timeout method says true.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	t, ok := errors.AsType[retryTimeouter](err)
	return ok && t.Timeout()
}

// Classifier decides whether a failed attempt is retried. Overrides (from
// config retry.codes: code -> "retry" | "permanent") map an ErrorCode to a
// Decision. A nil *Classifier classifies by the defaults alone. Read-only
// after NewClassifier: safe for concurrent use.
type Classifier struct {
	Overrides map[string]Decision
}

// NewClassifier builds a Classifier from config's retry.codes; a value
// other than "retry" or "permanent" is an error.
func NewClassifier(codes map[string]string) (*Classifier, error) {
	c := &Classifier{Overrides: make(map[string]Decision, len(codes))}
	var errs []error
	for code, v := range codes {
		switch v {
		case "retry":
			c.Overrides[code] = Retry
		case "permanent":
			c.Overrides[code] = GiveUp
		default:
			errs = append(errs, fmt.Errorf("retry.codes.%s: %q is not one of retry, permanent", code, v))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Classify decides for err, the first rule that applies winning:
//
//  1. nil: GiveUp (nothing failed, nothing to retry).
//  2. Cancellation, errors.Is(err, context.Canceled): GiveUp, always; no
//     override can make a cancelled caller wait.
//  3. An override for ErrorCode(err): its decision. Overrides win over
//     everything below, ErrPermanent included: Permanent(WithCode("x", e))
//     is retried when retry.codes says x: retry.
//  4. ErrPermanent: GiveUp.
//  5. Everything else: Retry. That covers timeouts, refused and reset
//     connections and EOF, errors whose Temporary() is true, and also
//     unknown errors and those whose Temporary() is false (net deprecated
//     Temporary: false does not mean permanent). A wrong "retry" costs
//     some time within the policy's bounds, after which the records go to
//     the DLQ anyway; a sink that knows better says so with Permanent or a
//     code.
func (c *Classifier) Classify(err error) Decision {
	if err == nil || errors.Is(err, context.Canceled) {
		return GiveUp
	}
	if c != nil && len(c.Overrides) > 0 {
		if d, ok := c.Overrides[ErrorCode(err)]; ok {
			return d
		}
	}
	if errors.Is(err, ErrPermanent) {
		return GiveUp
	}
	return Retry
}

// Policy is exponential backoff with full jitter, bounded by attempts and
// elapsed time. A Policy from PolicyFrom of a validated config has every
// field positive; in one built by hand, MaxAttempts below 1 means 1 (no
// retry), MaxInterval <= 0 no cap on the wait and MaxElapsed <= 0 no time
// bound.
type Policy struct {
	Initial, MaxInterval, MaxElapsed time.Duration
	Multiplier                       float64
	MaxAttempts                      int // the first attempt included
}

// PolicyFrom takes the backoff part of c (already defaulted by config).
func PolicyFrom(c config.Retry) Policy {
	return Policy{
		Initial:     c.Initial,
		MaxInterval: c.MaxInterval,
		MaxElapsed:  c.MaxElapsed,
		Multiplier:  c.Multiplier,
		MaxAttempts: c.MaxAttempts,
	}
}

// Backoff returns the wait before retry number n (n=1 is the first retry,
// so the second attempt): uniform in [0, min(MaxInterval, Initial *
// Multiplier^(n-1))) for rnd uniform in [0, 1) ("full jitter"). n below 1
// counts as 1; rnd outside [0, 1) is clamped; a huge n saturates at
// MaxInterval, never overflows.
func (p Policy) Backoff(n int, rnd float64) time.Duration {
	if n < 1 {
		n = 1
	}
	ceil := float64(p.Initial) * math.Pow(p.Multiplier, float64(n-1))
	if limit := float64(p.MaxInterval); p.MaxInterval > 0 && (ceil > limit || math.IsNaN(ceil)) {
		ceil = limit
	}
	if !(ceil > 0) || !(rnd > 0) { // zero, negative or NaN
		return 0
	}
	const maxCeil = float64(math.MaxInt64 - 1023) // the largest float64 below 2^63
	ceil = min(ceil, maxCeil)
	d := time.Duration(rnd * ceil)
	if top := time.Duration(ceil); d >= top { // rnd >= 1, or rounding up
		d = top - 1
	}
	return d
}

// Budget is a token bucket that bounds retries to a fraction of requests,
// so that a dead dependency cannot turn every request into MaxAttempts of
// them. Each first attempt (Request) adds Ratio tokens, MinPerSecond tokens
// accrue per second of the clock, and each retry (TryRetry) takes one
// token. The bucket starts full and holds at most max(10, MinPerSecond)
// tokens: a burst of up to that many retries after a quiet period, or at
// start, never more. So over any span T, retries <= cap + Ratio*requests +
// MinPerSecond*T.
//
// Tokens are counted in millionths (fractions below are dropped, never
// rounded up). Safe for concurrent use; Request and TryRetry allocate
// nothing, and Request on a full bucket is one atomic load.
type Budget struct {
	ratio     int64   // micro-tokens per request
	perSecond float64 // tokens per second
	cap       int64   // micro-tokens
	now       func() time.Time
	base      time.Time
	tokens    atomic.Int64
	last      atomic.Int64 // ns since base up to which time was paid in
}

const budgetUnit = 1_000_000 // micro-tokens per token

// NewBudget returns a full bucket; now nil is time.Now. Negative rates
// count as 0.
func NewBudget(ratio, minPerSecond float64, now func() time.Time) *Budget {
	if now == nil {
		now = time.Now
	}
	if !(ratio > 0) {
		ratio = 0
	}
	if !(minPerSecond > 0) {
		minPerSecond = 0
	}
	capTokens := math.Max(10, minPerSecond)
	b := &Budget{
		ratio:     toMicroTokens(ratio),
		perSecond: minPerSecond,
		cap:       toMicroTokens(capTokens),
		now:       now,
		base:      now(),
	}
	b.tokens.Store(b.cap)
	return b
}

func toMicroTokens(t float64) int64 {
	m := t * budgetUnit
	if m >= math.MaxInt64/4 {
		return math.MaxInt64 / 4 // far beyond any bucket; keeps sums from overflowing
	}
	return int64(m)
}

// Request counts one first attempt: adds Ratio tokens, up to the cap.
func (b *Budget) Request() {
	if b.ratio == 0 {
		return
	}
	b.add(b.ratio)
}

// TryRetry takes one token for a retry, after paying in the time passed;
// false when less than one token is left.
func (b *Budget) TryRetry() bool {
	b.refill()
	for {
		v := b.tokens.Load()
		if v < budgetUnit {
			return false
		}
		if b.tokens.CompareAndSwap(v, v-budgetUnit) {
			return true
		}
	}
}

// TokenIn returns how long until the bucket holds one token at the
// MinPerSecond refill rate; 0 when it holds one now, or when it never
// refills on its own (MinPerSecond 0).
func (b *Budget) TokenIn() time.Duration {
	b.refill()
	v := b.tokens.Load()
	if v >= budgetUnit || b.perSecond == 0 {
		return 0
	}
	return time.Duration(float64(budgetUnit-v) / budgetUnit / b.perSecond * float64(time.Second))
}

func (b *Budget) add(n int64) {
	for {
		v := b.tokens.Load()
		if v >= b.cap {
			return
		}
		if b.tokens.CompareAndSwap(v, min(v+n, b.cap)) {
			return
		}
	}
}

// refill pays in MinPerSecond tokens per second since the last refill. The
// interval is claimed with a CAS on last, so concurrent callers never pay
// the same time twice; a clock going back pays nothing.
func (b *Budget) refill() {
	if b.perSecond == 0 {
		return
	}
	now := int64(b.now().Sub(b.base))
	for {
		last := b.last.Load()
		if now <= last {
			return
		}
		if b.last.CompareAndSwap(last, now) {
			b.add(toMicroTokens(float64(now-last) / float64(time.Second) * b.perSecond))
			return
		}
	}
}

// Breaker is a circuit breaker. Closed, it allows every attempt, until
// Failures consecutive attempts failed; then it is open and allows none for
// OpenFor; then it is half-open: it allows exactly one attempt at a time,
// the probe. The probe's success closes it, its failure re-opens it for
// OpenFor. While half-open, a Record is taken as the probe's result, and a
// probe that never reports (a lost caller) is replaced by a new one after
// OpenFor, so the breaker cannot stay stuck. Results arriving while open
// (from attempts allowed before it opened) are ignored.
//
// Safe for concurrent use; Allow and Record allocate nothing, and in the
// closed state they are a few atomic loads and stores, no lock.
type Breaker struct {
	failures int64
	openFor  time.Duration
	now      func() time.Time
	base     time.Time

	state       atomic.Int32 // brkClosed | brkOpen | brkHalfOpen; written under mu
	consecutive atomic.Int64 // consecutive failures while closed

	mu      sync.Mutex
	since   time.Duration                 // since base: when it opened, or when the probe went out
	probing bool                          // half-open and a probe is out
	cause   atomic.Pointer[retryRejected] // why it last opened (setCause)
	// outage is when it last opened from closed (since base): a failed
	// probe re-opens it without starting a new outage.
	outage time.Duration
}

const (
	brkClosed int32 = iota
	brkOpen
	brkHalfOpen
)

// breaker outcomes; brkNeutral releases a probe without judging (the
// caller was cancelled: the attempt says nothing about the dependency).
const (
	brkSuccess = iota
	brkFailure
	brkNeutral
)

// NewBreaker returns a closed breaker; failures below 1 count as 1, now nil
// is time.Now.
func NewBreaker(failures int, openFor time.Duration, now func() time.Time) *Breaker {
	if now == nil {
		now = time.Now
	}
	return &Breaker{failures: int64(max(failures, 1)), openFor: openFor, now: now, base: now()}
}

func (b *Breaker) elapsed() time.Duration { return b.now().Sub(b.base) }

// Allow says whether an attempt may go ahead. A true from a half-open
// breaker makes the caller the probe: it must Record the outcome.
func (b *Breaker) Allow() bool {
	if b.state.Load() == brkClosed {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case brkClosed:
		return true
	case brkOpen:
		now := b.elapsed()
		if now-b.since < b.openFor {
			return false
		}
		b.state.Store(brkHalfOpen)
		b.since, b.probing = now, true
		return true
	default: // half-open
		now := b.elapsed()
		if b.probing && now-b.since < b.openFor {
			return false
		}
		b.since, b.probing = now, true
		return true
	}
}

// Record reports the outcome of an allowed attempt.
func (b *Breaker) Record(ok bool) {
	if ok {
		b.record(brkSuccess)
	} else {
		b.record(brkFailure)
	}
}

func (b *Breaker) record(outcome int) {
	if b.state.Load() == brkClosed {
		switch outcome {
		case brkSuccess:
			if b.consecutive.Load() != 0 {
				b.consecutive.Store(0)
			}
			return
		case brkNeutral:
			return
		}
		if b.consecutive.Add(1) < b.failures {
			return
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case brkClosed:
		if outcome == brkFailure && b.consecutive.Load() >= b.failures {
			b.open()
		}
	case brkHalfOpen:
		switch outcome {
		case brkSuccess:
			b.consecutive.Store(0)
			b.probing = false
			b.state.Store(brkClosed)
		case brkFailure:
			b.open()
		default:
			b.probing = false
		}
	}
	// open: a late result of an attempt allowed before opening; ignored
}

// open, under mu.
func (b *Breaker) open() {
	if b.state.Load() == brkClosed {
		b.outage = b.elapsed()
	}
	b.since, b.probing = b.elapsed(), false
	b.consecutive.Store(0)
	b.state.Store(brkOpen)
}

// OutageFor returns how long the breaker has been away from closed (open
// or half-open, since it last opened from closed); 0 when closed.
func (b *Breaker) OutageFor() time.Duration {
	if b.state.Load() == brkClosed {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state.Load() == brkClosed {
		return 0
	}
	return b.elapsed() - b.outage
}

// setCause keeps err's text as the reason the breaker is open, in the
// refusal Attempt returns (built here, on the failure path, so a refused
// Attempt allocates nothing).
func (b *Breaker) setCause(err error) {
	msg := err.Error()
	if len(msg) > 320 {
		// The cause is usually at the end ("...: no space left on device").
		msg = strings.ToValidUTF8(msg[:100]+"…"+msg[len(msg)-200:], "")
	}
	b.cause.Store(&retryRejected{cause: msg})
}

// refusal is the error of a refused attempt, naming the last cause.
func (b *Breaker) refusal() error {
	if p := b.cause.Load(); p != nil {
		return p
	}
	return refusedNoCause
}

// ProbeIn returns how long until Allow may let an attempt through: 0 when
// closed, or when a probe may go now.
func (b *Breaker) ProbeIn() time.Duration {
	if b.state.Load() == brkClosed {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case brkClosed:
		return 0
	case brkHalfOpen:
		if !b.probing {
			return 0
		}
	}
	return max(0, b.openFor-(b.elapsed()-b.since))
}

// State is "closed", "open" or "half_open". An open breaker whose OpenFor
// has passed reports "half_open": the next Allow is the probe.
func (b *Breaker) State() string {
	switch b.state.Load() {
	case brkClosed:
		return "closed"
	case brkHalfOpen:
		return "half_open"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.state.Load() == brkClosed:
		return "closed"
	case b.state.Load() == brkHalfOpen || b.elapsed()-b.since >= b.openFor:
		return "half_open"
	}
	return "open"
}

// RetryStats counts what a Retrier did; safe for concurrent use. Every Do
// ends in exactly one of Successes, GaveUpPermanent, GaveUpExhausted,
// GaveUpCanceled, GaveUpBudget and GaveUpBreaker.
type RetryStats struct {
	Attempts        atomic.Int64 // calls of the operation, first ones and retries
	Retries         atomic.Int64 // calls of the operation after a failure
	Successes       atomic.Int64 // calls that returned nil
	GaveUpPermanent atomic.Int64 // classified GiveUp (permanent)
	GaveUpExhausted atomic.Int64 // MaxAttempts or MaxElapsed reached
	GaveUpCanceled  atomic.Int64 // the caller's context ended, or the error was a cancellation
	GaveUpBudget    atomic.Int64 // no retry token came within MaxElapsed
	GaveUpBreaker   atomic.Int64 // the breaker stayed open past MaxElapsed
	BudgetDenied    atomic.Int64 // retries that found the budget empty and waited for a token
	BreakerRejected atomic.Int64 // attempts the breaker refused (Attempt)
	BreakerWaits    atomic.Int64 // retries that waited for the breaker's probe
}

// RetryStatsSnapshot is a copy of RetryStats at one time (each counter read
// atomically, not all together).
type RetryStatsSnapshot struct {
	Attempts        int64 `json:"attempts"`
	Retries         int64 `json:"retries"`
	Successes       int64 `json:"successes"`
	GaveUpPermanent int64 `json:"gave_up_permanent"`
	GaveUpExhausted int64 `json:"gave_up_exhausted"`
	GaveUpCanceled  int64 `json:"gave_up_canceled"`
	GaveUpBudget    int64 `json:"gave_up_budget"`
	GaveUpBreaker   int64 `json:"gave_up_breaker"`
	BudgetDenied    int64 `json:"budget_denied"`
	BreakerRejected int64 `json:"breaker_rejected"`
	BreakerWaits    int64 `json:"breaker_waits"`
}

// Snapshot reads every counter.
func (s *RetryStats) Snapshot() RetryStatsSnapshot {
	return RetryStatsSnapshot{
		Attempts:        s.Attempts.Load(),
		Retries:         s.Retries.Load(),
		Successes:       s.Successes.Load(),
		GaveUpPermanent: s.GaveUpPermanent.Load(),
		GaveUpExhausted: s.GaveUpExhausted.Load(),
		GaveUpCanceled:  s.GaveUpCanceled.Load(),
		GaveUpBudget:    s.GaveUpBudget.Load(),
		GaveUpBreaker:   s.GaveUpBreaker.Load(),
		BudgetDenied:    s.BudgetDenied.Load(),
		BreakerRejected: s.BreakerRejected.Load(),
		BreakerWaits:    s.BreakerWaits.Load(),
	}
}

// GiveUp reasons.
const (
	ReasonPermanent   = "permanent"
	ReasonExhausted   = "exhausted"
	ReasonBudget      = "budget"
	ReasonBreakerOpen = "breaker_open"
	ReasonCanceled    = "canceled"
)

// GiveUpError is how a Retrier gives up.
type GiveUpError struct {
	// Reason is "permanent" (classified GiveUp), "exhausted" (MaxAttempts,
	// or the next wait would pass MaxElapsed), "budget" (no retry token
	// came in time),
	// "breaker_open" (the breaker refused an attempt) or "canceled" (the
	// caller's context ended, or the operation returned context.Canceled).
	Reason string
	// Attempts is how many times the operation was called: 0 when the
	// breaker refused the first attempt.
	Attempts int
	// Err is the last error: the operation's, or the breaker's refusal
	// when the operation was never called.
	Err error
}

func (e *GiveUpError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("retry gave up (%s) after %d attempts", e.Reason, e.Attempts)
	}
	return fmt.Sprintf("retry gave up (%s) after %d attempts: %v", e.Reason, e.Attempts, e.Err)
}

func (e *GiveUpError) Unwrap() error { return e.Err }

// Is: a "permanent" GiveUpError is ErrPermanent (also when an override,
// not ErrPermanent, made it permanent) and a "breaker_open" one is
// ErrBreakerOpen (also when Err is the last failure of the operation). Note
// that Unwrap still exposes Err: when an override retried a Permanent
// error until exhaustion, errors.Is(err, ErrPermanent) holds through Err.
// Decide the DLQ class by Reason.
func (e *GiveUpError) Is(target error) bool {
	return (target == ErrPermanent && e.Reason == ReasonPermanent) ||
		(target == ErrBreakerOpen && e.Reason == ReasonBreakerOpen)
}

// Retrier runs an operation under the policy. Every field but Policy may be
// nil: no budget, no breaker, the default classification, no stats. Safe
// for concurrent use once built; do not change fields after.
type Retrier struct {
	Policy     Policy
	Budget     *Budget
	Breaker    *Breaker
	Classifier *Classifier
	Stats      *RetryStats

	// For tests; nil: the real clock, a timer honouring ctx, math/rand/v2.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	Rand  func() float64 // in [0, 1)
}

// NewRetrier wires a Retrier from config (as defaulted by config: every
// number positive) with the real clock. An invalid value is an error.
func NewRetrier(c config.Retry) (*Retrier, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("retry."+format, args...))
	}
	if c.Initial <= 0 {
		bad("initial: %s must be positive", c.Initial)
	}
	if !(c.Multiplier >= 1) {
		bad("multiplier: %g must be at least 1", c.Multiplier)
	}
	if c.MaxInterval < c.Initial {
		bad("max_interval: %s is below initial %s", c.MaxInterval, c.Initial)
	}
	if c.MaxAttempts < 1 {
		bad("max_attempts: %d must be positive", c.MaxAttempts)
	}
	if c.MaxElapsed <= 0 {
		bad("max_elapsed: %s must be positive", c.MaxElapsed)
	}
	if !(c.Budget.Ratio >= 0 && c.Budget.Ratio <= 1) {
		bad("budget.ratio: %g is outside 0..1", c.Budget.Ratio)
	}
	if !(c.Budget.MinPerSecond >= 0) {
		bad("budget.min_per_second: %g must not be negative", c.Budget.MinPerSecond)
	}
	if c.Breaker.Failures < 1 {
		bad("breaker.failures: %d must be positive", c.Breaker.Failures)
	}
	if c.Breaker.OpenFor <= 0 {
		bad("breaker.open_for: %s must be positive", c.Breaker.OpenFor)
	}
	cl, err := NewClassifier(c.Codes)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Retrier{
		Policy:     PolicyFrom(c),
		Budget:     NewBudget(c.Budget.Ratio, c.Budget.MinPerSecond, time.Now),
		Breaker:    NewBreaker(c.Breaker.Failures, c.Breaker.OpenFor, time.Now),
		Classifier: cl,
		Stats:      &RetryStats{},
	}, nil
}

// Attempt runs op once: through the breaker (refused: it returns an error
// wrapping ErrBreakerOpen, with the code "breaker_open", without calling
// op), counted as a request in the budget (a refused attempt is not), and
// returns op's error unchanged. Its outcome goes to the breaker: a nil
// error or one classified GiveUp (the dependency answered) is a success, a
// cancellation is neither, any other error a failure. On success it
// allocates nothing and costs a few atomic operations.
func (r *Retrier) Attempt(ctx context.Context, op func(context.Context) error) error {
	if r.Breaker != nil && !r.Breaker.Allow() {
		if r.Stats != nil {
			r.Stats.BreakerRejected.Add(1)
		}
		return r.Breaker.refusal() // allocates nothing
	}
	if r.Budget != nil {
		r.Budget.Request()
	}
	if r.Stats != nil {
		r.Stats.Attempts.Add(1)
	}
	err := op(ctx)
	r.record(ctx, err)
	return err
}

// record passes an outcome to the breaker and the stats.
func (r *Retrier) record(ctx context.Context, err error) {
	if err == nil {
		if r.Breaker != nil {
			r.Breaker.record(brkSuccess)
		}
		if r.Stats != nil {
			r.Stats.Successes.Add(1)
		}
		return
	}
	if r.Breaker == nil {
		return
	}
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		r.Breaker.record(brkNeutral)
	case r.Classifier.Classify(err) == GiveUp:
		r.Breaker.record(brkSuccess)
	default:
		r.Breaker.record(brkFailure)
		if r.Breaker.state.Load() != brkClosed {
			r.Breaker.setCause(err)
		}
	}
}

// GiveUpNow reports whether a failed Attempt should go to the DLQ without
// retrying: it was refused by a breaker that has been open for MaxElapsed
// or more. A short outage costs a pause (Resume waits for the breaker);
// once an outage has lasted as long as the policy waits for any batch,
// waiting more would only stall the pipeline, so records go to the DLQ at
// once until a probe closes the breaker again.
func (r *Retrier) GiveUpNow(err error) bool {
	return r != nil && r.Breaker != nil && r.Policy.MaxElapsed > 0 &&
		isRejected(err) && r.Breaker.OutageFor() >= r.Policy.MaxElapsed
}

// Resume continues after a failed first Attempt that started at start, and
// returns nil once op succeeds, or a *GiveUpError. Before each retry, in
// this order, it gives up:
//
//   - "permanent" when the last error is classified GiveUp ("canceled"
//     if that error is context.Canceled): a definite answer stands even
//     if ctx ended meanwhile;
//   - "canceled" when ctx is done;
//   - "exhausted" at MaxAttempts (the first attempt counts, attempts the
//     breaker refused do not) or when the wait, Backoff(n, Rand()) before
//     retry n, would end past start+MaxElapsed;
//
// then it waits the backoff; then, while the budget has no token, it
// waits for one ("budget" when none comes before start+MaxElapsed); then,
// while the breaker refuses, it waits for the breaker's next probe
// ("breaker_open" when that would be past start+MaxElapsed, or the
// breaker has been open for MaxElapsed); else it calls op again. A short
// outage thus costs a pause, never the data: records go to the DLQ only
// once the policy is exhausted. A first error that is the breaker's
// refusal counts no attempt and waits for the breaker at once. A nil
// first returns nil.
func (r *Retrier) Resume(ctx context.Context, op func(context.Context) error, first error, start time.Time) error {
	if first == nil {
		return nil
	}
	attempts, last := 1, first
	refused := isRejected(first)
	if refused {
		attempts = 0 // counted in BreakerRejected by Attempt already
	}
	maxAttempts := max(r.Policy.MaxAttempts, 1)
	deadline := time.Time{}
	if r.Policy.MaxElapsed > 0 {
		deadline = start.Add(r.Policy.MaxElapsed)
	}
	for {
		if !refused {
			if r.Classifier.Classify(last) == GiveUp {
				if errors.Is(last, context.Canceled) {
					return r.giveUp(ReasonCanceled, attempts, last)
				}
				return r.giveUp(ReasonPermanent, attempts, last)
			}
			if ctx.Err() != nil {
				return r.giveUp(ReasonCanceled, attempts, last)
			}
			if attempts >= maxAttempts {
				return r.giveUp(ReasonExhausted, attempts, last)
			}
			wait := r.Policy.Backoff(attempts, r.rand())
			if !deadline.IsZero() && r.now().Add(wait).After(deadline) {
				return r.giveUp(ReasonExhausted, attempts, last)
			}
			if err := r.sleep(ctx, wait); err != nil || ctx.Err() != nil {
				return r.giveUp(ReasonCanceled, attempts, last)
			}
			if reason := r.waitBudget(ctx, deadline); reason != "" {
				return r.giveUp(reason, attempts, last)
			}
		}
		if reason := r.waitBreaker(ctx, deadline); reason != "" {
			if refused && attempts == 0 {
				last = first
			}
			return r.giveUp(reason, attempts, last)
		}
		refused = false
		if r.Stats != nil {
			r.Stats.Attempts.Add(1)
			if attempts > 0 {
				r.Stats.Retries.Add(1)
			}
		}
		attempts++
		last = op(ctx)
		r.record(ctx, last)
		if last == nil {
			return nil
		}
	}
}

// waitBudget takes a retry token, waiting for one while the bucket is
// empty; it returns a give-up reason when none comes before deadline (or
// ctx ends), else "".
func (r *Retrier) waitBudget(ctx context.Context, deadline time.Time) string {
	if r.Budget == nil {
		return ""
	}
	counted := false
	for !r.Budget.TryRetry() {
		if !counted && r.Stats != nil {
			r.Stats.BudgetDenied.Add(1)
			counted = true
		}
		step := r.Budget.TokenIn()
		if !deadline.IsZero() && (step <= 0 || r.now().Add(step).After(deadline)) {
			return ReasonBudget
		}
		if step <= 0 {
			return ReasonBudget // no refill and no deadline: waiting would never end
		}
		if err := r.sleep(ctx, step); err != nil || ctx.Err() != nil {
			return ReasonCanceled
		}
	}
	return ""
}

// waitBreaker returns "" once the breaker allows an attempt (the caller is
// then the probe when it was half-open), waiting for its next probe while
// it refuses; or a give-up reason: "breaker_open" when the probe would
// come after deadline or the outage has lasted MaxElapsed, "canceled".
func (r *Retrier) waitBreaker(ctx context.Context, deadline time.Time) string {
	if r.Breaker == nil {
		return ""
	}
	counted := false
	for !r.Breaker.Allow() {
		if !counted && r.Stats != nil {
			r.Stats.BreakerWaits.Add(1)
			counted = true
		}
		if r.Policy.MaxElapsed > 0 && r.Breaker.OutageFor() >= r.Policy.MaxElapsed {
			return ReasonBreakerOpen
		}
		// Another caller may be the probe: look again soon after it.
		step := max(r.Breaker.ProbeIn(), breakerPoll)
		if !deadline.IsZero() && r.now().Add(step).After(deadline) {
			return ReasonBreakerOpen
		}
		if err := r.sleep(ctx, step); err != nil || ctx.Err() != nil {
			return ReasonCanceled
		}
	}
	return ""
}

// breakerPoll is how often a caller waiting behind another's probe looks
// at the breaker again.
const breakerPoll = 20 * time.Millisecond

// Do is Attempt, then Resume if it failed; start is taken before the first
// attempt, so MaxElapsed includes it.
func (r *Retrier) Do(ctx context.Context, op func(context.Context) error) error {
	start := r.now()
	err := r.Attempt(ctx, op)
	if err == nil {
		return nil
	}
	return r.Resume(ctx, op, err, start)
}

func (r *Retrier) giveUp(reason string, attempts int, last error) error {
	if s := r.Stats; s != nil {
		switch reason {
		case ReasonPermanent:
			s.GaveUpPermanent.Add(1)
		case ReasonExhausted:
			s.GaveUpExhausted.Add(1)
		case ReasonCanceled:
			s.GaveUpCanceled.Add(1)
		case ReasonBudget:
			s.GaveUpBudget.Add(1)
		case ReasonBreakerOpen:
			s.GaveUpBreaker.Add(1)
		}
	}
	return &GiveUpError{Reason: reason, Attempts: attempts, Err: last}
}

func (r *Retrier) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Retrier) rand() float64 {
	if r.Rand != nil {
		return r.Rand()
	}
	return rand.Float64()
}

func (r *Retrier) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	return sleepContext(ctx, d)
}

// sleepContext waits d, or until ctx is done (returning its error).
func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
