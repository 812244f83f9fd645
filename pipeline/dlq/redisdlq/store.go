package redisdlq

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// scanPage is how many stream entries one XRANGE returns.
const scanPage = 256

// ErrNotFound is wrapped by Store.Get for an id not in the stream; it is
// dlq.ErrNotFound.
var ErrNotFound = dlq.ErrNotFound

var _ dlq.Store = (*Store)(nil)

// Store reads and deletes the entries of a DLQ stream, for `pipeline dlq`
// (list, show, replay, delete). It also offers the consumer-group
// operations (EnsureGroup, Read, Claim, Ack, Move). Safe for concurrent
// use.
type Store struct {
	*conn
}

// OpenStore connects to cfg's server, checking that it answers within
// cfg.Timeout.
func OpenStore(cfg config.DLQRedis, log *slog.Logger) (*Store, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Store{conn: newConn(cfg, log)}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		_ = s.client.Close()
		return nil, s.errorf("%w", redisconn.Classify(err))
	}
	return s, nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.client.Close() }

// Len is the number of entries in the stream (XLEN).
func (s *Store) Len(ctx context.Context) (int64, error) {
	n, err := s.client.XLen(ctx, s.stream).Result()
	if err != nil {
		return 0, s.errorf("XLEN: %w", redisconn.Classify(err))
	}
	return n, nil
}

// Scan calls fn with every entry, oldest first, reading the stream in
// pages (XRANGE, 256 entries each); fn may keep e. Stream entries that are
// not DLQ entries are skipped, logged and counted (Undecodable). fn's error
// stops the scan and is returned unchanged. Entries added while Scan runs
// may or may not be seen.
func (s *Store) Scan(ctx context.Context, fn func(e *dlq.Entry) error) error {
	return s.ScanIDs(ctx, func(_ string, e *dlq.Entry) error { return fn(e) })
}

// ScanIDs is Scan that also gives each entry's stream id (for Ack, Delete
// or Move).
func (s *Store) ScanIDs(ctx context.Context, fn func(streamID string, e *dlq.Entry) error) error {
	return s.scanRange(ctx, "-", "+", fn)
}

// scanRange is ScanIDs over stream ids [start, end].
func (s *Store) scanRange(ctx context.Context, start, end string, fn func(string, *dlq.Entry) error) error {
	for {
		msgs, err := s.client.XRangeN(ctx, s.stream, start, end, scanPage).Result()
		if err != nil {
			return s.errorf("XRANGE: %w", redisconn.Classify(err))
		}
		for _, m := range msgs {
			e, err := decodeEntry(m.Values)
			if err != nil {
				s.undecodable.Add(1)
				s.log.Warn("redis dlq: skipping a stream entry that is not a DLQ entry", "stream", s.stream, "stream_id", m.ID, "err", err)
				continue
			}
			if err := fn(m.ID, e); err != nil {
				return err
			}
		}
		if len(msgs) < scanPage {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// ScanKeys implements dlq.StepStore: the key is the stream id.
func (s *Store) ScanKeys(ctx context.Context, fn func(key string, e *dlq.Entry) error) error {
	return s.ScanIDs(ctx, fn)
}

// DeleteKeys implements dlq.StepStore: XDEL of the stream ids, no scan.
func (s *Store) DeleteKeys(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	if err := s.client.XDel(ctx, s.stream, keys...).Err(); err != nil {
		return s.errorf("XDEL %d entries: %w", len(keys), redisconn.Classify(err))
	}
	return nil
}

// errStop ends a scan early.
var errStop = errors.New("stop")

// Get returns the entry with the given entry id, or an error wrapping
// ErrNotFound. Entry ids are not indexed (see the package comment): Get
// first scans the stream ids near the time the id carries (an entry is
// added shortly after it is made), then, if need be, the whole stream.
func (s *Store) Get(ctx context.Context, id string) (*dlq.Entry, error) {
	var found *dlq.Entry
	match := func(_ string, e *dlq.Entry) error {
		if e.ID == id {
			found = e
			return errStop
		}
		return nil
	}
	if ms, ok := idMillis(id); ok {
		// Clocks of the writers and of Redis may differ: a wide window.
		const before, after = 10 * 60 * 1000, 60 * 60 * 1000
		lo := strconv.FormatUint(ms-min(ms, before), 10)
		hi := strconv.FormatUint(ms+after, 10)
		if err := s.scanRange(ctx, lo, hi, match); err != nil && !errors.Is(err, errStop) {
			return nil, err
		}
		if found != nil {
			return found, nil
		}
	}
	if err := s.ScanIDs(ctx, match); err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	if found == nil {
		return nil, s.errorf("%s: %w", id, ErrNotFound)
	}
	return found, nil
}

// Delete removes entries (XDEL) and returns how many were removed. ids may
// be entry ids (looked up with one scan of the stream) or stream ids
// ("<ms>-<seq>"). Ids not found are not an error: compare the count.
// Deleting an entry does not acknowledge it in the consumer group (Redis
// drops a deleted pending entry when it is next claimed).
func (s *Store) Delete(ctx context.Context, ids []string) (int, error) {
	var streamIDs []string
	want := map[string]bool{}
	for _, id := range ids {
		if isStreamID(id) {
			streamIDs = append(streamIDs, id)
		} else {
			want[id] = true
		}
	}
	if len(want) > 0 {
		err := s.ScanIDs(ctx, func(sid string, e *dlq.Entry) error {
			if want[e.ID] {
				streamIDs = append(streamIDs, sid)
				delete(want, e.ID)
				if len(want) == 0 {
					return errStop
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return 0, err
		}
	}
	if len(streamIDs) == 0 {
		return 0, nil
	}
	n, err := s.client.XDel(ctx, s.stream, streamIDs...).Result()
	if err != nil {
		return 0, s.errorf("XDEL %d entries: %w", len(streamIDs), redisconn.Classify(err))
	}
	return int(n), nil
}

// idMillis returns the milliseconds a dlq entry id (NewID) carries.
func idMillis(id string) (uint64, bool) {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	if len(id) != 26 {
		return 0, false
	}
	// The first 10 characters are 50 bits: 2 zero bits, then 48 of ms.
	var v uint64
	for i := 0; i < 10; i++ {
		d := strings.IndexByte(crockford, id[i])
		if d < 0 {
			return 0, false
		}
		v = v<<5 | uint64(d)
	}
	return v, true
}
