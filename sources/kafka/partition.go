package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/pipeline"
)

// partition is one assigned partition of a generation. Its reader
// goroutine owns the fields above the atomics; Commit reads only the
// trackers, floor and what it wrote itself (under Source.commitMu).
type partition struct {
	topic  string
	id     int
	origin *pipeline.Origin
	acker  partAcker
	d, w   *pipeline.AckTracker[int64] // delivered, windowed

	startAt  int64 // where reading started (the windowed offset)
	next     int64 // next offset to fetch
	rewindTo int64 // the delivered offset while reading below it; -1 none
	maxBytes int64
	seq      uint64
	lastData time.Time
	idleSent bool
	key, val []byte // scratch for a message's key and value

	floor   atomic.Int64  // delivered offset committed never goes below it
	sentSeq atomic.Uint64 // last seq sent on out
	batches atomic.Int64  // batches sent
	lag     atomic.Int64

	// Last commit (under Source.commitMu).
	committedD, committedW int64
	committedSeq           uint64
}

// partAcker is a partition's Acker: Ack moves its delivered offset,
// WindowAck its windowed one.
type partAcker struct{ d, w *pipeline.AckTracker[int64] }

func (a *partAcker) Ack(seq uint64)       { a.d.Ack(seq) }
func (a *partAcker) WindowAck(seq uint64) { a.w.Ack(seq) }

// delivered reports whether every batch sent is acked.
func (p *partition) delivered() bool {
	seq, _ := p.d.Acked()
	return seq >= p.sentSeq.Load()
}

// positions returns the offsets to commit: delivered (never below the
// floor) and windowed (never above delivered).
func (p *partition) positions() (d, w int64, seq uint64) {
	seq, d = p.d.Acked()
	d = max(d, p.floor.Load())
	_, w = p.w.Acked()
	return d, min(w, d), seq
}

// metaPrefix starts the commit metadata that carries the windowed offset.
const metaPrefix = "tracepipe w="

func metadata(w int64) string { return metaPrefix + strconv.FormatInt(w, 10) }

// windowedOf reads the windowed offset from commit metadata; ok is false
// when there is none (metadata of another client, or none at all).
func windowedOf(meta string) (int64, bool) {
	v, found := strings.CutPrefix(meta, metaPrefix)
	if !found {
		return 0, false
	}
	w, err := strconv.ParseInt(v, 10, 64)
	return w, err == nil && w >= 0
}

// assign builds gen's partitions from the group's committed offsets (and
// their metadata), resolving start_offset where there is none. It retries
// until it succeeds or ctx ends (false).
func (s *Source) assign(ctx context.Context, gen *kafkago.Generation) ([]*partition, bool) {
	topics := map[string][]int{}
	n := 0
	for t, as := range gen.Assignments {
		for _, a := range as {
			topics[t] = append(topics[t], a.ID)
			n++
		}
	}
	if n == 0 {
		return nil, true
	}
	var parts []*partition
	bo := backoff{}
	for {
		var err error
		parts, err = s.fetchCommitted(ctx, topics)
		if err == nil {
			break
		}
		s.rlog.Warn("offsetfetch", "cannot fetch the group's committed offsets; retrying", "group", s.cfg.Group, "err", err)
		if !sleep(ctx, bo.next()) {
			return nil, false
		}
	}
	share := max(int64(s.cfg.MaxBytes)/int64(len(parts)), minPartitionFetch)
	for _, p := range parts {
		p.maxBytes = share
		p.lastData = time.Now()
		org := s.o.Origin
		org.ID = s.o.IDs.Next()
		org.Kind = Kind
		org.Path = p.topic
		org.Partition = p.id
		org.Key = "kafka:" + p.topic + ":" + strconv.Itoa(p.id)
		p.origin = &org
	}
	return parts, true
}

