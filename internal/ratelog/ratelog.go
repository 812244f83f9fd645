// Package ratelog logs repeated errors once per interval with a count, so
// that a failure hit by every record (a full disk, a dead server) gives a
// handful of log lines, not one per record.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Logger logs the first occurrence of each key at once, then at most one
// line per interval for that key saying how many more occurred, and a last
// such line at Flush. Safe for concurrent use.
type Logger struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]*state
}

type state struct {
	level    slog.Level
	msg      string
	args     []any // of the last occurrence
	last     time.Time
	repeated int64 // occurrences since the last line
	total    int64
}

// New returns a Logger writing to log; interval <= 0 means 10s.
func New(log *slog.Logger, interval time.Duration) *Logger {
	if log == nil {
		log = slog.Default()
	}
	if interval <= 0 {
		interval = 10 * time.Second
	}
	return &Logger{log: log, interval: interval, now: time.Now, keys: map[string]*state{}}
}

// Error logs msg at error level under key (the kind of failure, e.g.
// "dlq_refused"); args are slog attributes of this occurrence.
func (l *Logger) Error(key, msg string, args ...any) { l.Log(slog.LevelError, key, msg, args...) }

// Warn is Error at warn level.
func (l *Logger) Warn(key, msg string, args ...any) { l.Log(slog.LevelWarn, key, msg, args...) }

// Log logs msg at level under key: the first time at once, then at most
// once per interval with the count of occurrences since the last line.
func (l *Logger) Log(level slog.Level, key, msg string, args ...any) {
	now := l.now()
	l.mu.Lock()
	s := l.keys[key]
	if s == nil {
		s = &state{level: level, msg: msg, last: now, total: 1}
		l.keys[key] = s
		l.mu.Unlock()
		l.log.Log(context.Background(), level, msg, args...)
		return
	}
	s.total++
	s.repeated++
	s.args = args
	if now.Sub(s.last) < l.interval {
		l.mu.Unlock()
		return
	}
	n, total := s.repeated, s.total
	s.repeated, s.last = 0, now
	l.mu.Unlock()
	l.log.Log(context.Background(), level, msg+" (repeated)", append([]any{"repeated", n, "total", total}, args...)...)
}

// Flush logs, for every key with occurrences not yet logged, one line with
// their count. Call it at the end of a run.
func (l *Logger) Flush() {
	l.mu.Lock()
	type line struct {
		level    slog.Level
		msg      string
		n, total int64
		args     []any
	}
	var out []line
	for _, s := range l.keys {
		if s.repeated > 0 {
			out = append(out, line{s.level, s.msg, s.repeated, s.total, s.args})
			s.repeated, s.last = 0, l.now()
		}
	}
	l.mu.Unlock()
	for _, x := range out {
		l.log.Log(context.Background(), x.level, x.msg+" (repeated)", append([]any{"repeated", x.n, "total", x.total}, x.args...)...)
	}
}
