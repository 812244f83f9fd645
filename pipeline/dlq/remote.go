package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tracepipe/tracepipe/internal/ratelog"
)

// RemoteServer is what a remote backend (Redis, Kafka) supplies to Remote:
// how a batch of entries is written to its server, and how the connection
// is released. Everything else a remote backend does (the queue, batching,
// backing off while the server fails, the fallback, counting) is Remote's.
// Remote calls both methods from its one writer goroutine, never at once,
// so a RemoteServer may keep state between writes without a lock.
type RemoteServer interface {
	// Write stores batch on the server and says what became of each
	// entry: every entry of batch must be in exactly one of the result's
	// Stored, Refused and Failed, or it is neither counted nor kept.
	// probe is true when the previous write failed and its retry period is
	// over: this write tells whether the server is back, so a Write that
	// retries should give up sooner.
	Write(batch []*Entry, probe bool) RemoteResult
	// Close releases the connection. Remote calls it once, after the last
	// Write, and closes the fallback after it.
	Close() error
}

// RemoteResult is what RemoteServer.Write did with a batch.
type RemoteResult struct {
	// Stored are the entries the server acknowledged, and Bytes their size
	// as the server keeps them (counted in Stats.Bytes). A write that
	// stored any entry shows the server answers: after a failure, Remote
	// takes it as up again.
	Stored []*Entry
	Bytes  int64
	// Refused are entries the server refused for good (too large, not
	// authorized) while it answers: they go to the fallback, but the
	// server is not taken as down. The RemoteServer logs why.
	Refused []Refusal
	// Failed are entries not stored because the server failed
	// (unreachable, timing out, refusing every write), Err the failure:
	// they go to the fallback, and so does every entry of the retry
	// period that follows. Err is set when Failed is not empty.
	Failed []*Entry
	Err    error
}

// Refusal is one entry the server refused for good, and why.
type Refusal struct {
	Entry *Entry
	Err   error
}

// RemoteOptions configure NewRemote.
type RemoteOptions struct {
	// Name starts the backend's log messages, e.g. "redis dlq".
	Name string
	// Label names the backend and its server in errors, e.g.
	// "redis dlq 127.0.0.1:6379 tracepipe:dlq".
	Label string
	// Attrs go with every log message, e.g. "stream", "tracepipe:dlq".
	Attrs []any
	// DownText is logged (after Name, as a warning) at each failed write,
	// UpText (as info) at the first write the server takes after failures:
	// the words operators know from each backend.
	DownText, UpText string
	// Logger gets the down, up and loss reports; default slog.Default().
	Logger *slog.Logger

	// Fallback takes the entries the server does not (the file DLQ). The
	// Remote owns it from NewRemote on: Close closes it, and Stats include
	// its counts. Without one such entries are lost, counted in
	// Stats.Failed and reported by Sync and Close.
	Fallback Backend
	// QueueSize bounds the entries waiting for the writer (a full queue
	// blocks Put); default DefaultQueueSize.
	QueueSize int
	// Batch is the most entries one Write carries; default 256.
	Batch int
	// RetryAfter is how long entries go straight to the fallback after a
	// failed write, before the server is tried again; it doubles while the
	// server keeps failing, up to MaxRetryAfter. Defaults 1s and 30s.
	RetryAfter, MaxRetryAfter time.Duration
	// StartDown starts as after a failed write: for RetryAfter, entries go
	// to the fallback without trying the server. For a backend whose Open
	// could not reach the server (Open says why).
	StartDown bool
}

// errRecentFailure is why an entry of a retry period was not tried.
var errRecentFailure = errors.New("not tried: the server failed a moment ago")

// Remote is the frame of a backend that stores entries on a server (Redis,
// Kafka), with a local DLQ as fallback. It implements Backend: Put queues
// entries (bounded: a full queue blocks Put), one writer goroutine hands
// them to the RemoteServer in batches, and what the server does not take
// goes to the fallback, so nothing is lost while it is down. After a
// failed write, entries go straight to the fallback for a retry period
// (doubling while the server keeps failing) rather than waiting on a dead
// server batch after batch. An entry whose write failed after the server
// stored it (a lost answer) may be in both places, with one id:
// at-least-once.
type Remote struct {
	srv      RemoteServer
	name     string
	label    string
	attrs    []any
	downText string
	upText   string
	log      *slog.Logger
	rl       *ratelog.Logger // entries lost: a refusing fallback refuses each
	batch    int

	in   *Intake
	fb   *Fallback
	done chan struct{} // closed when the writer has finished

	statsMu      sync.Mutex
	stats        Stats // the server's part
	syncedFailed int64 // stats.Failed at the last Sync
	err          error // first error, returned by Close

	// down mirrors isDown for Down, which other goroutines call.
	down atomic.Bool

	// Writer state.
	isDown     bool
	downUntil  time.Time
	backoff    time.Duration // the current retry period; 0 while up
	retryAfter time.Duration
	maxBackoff time.Duration
}

