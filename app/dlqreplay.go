package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/pipeline/stages"
	"github.com/tracepipe/tracepipe/pipeline/windows"
)

// DLQOptions configures a replay of DLQ entries.
type DLQOptions struct {
	Filter  dlq.Filter
	DryRun  bool
	Logger  *slog.Logger
	Version string
}

// DLQReport is the outcome of a DLQ replay.
type DLQReport struct {
	DryRun   bool           `json:"dry_run"`
	Selected int            `json:"selected"` // entries matching the filter
	Replayed int            `json:"replayed"` // sent back through the pipeline (or the windows store)
	Skipped  map[string]int `json:"skipped"`  // reason -> entries left in the DLQ untouched
	// Delivered: entries whose records all reached their sinks (or were
	// filtered). FailedAgain: entries whose records failed again; each such
	// record is a new entry, with fresh context and replay_count + 1.
	Delivered   int            `json:"delivered"`
	FailedAgain map[string]int `json:"failed_again"` // by the new failure's class
	// Superseded counts entries an earlier replay had already handled (a
	// newer entry names them in replayed_from) but had not deleted when it
	// died: deleted now, not replayed twice.
	Superseded int `json:"superseded"`
	// Deleted counts the entries removed from the DLQ: each replayed one
	// once its records are durable in the sinks or in new entries, in
	// steps as the run goes (so a replay killed midway and run again sends
	// only what was not done), and the superseded ones.
	Deleted int     `json:"deleted"`
	Run     *Report `json:"run,omitempty"` // records in/out/dlq of the replay's own run
}

// replayItem is one selected entry and what became of it.
type replayItem struct {
	e      *dlq.Entry
	key    string         // the store's key for DeleteKeys
	failed pipeline.Class // "" until a record of it failed
	done   bool
}

