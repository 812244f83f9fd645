package redisconn

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// TestRouteLibraryLogs: a line go-redis logs itself (here: a duration it
// truncates while building a command, no server needed) arrives at the
// given logger as a warning.
func TestRouteLibraryLogs(t *testing.T) {
	var buf bytes.Buffer
	RouteLibraryLogs(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { RouteLibraryLogs(slog.New(slog.DiscardHandler)) })

	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	c.Pipeline().PExpire(context.Background(), "k", time.Microsecond)

	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "level=WARN") || !strings.Contains(out, `msg="redis client"`) ||
		!strings.Contains(out, "truncating to 1ms") {
		t.Fatalf("logged %q", out)
	}
}