var _ Backend = (*Remote)(nil)

// NewRemote starts the writer of srv with opts.
func NewRemote(srv RemoteServer, opts RemoteOptions) *Remote {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Batch <= 0 {
		opts.Batch = 256
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = time.Second
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = 30 * time.Second
	}
	r := &Remote{
		srv:        srv,
		name:       opts.Name,
		label:      opts.Label,
		attrs:      opts.Attrs,
		downText:   opts.DownText,
		upText:     opts.UpText,
		log:        opts.Logger,
		rl:         ratelog.New(opts.Logger, 10*time.Second),
		batch:      opts.Batch,
		in:         NewIntake(opts.QueueSize),
		done:       make(chan struct{}),
		stats:      Stats{Written: map[string]int64{}},
		retryAfter: opts.RetryAfter,
		maxBackoff: opts.MaxRetryAfter,
	}
	r.fb = NewFallback(opts.Fallback, r.done)
	if opts.StartDown {
		r.markDown()
	}
	go r.run()
	return r
}

// Put validates e (filling Version, Time and ID when zero, as the file
// backend does) and queues it for the writer. If the queue has room Put
// returns at once; otherwise it blocks until there is room (nil) or ctx is
// done (ctx.Err(), the entry not taken). After Close it returns an error
// wrapping ErrClosed. A nil error means the entry will be on the server,
// in the fallback, or counted in Stats.Failed. The caller must not modify
// e after Put: the Remote keeps it until written.
func (r *Remote) Put(ctx context.Context, e *Entry) error {
	if e == nil {
		return fmt.Errorf("%s: Put of a nil entry", r.name)
	}
	if r.in.Closed() {
		return r.errorf("%w", ErrClosed)
	}
	if err := e.Prepare(); err != nil {
		return err
	}
	if err := r.in.Put(ctx, e); err != nil {
		if errors.Is(err, ErrClosed) {
			return r.errorf("%w", ErrClosed)
		}
		return err
	}
	return nil
}

// Sync waits until every entry Put accepted before the call is stored
// (acknowledged by the server, or written and synced by the fallback), or
// ctx ends. It returns an error when entries were lost (neither the server
// nor the fallback took them) since the previous Sync.
func (r *Remote) Sync(ctx context.Context) error {
	if err := r.in.Sync(ctx); err != nil {
		return err
	}
	if err := r.fb.Sync(ctx); err != nil {
		return err
	}
	r.statsMu.Lock()
	lost, err := r.stats.Failed-r.syncedFailed, r.err
	r.syncedFailed = r.stats.Failed
	r.statsMu.Unlock()
	if lost > 0 {
		return fmt.Errorf("%d dlq entries lost since the last sync: %w", lost, err)
	}
	return nil
}

// Close stops taking entries and waits until the writer has handled all
// that Put accepted (stored, handed to the fallback, or counted failed),
// then closes the server's connection and the fallback. It returns the
// first error of the Remote's life (entries neither the server nor the
// fallback took, closing either). If ctx ends first, Close returns an
// error wrapping ctx.Err(); the writer goes on in the background and a
// later Close waits again.
func (r *Remote) Close(ctx context.Context) error {
	defer r.rl.Flush() // the count of entries lost since the last line
	r.in.Close()
	select {
	case <-r.done:
		r.statsMu.Lock()
		defer r.statsMu.Unlock()
		return r.err
	case <-ctx.Done():
		return r.errorf("close: %w (the writer goes on in the background)", ctx.Err())
	}
}

// Stats counts entries stored by class: acknowledged by the server plus
// those the fallback wrote and synced. Failed counts entries neither took
// (and the fallback's own failures); Evicted and Bytes add the fallback's.
// Final once Close has returned.
func (r *Remote) Stats() Stats {
	r.statsMu.Lock()
	st := r.stats.clone()
	r.statsMu.Unlock()
	return r.fb.AddStats(st)
}

// Stored is how many entries the server acknowledged since NewRemote: the
// server's part of Stats.Total, as FellBack is the fallback's share of the
// entries.
func (r *Remote) Stored() int64 {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	return r.stats.Total
}

// Full is closed when entries went to the fallback and the fallback
// reached its cap (file DLQ, overflow: fail): a server's own cap trims or
// expires, it never fills. Without a fallback it is never closed.
func (r *Remote) Full() <-chan struct{} { return r.fb.Full() }