// fetchCommitted returns the partitions of topics, each positioned at its
// windowed offset, with its delivered offset as floor.
func (s *Source) fetchCommitted(ctx context.Context, topics map[string][]int) ([]*partition, error) {
	res, err := s.client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: s.cfg.Group, Topics: topics})
	if err != nil {
		return nil, err
	}
	if res.Error != nil {
		return nil, res.Error
	}
	var parts []*partition
	var unset map[string][]int
	for t, ids := range topics {
		for _, id := range ids {
			p := &partition{topic: t, id: id, rewindTo: -1}
			d := int64(-1)
			var w int64
			okW := false
			for _, r := range res.Topics[t] {
				if r.Partition == id {
					if r.Error != nil {
						return nil, fmt.Errorf("%s:%d: %w", t, id, r.Error)
					}
					d = r.CommittedOffset
					w, okW = windowedOf(r.Metadata)
				}
			}
			if d < 0 {
				if unset == nil {
					unset = map[string][]int{}
				}
				unset[t] = append(unset[t], id)
			} else {
				if !okW || w > d {
					w = d
				}
				p.start(w, d)
			}
			parts = append(parts, p)
		}
	}
	if unset != nil {
		starts, err := s.startOffsets(ctx, unset)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			if off, ok := starts[tp{p.topic, p.id}]; ok {
				p.start(off, off)
			}
		}
	}
	slices.SortFunc(parts, func(a, b *partition) int {
		if c := strings.Compare(a.topic, b.topic); c != 0 {
			return c
		}
		return a.id - b.id
	})
	return parts, nil
}

// start positions p: reading from w, delivering from d (w <= d).
func (p *partition) start(w, d int64) {
	p.startAt, p.next = w, w
	p.rewindTo = -1
	if w < d {
		p.rewindTo = d
	}
	p.floor.Store(d)
	p.d = pipeline.NewAckTracker(w)
	p.w = pipeline.NewAckTracker(w)
	p.acker = partAcker{d: p.d, w: p.w}
	p.committedD, p.committedW = -1, -1
}

type tp struct {
	topic string
	id    int
}

// startOffsets resolves start_offset for partitions with no committed
// offset.
func (s *Source) startOffsets(ctx context.Context, parts map[string][]int) (map[tp]int64, error) {
	req := map[string][]kafkago.OffsetRequest{}
	for t, ids := range parts {
		for _, id := range ids {
			req[t] = append(req[t], kafkago.OffsetRequest{Partition: id, Timestamp: s.start})
		}
	}
	res, err := s.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: req})
	if err != nil {
		return nil, err
	}
	out := map[tp]int64{}
	for t, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("%s:%d: %w", t, p.Partition, p.Error)
			}
			off := p.FirstOffset
			if s.start == kafkago.LastOffset {
				off = p.LastOffset
			}
			if off < 0 {
				return nil, fmt.Errorf("%s:%d: no offset listed", t, p.Partition)
			}
			out[tp{t, p.Partition}] = off
		}
	}
	for t, ids := range parts {
		for _, id := range ids {
			if _, ok := out[tp{t, id}]; !ok {
				return nil, fmt.Errorf("%s:%d: not listed", t, id)
			}
		}
	}
	return out, nil
}

// read fetches p until ctx ends.
func (s *Source) read(ctx context.Context, p *partition, out chan<- *pipeline.Batch) {
	bo := backoff{}
	key := "fetch:" + p.origin.Key
	for ctx.Err() == nil {
		res, err := s.client.Fetch(ctx, &kafkago.FetchRequest{
			Topic: p.topic, Partition: p.id, Offset: p.next,
			MinBytes: int64(s.cfg.MinBytes), MaxBytes: p.maxBytes, MaxWait: s.cfg.MaxWait,
		})
		if err == nil && res.Error != nil {
			err = res.Error
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, kafkago.OffsetOutOfRange) {
				s.reset(ctx, p)
				continue
			}
			s.rlog.Warn(key, "kafka fetch failed; retrying", "topic", p.topic, "partition", p.id, "offset", p.next, "err", err)
			s.checkIdle(p)
			if !sleep(ctx, bo.next()) {
				return
			}
			continue
		}
		bo = backoff{}
		n, ok := s.drain(ctx, p, res, out)
		if !ok {
			return
		}
		p.lag.Store(max(res.HighWatermark-p.next, 0))
		if n == 0 {
			s.checkIdle(p)
		}
	}
}

