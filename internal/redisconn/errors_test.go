package redisconn

import (
	"context"
	"errors"
	"fmt"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/pipeline"
)

func code(err error) string {
	var c pipeline.Coded
	if errors.As(err, &c) {
		return c.Code()
	}
	return ""
}

// redisErr is a server error as go-redis reports it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

func TestClassify(t *testing.T) {
	f := func(err error, wantCode string, wantPermanent bool) {
		t.Helper()
		got := Classify(err)
		if code(got) != wantCode || errors.Is(got, pipeline.ErrPermanent) != wantPermanent {
			t.Fatalf("%v: code %q permanent %t, want %q %t", err, code(got), errors.Is(got, pipeline.ErrPermanent), wantCode, wantPermanent)
		}
		if got.Error() != err.Error() {
			t.Fatalf("message %q changed to %q", err, got)
		}
	}
	f(redisErr("WRONGTYPE Operation against a key holding the wrong kind of value"), "WRONGTYPE", true)
	f(redisErr("ERR syntax error"), "ERR", true)
	f(redisErr("ERR max number of clients reached"), "ERR", false)
	f(redisErr("NOAUTH Authentication required."), "NOAUTH", true)
	f(redisErr("WRONGPASS invalid username-password pair or user is disabled."), "WRONGPASS", true)
	f(redisErr("NOPERM this user has no permissions to run the 'xadd' command"), "NOPERM", true)
	f(redisErr("EXECABORT Transaction discarded because of previous errors."), "EXECABORT", true)
	f(redisErr("MOVED 3999 127.0.0.1:6381"), "MOVED", true)
	f(redisErr("OOM command not allowed when used memory > 'maxmemory'."), "OOM", false)
	f(redisErr("READONLY You can't write against a read only replica."), "READONLY", false)
	f(redisErr("LOADING Redis is loading the dataset in memory"), "LOADING", false)
	f(redisErr("BUSY Redis is busy running a script."), "BUSY", false)
	f(redisErr("TRYAGAIN Multiple keys request during rehashing of slot"), "TRYAGAIN", false)
	f(redisErr("CLUSTERDOWN The cluster is down"), "CLUSTERDOWN", false)
	f(redisErr("MASTERDOWN Link with MASTER is down"), "MASTERDOWN", false)
	f(redisErr("NOSCRIPT No matching script."), "NOSCRIPT", false)
	f(fmt.Errorf("xadd: %w", redisErr("WRONGTYPE wrapped")), "WRONGTYPE", true)
	f(errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), "", false)
	f(context.DeadlineExceeded, "", false)
	f(goredis.ErrPoolTimeout, "", false)
	if Classify(nil) != nil {
		t.Fatal("nil classified as an error")
	}
}
