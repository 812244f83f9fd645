// Package kafka is the Kafka source of `pipeline run`: it consumes the
// topics of a `sources:` entry in a consumer group and feeds their messages
// to the job as batches, one message a unit, committing per partition the
// offset after the last batch delivered in order.
//
// # Which kafka-go API, and why
//
// The group is kafka-go's ConsumerGroup (NewConsumerGroup, Next,
// Generation), not its group Reader. The Reader commits on its own schedule
// (or on CommitMessages, in message order), hides the generation and
// carries no commit metadata, and when a rebalance comes it simply stops
// and rejoins: there is no moment to let the batches of a revoked
// partition finish and commit them. With a Generation the source sees the
// assignment, learns when the generation ends (its done channel, through
// Generation.Start), and holds the next join until the revoked partitions
// are dealt with: ConsumerGroup waits for every function started on a
// generation to return before it joins again, and keeps the coordinator
// connection (and the member's place in the group) until then.
//
// Generation.CommitOffsets cannot carry metadata, so commits go through
// kafka-go's Client.OffsetCommit with the generation's id and member id.
// Messages are fetched with Client.Fetch, one request per partition in
// flight, rather than a partition Reader: a fetch response is exactly "what
// the broker has now", so a batch is sent when it is full or the response
// is used up (never waiting to fill), the response's high watermark gives
// the lag, and a cancelled ctx ends a waiting fetch at once (no MaxWait to
// sit out on Close).
//
// # Positions: delivered and windowed
//
// Each assigned partition has two ack trackers, as a followed file has:
// batches implement pipeline.WindowAcker, Ack moving the delivered offset
// (the batch is durable in the sinks and the DLQ) and WindowAck the
// windowed one (the window rows holding its records are durable too). A
// batch's position is the offset after its last message, so a tracker's
// Acked position is the offset to commit: the one after the highest
// contiguous delivered batch, never past a gap. Commit stores it as the
// group's committed offset and puts the windowed offset in the commit's
// metadata ("tracepipe w=<offset>"). Kafka keeps one offset per partition
// and group; the metadata string is the only place for the second one, and
// it travels with the offset, so the two can never disagree.
//
// On assignment the committed offset and its metadata are fetched
// (OffsetFetch). When the windowed offset is below the delivered one (the
// previous owner stopped with windows open), reading starts at the
// windowed offset: batches that lie wholly below the delivered offset are
// marked WindowsOnly (the runner counts them into the windows again and
// delivers nothing: HLL counts are idempotent), and a batch never straddles
// the delivered offset; from there on batches are delivered as usual. The
// delivered offset committed never goes below where this owner started
// delivering. With no committed offset, start_offset says where to begin
// (earliest or latest, resolved at assignment and committed with the first
// Commit, so a restart before any message does not move "latest"). A
// committed offset the broker no longer has (retention, a recreated topic)
// is reset the same way, with a warning.
//
// # Rebalances
//
// When a generation ends (a member joined or left, a heartbeat failed, the
// partition count changed), the source stops fetching every partition of
// that generation, waits until the batches it sent from them are delivered
// (bounded by rebalance_timeout less a heartbeat interval and a request
// timeout, so that the commit lands before the coordinator gives up on
// this member), commits their delivered and windowed offsets with the old
// generation (the coordinator accepts that while it prepares the
// rebalance), tells the job each partition's origin is done
// (SourceEvents.OriginDone with its batch count), and only then lets the
// group join the next generation. Partitions kept across the rebalance are
// read again from their committed offset, as a new origin. Batches not
// delivered in time are read again by the partition's next owner: they are
// counted (Repeats) and logged once; the sinks' dedupe makes them
// exactly-once where it is on, and at-least-once holds anyway. Acks that
// come later for a partition given up are ignored.
//
// A partition with nothing fetched for idle_timeout (after it sent a batch)
// tells the job once (SourceEvents.Idle), so windows do not wait on it
// until its next batch.
//
// # Stopping
//
// Run returns nil promptly when ctx is cancelled: fetches in flight are
// cancelled, a batch being sent goes back to the pool. The group membership
// is kept: the job commits once more after its final barrier, and that
// commit needs the generation. Close (after that final commit) leaves the
// group. Should the generation end between Run's return and Close, its
// partitions are committed as in a rebalance and the group is left at
// once, so the member does not hold partitions it will not read.
//
// # Bounds and errors
//
// Memory: per assigned partition one fetch response (max_bytes shared out
// among the assigned partitions, at least 64 KiB each; a broker always
// returns at least one record batch, so a large message still comes
// through) and one batch being built; Run blocks only on out and the
// broker. A value over MaxLineBytes keeps its first KeepBytes and is
// flagged pipeline.UnitTooLarge with its full Size, as a line over the
// limit in a file is; the DLQ takes it as too_large. Empty values
// (tombstones) are skipped, as blank lines are in files.
//
// A broker that is down or refuses a request is retried with backoff (up
// to 5s), logged once per interval per kind of failure; nothing crashes
// Run. The consumer group rejoins by itself.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/kafkaconn"
	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/pipeline"
)

