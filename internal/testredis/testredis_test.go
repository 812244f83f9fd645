package testredis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

func TestStartPingKillRestart(t *testing.T) {
	s := Start(t)
	ctx := t.Context()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr = %q, want loopback", s.Addr())
	}
	bind, err := c.ConfigGet(ctx, "bind").Result()
	if err != nil {
		t.Fatal(err)
	}
	if bind["bind"] != "127.0.0.1" {
		t.Fatalf("bind = %q", bind["bind"])
	}

	s.Kill()
	o := s.Options()
	o.MaxRetries, o.DialerRetries = -1, 1
	once := goredis.NewClient(o)
	defer once.Close()
	if err := once.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Restart()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	// Without AOF nothing survives.
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, goredis.Nil) {
		t.Fatalf("GET after restart without AOF: %v, want redis.Nil", err)
	}
}

func TestAOFSurvivesRestart(t *testing.T) {
	s := StartWith(t, Options{AOF: true})
	ctx := t.Context()
	c := s.Client(t)
	for i := range 100 {
		if err := c.Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	s.Restart() // graceful: the AOF is flushed on shutdown
	n, err := c.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Fatalf("DBSIZE after restart = %d, want 100", n)
	}
}

func TestPassword(t *testing.T) {
	const pw = "hunter2-Zq9"
	s := StartWith(t, Options{Password: pw})
	ctx := t.Context()
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with password: %v", err)
	}
	anon := goredis.NewClient(&goredis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("PING without password: %v, want NOAUTH", err)
	}
	if runtime.GOOS == "linux" {
		s.mu.Lock()
		pid := s.cmd.Process.Pid
		s.mu.Unlock()
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(cmdline), pw) {
			t.Fatal("password is on the server's command line")
		}
	}
}

func TestStopLeavesNoProcess(t *testing.T) {
	var pid int
	t.Run("server", func(t *testing.T) {
		s := Start(t)
		s.mu.Lock()
		pid = s.cmd.Process.Pid
		s.mu.Unlock()
	})
	if runtime.GOOS != "linux" || pid == 0 {
		t.Skip("checks /proc")
	}
	// The subtest's cleanup has waited for the process: it is gone, not a
	// zombie.
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(b), "redis") {
			t.Fatalf("redis-server pid %d still exists after cleanup", pid)
		}
	}
}

// fakeTB records Skip and Fatal without ending the real test.
type fakeTB struct {
	testing.TB
	skipped, fatal string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func runFake(t *testing.T) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f)
		t.Error("Start returned without redis-server on PATH")
	}()
	<-done
	return f
}

func TestMissingServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(RequireEnv, "")
	if f := runFake(t); !strings.Contains(f.skipped, "scripts/ensure-redis") || f.fatal != "" {
		t.Fatalf("without %s: skipped %q, fatal %q; want a skip", RequireEnv, f.skipped, f.fatal)
	}
	t.Setenv(RequireEnv, "1")
	if f := runFake(t); !strings.Contains(f.fatal, "scripts/ensure-redis") || f.skipped != "" {
		t.Fatalf("with %s=1: skipped %q, fatal %q; want a failure", RequireEnv, f.skipped, f.fatal)
	}
}

func TestReadyContextHonoursCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	never := make(chan struct{})
	if err := waitReady(ctx, "127.0.0.1:1", "", never); err == nil {
		t.Fatal("waitReady succeeded with a canceled context")
	}
}
