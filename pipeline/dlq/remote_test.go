package dlq

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fileServer is a RemoteServer whose "server" is a file DLQ of its own:
// what it stores is on disk, so a test can count it. It fails its first
// failWrites writes as a server that does not answer would, refuses
// entries of class refuse for good, as a server refuses one too large, and
// fails its Close with closeErr.
type fileServer struct {
	f        *File
	fallback *File // to check that Close comes first
	refuse   string

	closeErr error // Close returns it, after closing f

	mu             sync.Mutex
	failWrites     int
	probes         []bool // the probe argument of every Write
	closed         bool
	fallbackClosed bool // the fallback was closed before Close
}

func (s *fileServer) Write(batch []*Entry, probe bool) RemoteResult {
	s.mu.Lock()
	s.probes = append(s.probes, probe)
	fail := s.failWrites > 0
	if fail {
		s.failWrites--
	}
	s.mu.Unlock()
	var res RemoteResult
	if fail {
		res.Failed, res.Err = batch, errors.New("connection refused")
		return res
	}
	ctx := context.Background()
	before := s.f.Stats().Bytes
	for _, e := range batch {
		if e.Error.Class == s.refuse {
			res.Refused = append(res.Refused, Refusal{Entry: e, Err: errors.New("refused for good")})
			continue
		}
		if err := s.f.Put(ctx, e); err != nil {
			res.Failed, res.Err = append(res.Failed, e), err
			continue
		}
		res.Stored = append(res.Stored, e)
	}
	if err := s.f.Sync(ctx); err != nil {
		res.Failed, res.Stored, res.Err = append(res.Failed, res.Stored...), nil, err
		return res
	}
	res.Bytes = s.f.Stats().Bytes - before
	return res
}

func (s *fileServer) Close() error {
	s.mu.Lock()
	s.closed = true
	s.fallbackClosed = s.fallback != nil && s.fallback.isClosed.Load()
	s.mu.Unlock()
	if err := s.f.Close(context.Background()); err != nil {
		return err
	}
	return s.closeErr
}

func (s *fileServer) writes() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.probes...)
}

// remoteSetup is a Remote on a fileServer, with what a test checks.
type remoteSetup struct {
	srv      *fileServer
	r        *Remote
	srvDir   string
	fbDir    string
	fallback *File
	logs     *syncBuffer
}

// openRemote starts a Remote on srv, with a file DLQ as fallback unless
// noFallback; opts' names, texts and Logger are filled in.
func openRemote(t *testing.T, srv *fileServer, noFallback bool, opts RemoteOptions) *remoteSetup {
	t.Helper()
	s := &remoteSetup{srv: srv, srvDir: t.TempDir(), logs: &syncBuffer{}}
	srv.f = openTest(t, FileOptions{Dir: s.srvDir}, fileHooks{})
	if !noFallback {
		s.fbDir = t.TempDir()
		s.fallback = openTest(t, FileOptions{Dir: s.fbDir}, fileHooks{})
		srv.fallback = s.fallback
		opts.Fallback = s.fallback
	}
	opts.Name, opts.Label, opts.Attrs = "test dlq", "test dlq server-1", []any{"server", "server-1"}
	opts.DownText, opts.UpText = "server failed; entries go to the fallback", "server answers again"
	opts.Logger = logTo(s.logs)
	s.r = NewRemote(srv, opts)
	t.Cleanup(func() { s.r.Close(context.Background()) })
	return s
}

