package pipeline

import (
	"context"
	"errors"
	"time"
)

// ErrAlreadyInDLQ is returned by a DeadLetters Put that did not make an
// entry because the DLQ holds one for the same input already (dedupe: a
// record read again after a restart). The record counts as in the DLQ.
var ErrAlreadyInDLQ = errors.New("already in the DLQ")

// DeadLetters takes what the pipeline could not deliver. The DLQ implements
// it (dlq.Recorder): it builds its entries from the failed records, so the
// core knows nothing of the entry schema or the backends.
//
// Every Put returns once the entry is queued, not stored: Sync makes what
// was queued before it durable. A Put error means the entry was refused and
// will not be stored; the runner counts the record as lost.
type DeadLetters interface {
	// PutRecord queues the entry for record i of b, which is failed (its
	// Failure says why). lacking names the sinks that still lack the
	// record when it failed at delivery (nil otherwise). It copies what
	// it keeps: b may be reused once it returns.
	PutRecord(ctx context.Context, b *Batch, i int, lacking []string) error
	// PutSource queues one entry for a source that failed as a whole (a
	// file that could not be opened or read to its end).
	PutSource(ctx context.Context, f SourceFailure) error
	// PutOther queues an entry that stands for no input record (a window
	// row the windows store refused).
	PutOther(ctx context.Context, o OtherFailure) error
	// Sync returns once every entry queued before the call is durable.
	Sync(ctx context.Context) error
}

// SourceFailure is a source that failed as a whole.
type SourceFailure struct {
	Kind, Path string
	// Source is the config source's name (`pipeline run`), for telemetry;
	// "" for a replay's files.
	Source string
	Code   string
	// Offset is how far reading got, in decompressed bytes; Line the line
	// reached (0 when unknown).
	Offset, Line int64
	Err          error
}

// OtherFailure is a dead letter that stands for no input record: its
// failure, where it belongs (Kind and Path, e.g. "window_row" and the
// metric and group), its payload (copied by PutOther) and, for a window
// row, its window.
type OtherFailure struct {
	Failure     Failure
	Kind, Path  string
	Payload     []byte
	WindowStart time.Time
	WindowEnd   time.Time
}
