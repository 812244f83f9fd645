package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tracepipe/tracepipe/internal/telemetry"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// The job's phases, for the "job" readiness check.
const (
	phaseStarting int32 = iota
	phaseRunning
	phaseDraining // input stopped (a signal): what was read is finished
	phaseStopped
)

var phaseNames = [...]string{"starting", "running", "draining", "stopped"}

// running marks the job running until ctx is cancelled (draining then);
// the returned func, called once the job is closed, marks it stopped.
func (j *job) running(ctx context.Context) (stopped func()) {
	j.phase.Store(phaseRunning)
	stop := context.AfterFunc(ctx, func() { j.phase.CompareAndSwap(phaseRunning, phaseDraining) })
	return func() {
		stop()
		j.phase.Store(phaseStopped)
	}
}

// sourceHealth is what /readyz says of one source: running until its Run
// returns, then done (a bounded source at its end) or failed.
type sourceHealth struct {
	name    string
	stopped atomic.Bool
	err     atomic.Pointer[string]
}

// sourceStopped records that source i of feed returned err.
func (j *job) sourceStopped(i int, err error) {
	if i >= len(j.srcHealth) {
		return // no telemetry
	}
	if err != nil {
		msg := err.Error()
		j.srcHealth[i].err.Store(&msg)
	}
	j.srcHealth[i].stopped.Store(true)
}

// telemetryInputs is what the job's caller knows and the job does not:
// its sources, and how many bytes they read.
type telemetryInputs struct {
	sources []pipeline.Source
	// bytesRead is the bytes read from disk, bytesIn those parsed (after
	// decompression): the report's bytes_read and bytes_in.
	bytesRead, bytesIn func() int64
	// checkpoints: the sources commit positions (run), so the age of the
	// last commit is reported.
	checkpoints bool
	readyGrace  time.Duration
}

