package main

import (
	"log/slog"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/pipeline/windows"
	redissink "github.com/tracepipe/tracepipe/sinks/redis"
)

// newRedisReader opens the Redis windows store for query.
func newRedisReader(cfg config.WindowsRedis, log *slog.Logger) (windows.RowReader, error) {
	redisconn.RouteLibraryLogs(log)
	w, err := redissink.NewWindows(cfg, log)
	if err != nil {
		return nil, err // never a typed nil inside the interface
	}
	return w, nil
}