// Kind is the origin kind of Kafka batches.
const Kind = "kafka"

// Defaults for zero Options fields (those of the file reader).
const (
	DefaultBatchUnits   = 1024
	DefaultBatchBytes   = 1 << 20
	DefaultMaxLineBytes = 1 << 20
	DefaultKeepBytes    = 4096
)

// minPartitionFetch is the least max_bytes share a partition's fetch gets.
const minPartitionFetch = 64 << 10

// maxKeyBytes bounds the part of a message key kept as a unit's source key
// (a key is an identifier; a huge one is cut, not copied whole).
const maxKeyBytes = 4096

// Options are what the composition root gives a Source besides its config
// block. Zero numeric fields take their defaults.
type Options struct {
	// Origin is the template of every partition's Origin: its Format (and
	// Mapping) is copied; ID, Kind, Path, Partition and Key are set per
	// assigned partition.
	Origin pipeline.Origin
	// Detect resolves the format of a partition from its first batch when
	// Origin.Format is FormatAuto (a FormatAuto answer is taken as JSONL).
	Detect func(*pipeline.Batch) pipeline.Format
	// IDs hands out origin ids, one per partition assignment. Required.
	IDs *pipeline.OriginIDs
	// Events is how partitions given up and idle partitions are told.
	Events pipeline.SourceEvents

	BatchUnits   int
	BatchBytes   int
	MaxLineBytes int
	KeepBytes    int

	// Conn adjusts the connection (a private CA, for one).
	Conn   kafkaconn.Options
	Logger *slog.Logger
}

// Source consumes the topics of one `sources:` entry in its consumer group.
// It implements pipeline.Source; Close leaves the group.
type Source struct {
	name   string
	cfg    config.KafkaSource
	o      Options
	log    *slog.Logger
	rlog   *ratelog.Logger
	tr     *kafkago.Transport
	client *kafkago.Client
	dialer *kafkago.Dialer
	re     *regexp.Regexp
	start  int64 // kafkago.FirstOffset or LastOffset
	// drainWait bounds the wait for a revoked partition's batches.
	drainWait time.Duration

	running   atomic.Bool
	stopped   atomic.Bool // Run returned
	closing   chan struct{}
	closeOnce sync.Once
	holders   sync.WaitGroup // generation holders still running

	mu    sync.Mutex
	cg    *kafkago.ConsumerGroup // the group joined now
	cur   *generation            // the generation served now
	group []*kafkago.ConsumerGroup

	commitMu sync.Mutex // one OffsetCommit at a time

	repeats     atomic.Int64
	repeatsLog  atomic.Bool
	rebalances  atomic.Int64
	commitErrs  atomic.Int64
	recordsRead atomic.Int64
	bytesRead   atomic.Int64
}

