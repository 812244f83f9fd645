package redisconn

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// RouteLibraryLogs sends go-redis's own log lines (failed dials, pool
// trouble; by default printed to stderr with the standard log package) to l
// at warn level. It sets go-redis's process-wide logger: call it once, when
// wiring the process. go-redis does not put passwords in these lines.
func RouteLibraryLogs(l *slog.Logger) {
	goredis.SetLogger(libLogger{l})
}

type libLogger struct{ l *slog.Logger }

func (g libLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimPrefix(strings.TrimSpace(fmt.Sprintf(format, v...)), "redis: ")
	g.l.WarnContext(ctx, "redis client", "detail", msg)
}