// Down reports whether the last write to the server failed (or Open could
// not reach it) and no write has succeeded since: entries go to the
// fallback meanwhile. It learns only from writes, so it stays as it was
// while no entry comes.
func (r *Remote) Down() bool { return r.down.Load() }

// FellBack is how many entries went to the fallback since NewRemote.
func (r *Remote) FellBack() int64 { return r.fb.Taken() }

// logAttrs returns Attrs followed by kv, for one log message.
func (r *Remote) logAttrs(kv ...any) []any {
	return append(append(make([]any, 0, len(r.attrs)+len(kv)), r.attrs...), kv...)
}

// errorf returns an error naming the backend and its server.
func (r *Remote) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{r.label}, args...)...)
}

// run is the writer: it takes what is queued, up to r.batch entries at a
// time, until the queue is closed.
func (r *Remote) run() {
	defer r.finish()
	batch := make([]*Entry, 0, r.batch)
	for e := range r.in.C {
		batch = append(batch[:0], e)
	fill:
		for len(batch) < r.batch {
			select {
			case e, ok := <-r.in.C:
				if !ok {
					break fill
				}
				batch = append(batch, e)
			default:
				break fill
			}
		}
		r.write(batch)
		r.in.Done(len(batch))
		clear(batch)
	}
}

// finish closes the server's connection, then the fallback, then says the
// writer is done.
func (r *Remote) finish() {
	if err := r.srv.Close(); err != nil {
		r.recordErr(r.errorf("close: %w", err))
	}
	if err := r.fb.Close(); err != nil {
		r.recordErr(r.errorf("close fallback: %w", err))
	}
	close(r.done)
}

// write hands batch to the server, or to the fallback during a retry
// period, and deals with what the server did not take.
func (r *Remote) write(batch []*Entry) {
	if r.isDown && time.Now().Before(r.downUntil) {
		r.fallback(batch, errRecentFailure)
		return
	}
	res := r.srv.Write(batch, r.isDown)
	if len(res.Stored) > 0 {
		r.statsMu.Lock()
		for _, e := range res.Stored {
			r.stats.count(keyOf(e), 1)
		}
		r.stats.Bytes += res.Bytes
		r.statsMu.Unlock()
		if r.isDown {
			r.log.Info(r.name+": "+r.upText, r.logAttrs("fell_back", r.FellBack())...)
		}
		r.isDown, r.backoff = false, 0
		r.down.Store(false)
	}
	for _, rf := range res.Refused {
		r.fallback([]*Entry{rf.Entry}, rf.Err)
	}
	if len(res.Failed) > 0 {
		r.markDown()
		r.log.Warn(r.name+": "+r.downText,
			r.logAttrs("entries", len(res.Failed), "retry_after", r.backoff, "err", res.Err)...)
		r.fallback(res.Failed, res.Err)
	}
}

// markDown starts a retry period: RetryAfter after the server was up,
// twice the last one (up to MaxRetryAfter) while it keeps failing.
func (r *Remote) markDown() {
	if r.backoff == 0 {
		r.backoff = r.retryAfter
	} else {
		r.backoff = min(2*r.backoff, r.maxBackoff)
	}
	r.isDown = true
	r.down.Store(true)
	r.downUntil = time.Now().Add(r.backoff)
}

// fallback hands entries the server did not take to the fallback, or
// counts them failed when there is none or it refuses them. cause is why
// the server did not take them. It blocks while the fallback's queue is
// full: backpressure reaches Put through the intake.
func (r *Remote) fallback(entries []*Entry, cause error) {
	if len(entries) == 0 {
		return
	}
	if !r.fb.Exists() {
		r.fail(int64(len(entries)), r.errorf("%d entries lost, no fallback: %w", len(entries), cause))
		return
	}
	for _, e := range entries {
		if err := r.fb.Put(e); err != nil {
			r.fail(1, r.errorf("entry %s: the server did not take it (%v) and the fallback refused it: %w", e.ID, cause, err))
		}
	}
}

// fail counts n entries lost, logs them and keeps err if it is the first.
func (r *Remote) fail(n int64, err error) {
	r.rl.Error("entries_lost", r.name+": entries lost", r.logAttrs("entries", n, "err", err)...)
	r.statsMu.Lock()
	r.stats.Failed += n
	if r.err == nil {
		r.err = err
	}
	r.statsMu.Unlock()
}

// recordErr keeps err if it is the first error.
func (r *Remote) recordErr(err error) {
	r.statsMu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.statsMu.Unlock()
}
