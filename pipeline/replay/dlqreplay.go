package replay

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
	// Deleted counts the replayed entries removed from the DLQ: the
	// delivered ones, and the failed ones once their new entries are stored.
	Deleted int     `json:"deleted"`
	Run     *Report `json:"run,omitempty"` // records in/out/dlq of the replay's own run
}

// replayItem is one selected entry and what became of it.
type replayItem struct {
	e      *dlq.Entry
	failed pipeline.Class // "" until a record of it failed
	done   bool
}

// ReplayDLQ sends the entries of store matching o.Filter back through
// parse, windows and sinks (built from cfg, as replay does). Entries of a
// sink failure go back to the sinks they name (the others took the record
// already); the rest go to every sink. Records carry replay_count and
// replayed_from; records that fail again become new entries. Replayed
// entries are deleted from the DLQ at the end, once the new ones are
// stored; so a second replay finds nothing to send again. Window rows the
// windows store refused are written to it again. With DryRun, only parse
// runs and nothing is written or deleted.
func ReplayDLQ(ctx context.Context, cfg *config.Config, store dlq.Store, o DLQOptions) (*DLQReport, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	rep := &DLQReport{DryRun: o.DryRun, Skipped: map[string]int{}, FailedAgain: map[string]int{}}
	sinkIndex := map[string]int{}
	for i, s := range cfg.Sinks {
		sinkIndex[s.Name] = i
	}
	var items []*replayItem
	var rows []*replayItem
	err := store.Scan(ctx, func(e *dlq.Entry) error {
		if !o.Filter.Match(e) {
			return nil
		}
		rep.Selected++
		switch reason := notReplayable(e, sinkIndex); {
		case reason != "":
			rep.Skipped[reason]++
		case e.Source.Kind == "window_row":
			rows = append(rows, &replayItem{e: e})
		default:
			items = append(items, &replayItem{e: e})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dlq replay: read the DLQ: %w", err)
	}
	rep.Replayed = len(items) + len(rows)
	if o.DryRun {
		return rep, dryRun(cfg, items, rows, rep)
	}
	if len(items)+len(rows) == 0 {
		return rep, nil
	}
	var errs []error
	if len(items) > 0 {
		run, err := replayRecords(ctx, cfg, log, o.Version, items, sinkIndex)
		rep.Run = run
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(rows) > 0 {
		if err := replayRows(ctx, cfg, log, rows); err != nil {
			errs = append(errs, err)
		}
	}
	// Delete what was replayed: delivered, or failed again with its new
	// entries stored (a run that lost DLQ entries keeps the old ones).
	lost := rep.Run != nil && (rep.Run.DLQLost > 0 || !rep.Run.Reconciled)
	var ids []string
	for _, it := range append(items, rows...) {
		switch {
		case !it.done:
		case it.failed == "":
			rep.Delivered++
			ids = append(ids, it.e.ID)
		default:
			rep.FailedAgain[string(it.failed)]++
			if !lost {
				ids = append(ids, it.e.ID)
			}
		}
	}
	if len(ids) > 0 {
		n, err := store.Delete(ctx, ids)
		rep.Deleted = n
		if err != nil {
			errs = append(errs, fmt.Errorf("dlq replay: delete the replayed entries: %w", err))
		}
	}
	return rep, errors.Join(errs...)
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

// replayRecords runs the selected entries through parse, filter, windows
// and sinks.
func replayRecords(ctx context.Context, cfg *config.Config, log *slog.Logger, version string, items []*replayItem, sinkIndex map[string]int) (*Report, error) {
	j, err := newJob(ctx, cfg, log, version)
	if err != nil {
		return nil, err
	}
	runner, win := j.runner, j.win

	batches, groups := replayBatches(cfg, items, sinkIndex)
	if win != nil {
		ids := make([]int, groups)
		for i := range ids {
			ids[i] = i
		}
		win.ExpectSources(ids...)
	}
	start := time.Now()
	ch := make(chan *pipeline.Batch, cfg.Pipeline.Queue)
	go func() {
		perSource := make([]int64, groups)
		for _, rb := range batches {
			perSource[rb.b.Source.ID]++
		}
		for _, rb := range batches {
			ch <- rb.b
		}
		close(ch)
		if win != nil {
			for id, n := range perSource {
				win.SourceDone(id, n)
			}
		}
	}()
	runner.Run(context.WithoutCancel(ctx), ch)

	var errs []error
	if err := j.close(context.WithoutCancel(ctx)); err != nil {
		errs = append(errs, err)
	}
	rep := &Report{}
	if err := j.report(rep, 0, 0, time.Since(start)); err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

type replayBatch struct {
	b     *pipeline.Batch
	items []*replayItem // by unit
}

// replayBatches groups the entries by origin (source path and format) and
// target sinks, in DLQ order, into batches whose Done records each
// entry's outcome.
func replayBatches(cfg *config.Config, items []*replayItem, sinkIndex map[string]int) ([]*replayBatch, int) {
	type groupKey struct {
		path, format string
		mask         uint8
	}
	ids := map[groupKey]int{}
	open := map[groupKey]*replayBatch{}
	sources := map[groupKey]*pipeline.Source{}
	var out []*replayBatch
	var mu sync.Mutex
	for _, it := range items {
		e := it.e
		var mask uint8 // 0: every sink
		for _, name := range e.LackingSinks() {
			mask |= 1 << sinkIndex[name]
		}
		k := groupKey{e.Source.Path, e.Source.Format, mask}
		rb := open[k]
		if rb == nil || len(rb.b.Units) >= cfg.Pipeline.BatchUnits || len(rb.b.Buf) >= int(cfg.Pipeline.BatchBytes) {
			src := sources[k]
			if src == nil {
				id, ok := ids[k]
				if !ok {
					id = len(ids)
					ids[k] = id
				}
				f, ok := pipeline.ParseFormat(e.Source.Format)
				if !ok || f == pipeline.FormatAuto {
					f = pipeline.FormatAuto
				}
				src = &pipeline.Source{ID: id, Kind: "dlq", Path: e.Source.Path, Format: f}
				sources[k] = src
			}
			b := pipeline.GetBatch()
			b.Source = src
			b.SinkMask = mask
			rb = &replayBatch{b: b}
			b.Done = func(b *pipeline.Batch) {
				mu.Lock()
				defer mu.Unlock()
				for i := range b.Records {
					r := &b.Records[i]
					if it := rb.items[r.Unit]; r.Failed() && it.failed == "" {
						it.failed = r.Failure.Class
					}
				}
				for _, it := range rb.items {
					it.done = true
				}
			}
			open[k] = rb
			out = append(out, rb)
		}
		u := rb.b.AddUnit(e.PayloadBytes(), e.Source.Offset, e.Source.Line, int64(len(e.PayloadBytes())), 0)
		rb.b.Replays = append(rb.b.Replays, pipeline.Replay{Count: int32(e.ReplayCount + 1), From: rb.b.CopyString(e.ID)})
		rb.items = append(rb.items, it)
		_ = u
	}
	// Sources whose format is unknown are detected from their first batch.
	for _, rb := range out {
		if rb.b.Source.Format == pipeline.FormatAuto {
			f := parsers.Detect(rb.b)
			if f == pipeline.FormatAuto {
				f = pipeline.FormatJSONL
			}
			rb.b.Source.Format = f
		}
	}
	return out, len(ids)
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

// dryRun parses the entries with the config's parser and says what would
// happen, writing nothing.
func dryRun(cfg *config.Config, items, rows []*replayItem, rep *DLQReport) error {
	popts, err := ParserOptions(cfg)
	if err != nil {
		return err
	}
	parse := stages.NewParse(popts)
	var filter pipeline.Stage
	if f := stages.NewFilter(cfg.Filter.IncludeServices, cfg.Filter.ExcludeServices); f != nil {
		filter = f
	}
	sinkIndex := map[string]int{}
	for i, s := range cfg.Sinks {
		sinkIndex[s.Name] = i
	}
	batches, _ := replayBatches(cfg, items, sinkIndex)
	for _, rb := range batches {
		parse.Process(context.Background(), rb.b)
		if filter != nil {
			filter.Process(context.Background(), rb.b)
		}
		rb.b.Done(rb.b)
		pipeline.PutBatch(rb.b)
	}
	for _, it := range items {
		if it.failed == "" {
			rep.Delivered++
		} else {
			rep.FailedAgain[string(it.failed)]++
		}
	}
	for _, it := range rows {
		if _, err := windows.ParseRow(it.e.PayloadBytes()); err != nil {
			rep.FailedAgain[string(pipeline.ClassInvalid)]++
		} else {
			rep.Delivered++
		}
	}
	return nil
}