func putN(t *testing.T, r *Remote, from, n int, class string) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := r.Put(t.Context(), testEntry(i, class)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRemoteDownSendsToFallback: after a failed write, the entries of the
// retry period go to the fallback without trying the server; all are
// kept, and Stats count them once the fallback synced them.
func TestRemoteDownSendsToFallback(t *testing.T) {
	srv := &fileServer{failWrites: 1}
	s := openRemote(t, srv, false, RemoteOptions{RetryAfter: time.Hour, Batch: 16})
	putN(t, s.r, 0, 300, "invalid")
	putN(t, s.r, 300, 100, "malformed")
	if err := s.r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if w := srv.writes(); len(w) != 1 || w[0] {
		t.Fatalf("writes (probe flags) %v: want one write, not a probe, then none for the retry period", w)
	}
	if got := len(scanAll(t, s.fbDir).entries); got != 400 || s.r.FellBack() != 400 {
		t.Fatalf("fallback holds %d, fell back %d; want 400", got, s.r.FellBack())
	}
	if got := len(scanAll(t, s.srvDir).entries); got != 0 || s.r.Stored() != 0 {
		t.Fatalf("server holds %d, stored %d", got, s.r.Stored())
	}
	st := s.r.Stats()
	if st.Total != 400 || st.Written["invalid"] != 300 || st.Written["malformed"] != 100 || st.Failed != 0 || st.Bytes == 0 {
		t.Fatalf("stats %+v", st)
	}
	logs := s.logs.String()
	if strings.Count(logs, "test dlq: server failed; entries go to the fallback") != 1 ||
		!strings.Contains(logs, "server=server-1") || strings.Contains(logs, "answers again") {
		t.Fatalf("logs:\n%s", logs)
	}
}

// TestRemoteUpAgain: once the retry period is over, the next write is a
// probe; when the server takes it, entries go to the server again.
func TestRemoteUpAgain(t *testing.T) {
	srv := &fileServer{failWrites: 1}
	s := openRemote(t, srv, false, RemoteOptions{RetryAfter: time.Millisecond})
	n := 0
	deadline := time.Now().Add(10 * time.Second)
	for s.r.Stored() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the server took nothing after its failure; writes %v", srv.writes())
		}
		putN(t, s.r, n, 1, "invalid")
		n++
		if err := s.r.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	putN(t, s.r, n, 50, "late")
	n += 50
	if err := s.r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	w := srv.writes()
	if len(w) < 3 || w[0] || !w[1] || w[2] {
		t.Fatalf("probe flags %v: want a write, a probe after its failure, then plain writes", w)
	}
	inSrv, inFb := len(scanAll(t, s.srvDir).entries), len(scanAll(t, s.fbDir).entries)
	if int64(inSrv) != s.r.Stored() || int64(inFb) != s.r.FellBack() || inSrv+inFb != n || inFb == 0 {
		t.Fatalf("server holds %d (stored %d), fallback %d (fell back %d), of %d", inSrv, s.r.Stored(), inFb, s.r.FellBack(), n)
	}
	if st := s.r.Stats(); st.Total != int64(n) || st.Written["late"] != 50 || st.Failed != 0 {
		t.Fatalf("stats %+v for %d", st, n)
	}
	if logs := s.logs.String(); !strings.Contains(logs, "test dlq: server answers again") || !strings.Contains(logs, "fell_back=") {
		t.Fatalf("logs:\n%s", logs)
	}
	// The writer is done (Close returned): its state is ours to read.
	if s.r.isDown || s.r.backoff != 0 {
		t.Fatalf("down %t, retry period %s after the server took writes again", s.r.isDown, s.r.backoff)
	}
}

// TestRemoteRefusalIsNotADownPeriod: an entry the server refuses for good
// goes to the fallback, and the next entries still go to the server.
func TestRemoteRefusalIsNotADownPeriod(t *testing.T) {
	srv := &fileServer{refuse: "too_large"}
	s := openRemote(t, srv, false, RemoteOptions{RetryAfter: time.Hour})
	putN(t, s.r, 0, 1, "too_large")
	if err := s.r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	putN(t, s.r, 1, 20, "invalid")
	if err := s.r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.r.FellBack() != 1 || s.r.Stored() != 20 {
		t.Fatalf("fell back %d, stored %d; want 1 and 20", s.r.FellBack(), s.r.Stored())
	}
	if fb := scanAll(t, s.fbDir).entries; len(fb) != 1 || fb[0].Error.Class != "too_large" {
		t.Fatalf("fallback holds %d entries", len(fb))
	}
	st := s.r.Stats()
	if st.Total != 21 || st.Written["too_large"] != 1 || st.Written["invalid"] != 20 {
		t.Fatalf("stats %+v", st)
	}
	if srvBytes := s.srv.f.Stats().Bytes; st.Bytes != srvBytes+s.fallback.Stats().Bytes {
		t.Fatalf("bytes %d, want the server's %d plus the fallback's %d", st.Bytes, srvBytes, s.fallback.Stats().Bytes)
	}
	if logs := s.logs.String(); strings.Contains(logs, "server failed") {
		t.Fatalf("a refusal started a retry period:\n%s", logs)
	}
}