// New checks cfg and o and returns the Source; nothing connects before
// Run. cfg is taken with its defaults applied (config.Load does that).
func New(name string, cfg config.KafkaSource, o Options) (*Source, error) {
	if o.IDs == nil {
		return nil, errors.New("kafka: Options.IDs is required")
	}
	if len(cfg.Topics) == 0 && cfg.TopicRegex == "" {
		return nil, fmt.Errorf("kafka: %s: no topics and no topic_regex", name)
	}
	if o.Origin.Format == pipeline.FormatAuto && o.Detect == nil {
		return nil, fmt.Errorf("kafka: %s: format auto needs Options.Detect", name)
	}
	if cfg.Group == "" {
		return nil, fmt.Errorf("kafka: %s: no group", name)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.MaxWait, 250 * time.Millisecond}, {&cfg.SessionTimeout, 10 * time.Second},
		{&cfg.HeartbeatInterval, 3 * time.Second}, {&cfg.RebalanceTimeout, 30 * time.Second},
		{&cfg.MetadataRefresh, 10 * time.Second}, {&cfg.IdleTimeout, 30 * time.Second},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("kafka: %s: negative duration", name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MinBytes <= 0 {
		cfg.MinBytes = 1
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 16 << 20
	}
	s := &Source{name: name, cfg: cfg, o: o, closing: make(chan struct{})}
	switch cfg.StartOffset {
	case "", "earliest":
		s.start = kafkago.FirstOffset
	case "latest":
		s.start = kafkago.LastOffset
	default:
		return nil, fmt.Errorf("kafka: %s: start_offset %q is not earliest or latest", name, cfg.StartOffset)
	}
	if cfg.TopicRegex != "" {
		re, err := regexp.Compile(cfg.TopicRegex)
		if err != nil {
			return nil, fmt.Errorf("kafka: %s: topic_regex: %w", name, err)
		}
		s.re = re
	}
	tr, err := kafkaconn.NewTransport(cfg.Kafka, o.Conn)
	if err != nil {
		return nil, fmt.Errorf("kafka: %s: %w", name, err)
	}
	s.tr = tr
	timeout := kafkaconn.Timeout(cfg.Kafka)
	s.client = &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Transport: tr, Timeout: timeout}
	// The group's coordinator connection is dialed, not taken from the
	// transport: same TLS, SASL, client id and timeout.
	s.dialer = &kafkago.Dialer{ClientID: tr.ClientID, Timeout: tr.DialTimeout, DualStack: true, TLS: tr.TLS, SASLMechanism: tr.SASL}
	s.drainWait = max(cfg.RebalanceTimeout/2, cfg.RebalanceTimeout-cfg.HeartbeatInterval-timeout)

	s.o.BatchUnits = orDefault(o.BatchUnits, DefaultBatchUnits)
	s.o.BatchBytes = orDefault(o.BatchBytes, DefaultBatchBytes)
	s.o.MaxLineBytes = orDefault(o.MaxLineBytes, DefaultMaxLineBytes)
	s.o.KeepBytes = min(orDefault(o.KeepBytes, DefaultKeepBytes), s.o.MaxLineBytes)
	if s.o.Logger == nil {
		s.o.Logger = slog.Default()
	}
	s.log = s.o.Logger.With("source", name)
	s.rlog = ratelog.New(s.log, 10*time.Second)
	return s, nil
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Name is the source's name.
func (s *Source) Name() string { return s.name }

// Run consumes until ctx is cancelled, then returns nil (batches already
// sent stay sent; the group is kept for the final Commit, see Close). It may
// be called once.
func (s *Source) Run(ctx context.Context, out chan<- *pipeline.Batch) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("kafka: Run called twice")
	}
	defer s.stopped.Store(true)
	for ctx.Err() == nil {
		topics, ok := s.resolveTopics(ctx)
		if !ok {
			return nil
		}
		cg, err := kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
			ID:                     s.cfg.Group,
			Brokers:                s.cfg.Brokers,
			Dialer:                 s.dialer,
			Topics:                 topics,
			HeartbeatInterval:      s.cfg.HeartbeatInterval,
			SessionTimeout:         s.cfg.SessionTimeout,
			RebalanceTimeout:       s.cfg.RebalanceTimeout,
			PartitionWatchInterval: s.cfg.MetadataRefresh,
			WatchPartitionChanges:  true,
			JoinGroupBackoff:       time.Second,
			StartOffset:            s.start,
			Timeout:                kafkaconn.Timeout(s.cfg.Kafka),
			ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) {
				s.log.Debug("kafka-go: " + fmt.Sprintf(msg, args...))
			}),
		})
		if err != nil {
			return fmt.Errorf("kafka: %s: %w", s.name, err)
		}
		s.mu.Lock()
		s.cg = cg
		s.group = append(s.group, cg)
		s.mu.Unlock()
		s.log.Info("joining consumer group", "group", s.cfg.Group, "topics", topics)
		changed := s.runGroup(ctx, cg, out, topics)
		if !changed {
			return nil
		}
		// The topics matching topic_regex changed: leave (the partitions
		// are committed as in a rebalance) and join with the new set.
		_ = cg.Close()
	}
	return nil
}

