package dlq

import (
	"context"
	"errors"
	"maps"
	"strings"
)

// Backend stores DLQ entries. The runner talks only to this interface; the
// file backend (OpenFile) is the default, Redis and Kafka backends implement
// the same contract.
type Backend interface {
	// Put hands over one entry. It does not wait for disk I/O: entries go
	// through a bounded queue to one writer. When the queue is full Put
	// blocks (backpressure) until there is room or ctx is done, and then
	// returns ctx.Err(). The caller must not modify e after Put. Put after
	// Close returns an error wrapping ErrClosed.
	Put(ctx context.Context, e *Entry) error
	// Sync waits until every entry Put accepted before the call is
	// durable (fsynced, or acknowledged by the server), or ctx ends; an
	// error says some may not be. The runner acks input only after it.
	Sync(ctx context.Context) error
	// Close drains the queue, writes and syncs everything Put accepted,
	// closes files and returns the first error. After Close, Stats is final.
	Close(ctx context.Context) error
	// Stats counts entries durably written (after fsync) by class, failed
	// writes and evictions. Safe to call concurrently with everything.
	Stats() Stats
	// Full is closed when the backend takes no more entries: it reached
	// its size cap under OverflowFail, or its storage failed (a full
	// disk). The runner stops reading input then. It stays closed.
	Full() <-chan struct{}
}

// ErrClosed is wrapped by Put (and File.Sync) after Close.
var ErrClosed = errors.New("dlq: backend closed")

// Stats counts what a backend did since it was opened. Every entry Put
// accepted ends in Total or in Failed once Close has returned; before that,
// some may still be queued or awaiting sync.
type Stats struct {
	// Written counts entries durably written (synced), by error class.
	Written map[string]int64 `json:"written"`
	// Total is the sum of Written.
	Total int64 `json:"total"`
	// Failed counts entries Put accepted that could not be written or whose
	// sync failed: they may be missing or torn in the segments.
	Failed int64 `json:"failed"`
	// Evicted counts entries removed by OverflowDropOldest, including
	// entries of segments written by earlier runs.
	Evicted int64 `json:"evicted"`
	// EvictedSegments counts segments removed by OverflowDropOldest.
	EvictedSegments int64 `json:"evicted_segments"`
	// Bytes counts the bytes of the entries in Total, as stored (with
	// checksum and newline).
	Bytes int64 `json:"bytes"`
	// ByKey counts the entries of Written by class, code, stage and sink,
	// for telemetry: its counts sum to Written's, class by class. It holds
	// at most MaxEntryKeys keys; the entries of the keys beyond count under
	// their class with code OverflowCode and no stage or sink.
	ByKey map[EntryKey]int64 `json:"-"`
}

// EntryKey is what telemetry tells DLQ entries apart by: the error's
// class and code, the stage that failed, and the sinks that did not take
// the record (comma-separated in the entry's order; "" when none).
type EntryKey struct {
	Class, Code, Stage, Sink string
}

// MaxEntryKeys bounds Stats.ByKey. Codes are a fixed set and stages and
// sinks few, so real runs stay far below it; a code that varied would
// still not grow the map, nor the metrics made from it, without end.
const MaxEntryKeys = 256

// OverflowCode is the code of the entries counted beyond MaxEntryKeys.
const OverflowCode = "other"

// keyOf is the entry's key in Stats.ByKey. Joining the sinks allocates
// only for an entry more than one sink refused.
func keyOf(e *Entry) EntryKey {
	k := EntryKey{Class: e.Error.Class, Code: e.Error.Code, Stage: e.Stage}
	switch len(e.Sinks) {
	case 0:
	case 1:
		k.Sink = e.Sinks[0]
	default:
		k.Sink = strings.Join(e.Sinks, ",")
	}
	return k
}

// count adds n entries of key k: to Written by class, to Total, and to
// ByKey within its bound.
func (s *Stats) count(k EntryKey, n int64) {
	if s.Written == nil {
		s.Written = map[string]int64{}
	}
	s.Written[k.Class] += n
	s.Total += n
	s.countKey(k, n)
}

// countKey adds n to ByKey[k], or to the overflow key of k's class once
// MaxEntryKeys keys exist.
func (s *Stats) countKey(k EntryKey, n int64) {
	if s.ByKey == nil {
		s.ByKey = map[EntryKey]int64{}
	}
	if _, ok := s.ByKey[k]; !ok && len(s.ByKey) >= MaxEntryKeys {
		k = EntryKey{Class: k.Class, Code: OverflowCode}
	}
	s.ByKey[k] += n
}

// clone returns s with its own Written and ByKey maps (never nil).
func (s Stats) clone() Stats {
	c := s
	c.Written = make(map[string]int64, len(s.Written))
	maps.Copy(c.Written, s.Written)
	c.ByKey = make(map[EntryKey]int64, len(s.ByKey))
	maps.Copy(c.ByKey, s.ByKey)
	return c
}