// TestRemoteWithoutFallbackCountsLost: with no fallback, what the server
// does not take is lost: counted, reported once by Sync, and by Close.
func TestRemoteWithoutFallbackCountsLost(t *testing.T) {
	srv := &fileServer{failWrites: 1 << 30}
	s := openRemote(t, srv, true, RemoteOptions{RetryAfter: time.Hour})
	putN(t, s.r, 0, 5, "invalid")
	if err := s.r.Sync(t.Context()); err == nil || !strings.Contains(err.Error(), "5 dlq entries lost") {
		t.Fatalf("Sync = %v, want the loss reported", err)
	}
	if err := s.r.Sync(t.Context()); err != nil {
		t.Fatalf("second Sync = %v: nothing was lost since the first", err)
	}
	err := s.r.Close(t.Context())
	// The first batch's loss is the first error (the writer may have taken
	// the five entries in more than one batch).
	if err == nil || !strings.HasPrefix(err.Error(), "test dlq server-1: ") || !strings.Contains(err.Error(), "entries lost, no fallback: connection refused") {
		t.Fatalf("Close = %v", err)
	}
	if st := s.r.Stats(); st.Failed != 5 || st.Total != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(s.logs.String(), "test dlq: entries lost") {
		t.Fatalf("logs:\n%s", s.logs)
	}
}

// TestRemoteStartDown: a Remote that starts down does not try the server
// for RetryAfter.
func TestRemoteStartDown(t *testing.T) {
	srv := &fileServer{}
	s := openRemote(t, srv, false, RemoteOptions{RetryAfter: time.Hour, StartDown: true})
	putN(t, s.r, 0, 10, "invalid")
	if err := s.r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if w := srv.writes(); len(w) != 0 || s.r.FellBack() != 10 {
		t.Fatalf("writes %v, fell back %d", w, s.r.FellBack())
	}
}

// TestRemoteClose: Close writes what was queued, closes the server before
// the fallback, returns the server's close error, and Put refuses
// afterwards.
func TestRemoteClose(t *testing.T) {
	closeErr := errors.New("connection reset")
	srv := &fileServer{closeErr: closeErr}
	s := openRemote(t, srv, false, RemoteOptions{})
	putN(t, s.r, 0, 3, "invalid")
	if err := s.r.Close(t.Context()); !errors.Is(err, closeErr) || !strings.Contains(err.Error(), "test dlq server-1: close:") {
		t.Fatalf("Close = %v, want the server's close error", err)
	}
	if s.r.Stored() != 3 || len(scanAll(t, s.srvDir).entries) != 3 {
		t.Fatalf("stored %d, want the 3 queued before Close", s.r.Stored())
	}
	srv.mu.Lock()
	closed, fbFirst := srv.closed, srv.fallbackClosed
	srv.mu.Unlock()
	if !closed || fbFirst {
		t.Fatalf("server closed %t, fallback closed before it %t", closed, fbFirst)
	}
	if !s.fallback.isClosed.Load() {
		t.Fatal("the fallback is still open after Close")
	}
	if err := s.r.Put(t.Context(), testEntry(9, "invalid")); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "test dlq server-1") {
		t.Fatalf("Put after Close = %v", err)
	}
	if err := s.r.Put(t.Context(), nil); err == nil {
		t.Fatal("Put(nil) accepted")
	}
}

// TestRemoteBackoff: the retry period starts at RetryAfter, doubles while
// the server keeps failing and stops at MaxRetryAfter. (TestRemoteUpAgain
// checks it starts over once the server took a write.)
func TestRemoteBackoff(t *testing.T) {
	r := &Remote{retryAfter: time.Second, maxBackoff: 5 * time.Second}
	var got []time.Duration
	for range 5 {
		r.markDown()
		got = append(got, r.backoff)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(got, want) || !r.isDown {
		t.Fatalf("retry periods %v, want %v", got, want)
	}
}
