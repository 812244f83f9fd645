package redisstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/pipeline"
)

// Backoff after a failed command: doubling from minBackoff to maxBackoff,
// with jitter.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// errStopped says Run's context ended while a batch waited to be sent.
var errStopped = errors.New("stopped")

// Run consumes the stream until ctx is cancelled, then returns nil
// (batches already sent stay sent). It never fails on a server error: it
// logs (once per interval), backs off and tries again. It may be called
// once.
func (s *Source) Run(ctx context.Context, out chan<- *pipeline.Batch) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("redis stream source: Run called twice")
	}
	s.ctx, s.out = ctx, out
	// go-redis does not watch a context while it waits for a reply:
	// closing the reading client cuts a BLOCK read short.
	stop := context.AfterFunc(ctx, func() { _ = s.rd.Close() })
	defer stop()
	defer s.rl.Flush()

	backoff := time.Duration(0)
	fail := func(what string, err error) bool {
		if ctx.Err() != nil {
			return false
		}
		s.rl.Warn("redis_stream_"+what, "redis stream source: "+what+" failed; retrying", "err", redisconn.Classify(err))
		backoff = min(max(2*backoff, minBackoff), maxBackoff)
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// Setup: the group, the trackers, this consumer's windows marker and
	// its own pending entries. Retried whole until it succeeds.
	for {
		err := s.setup(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, errStopped) || !fail("setup", err) {
			return nil
		}
	}
	backoff = 0
	s.lastRead = time.Now()
	s.claimAt = time.Now().Add(s.cfg.ClaimEvery)
	recovering := false
	for {
		if ctx.Err() != nil {
			return nil
		}
		if recovering {
			// The last command failed: an XREADGROUP whose reply was lost
			// left entries pending here that were never seen.
			if err := s.ensureGroup(ctx); err != nil {
				if errors.Is(err, errStopped) || !fail("recover", err) {
					return nil
				}
				continue
			}
			if err := s.readPending(ctx, s.holding()); err != nil {
				if errors.Is(err, errStopped) || !fail("recover", err) {
					return nil
				}
				continue
			}
			s.log.Info("redis stream source: the server answers again; own pending entries read again")
			recovering, backoff = false, 0
		}
		if !time.Now().Before(s.claimAt) {
			if err := s.claimRound(ctx); err != nil {
				if errors.Is(err, errStopped) {
					return nil
				}
				s.rl.Warn("redis_stream_claim", "redis stream source: claim round failed; retrying at the next", "err", err)
			}
			s.claimAt = time.Now().Add(s.cfg.ClaimEvery)
		}
		n, err := s.readNew(ctx)
		if errors.Is(err, errStopped) {
			return nil
		}
		if err != nil {
			recovering = true
			if !fail("read", err) {
				return nil
			}
			continue
		}
		if n > 0 {
			s.lastRead = time.Now()
		} else {
			s.checkIdle()
		}
	}
}

// checkIdle tells the job the stream is idle: nothing read for
// idle_timeout and nothing in flight; once until the next batch.
func (s *Source) checkIdle() {
	if s.idleSent || s.batches == 0 || time.Since(s.lastRead) < s.cfg.IdleTimeout || s.acker.d.InFlight() > 0 {
		return
	}
	s.idleSent = true
	if s.o.Events.Idle != nil {
		s.o.Events.Idle(s.origin.ID, s.batches)
	}
}

// ensureGroup creates the group (and the stream) when missing.
func (s *Source) ensureGroup(ctx context.Context) error {
	start := "0"
	if s.cfg.StartAt == "end" {
		start = "$"
	}
	err := s.cl.XGroupCreateMkStream(ctx, s.cfg.Stream, s.cfg.Group, start).Err()
	if err != nil && !goredis.HasErrorPrefix(err, "BUSYGROUP") {
		return s.errorf("create group %s: %w", s.cfg.Group, redisconn.Classify(err))
	}
	return nil
}