// observe registers the job's instruments and readiness checks on srv.
// Every instrument is observable: one callback reads, at each scrape, the
// counters the runner, the sinks, the DLQ and the windows keep anyway, so
// telemetry adds nothing per record or per batch. They stay registered
// after the job ends, so that a last scrape reads the final values (the
// report's); one job per Server.
func (j *job) observe(srv *telemetry.Server, in telemetryInputs) error {
	m := srv.Meter()
	var errs []error
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	var insts []metric.Observable
	add := func(o ...metric.Observable) { insts = append(insts, o...) }

	recIn := counter("tracepipe.records.in", "{record}", "Records taken in (a unit that failed as a whole, or a file that did, counts as one), by source and format.")
	recOut := counter("tracepipe.records.out", "{record}", "Records every sink they were for took, by source and format.")
	recFiltered := counter("tracepipe.records.filtered", "{record}", "Records dropped by configuration (filter, missing_trace_id: filter, late_policy: drop), by source and format.")
	units := counter("tracepipe.units.read", "{unit}", "Lines and whole JSON documents read.")
	bytesRead := counter("tracepipe.bytes.read", "By", "Bytes read from the inputs (compressed files count their compressed bytes).")
	bytesIn := counter("tracepipe.bytes.in", "By", "Bytes handed to the parsers, after decompression.")
	dlqEntries := counter("tracepipe.dlq.entries", "{entry}", "DLQ entries durably written (synced, or acknowledged by the server), by error class and code, failed stage, and the sinks that did not take the record (empty: none).")
	dlqLost := counter("tracepipe.dlq.lost", "{entry}", "DLQ entries refused or not written: neither delivered nor kept. Never expected.")
	dlqEvicted := counter("tracepipe.dlq.evicted", "{entry}", "Older DLQ entries removed to stay under the cap (overflow: drop_oldest, a Redis MAXLEN).")
	add(recIn, recOut, recFiltered, units, bytesRead, bytesIn, dlqEntries, dlqLost, dlqEvicted)

	sinkBatches := counter("tracepipe.sink.batches", "{batch}", "Batches offered to the sink.")
	sinkRecords := counter("tracepipe.sink.records", "{record}", "Records the sink took.")
	sinkFailed := counter("tracepipe.sink.write_failures", "{batch}", "First writes of a batch that failed, wholly or in part.")
	sinkRetries := counter("tracepipe.sink.retries", "{retry}", "Writes retried after a failure.")
	sinkGaveUp := counter("tracepipe.sink.given_up", "{batch}", "Batches with records given up to the DLQ for this sink.")
	sinkBreaker := gauge("tracepipe.sink.breaker.state", "", "The sink's circuit breaker: 0 closed, 1 open, 2 half-open (the next attempt is a probe).")
	sinkQueue := gauge("tracepipe.sink.retry_queue.depth", "{batch}", "Batches waiting for a retry of this sink now.")
	add(sinkBatches, sinkRecords, sinkFailed, sinkRetries, sinkGaveUp, sinkBreaker, sinkQueue)

	var dlqSize, dlqCap metric.Int64ObservableGauge
	if j.dlqFile != nil {
		dlqSize = gauge("tracepipe.dlq.size", "By", "Bytes of the file DLQ's segments (earlier runs' included), as of its last sync; the DLQ of a remote backend's fallback.")
		dlqCap = gauge("tracepipe.dlq.size.limit", "By", "The file DLQ's cap on its size (dlq.file.max_bytes).")
		add(dlqSize, dlqCap)
	}
	remote, _ := j.backend.(remoteDLQ)
	var fbActive metric.Int64ObservableGauge
	var fbEntries metric.Int64ObservableCounter
	if remote != nil {
		fbActive = gauge("tracepipe.dlq.fallback.active", "", "1 while the remote DLQ's last write failed and entries go to the local file DLQ, else 0.")
		fbEntries = counter("tracepipe.dlq.fallback.entries", "{entry}", "Entries the remote DLQ handed to its local file fallback.")
		add(fbActive, fbEntries)
	}

	var winLag metric.Float64ObservableGauge
	var winOpen, winMemory metric.Int64ObservableGauge
	var winLate, winOverflow, winClosed metric.Int64ObservableCounter
	if j.win != nil {
		var err error
		winLag, err = m.Float64ObservableGauge("tracepipe.window.watermark.lag", metric.WithUnit("s"),
			metric.WithDescription("How far the windows' watermark is behind the wall clock (0 before any record)."))
		errs = append(errs, err)
		winOpen = gauge("tracepipe.window.open", "{window}", "Windows holding counts and not closed yet.")
		winMemory = gauge("tracepipe.window.memory", "By", "Estimated size of the window state, the figure windows.max_memory bounds.")
		winLate = counter("tracepipe.window.late", "{record}", "Records later than the watermark, by what late_policy did with them (dlq, drop, update; expired: too late to correct).")
		winOverflow = counter("tracepipe.window.overflow", "{record}", "(record, metric) pairs counted into the __overflow__ group (max_groups, max_memory).")
		winClosed = counter("tracepipe.window.closed", "{window}", "Windows closed and emitted.")
		add(winLag, winOpen, winMemory, winLate, winOverflow, winClosed)
	}

	var ckptAge metric.Float64ObservableGauge
	if in.checkpoints {
		var err error
		ckptAge, err = m.Float64ObservableGauge("tracepipe.checkpoint.age", metric.WithUnit("s"),
			metric.WithDescription("Seconds since every source last committed its positions (since the start before the first commit)."))
		errs = append(errs, err)
		add(ckptAge)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}

	// The attribute sets are built once, not at each scrape.
	classAttrs := make([]metric.MeasurementOption, len(pipeline.Classes))
	for i, c := range pipeline.Classes {
		classAttrs[i] = metric.WithAttributeSet(attribute.NewSet(
			attribute.String("class", string(c)), attribute.String("code", ""), attribute.String("stage", ""), attribute.String("sink", "")))
	}
	// The DLQ's keys' sets, built as keys appear: the DLQ bounds them
	// (dlq.MaxEntryKeys).
	var keyMu sync.Mutex
	keyAttrs := map[dlq.EntryKey]metric.MeasurementOption{}
	keyAttr := func(k dlq.EntryKey) metric.MeasurementOption {
		keyMu.Lock()
		defer keyMu.Unlock()
		at, ok := keyAttrs[k]
		if !ok {
			at = metric.WithAttributeSet(attribute.NewSet(attribute.String("class", k.Class),
				attribute.String("code", k.Code), attribute.String("stage", k.Stage), attribute.String("sink", k.Sink)))
			keyAttrs[k] = at
		}
		return at
	}
	sinkAttrs := make([]metric.MeasurementOption, len(j.sinks))
	for i, s := range j.sinks {
		sinkAttrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("sink", s.Name())))
	}
	policy := func(p string) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("policy", p)))
	}
	lateDLQ, lateDrop, lateUpdate, lateExpired := policy("dlq"), policy("drop"), policy("update"), policy("expired")
	// The (source, format) pairs' sets, built as pairs appear: they are
	// bounded (pipeline.MaxSeries). The lock is for two readers (the
	// Prometheus scrape and an OTLP push) calling back at once.
	type seriesKey struct {
		source string
		format pipeline.Format
	}
	var seriesMu sync.Mutex
	seriesAttrs := map[seriesKey]metric.MeasurementOption{}
	seriesAttr := func(sc pipeline.SeriesCount) metric.MeasurementOption {
		seriesMu.Lock()
		defer seriesMu.Unlock()
		k := seriesKey{sc.Source, sc.Format}
		at, ok := seriesAttrs[k]
		if !ok {
			at = metric.WithAttributeSet(attribute.NewSet(attribute.String("source", sc.Source), attribute.String("format", sc.Format.String())))
			seriesAttrs[k] = at
		}
		return at
	}

	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		a := j.runner.Accounting()
		// The series sum to the job-wide counters (the report's): every
		// batch is added to both.
		for _, sc := range a.Series() {
			at := seriesAttr(sc)
			o.ObserveInt64(recIn, sc.In, at)
			o.ObserveInt64(recOut, sc.Out, at)
			o.ObserveInt64(recFiltered, sc.Filtered, at)
		}
		o.ObserveInt64(units, a.Units.Load())
		o.ObserveInt64(bytesRead, in.bytesRead())
		o.ObserveInt64(bytesIn, in.bytesIn())
		// The report's figures, read the same way: what the DLQ wrote,
		// and what it refused or failed.
		// By key, which sums to Written class by class; a class with no
		// entry yet is a zero with empty code, stage and sink, so that
		// every class has a series from the start.
		st := j.backend.Stats()
		for i, c := range pipeline.Classes {
			if st.Written[string(c)] == 0 {
				o.ObserveInt64(dlqEntries, 0, classAttrs[i])
			}
		}
		for k, n := range st.ByKey {
			o.ObserveInt64(dlqEntries, n, keyAttr(k))
		}
		o.ObserveInt64(dlqLost, a.DLQLost.Load()+st.Failed)
		o.ObserveInt64(dlqEvicted, st.Evicted)

		for i, s := range j.runner.SinkStats() {
			at := sinkAttrs[i]
			o.ObserveInt64(sinkBatches, s.Batches, at)
			o.ObserveInt64(sinkRecords, s.Records, at)
			o.ObserveInt64(sinkFailed, s.Failed, at)
			o.ObserveInt64(sinkGaveUp, s.GaveUp, at)
			o.ObserveInt64(sinkQueue, s.InFlight, at)
			if i < len(j.retriers) && j.retriers[i] != nil {
				r := j.retriers[i]
				if r.Stats != nil {
					o.ObserveInt64(sinkRetries, r.Stats.Retries.Load(), at)
				}
				if r.Breaker != nil {
					o.ObserveInt64(sinkBreaker, breakerState(r.Breaker.State()), at)
				}
			}
		}
		if j.dlqFile != nil {
			o.ObserveInt64(dlqSize, j.dlqFile.Size())
			o.ObserveInt64(dlqCap, j.dlqFile.MaxBytes())
		}
		if remote != nil {
			active := int64(0)
			if remote.Down() {
				active = 1
			}
			o.ObserveInt64(fbActive, active)
			o.ObserveInt64(fbEntries, remote.FellBack())
		}
		if w := j.win; w != nil {
			ws := &w.Stats
			o.ObserveFloat64(winLag, max(0, ws.Lag(time.Now()).Seconds()))
			o.ObserveInt64(winOpen, ws.OpenWindows.Load())
			o.ObserveInt64(winMemory, ws.StateBytes.Load())
			o.ObserveInt64(winLate, ws.LateDLQ.Load(), lateDLQ)
			o.ObserveInt64(winLate, ws.LateDropped.Load(), lateDrop)
			o.ObserveInt64(winLate, ws.LateUpdated.Load(), lateUpdate)
			o.ObserveInt64(winLate, ws.LateExpired.Load(), lateExpired)
			o.ObserveInt64(winOverflow, ws.Overflow.Load())
			o.ObserveInt64(winClosed, ws.WindowsClosed.Load())
		}
		if in.checkpoints {
			o.ObserveFloat64(ckptAge, time.Since(time.Unix(0, j.lastCommit.Load())).Seconds())
		}
		return nil
	}, insts...)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	if err := observeSources(m, in.sources); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	if err := j.instrument(srv); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	j.ready(srv, in)
	return nil
}