// runGroup serves cg's generations until ctx is cancelled (false) or, with
// topic_regex, the matching topics differ from topics (true).
func (s *Source) runGroup(ctx context.Context, cg *kafkago.ConsumerGroup, out chan<- *pipeline.Batch, topics []string) bool {
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	changed := make(chan struct{})
	if s.re != nil {
		go func() {
			t := time.NewTicker(s.cfg.MetadataRefresh)
			defer t.Stop()
			for {
				select {
				case <-gctx.Done():
					return
				case <-t.C:
					now, err := s.matchTopics(gctx)
					if err == nil && len(now) > 0 && !slices.Equal(now, topics) {
						s.log.Info("topics matching topic_regex changed: rejoining", "was", topics, "now", now)
						close(changed)
						stop()
						return
					}
				}
			}
		}()
	}
	for {
		gen, err := cg.Next(gctx)
		if gctx.Err() != nil {
			select {
			case <-changed:
				return ctx.Err() == nil
			default:
				return false
			}
		}
		if err != nil {
			if errors.Is(err, kafkago.ErrGroupClosed) {
				return false
			}
			// ConsumerGroup backs off by itself before it tries again.
			s.rlog.Warn("join", "cannot join the consumer group; retrying", "group", s.cfg.Group, "err", err)
			continue
		}
		s.serve(gctx, cg, gen, out)
	}
}

// resolveTopics returns the configured topics, or those matching
// topic_regex (waiting, and retrying, until there is one); false when ctx
// ended first.
func (s *Source) resolveTopics(ctx context.Context) ([]string, bool) {
	if s.re == nil {
		t := slices.Clone(s.cfg.Topics)
		slices.Sort(t)
		return slices.Compact(t), true
	}
	for {
		topics, err := s.matchTopics(ctx)
		switch {
		case err != nil:
			s.rlog.Warn("metadata", "cannot list the cluster's topics; retrying", "err", err)
		case len(topics) == 0:
			s.rlog.Warn("no-topic", "no topic matches topic_regex yet", "topic_regex", s.cfg.TopicRegex)
		default:
			return topics, true
		}
		if !sleep(ctx, min(s.cfg.MetadataRefresh, 5*time.Second)) {
			return nil, false
		}
	}
}