// setup makes sure the group exists, starts the trackers at the group's
// last delivered id (or at this consumer's marker), re-reads the marker's
// range for the windows and reads this consumer's own pending entries.
func (s *Source) setup(ctx context.Context) error {
	if err := s.ensureGroup(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	if !ready {
		groups, err := s.cl.XInfoGroups(ctx, s.cfg.Stream).Result()
		if err != nil {
			return s.errorf("xinfo groups: %w", redisconn.Classify(err))
		}
		var last pos
		for _, g := range groups {
			if g.Name == s.cfg.Group {
				last, _ = parsePos(g.LastDeliveredID)
			}
		}
		v, err := s.cl.HGet(ctx, s.markers, s.consumer).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return s.errorf("read windows marker: %w", redisconn.Classify(err))
		}
		w, d := last, last
		if err == nil {
			if mw, md, perr := parseMarker(v); perr != nil {
				s.log.Warn("redis stream source: windows marker unreadable: ignored", "err", perr)
			} else {
				w, d = mw, md
				s.marker = v
			}
		}
		s.high = d
		s.startLast = last
		s.mu.Lock()
		s.acker = acker{d: pipeline.NewAckTracker(d), w: pipeline.NewAckTracker(w)}
		s.ready = true
		s.mu.Unlock()
		if w.less(d) {
			s.log.Info("redis stream source: re-reading for the windows what was delivered but not windowed before a stop",
				"from", w.String(), "to", d.String())
			s.rewindFrom, s.rewindTo, s.rewinding = w, d, true
		}
	}
	if s.rewinding {
		// Resumed where a failed attempt left off (rewind moves
		// rewindFrom page by page).
		if err := s.rewind(ctx, &s.rewindFrom, s.rewindTo, false); err != nil {
			return err
		}
		s.rewinding = false
	}
	// From here batches of pending entries carry at least the group's last
	// delivered id at start, below which this consumer read nothing new in
	// this life.
	if s.high.less(s.startLast) {
		s.high = s.startLast
	}
	return s.readPending(ctx, s.holding())
}

// rewind re-reads the entries in (from, to] as WindowsOnly batches. A
// range of this consumer's own marker moves the windowed position up to
// to; a range taken over from another consumer (takeover) moves none.
func (s *Source) rewind(ctx context.Context, from *pos, to pos, takeover bool) error {
	for {
		msgs, err := s.cl.XRangeN(ctx, s.cfg.Stream, "("+from.String(), to.String(), int64(s.cfg.Count)).Result()
		if err != nil {
			return s.errorf("xrange for the windows: %w", redisconn.Classify(err))
		}
		if len(msgs) == 0 {
			return nil
		}
		if err := s.emit(entriesOf(msgs), emitRewind, takeover); err != nil {
			return err
		}
		*from, _ = parsePos(msgs[len(msgs)-1].ID)
		if len(msgs) < s.cfg.Count {
			return nil
		}
	}
}

// readPending reads this consumer's own pending entries (XREADGROUP with
// id 0, page after page), skipping those in skip (in flight here), and
// sends the others as batches; entries delivered too often go to the DLQ.
func (s *Source) readPending(ctx context.Context, skip map[string]struct{}) error {
	start := "0"
	for {
		res, err := s.cl.XReadGroup(ctx, &goredis.XReadGroupArgs{
			Group: s.cfg.Group, Consumer: s.consumer, Streams: []string{s.cfg.Stream, start},
			Count: int64(s.cfg.Count), Block: -1,
		}).Result()
		if errors.Is(err, goredis.Nil) {
			return nil
		}
		if err != nil {
			return s.errorf("read own pending entries: %w", redisconn.Classify(err))
		}
		var msgs []goredis.XMessage
		for _, r := range res {
			msgs = append(msgs, r.Messages...)
		}
		if len(msgs) == 0 {
			return nil
		}
		var counts map[string]int64
		if s.o.Poison != nil {
			pe, err := s.cl.XPendingExt(ctx, &goredis.XPendingExtArgs{
				Stream: s.cfg.Stream, Group: s.cfg.Group, Start: msgs[0].ID, End: msgs[len(msgs)-1].ID,
				Count: int64(len(msgs)), Consumer: s.consumer,
			}).Result()
			if err != nil {
				return s.errorf("delivery counts of own pending entries: %w", redisconn.Classify(err))
			}
			counts = make(map[string]int64, len(pe))
			for _, p := range pe {
				counts[p.ID] = p.RetryCount
			}
		}
		keep := msgs[:0]
		for _, m := range msgs {
			if _, held := skip[m.ID]; !held {
				keep = append(keep, m)
			}
		}
		start = msgs[len(msgs)-1].ID
		if err := s.pendingBatch(ctx, keep, counts); err != nil {
			return err
		}
		if len(msgs) < s.cfg.Count {
			return nil
		}
	}
}

