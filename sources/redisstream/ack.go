package redisstream

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/pipeline"
)

// pos is a stream entry id, <ms>-<seq>.
type pos struct{ ms, seq uint64 }

// parsePos reads an entry id; ok is false for anything else.
func parsePos(id string) (pos, bool) {
	a, b, ok := strings.Cut(id, "-")
	if !ok {
		return pos{}, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return pos{}, false
	}
	return pos{ms, seq}, true
}

func (p pos) String() string {
	return strconv.FormatUint(p.ms, 10) + "-" + strconv.FormatUint(p.seq, 10)
}

func (p pos) less(q pos) bool { return p.ms < q.ms || (p.ms == q.ms && p.seq < q.seq) }

// acker is the stream's Acker: Ack moves its delivered position (and lets
// the batch's entries be XACKed), WindowAck its windowed one.
type acker struct{ d, w *pipeline.AckTracker[pos] }

func (a *acker) Ack(seq uint64)       { a.d.Ack(seq) }
func (a *acker) WindowAck(seq uint64) { a.w.Ack(seq) }

var _ pipeline.WindowAcker = (*acker)(nil)

// xackChunk is the most ids one XACK carries; more go as several XACKs in
// the same transaction.
const xackChunk = 10000

// Commit acknowledges (XACK) the entries of every batch acked in order so
// far, never past a gap, and writes this consumer's windows marker, both
// in one MULTI/EXEC. On an error nothing was acknowledged; the next Commit
// tries again with everything.
func (s *Source) Commit(ctx context.Context) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	if !s.ready {
		s.mu.Unlock()
		return nil
	}
	done, dpos := s.acker.d.Acked()
	_, wpos := s.acker.w.Acked()
	var ids []string
	n := 0
	for n < len(s.unacked) && s.unacked[n].seq <= done {
		ids = append(ids, s.unacked[n].ids...)
		n++
	}
	s.mu.Unlock()
	// The windowed position never passes the delivered one (WindowAck
	// comes after Ack); a re-read range is then empty.
	if dpos.less(wpos) {
		wpos = dpos
	}
	marker := wpos.String() + " " + dpos.String()
	if len(ids) == 0 && marker == s.marker {
		return nil
	}
	_, err := s.cl.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.HSet(ctx, s.markers, s.consumer, marker)
		for lo := 0; lo < len(ids); lo += xackChunk {
			p.XAck(ctx, s.cfg.Stream, s.cfg.Group, ids[lo:min(lo+xackChunk, len(ids))]...)
		}
		return nil
	})
	if err != nil {
		return s.errorf("xack %d entries: %w", len(ids), redisconn.Classify(err))
	}
	s.mu.Lock()
	clear(s.unacked[:n])
	s.unacked = s.unacked[n:]
	s.mu.Unlock()
	s.marker = marker
	s.acked.Add(int64(len(ids)))
	return nil
}

// holding returns the ids of the entries this source read and has not
// XACKed yet (in flight, or acked but not committed).
func (s *Source) holding() map[string]struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]struct{}{}
	for _, b := range s.unacked {
		for _, id := range b.ids {
			m[id] = struct{}{}
		}
	}
	return m
}

// readMarker returns the marker of consumer, if it has one.
func parseMarker(v string) (w, d pos, err error) {
	a, b, ok := strings.Cut(v, " ")
	if !ok {
		return w, d, fmt.Errorf("marker %q: not two ids", v)
	}
	w, ok1 := parsePos(a)
	d, ok2 := parsePos(b)
	if !ok1 || !ok2 {
		return w, d, fmt.Errorf("marker %q: not two ids", v)
	}
	return w, d, nil
}