// drain reads a fetch response into batches and sends them; the last one
// goes as it is (nothing more is there right now). It returns the units
// read, and false if ctx ended.
func (s *Source) drain(ctx context.Context, p *partition, res *kafkago.FetchResponse, out chan<- *pipeline.Batch) (int, bool) {
	var b *pipeline.Batch
	n := 0
	for {
		r, err := res.Records.ReadRecord()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.rlog.Warn("decode:"+p.origin.Key, "cannot decode a fetch response; fetching again", "topic", p.topic, "partition", p.id, "offset", p.next, "err", err)
			}
			break
		}
		if r.Offset < p.next {
			// A compressed record batch may start before the offset asked.
			closeBytes(r.Key, r.Value)
			continue
		}
		size, flags, err := s.readRecord(p, r)
		if err != nil {
			s.rlog.Warn("decode:"+p.origin.Key, "cannot read a message; fetching again", "topic", p.topic, "partition", p.id, "offset", r.Offset, "err", err)
			break
		}
		if size == 0 {
			p.next = r.Offset + 1 // a tombstone or empty value: skipped
			continue
		}
		if b != nil && len(b.Buf)+len(p.val)+len(p.key) > s.o.BatchBytes {
			if !s.send(ctx, p, b, out) {
				return n, false
			}
			b = nil
		}
		if b != nil && b.WindowsOnly && r.Offset >= p.rewindTo {
			// The windows-only part ends exactly at the delivered offset.
			if !s.send(ctx, p, b, out) {
				return n, false
			}
			b = nil
		}
		if b == nil {
			b = s.newBatch(p, r.Offset)
		}
		b.AddKeyedUnit(p.val, p.key, r.Offset, 0, size, flags)
		p.next = r.Offset + 1
		n++
		s.recordsRead.Add(1)
		s.bytesRead.Add(size)
		if len(b.Units) >= s.o.BatchUnits || len(b.Buf) >= s.o.BatchBytes {
			if !s.send(ctx, p, b, out) {
				return n, false
			}
			b = nil
		}
	}
	if b != nil && !s.send(ctx, p, b, out) {
		return n, false
	}
	return n, true
}

// readRecord reads r's key and value into p's scratch buffers (valid until
// the next call): a value over MaxLineBytes keeps its first KeepBytes and
// is flagged UnitTooLarge. It returns the value's full size.
func (s *Source) readRecord(p *partition, r *kafkago.Record) (size int64, flags uint8, err error) {
	defer closeBytes(r.Key, r.Value)
	p.key, p.val = p.key[:0], p.val[:0]
	if r.Key != nil {
		if p.key, err = readInto(p.key, r.Key, maxKeyBytes); err != nil {
			return 0, 0, err
		}
	}
	if r.Value == nil {
		return 0, 0, nil
	}
	full := r.Value.Len()
	keep := full
	if full > s.o.MaxLineBytes {
		keep, flags = s.o.KeepBytes, pipeline.UnitTooLarge
	}
	if p.val, err = readInto(p.val, r.Value, keep); err != nil {
		return 0, 0, err
	}
	return int64(full), flags, nil
}

// readInto reads the first n bytes of src into buf[:0].
func readInto(buf []byte, src kafkago.Bytes, n int) ([]byte, error) {
	n = min(n, src.Len())
	buf = slices.Grow(buf[:0], n)[:n]
	_, err := io.ReadFull(src, buf)
	return buf, err
}

func closeBytes(bs ...kafkago.Bytes) {
	for _, b := range bs {
		if b != nil {
			_ = b.Close()
		}
	}
}

// newBatch returns an empty batch of p, windows-only when it starts below
// the delivered offset.
func (s *Source) newBatch(p *partition, first int64) *pipeline.Batch {
	b := pipeline.GetBatch()
	b.Origin = p.origin
	if p.rewindTo >= 0 {
		if first < p.rewindTo {
			b.WindowsOnly = true
		} else {
			s.log.Info("read again up to the delivered offset for the windows; delivering from here", "topic", p.topic, "partition", p.id, "offset", first)
			p.rewindTo = -1
		}
	}
	return b
}