// pendingBatch sends entries read from a pending list (own or claimed):
// deleted ones (no fields: trimmed from the stream) are acknowledged, the
// ones delivered more than max_deliveries times go to the DLQ, the others
// go out as batches. counts (nil: not checked) are delivery counts after
// this delivery.
func (s *Source) pendingBatch(ctx context.Context, msgs []goredis.XMessage, counts map[string]int64) error {
	var gone []string
	keep := msgs[:0]
	for _, m := range msgs {
		switch {
		case m.Values == nil:
			gone = append(gone, m.ID)
		case counts != nil && counts[m.ID] > int64(s.cfg.MaxDeliveries):
			if err := s.poison(ctx, m, counts[m.ID]); err != nil {
				s.rl.Error("redis_stream_poison", "redis stream source: an entry delivered too often could not go to the DLQ; it stays pending and is tried again",
					"id", m.ID, "deliveries", counts[m.ID], "err", err)
			}
		default:
			keep = append(keep, m)
		}
	}
	if len(gone) > 0 {
		// Nothing to process: the entry is no longer in the stream.
		if err := s.cl.XAck(ctx, s.cfg.Stream, s.cfg.Group, gone...).Err(); err != nil {
			return s.errorf("xack deleted entries: %w", redisconn.Classify(err))
		}
		s.log.Warn("redis stream source: pending entries were deleted from the stream before they were processed", "count", len(gone))
	}
	if len(keep) == 0 {
		return nil
	}
	return s.emit(entriesOf(keep), emitPending, false)
}

// poison hands entry m, delivered deliveries times, to Options.Poison and
// acknowledges it unless the hook did.
func (s *Source) poison(ctx context.Context, m goredis.XMessage, deliveries int64) error {
	payload, _ := m.Values[RecordField].(string)
	moved, err := s.o.Poison(ctx, Poisoned{
		Stream: s.cfg.Stream, Group: s.cfg.Group, Consumer: s.consumer, ID: m.ID,
		Payload: []byte(payload), Deliveries: deliveries, Client: s.cl,
	})
	if err != nil {
		return err
	}
	if !moved {
		if err := s.cl.XAck(ctx, s.cfg.Stream, s.cfg.Group, m.ID).Err(); err != nil {
			return s.errorf("xack %s after it went to the DLQ: %w", m.ID, redisconn.Classify(err))
		}
	}
	s.poisoned.Add(1)
	s.rl.Warn("redis_stream_poison", "redis stream source: entry delivered more than max_deliveries times: moved to the DLQ",
		"id", m.ID, "deliveries", deliveries, "max_deliveries", s.cfg.MaxDeliveries, "atomic", moved)
	return nil
}

