package kafkadlq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/kafkaconn"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// Store reads the DLQ topic for `pipeline dlq`; it implements dlq.Store.
// It reads with plain fetches (no consumer group, nothing committed), so it
// never disturbs other readers of the topic.
type Store struct {
	*conn
	undecodable atomic.Int64
}

var _ dlq.Store = (*Store)(nil)

// OpenStore returns the store of cfg's topic; it fails, naming the topic,
// if the topic does not exist.
func OpenStore(cfg config.DLQKafka, log *slog.Logger, opts ...Option) (*Store, error) {
	c, err := newConn(cfg, log, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if _, err := c.partitions(ctx, c.topic); err != nil {
		c.tr.CloseIdleConnections()
		return nil, err
	}
	return &Store{conn: c}, nil
}

// Topic names the DLQ topic; PurgedTopic its companion.
func (s *Store) Topic() string { return s.topic }

// PurgedTopic names the topic that records purged ids.
func (s *Store) PurgedTopic() string { return s.topic + PurgedSuffix }

// Undecodable is how many messages scans skipped because they were not
// entries (no dlq.id header, bad values, a newer schema); each is logged
// at warn level with its partition and offset.
func (s *Store) Undecodable() int64 { return s.undecodable.Load() }

// Close releases the store's connections.
func (s *Store) Close() error {
	s.tr.CloseIdleConnections()
	return nil
}

// Scan calls fn with every entry in the topic up to each partition's high
// watermark at the time of the call, skipping purged ids, oldest first:
// the partitions are merged by entry id (ids sort by creation time); within
// a partition, log order. fn may keep e. fn's error stops the scan and is
// returned unchanged.
func (s *Store) Scan(ctx context.Context, fn func(*dlq.Entry) error) error {
	purged, err := s.purged(ctx)
	if err != nil {
		return err
	}
	return s.scan(ctx, func(e *dlq.Entry) error {
		if purged[e.ID] {
			return nil
		}
		return fn(e)
	})
}

// errStop ends a scan early without an error.
var errStop = errors.New("stop")

// Get returns the entry with id, or an error wrapping dlq.ErrNotFound (also
// for a purged id). It scans the topic.
func (s *Store) Get(ctx context.Context, id string) (*dlq.Entry, error) {
	var found *dlq.Entry
	err := s.Scan(ctx, func(e *dlq.Entry) error {
		if e.ID == id {
			found = e
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s in kafka topic %s", dlq.ErrNotFound, id, s.topic)
	}
	return found, nil
}

// Delete hides the entries with these ids: a log cannot drop messages, so
// it records each id present in the topic and not purged yet in the
// companion topic "<topic>.purged" (creating it, compacted, if needed),
// which Scan and Get consult. It returns how many entries it hid. The
// messages stay in the DLQ topic until retention removes them.
func (s *Store) Delete(ctx context.Context, ids []string) (int, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var hide []string
	seen := map[string]bool{}
	err := s.Scan(ctx, func(e *dlq.Entry) error {
		if want[e.ID] && !seen[e.ID] {
			seen[e.ID] = true
			hide = append(hide, e.ID)
		}
		return nil
	})
	if err != nil || len(hide) == 0 {
		return 0, err
	}
	if err := s.hide(ctx, hide); err != nil {
		return 0, err
	}
	return len(hide), nil
}

// ScanKeys implements dlq.StepStore: the key is the entry id.
func (s *Store) ScanKeys(ctx context.Context, fn func(key string, e *dlq.Entry) error) error {
	return s.Scan(ctx, func(e *dlq.Entry) error { return fn(e.ID, e) })
}

// DeleteKeys implements dlq.StepStore: it records the ids in the purged
// topic without scanning for them first.
func (s *Store) DeleteKeys(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	return s.hide(ctx, keys)
}

// hide records ids in the purged topic (creating it, compacted, if
// needed).
func (s *Store) hide(ctx context.Context, hide []string) error {
	topic := s.PurgedTopic()
	if err := s.ensureTopic(ctx, topic, kafkago.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"}); err != nil {
		return err
	}
	now := time.Now().UTC()
	msgs := make([]kafkago.Message, len(hide))
	stamp := now.AppendFormat(nil, time.RFC3339Nano)
	for i, id := range hide {
		msgs[i] = kafkago.Message{Key: []byte(id), Value: stamp, Time: now}
	}
	w := s.writer(topic)
	w.MaxAttempts = 3
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		var werrs kafkago.WriteErrors
		if errors.As(err, &werrs) {
			n := 0
			var first error
			for _, e := range werrs {
				if e == nil {
					n++
				} else if first == nil {
					first = e
				}
			}
			return kafkaconn.Classify(fmt.Errorf("dlq kafka: recording %d of %d purged ids in %s failed: %w", len(hide)-n, len(hide), topic, first))
		}
		return kafkaconn.Classify(fmt.Errorf("dlq kafka: recording purged ids in %s: %w", topic, err))
	}
	return nil
}

// purged returns the ids recorded in the companion topic (none if it does
// not exist).
func (s *Store) purged(ctx context.Context) (map[string]bool, error) {
	topic := s.PurgedTopic()
	parts, err := s.partitions(ctx, topic)
	if errors.Is(err, ErrTopicMissing) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, p := range parts {
		c, err := s.cursor(ctx, topic, p)
		if err != nil {
			return nil, err
		}
		for {
			r, err := c.next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			ids[string(r.key)] = true
		}
	}
	return ids, nil
}

// scan merges the partitions of the DLQ topic by entry id.
func (s *Store) scan(ctx context.Context, fn func(*dlq.Entry) error) error {
	parts, err := s.partitions(ctx, s.topic)
	if err != nil {
		return err
	}
	type head struct {
		c *cursor
		e *dlq.Entry
	}
	heads := make([]head, 0, len(parts))
	advance := func(h *head) error {
		for {
			r, err := h.c.next(ctx)
			if err == io.EOF {
				h.e = nil
				return nil
			}
			if err != nil {
				return err
			}
			e, err := decode(r.value, r.headers)
			if err != nil {
				s.undecodable.Add(1)
				s.log.Warn("dlq kafka: skipped a message that is not an entry",
					"topic", s.topic, "partition", h.c.partition, "offset", r.offset, "err", err)
				continue
			}
			h.e = e
			return nil
		}
	}
	for _, p := range parts {
		c, err := s.cursor(ctx, s.topic, p)
		if err != nil {
			return err
		}
		h := head{c: c}
		if err := advance(&h); err != nil {
			return err
		}
		if h.e != nil {
			heads = append(heads, h)
		}
	}
	for len(heads) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		lo := 0
		for i := 1; i < len(heads); i++ {
			if heads[i].e.ID < heads[lo].e.ID {
				lo = i
			}
		}
		h := &heads[lo]
		if err := fn(h.e); err != nil {
			return err
		}
		if err := advance(h); err != nil {
			return err
		}
		if h.e == nil {
			heads = append(heads[:lo], heads[lo+1:]...)
		}
	}
	return nil
}

// record is one message as a cursor returns it, its bytes copied.
type record struct {
	offset  int64
	key     []byte
	value   []byte
	headers []kafkago.Header
}

// cursor reads one partition from its start to the high watermark found
// when it was made, a fetch at a time.
type cursor struct {
	s         *Store
	topic     string
	partition int
	off, hw   int64
	buf       []record
}

func (s *Store) cursor(ctx context.Context, topic string, partition int) (*cursor, error) {
	res, err := s.client().ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{
		topic: {kafkago.FirstOffsetOf(partition), kafkago.LastOffsetOf(partition)},
	}})
	if err != nil {
		return nil, kafkaconn.Classify(fmt.Errorf("dlq kafka: offsets of %s/%d: %w", topic, partition, err))
	}
	for _, po := range res.Topics[topic] {
		if po.Partition != partition {
			continue
		}
		if po.Error != nil {
			return nil, kafkaconn.Classify(fmt.Errorf("dlq kafka: offsets of %s/%d: %w", topic, partition, po.Error))
		}
		return &cursor{s: s, topic: topic, partition: partition, off: po.FirstOffset, hw: po.LastOffset}, nil
	}
	return nil, fmt.Errorf("dlq kafka: no offsets for %s/%d", topic, partition)
}

