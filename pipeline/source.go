package pipeline

import (
	"context"
	"sync/atomic"
)

// Source feeds a job: a replay over files, a DLQ replay, the tailer of
// `pipeline run`, a Kafka or Redis Stream consumer. The job, built once from
// config, does not know which; sources differ only in where their units
// come from and how they commit positions.
//
// Run reads units into batches (GetBatch) and sends them on out until its
// input ends (a bounded source: a replay) or ctx is cancelled (stop
// reading: an unbounded source returns nil then). It does not close out.
// Every batch carries its Origin and, when the source has positions to
// commit, Seq and Acker: batch n of an origin is sent after batch n-1.
// Run must not block on anything but out and its input, so that
// backpressure from the workers slows the source and nothing else.
//
// Commit makes durable the positions acked so far (an AckTracker per
// position stream: a file, a partition, a stream): only the position after
// the highest contiguous acked batch, never past a gap. The job calls it
// on an interval (checkpoint_every) and once after the final barrier, from
// one goroutine; a source with nothing to commit returns nil. Positions
// differ in kind between sources (file fingerprint and offset, Kafka
// offsets, Redis ids), so each source keeps its own trackers and store;
// Commit takes no position argument.
type Source interface {
	Name() string
	Run(ctx context.Context, out chan<- *Batch) error
	Commit(ctx context.Context) error
}

// SourceEvents is what a source tells the job besides its batches. The
// composition root fills it before Run; every func may be nil.
type SourceEvents struct {
	// Failed records an input that failed as a whole (a file that cannot
	// be opened or is not a regular file, a corrupt stream): one DLQ entry
	// of class file, counted as one record in.
	Failed func(ctx context.Context, f SourceFailure)
	// OriginDone says origin id sent its last batch, batches in all (a
	// file read to its end and released, a partition given up): it holds
	// no window open once those are through.
	OriginDone func(id int, batches int64)
	// Idle says origin id, after sending batches in all, has nothing to
	// read for now (a followed file at its end for idle_timeout): until
	// its next batch it does not hold the window watermark back, so a
	// quiet file does not keep every window open.
	Idle func(id int, batches int64)
}

// OriginIDs hands out origin ids unique within a process, so that origins
// of several sources (and of files found while running) never share the
// watermark state the windows keep per id.
type OriginIDs struct{ n atomic.Int64 }

// Next returns a new id; the first is 0.
func (o *OriginIDs) Next() int { return int(o.n.Add(1) - 1) }