// matchTopics lists the cluster's topics matching topic_regex, sorted.
func (s *Source) matchTopics(ctx context.Context) ([]string, error) {
	md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range md.Topics {
		if t.Error == nil && !t.Internal && s.re.MatchString(t.Name) {
			out = append(out, t.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// generation is what the source keeps of a generation it serves.
type generation struct {
	cg      *kafkago.ConsumerGroup
	gen     *kafkago.Generation
	parts   []*partition
	readers sync.WaitGroup
	stop    context.CancelFunc // stops the readers
}

// serve reads gen's partitions until gen ends (its holder has then given
// them up) or ctx is cancelled (the readers are stopped; the holder keeps
// the generation for the final commit).
func (s *Source) serve(ctx context.Context, cg *kafkago.ConsumerGroup, gen *kafkago.Generation, out chan<- *pipeline.Batch) {
	g := &generation{cg: cg, gen: gen}
	pctx, stop := context.WithCancel(ctx)
	g.stop = stop
	started, over := make(chan struct{}), make(chan struct{})
	s.holders.Add(1)
	// The holder is the function ConsumerGroup waits for before it joins
	// the next generation: it keeps this one (and its coordinator
	// connection) until the partitions are given up.
	gen.Start(func(gctx context.Context) {
		defer s.holders.Done()
		defer close(over)
		<-gctx.Done()
		stop()
		<-started
		g.readers.Wait()
		s.giveUp(g)
	})
	parts, ok := s.assign(pctx, gen)
	if ok {
		g.parts = parts
		s.mu.Lock()
		s.cur = g
		s.mu.Unlock()
		for _, p := range parts {
			g.readers.Go(func() { s.read(pctx, p, out) })
		}
		s.log.Info("partitions assigned", "generation", gen.ID, "partitions", describe(parts))
	}
	close(started)
	select {
	case <-over:
	case <-ctx.Done():
		stop()
		g.readers.Wait()
	}
}

// giveUp ends g: its readers have stopped. It waits (bounded) for the
// batches sent to be delivered, commits with g's generation, tells the job
// each origin is done. Called by g's holder.
func (s *Source) giveUp(g *generation) {
	s.rebalances.Add(1)
	deadline := time.Now().Add(s.drainWait)
	for _, p := range g.parts {
		for !p.delivered() && time.Now().Before(deadline) {
			select {
			case <-s.closing:
				deadline = time.Now()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), kafkaconn.Timeout(s.cfg.Kafka))
	err := s.commit(ctx, g)
	cancel()
	if err != nil {
		s.log.Warn("commit of the partitions given up failed: their next owner reads again from the last commit", "generation", g.gen.ID, "err", err)
	}
	var repeat int64
	for _, p := range g.parts {
		seq, _ := p.d.Acked()
		if n := int64(p.sentSeq.Load()) - int64(seq); n > 0 {
			repeat += n
		}
		if err != nil {
			repeat += int64(seq - p.committedSeq)
		}
	}
	if repeat > 0 {
		s.repeats.Add(repeat)
		if s.repeatsLog.CompareAndSwap(false, true) {
			s.log.Warn("partitions given up with batches not delivered in time: their next owner reads them again (counted in Repeats; logged once)", "batches", repeat)
		}
	}
	s.mu.Lock()
	if s.cur == g {
		s.cur = nil
	}
	s.mu.Unlock()
	for _, p := range g.parts {
		if s.o.Events.OriginDone != nil {
			s.o.Events.OriginDone(p.origin.ID, p.batches.Load())
		}
	}
	if len(g.parts) > 0 {
		s.log.Info("partitions given up", "generation", g.gen.ID, "partitions", describe(g.parts))
	}
	if s.stopped.Load() {
		// Run is over: leave rather than join a generation no one reads.
		go g.cg.Close()
	}
}

// Close leaves the consumer group (after the job's final Commit) and
// releases the connections. Safe to call more than once, and without Run.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.mu.Lock()
		groups := s.group
		s.mu.Unlock()
		for _, cg := range groups {
			_ = cg.Close()
		}
		s.holders.Wait()
		s.rlog.Flush()
		s.tr.CloseIdleConnections()
	})
	return nil
}

// Stats are counters of the source's life.
type Stats struct {
	Records    int64 // messages read (skipped tombstones not counted)
	Bytes      int64 // their value bytes
	Rebalances int64 // generations given up
	// Repeats counts batches sent from partitions that were given up
	// before they were delivered (or committed): their next owner reads
	// them again.
	Repeats    int64
	CommitErrs int64
}

// Stats returns the counters so far.
func (s *Source) Stats() Stats {
	return Stats{
		Records: s.recordsRead.Load(), Bytes: s.bytesRead.Load(), Rebalances: s.rebalances.Load(),
		Repeats: s.repeats.Load(), CommitErrs: s.commitErrs.Load(),
	}
}

// BytesRead returns the value bytes read so far (for the run report).
func (s *Source) BytesRead() int64 { return s.bytesRead.Load() }

// Lag returns, per partition owned now ("topic:partition"), the consumer
// lag as of its last fetch: the high watermark less the next offset to
// read.
func (s *Source) Lag() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int64{}
	if s.cur != nil {
		for _, p := range s.cur.parts {
			m[p.topic+":"+strconv.Itoa(p.id)] = p.lag.Load()
		}
	}
	return m
}

// Assigned returns the partitions owned now, "topic:partition", sorted.
func (s *Source) Assigned() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if s.cur != nil {
		for _, p := range s.cur.parts {
			out = append(out, p.topic+":"+strconv.Itoa(p.id))
		}
	}
	slices.Sort(out)
	return out
}

func describe(parts []*partition) string {
	var b []byte
	for i, p := range parts {
		if i > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%s:%d@%d", p.topic, p.id, p.startAt)
	}
	return string(b)
}

// sleep waits d or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