// next returns the next record, or io.EOF at the high watermark.
func (c *cursor) next(ctx context.Context) (record, error) {
	for len(c.buf) == 0 {
		if c.off >= c.hw {
			return record{}, io.EOF
		}
		if err := c.fetch(ctx); err != nil {
			return record{}, err
		}
	}
	r := c.buf[0]
	c.buf[0] = record{}
	c.buf = c.buf[1:]
	return r, nil
}

// fetch reads the records from c.off on (at most about 4 MiB).
func (c *cursor) fetch(ctx context.Context) error {
	res, err := c.s.client().Fetch(ctx, &kafkago.FetchRequest{
		Topic: c.topic, Partition: c.partition, Offset: c.off,
		MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 100 * time.Millisecond,
	})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		return kafkaconn.Classify(fmt.Errorf("dlq kafka: fetch %s/%d at %d: %w", c.topic, c.partition, c.off, err))
	}
	before := c.off
	c.buf = c.buf[:0]
	for {
		r, err := res.Records.ReadRecord()
		if err == io.EOF {
			break
		}
		if err != nil {
			return kafkaconn.Classify(fmt.Errorf("dlq kafka: read %s/%d at %d: %w", c.topic, c.partition, c.off, err))
		}
		if r.Offset < c.off || r.Offset >= c.hw {
			continue
		}
		rec := record{offset: r.Offset}
		if rec.key, err = readAll(r.Key); err == nil {
			rec.value, err = readAll(r.Value)
		}
		if err != nil {
			return kafkaconn.Classify(fmt.Errorf("dlq kafka: read %s/%d at %d: %w", c.topic, c.partition, r.Offset, err))
		}
		rec.headers = make([]kafkago.Header, len(r.Headers))
		for i, h := range r.Headers {
			rec.headers[i] = kafkago.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)}
		}
		c.buf = append(c.buf, rec)
		c.off = r.Offset + 1
	}
	if c.off == before {
		// Nothing at c.off: records removed by retention or compaction
		// (the log start moved past it), or a gap. Skip ahead.
		switch {
		case res.LogStartOffset > c.off:
			c.off = res.LogStartOffset
		case res.HighWatermark > 0 && res.HighWatermark < c.hw:
			c.hw = res.HighWatermark // truncated under us
		default:
			return fmt.Errorf("dlq kafka: %s/%d: no records from offset %d to the high watermark %d", c.topic, c.partition, c.off, c.hw)
		}
	}
	return nil
}

func readAll(b kafkago.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	out := make([]byte, b.Len())
	_, err := io.ReadFull(b, out)
	return out, err
}