// durationBuckets are the histograms' bucket bounds, in seconds: a batch
// takes from well under a millisecond (a discard sink) to the seconds of a
// retried write.
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// instrument gives the runner its synchronous instruments: the batch and
// sink write duration histograms, recorded once per batch and per write
// (never per record) with attribute sets the runner builds once.
func (j *job) instrument(srv *telemetry.Server) error {
	m := srv.Meter()
	bd, err1 := m.Float64Histogram("tracepipe.batch.duration", metric.WithUnit("s"),
		metric.WithDescription("Seconds from a worker taking a batch to its records all having an outcome (delivered, or queued for the DLQ), retries included; one value per batch, by source."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	sw, err2 := m.Float64Histogram("tracepipe.sink.write.duration", metric.WithUnit("s"),
		metric.WithDescription("Seconds of each write of a batch to a sink, retries included, by sink and outcome (ok, error)."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	j.runner.SetInstruments(pipeline.Instruments{BatchDuration: bd, SinkWrite: sw, Tracer: srv.Tracer()})
	return nil
}

// remoteDLQ is what a remote DLQ backend (Redis, Kafka) adds to the
// Backend interface: its fallback's use.
type remoteDLQ interface {
	Down() bool
	FellBack() int64
}

// breakerState maps a breaker's state to the gauge's value.
func breakerState(s string) int64 {
	switch s {
	case "open":
		return 1
	case "half_open":
		return 2
	}
	return 0
}

// ready registers the readiness checks: the job's phase, each source, the
// DLQ (it takes entries and, for a remote one, its server answers) and
// each sink (its breaker has not been open for longer than ready_grace).
func (j *job) ready(srv *telemetry.Server, in telemetryInputs) {
	srv.SetCheck("job", func(context.Context) telemetry.Status {
		p := j.phase.Load()
		return telemetry.Status{Ready: p == phaseRunning, State: phaseNames[p]}
	})
	j.srcHealth = make([]sourceHealth, len(in.sources))
	for i, s := range in.sources {
		h := &j.srcHealth[i]
		h.name = s.Name()
		srv.SetCheck("source/"+h.name, func(context.Context) telemetry.Status {
			switch {
			case h.err.Load() != nil:
				return telemetry.Status{State: "failed", Error: *h.err.Load()}
			case h.stopped.Load():
				return telemetry.Status{Ready: true, State: "done"}
			}
			return telemetry.Status{Ready: true, State: "running"}
		})
	}
	srv.SetCheck("dlq", func(ctx context.Context) telemetry.Status {
		select {
		case <-j.backend.Full():
			return telemetry.Status{State: "full", Error: "the DLQ takes no more entries (its cap reached under overflow: fail, or its storage failed): input stopped"}
		default:
		}
		st := telemetry.Status{Ready: true, State: "writable"}
		if r, ok := j.backend.(remoteDLQ); ok {
			st.Detail = map[string]any{"fallback_active": r.Down(), "fallback_entries": r.FellBack()}
		}
		// A remote DLQ is asked: its writer only learns of an outage when
		// it has entries to write, and an instance whose dead letters can
		// only go to local disk is not one to send more work to.
		if p, ok := j.backend.(interface{ Ping(context.Context) error }); ok {
			if err := p.Ping(ctx); err != nil {
				st.Ready, st.State, st.Error = false, "unreachable", err.Error()
			}
		}
		return st
	})
	grace := in.readyGrace
	for i, s := range j.sinks {
		if i >= len(j.retriers) || j.retriers[i] == nil || j.retriers[i].Breaker == nil {
			continue
		}
		b := j.retriers[i].Breaker
		srv.SetCheck("sink/"+s.Name(), func(context.Context) telemetry.Status {
			st := telemetry.Status{Ready: true, State: b.State()}
			if out := b.OutageFor(); out > 0 {
				st.Detail = map[string]any{"open_for_seconds": out.Seconds(), "ready_grace_seconds": grace.Seconds()}
				if out > grace {
					st.Ready = false
					st.Error = fmt.Sprintf("the breaker has been open for %s, longer than telemetry.ready_grace %s", out.Round(time.Millisecond), grace)
				}
			}
			return st
		})
	}
}