// ReplayDLQ sends the entries of store matching o.Filter back through
// parse, windows and sinks (built from cfg, as replay does). An entry of a
// sink failure goes back to the sinks it names (the others took the record
// already); the rest go to every sink. Records carry replay_count and
// replayed_from; records that fail again become new entries.
//
// The replay streams: entries are read, batched and sent as the run takes
// them, so memory is bounded by the batches in flight, not the DLQ's size.
// Each batch's entries are deleted once the batch is acknowledged (its
// records flushed by every sink, its new entries synced by the DLQ): a
// replay killed midway and run again sends only the batches not yet
// acknowledged (at least once; dedupe makes it exactly once). Entries made
// after the replay started (its own new ones) are not read, and an entry
// a newer entry names in replayed_from is deleted without a replay (an
// earlier replay handled it). Window rows the windows store refused are
// written to it again. With DryRun, only parse runs and nothing is written
// or deleted.
func ReplayDLQ(ctx context.Context, cfg *config.Config, store dlq.StepStore, o DLQOptions) (*DLQReport, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	rep := &DLQReport{DryRun: o.DryRun, Skipped: map[string]int{}, FailedAgain: map[string]int{}}
	started := time.Now()
	// Pass 1: what earlier replays superseded. Only ids are kept.
	superseded := map[string]bool{}
	if err := store.ScanKeys(ctx, func(_ string, e *dlq.Entry) error {
		if e.ReplayedFrom != "" {
			superseded[e.ReplayedFrom] = true
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("dlq replay: read the DLQ: %w", err)
	}
	r := &dlqReplayer{cfg: cfg, store: store, rep: rep, log: log, superseded: superseded, started: started, sinkIndex: map[string]int{}}
	for i, s := range cfg.Sinks {
		r.sinkIndex[s.Name] = i
	}
	if o.DryRun {
		return rep, r.dryRun(ctx, o.Filter)
	}
	return rep, r.run(ctx, o)
}

// dlqReplayer is one DLQ replay's state.
type dlqReplayer struct {
	cfg        *config.Config
	store      dlq.StepStore
	rep        *DLQReport
	log        *slog.Logger
	superseded map[string]bool
	started    time.Time
	sinkIndex  map[string]int

	mu     sync.Mutex // guards rep's outcome counts and delErr
	delErr error

	// Acked batches' keys wait here for the deleter goroutine, which
	// deletes all that are waiting in one call (one fsync for a file
	// DLQ): acks come from the runner's barrier and must not wait on I/O.
	ackMu    sync.Mutex
	acked    []string
	ackWake  chan struct{} // a send (non-blocking) wakes the deleter
	ackDone  chan struct{} // closed: no more acks; the deleter drains and ends
	deleterW sync.WaitGroup
}

// startDeleter runs the goroutine that deletes acked entries.
func (r *dlqReplayer) startDeleter(ctx context.Context) {
	r.ackWake, r.ackDone = make(chan struct{}, 1), make(chan struct{})
	r.deleterW.Go(func() {
		for {
			var done bool
			select {
			case <-r.ackWake:
			case <-r.ackDone:
				done = true
			}
			r.ackMu.Lock()
			keys := r.acked
			r.acked = nil
			r.ackMu.Unlock()
			r.delete(ctx, keys, len(keys))
			if done {
				return
			}
		}
	})
}

// stopDeleter waits until every acked entry is deleted.
func (r *dlqReplayer) stopDeleter() {
	close(r.ackDone)
	r.deleterW.Wait()
}

// select_ scans the DLQ and calls fn for each entry to replay; skipped
// and superseded ones are counted (superseded keys go to gone).
func (r *dlqReplayer) selectEntries(ctx context.Context, f dlq.Filter, fn func(*replayItem) error, gone func(key string)) error {
	return r.store.ScanKeys(ctx, func(key string, e *dlq.Entry) error {
		if e.Time.After(r.started) || !f.Match(e) {
			return nil // made by this replay, or not selected
		}
		r.rep.Selected++
		if r.superseded[e.ID] {
			r.rep.Superseded++
			gone(key)
			return nil
		}
		if reason := notReplayable(e, r.sinkIndex); reason != "" {
			r.rep.Skipped[reason]++
			return nil
		}
		r.rep.Replayed++
		return fn(&replayItem{e: e, key: key})
	})
}

// run replays for real.
func (r *dlqReplayer) run(ctx context.Context, o DLQOptions) error {
	j, err := newJob(ctx, r.cfg, r.log, o.Version)
	if err != nil {
		return err
	}
	src := &dlqSource{r: r, b: newReplayBatcher(r.cfg, r.sinkIndex, r), win: j.win, filter: o.Filter}
	start := time.Now()
	r.startDeleter(context.WithoutCancel(ctx))
	j.feed(ctx, context.WithoutCancel(ctx), []pipeline.Source{src}, 0)
	rows, scanErr := src.rows, src.scanErr

	var errs []error
	if scanErr != nil {
		errs = append(errs, fmt.Errorf("dlq replay: read the DLQ: %w", scanErr))
	}
	if err := j.close(context.WithoutCancel(ctx)); err != nil {
		errs = append(errs, err)
	}
	run := &Report{}
	if err := j.report(run, 0, 0, time.Since(start)); err != nil {
		errs = append(errs, err)
	}
	if run.RecordsIn > 0 || run.DLQ["total"] > 0 {
		r.rep.Run = run
	}
	if len(rows) > 0 {
		if err := replayRows(ctx, r.cfg, r.log, rows); err != nil {
			errs = append(errs, err)
		}
		var keys []string
		for _, it := range rows {
			if it.done {
				r.count(it)
				keys = append(keys, it.key)
			}
		}
		r.delete(ctx, keys, len(keys))
	}
	r.stopDeleter()
	if r.delErr != nil {
		errs = append(errs, fmt.Errorf("dlq replay: delete replayed entries: %w", r.delErr))
	}
	return errors.Join(errs...)
}

// dlqSource is the source of a DLQ replay: the selected entries, in
// batches grouped by origin and sink set. A batch is acked (its entries
// deleted) once the runner made it durable; Commit has nothing more to do.
// Window rows (entries the windows store refused) are not records: they
// are kept aside in rows for replayRows.
type dlqSource struct {
	r       *dlqReplayer
	b       *replayBatcher
	win     *windows.Windows
	filter  dlq.Filter
	rows    []*replayItem
	scanErr error
}

func (s *dlqSource) Name() string { return "dlq" }

func (s *dlqSource) Commit(context.Context) error { return nil }

func (s *dlqSource) Run(ctx context.Context, out chan<- *pipeline.Batch) error {
	r, b, win := s.r, s.b, s.win
	var gone []string
	send := func(rb *replayBatch) {
		if win != nil {
			win.ExpectSources(rb.b.Origin.ID)
		}
		out <- rb.b
	}
	s.scanErr = r.selectEntries(ctx, s.filter, func(it *replayItem) error {
		if it.e.Source.Kind == "window_row" {
			s.rows = append(s.rows, it) // rare: the windows store refused them
			return nil
		}
		if full := b.add(it); full != nil {
			send(full)
		}
		return nil
	}, func(key string) {
		if gone = append(gone, key); len(gone) >= deleteStep {
			r.delete(ctx, gone, len(gone))
			gone = nil
		}
	})
	for _, rb := range b.flush() {
		send(rb)
	}
	if len(gone) > 0 {
		r.delete(ctx, gone, len(gone))
	}
	if win != nil {
		for id, n := range b.perSource {
			win.SourceDone(id, n)
		}
	}
	return nil
}

// deleteStep is how many superseded entries are deleted at once.
const deleteStep = 512

// delete removes keys from the DLQ and counts n deleted.
func (r *dlqReplayer) delete(ctx context.Context, keys []string, n int) {
	if len(keys) == 0 {
		return
	}
	err := r.store.DeleteKeys(context.WithoutCancel(ctx), keys)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.delErr == nil {
			r.delErr = err
		}
		r.log.Error("dlq replay: deleting replayed entries failed: they stay in the DLQ and a later replay sends them again", "entries", len(keys), "err", err)
		return
	}
	r.rep.Deleted += n
}

// count adds a finished item to the report.
func (r *dlqReplayer) count(it *replayItem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if it.failed == "" {
		r.rep.Delivered++
	} else {
		r.rep.FailedAgain[string(it.failed)]++
	}
}

// notReplayable says why an entry cannot be replayed, or "".
func notReplayable(e *dlq.Entry, sinkIndex map[string]int) string {
	switch {
	case e.Error.Class == string(pipeline.ClassFile):
		return "file: the whole file failed; replay the file itself (pipeline replay PATH)"
	case e.Truncated:
		return "truncated: only the first dlq.keep_bytes were kept"
	case len(e.PayloadBytes()) == 0:
		return "no payload"
	}
	for _, name := range e.LackingSinks() {
		if _, ok := sinkIndex[name]; !ok {
			return "sink " + name + " is not in the config"
		}
	}
	return ""
}

// replayBatch is one batch of replayed entries; it is its own Acker: once
// the batch is durable its entries are deleted.
type replayBatch struct {
	b     *pipeline.Batch
	items []*replayItem // by unit
	r     *dlqReplayer
}

// Ack implements pipeline.Acker: the batch's records are durable in the
// sinks or in new DLQ entries; its entries go.
func (rb *replayBatch) Ack(uint64) {
	r := rb.r
	r.ackMu.Lock()
	for _, it := range rb.items {
		r.acked = append(r.acked, it.key)
	}
	r.ackMu.Unlock()
	select {
	case r.ackWake <- struct{}{}:
	default: // already woken: it will take these too
	}
}

// replayBatcher groups entries by origin (source path and format) and
// target sinks, in DLQ order, into batches.
type replayBatcher struct {
	cfg       *config.Config
	sinkIndex map[string]int
	r         *dlqReplayer
	ids       map[replayGroup]int
	open      map[replayGroup]*replayBatch
	sources   map[replayGroup]*pipeline.Origin
	perSource map[int]int64 // batches sent per source id
}

type replayGroup struct {
	path, format string
	mask         uint8
}

func newReplayBatcher(cfg *config.Config, sinkIndex map[string]int, r *dlqReplayer) *replayBatcher {
	return &replayBatcher{cfg: cfg, sinkIndex: sinkIndex, r: r, ids: map[replayGroup]int{}, open: map[replayGroup]*replayBatch{},
		sources: map[replayGroup]*pipeline.Origin{}, perSource: map[int]int64{}}
}

// add puts it in its group's open batch and returns the batch it filled
// (to send), or nil.
func (rb0 *replayBatcher) add(it *replayItem) *replayBatch {
	e := it.e
	var mask uint8 // 0: every sink
	for _, name := range e.LackingSinks() {
		mask |= 1 << rb0.sinkIndex[name]
	}
	k := replayGroup{e.Source.Path, e.Source.Format, mask}
	rb := rb0.open[k]
	if rb == nil {
		rb = rb0.newBatch(k, e)
		rb0.open[k] = rb
	}
	rb.b.AddUnit(e.PayloadBytes(), e.Source.Offset, e.Source.Line, int64(len(e.PayloadBytes())), 0)
	rb.b.Replays = append(rb.b.Replays, pipeline.Replay{Count: int32(e.ReplayCount + 1), From: rb.b.CopyString(e.ID)})
	it.e = nil // the batch holds a copy of the payload; the entry may be large
	rb.items = append(rb.items, it)
	if len(rb.b.Units) >= rb0.cfg.Pipeline.BatchUnits || len(rb.b.Buf) >= int(rb0.cfg.Pipeline.BatchBytes) {
		delete(rb0.open, k)
		rb0.finish(rb)
		return rb
	}
	return nil
}

// flush returns the open batches, finished.
func (rb0 *replayBatcher) flush() []*replayBatch {
	var out []*replayBatch
	for k, rb := range rb0.open {
		delete(rb0.open, k)
		rb0.finish(rb)
		out = append(out, rb)
	}
	return out
}

func (rb0 *replayBatcher) newBatch(k replayGroup, e *dlq.Entry) *replayBatch {
	src := rb0.sources[k]
	if src == nil {
		id, ok := rb0.ids[k]
		if !ok {
			id = len(rb0.ids)
			rb0.ids[k] = id
		}
		f, ok := pipeline.ParseFormat(e.Source.Format)
		if !ok {
			f = pipeline.FormatAuto
		}
		src = &pipeline.Origin{ID: id, Kind: "dlq", Path: e.Source.Path, Format: f}
		rb0.sources[k] = src
	}
	b := pipeline.GetBatch()
	b.Origin = src
	b.SinkMask = k.mask
	rb := &replayBatch{b: b, r: rb0.r}
	b.Done = func(b *pipeline.Batch) {
		for i := range b.Records {
			rec := &b.Records[i]
			if it := rb.items[rec.Unit]; rec.Failed() && it.failed == "" {
				it.failed = rec.Failure.Class
			}
		}
		for _, it := range rb.items {
			it.done = true
			rb.r.count(it)
		}
	}
	b.Acker = rb
	return rb
}

// finish numbers a batch in its source and settles an unknown format from
// the source's first batch.
func (rb0 *replayBatcher) finish(rb *replayBatch) {
	src := rb.b.Origin
	rb0.perSource[src.ID]++
	rb.b.Seq = uint64(rb0.perSource[src.ID])
	if src.Format == pipeline.FormatAuto {
		f := parsers.Detect(rb.b)
		if f == pipeline.FormatAuto {
			f = pipeline.FormatJSONL
		}
		src.Format = f
	}
}

// replayRows writes window rows the windows store refused back to it.
func replayRows(ctx context.Context, cfg *config.Config, log *slog.Logger, items []*replayItem) error {
	if len(cfg.Windows.Metrics) == 0 && cfg.Windows.Sink.Type == "" {
		return errors.New("dlq replay: window rows need a windows sink in the config")
	}
	sink, err := WindowsSink(cfg, log)
	if err != nil {
		return err
	}
	defer sink.Close()
	var rows []windows.Row
	var ok []*replayItem
	for _, it := range items {
		r, err := windows.ParseRow(it.e.PayloadBytes())
		if err != nil {
			it.done, it.failed = true, pipeline.ClassInvalid
			continue
		}
		rows = append(rows, *r)
		ok = append(ok, it)
	}
	if err := sink.WriteRows(ctx, rows); err != nil {
		return fmt.Errorf("dlq replay: windows store: %w", err)
	}
	for _, it := range ok {
		it.done = true
	}
	return nil
}

// dryRun parses the selected entries with the config's parser, batch by
// batch, and says what would happen, writing and deleting nothing.
func (r *dlqReplayer) dryRun(ctx context.Context, f dlq.Filter) error {
	popts, err := ParserOptions(r.cfg)
	if err != nil {
		return err
	}
	parse := parsers.NewStage(popts)
	var filter pipeline.Stage
	if fl := stages.NewFilter(r.cfg.Filter.IncludeServices, r.cfg.Filter.ExcludeServices); fl != nil {
		filter = fl
	}
	process := func(rb *replayBatch) {
		parse.Process(ctx, rb.b)
		if filter != nil {
			filter.Process(ctx, rb.b)
		}
		rb.b.Done(rb.b)
		pipeline.PutBatch(rb.b)
	}
	b := newReplayBatcher(r.cfg, r.sinkIndex, r)
	err = r.selectEntries(ctx, f, func(it *replayItem) error {
		if it.e.Source.Kind == "window_row" {
			if _, err := windows.ParseRow(it.e.PayloadBytes()); err != nil {
				it.failed = pipeline.ClassInvalid
			}
			r.count(it)
			return nil
		}
		if full := b.add(it); full != nil {
			process(full)
		}
		return nil
	}, func(string) {})
	for _, rb := range b.flush() {
		process(rb)
	}
	return err
}
