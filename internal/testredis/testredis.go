// Package testredis runs a real redis-server for tests: one private
// process per test, on a free 127.0.0.1 port, with its data in the test's
// temporary directory, stopped when the test ends.
//
// When redis-server is not on PATH the test is skipped, or fails when the
// environment holds TRACEPIPE_REQUIRE_REDIS=1 (make test sets it after
// scripts/ensure-redis installed the server).
package testredis

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RequireEnv names the environment variable that turns a missing
// redis-server into a failure instead of a skip.
const RequireEnv = "TRACEPIPE_REQUIRE_REDIS"

// Options configure a server.
type Options struct {
	// AOF turns on the append-only file with appendfsync always, so that
	// what the server acknowledged survives Kill. (With everysec, a busy
	// disk makes Redis postpone the AOF write for up to 2 s while still
	// replying: a SIGKILL then loses acknowledged writes, and tests that
	// count records after a kill fail at random on a loaded machine.)
	AOF bool
	// Password, when set, is required from clients (requirepass). It is
	// passed on the server's stdin, not its command line, so it never
	// shows in a process listing.
	Password string
}

// Server is one running redis-server.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	opts Options

	mu   sync.Mutex
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *syncBuffer   // the server's log (stdout and stderr)
}

// startTimeout bounds how long a server may take to answer PING when the
// test has no earlier deadline.
const startTimeout = 20 * time.Second

// stopTimeout is how long a server has to exit after SIGTERM before it is
// killed.
const stopTimeout = 10 * time.Second

// Start runs a server without persistence.
func Start(tb testing.TB) *Server { return StartWith(tb, Options{}) }

// StartWith runs a server configured by opts.
func StartWith(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		const msg = "redis-server not installed; run scripts/ensure-redis (make test does)"
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("%s (%s=1)", msg, RequireEnv)
		}
		tb.Skip(msg)
	}
	// TempDir before Cleanup: cleanups run last-in first-out, so the
	// server stops before its directory is removed.
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir(), opts: opts}
	tb.Cleanup(s.stop)

	// The free port is found by binding :0 and closing it; another
	// process may take it before the server binds, so try a few.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("testredis: %v", err)
		}
		if lastErr = s.launch(port); lastErr == nil {
			return s
		}
		s.stop()
	}
	tb.Fatalf("testredis: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Dir is the server's working directory (the AOF lives there).
func (s *Server) Dir() string { return s.dir }

// Password is the password the server requires ("" for none).
func (s *Server) Password() string { return s.opts.Password }

// Options returns client options for the server (address and password).
func (s *Server) Options() *goredis.Options {
	return &goredis.Options{Addr: s.Addr(), Password: s.opts.Password}
}

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client(tb testing.TB) *goredis.Client {
	tb.Helper()
	c := goredis.NewClient(s.Options())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Log returns what the server has written to its log so far.
func (s *Server) Log() string { return s.out.String() }

// Kill stops the server with SIGKILL, as a crash would, and waits for it
// to exit. Restart starts it again.
func (s *Server) Kill() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.kill()
	s.cmd = nil
}

// kill sends SIGKILL unless the process has already exited (and been
// waited for: its ids are then no longer ours), and waits for it.
func (s *Server) kill() {
	select {
	case <-s.done:
	default:
		killTree(s.cmd.Process)
		<-s.done
	}
}

// Restart stops the server gracefully if it runs (a no-op after Kill)
// and starts it again on the same port and directory. Without AOF the
// data is gone; with it, what was synced survives.
func (s *Server) Restart() {
	s.tb.Helper()
	s.stop()
	s.mu.Lock()
	port := s.port
	s.mu.Unlock()
	if err := s.launch(port); err != nil {
		s.tb.Fatalf("testredis: restart: %v", err)
	}
}

func (s *Server) args(port int) []string {
	// "-" reads more configuration from stdin, after which the
	// command-line options apply.
	a := []string{"-",
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "yes",
		"--save", "",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
	}
	if s.opts.AOF {
		a = append(a, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		a = append(a, "--appendonly", "no")
	}
	return a
}

// launch starts the process on port and waits until it answers PING.
func (s *Server) launch(port int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var stdin bytes.Buffer
	if p := s.opts.Password; p != "" {
		if strings.ContainsAny(p, "\"\\\r\n") {
			return errors.New("password must not hold quotes, backslashes or newlines")
		}
		fmt.Fprintf(&stdin, "requirepass \"%s\"\n", p)
	}
	cmd := exec.Command(s.bin, s.args(port)...)
	cmd.Dir = s.dir
	cmd.Stdin = &stdin
	if s.out == nil {
		s.out = &syncBuffer{}
	}
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	cmd.WaitDelay = stopTimeout
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.port = cmd, done, port

	if err := waitReady(s.readyContext(), net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), s.opts.Password, done); err != nil {
		return fmt.Errorf("redis-server on port %d: %w\n--- server log ---\n%s", port, err, tail(s.out.String(), 4000))
	}
	return nil
}

// readyContext bounds the wait for PING by the test's context and by its
// deadline (less a margin to report), or by startTimeout.
func (s *Server) readyContext() context.Context {
	ctx := s.tb.Context()
	limit := time.Now().Add(startTimeout)
	if d, ok := s.tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			if dl = dl.Add(-time.Until(dl) / 10); dl.Before(limit) {
				limit = dl
			}
		}
	}
	ctx, cancel := context.WithDeadline(ctx, limit)
	s.tb.Cleanup(cancel)
	return ctx
}

// stop ends the process if it runs: SIGTERM, then SIGKILL after
// stopTimeout. It never returns before the process has exited.
func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		s.cmd = nil
		return
	default:
	}
	terminate(s.cmd.Process)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.tb.Logf("testredis: redis-server (pid %d) ignored SIGTERM; killing it", s.cmd.Process.Pid)
		s.kill()
	}
	s.cmd = nil
}

// waitReady polls PING (after AUTH when a password is set) until the
// server answers PONG, the process exits, or ctx ends.
func waitReady(ctx context.Context, addr, password string, exited <-chan struct{}) error {
	var req bytes.Buffer
	if password != "" {
		fmt.Fprintf(&req, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password)
	}
	req.WriteString("*1\r\n$4\r\nPING\r\n")
	delay := 2 * time.Millisecond
	for {
		err := ping(ctx, addr, req.Bytes(), password != "")
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before it answered PING")
		case <-ctx.Done():
			return fmt.Errorf("no answer to PING (%w): last error: %v", context.Cause(ctx), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

func ping(ctx context.Context, addr string, req []byte, auth bool) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write(req); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	if auth {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+OK") {
			// Never echo what was sent; the reply names no secret.
			return fmt.Errorf("AUTH: %s", strings.TrimSpace(line))
		}
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING: %s", strings.TrimSpace(line)) // e.g. -LOADING
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
