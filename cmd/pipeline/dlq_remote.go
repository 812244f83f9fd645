package main

import (
	"fmt"
	"log/slog"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// openRemoteDLQStore opens a redis or kafka DLQ's store.
func openRemoteDLQStore(cfg *config.Config, log *slog.Logger) (dlq.Store, string, error) {
	return nil, "", fmt.Errorf("dlq: the %s backend is not wired into pipeline dlq yet", cfg.DLQ.Type)
}