// readNew reads new entries (">") and sends them; it returns how many.
func (s *Source) readNew(ctx context.Context) (int, error) {
	block := min(s.cfg.Block, time.Until(s.claimAt))
	if !s.idleSent && s.batches > 0 {
		block = min(block, s.cfg.IdleTimeout)
	}
	block = max(block, time.Millisecond) // BLOCK 0 would wait for ever
	s.raw.Reset()
	err := s.rd.DoRawWriteTo(ctx, &s.raw, "XREADGROUP", "GROUP", s.cfg.Group, s.consumer,
		"COUNT", s.cfg.Count, "BLOCK", block.Milliseconds(), "STREAMS", s.cfg.Stream, ">").Err()
	if ctx.Err() != nil {
		// The read was cut by the close: whatever it got is pending here
		// and read again at the next start.
		return 0, errStopped
	}
	if err == nil {
		s.rents, err = parseRead(s.raw.Bytes(), s.cfg.Stream, s.rents[:0])
	}
	if err != nil {
		if goredis.HasErrorPrefix(err, "NOGROUP") {
			// The group is gone (a server restarted without persistence,
			// or deleted by hand): recovering creates it again.
			return 0, s.errorf("read: %w", err)
		}
		return 0, s.errorf("read: %w", redisconn.Classify(err))
	}
	if len(s.rents) == 0 {
		return 0, nil
	}
	s.ents = appendEntries(s.ents[:0], s.rents)
	clear(s.rents)
	err = s.emit(s.ents, emitNew, false)
	clear(s.ents) // no reference to the reply or its ids kept
	return len(s.ents), err
}

// How a batch's entries were read.
const (
	emitNew     = iota // ">": moves the positions
	emitPending        // own pending or claimed: moves none
	emitRewind         // windows only
)

// emit builds msgs into batches and sends them. It returns errStopped when
// ctx ended first.
func (s *Source) emit(msgs []entry, how int, takeover bool) error {
	var b *pipeline.Batch
	var ids []string
	var last pos
	flush := func() error {
		if b == nil {
			return nil
		}
		if how == emitNew && s.high.less(last) {
			s.high = last
		}
		// Batches read from a pending list carry the position as it is; a
		// re-read of this consumer's own marker moves the windowed one up
		// to the marker's delivered id (s.high then).
		dpos, wpos := s.high, s.high
		if how == emitRewind && !takeover {
			wpos = last
		}
		err := s.send(b, ids, dpos, wpos)
		b, ids = nil, nil
		return err
	}
	for i := range msgs {
		m := &msgs[i]
		p, _ := parsePos(m.id)
		payload := m.payload
		if b != nil && (len(b.Units) >= s.o.BatchUnits || len(b.Buf)+len(payload) > s.o.BatchBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		if b == nil {
			b = pipeline.GetBatch()
			b.Origin = s.origin
			b.WindowsOnly = how == emitRewind
			if how != emitRewind {
				ids = make([]string, 0, min(len(msgs)-i, s.o.BatchUnits))
			}
		}
		size := int64(len(payload))
		var flags uint8
		data := payload
		if len(data) > s.o.MaxLineBytes {
			data, flags = data[:s.o.KeepBytes], pipeline.UnitTooLarge
		}
		b.Buf = append(b.Buf, data...)
		start := len(b.Buf) - len(data)
		b.Units = append(b.Units, pipeline.Unit{Start: start, End: len(b.Buf), Offset: int64(p.ms), Size: size, Flags: flags})
		u := &b.Units[len(b.Units)-1]
		u.KeyStart = int32(len(b.Buf))
		b.Buf = append(b.Buf, m.id...)
		u.KeyEnd = int32(len(b.Buf))
		if ids != nil {
			ids = append(ids, m.id)
		}
		last = p
		if how != emitRewind {
			s.entries.Add(1)
		}
	}
	return flush()
}

// send issues b as the stream's next batch, delivered position dpos and
// windowed wpos, with its entries' ids for Commit, and sends it.
func (s *Source) send(b *pipeline.Batch, ids []string, dpos, wpos pos) error {
	if !s.detected {
		f := s.o.Detect(b)
		if f == pipeline.FormatAuto {
			f = pipeline.FormatJSONL
		}
		s.origin.Format = f // before the first batch goes: no one else sees it yet
		s.detected = true
	}
	s.seq++
	b.Seq, b.Acker = s.seq, &s.acker
	s.mu.Lock()
	s.unacked = append(s.unacked, idBatch{seq: s.seq, ids: ids})
	s.mu.Unlock()
	s.acker.d.Issue(s.seq, dpos)
	s.acker.w.Issue(s.seq, wpos)
	select {
	case s.out <- b:
		s.batches++
		s.idleSent = false
		return nil
	case <-s.ctx.Done():
		pipeline.PutBatch(b)
		return errStopped
	}
}