// send issues b as p's next batch, ending at p.next, and sends it. It
// returns false, with b back in the pool, if ctx ended first (the batch
// stays issued and never acked: nothing is committed past it).
func (s *Source) send(ctx context.Context, p *partition, b *pipeline.Batch, out chan<- *pipeline.Batch) bool {
	if p.origin.Format == pipeline.FormatAuto {
		f := s.o.Detect(b)
		if f == pipeline.FormatAuto {
			f = pipeline.FormatJSONL
		}
		p.origin.Format = f // before its first batch goes: no one else sees it yet
	}
	p.seq++
	b.Seq, b.Acker = p.seq, &p.acker
	p.d.Issue(p.seq, p.next)
	p.w.Issue(p.seq, p.next)
	seq := p.seq
	select {
	case out <- b:
		p.sentSeq.Store(seq)
		p.batches.Add(1)
		p.lastData = time.Now()
		p.idleSent = false
		return true
	case <-ctx.Done():
		pipeline.PutBatch(b)
		return false
	}
}

// checkIdle tells the job, once, that p has had nothing to read for
// idle_timeout.
func (s *Source) checkIdle(p *partition) {
	if p.idleSent || p.batches.Load() == 0 || time.Since(p.lastData) < s.cfg.IdleTimeout {
		return
	}
	p.idleSent = true
	if s.o.Events.Idle != nil {
		s.o.Events.Idle(p.origin.ID, p.batches.Load())
	}
}

// reset moves p to start_offset after the broker said p.next is out of
// range (deleted by retention, or the topic was recreated).
func (s *Source) reset(ctx context.Context, p *partition) {
	starts, err := s.startOffsets(ctx, map[string][]int{p.topic: {p.id}})
	if err != nil {
		s.rlog.Warn("reset:"+p.origin.Key, "offset out of range and start_offset cannot be resolved; retrying", "topic", p.topic, "partition", p.id, "err", err)
		sleep(ctx, time.Second)
		return
	}
	off := starts[tp{p.topic, p.id}]
	s.log.Warn("offset out of range: resetting to start_offset", "topic", p.topic, "partition", p.id, "offset", p.next, "to", off, "start_offset", s.cfg.StartOffset)
	p.next = off
	p.rewindTo = -1
	p.floor.Store(off)
}

// Commit commits, for every partition owned now, the offset after its
// highest contiguous delivered batch, with the windowed offset in the
// metadata; partitions with nothing new are left out. It is a no-op when
// nothing is owned.
func (s *Source) Commit(ctx context.Context) error {
	s.mu.Lock()
	g := s.cur
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	return s.commit(ctx, g)
}

// commit commits g's partitions with g's generation.
func (s *Source) commit(ctx context.Context, g *generation) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	type pending struct {
		p    *partition
		d, w int64
		seq  uint64
	}
	var todo []pending
	topics := map[string][]kafkago.OffsetCommit{}
	for _, p := range g.parts {
		d, w, seq := p.positions()
		if d == p.committedD && w == p.committedW {
			continue
		}
		todo = append(todo, pending{p, d, w, seq})
		topics[p.topic] = append(topics[p.topic], kafkago.OffsetCommit{Partition: p.id, Offset: d, Metadata: metadata(w)})
	}
	if len(todo) == 0 {
		return nil
	}
	res, err := s.client.OffsetCommit(ctx, &kafkago.OffsetCommitRequest{
		GroupID: s.cfg.Group, GenerationID: int(g.gen.ID), MemberID: g.gen.MemberID, Topics: topics,
	})
	if err != nil {
		s.commitErrs.Add(1)
		return fmt.Errorf("kafka: %s: commit: %w", s.name, err)
	}
	var errs []error
	for _, t := range todo {
		var perr error
		for _, r := range res.Topics[t.p.topic] {
			if r.Partition == t.p.id {
				perr = r.Error
			}
		}
		if perr != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", t.p.topic, t.p.id, perr))
			continue
		}
		t.p.committedD, t.p.committedW, t.p.committedSeq = t.d, t.w, t.seq
	}
	if len(errs) > 0 {
		s.commitErrs.Add(1)
		return fmt.Errorf("kafka: %s: commit: %w", s.name, errors.Join(errs...))
	}
	return nil
}

// backoff doubles from 100ms to 5s.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = 100 * time.Millisecond
	} else {
		b.d = min(b.d*2, 5*time.Second)
	}
	return b.d
}
