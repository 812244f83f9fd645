package pipeline

import (
	"context"
	"fmt"
)

// Sink delivers records. Write is called from several workers at once, one
// batch per call; a sink that needs order or exclusivity locks per batch,
// never per record.
//
// Delivery is acknowledged in two steps. Write returning nil means the sink
// took the records; Flush returning nil means everything taken before Flush
// was called is durable (a file synced, a broker's ack received). The runner
// acknowledges a batch to its source only after a Flush that followed its
// Write, so a crash never loses a record whose position was committed.
type Sink interface {
	// Name identifies the sink in logs, DLQ entries and the summary.
	Name() string
	// Write delivers the records of b listed in recs: indices into
	// b.Records, ascending, each neither failed nor filtered. It returns
	// nil when it took them all; a *PartialError when it took all but
	// those the error lists; any other error when it took none. Write must
	// not keep b, recs, or views into b after it returns, and must not
	// modify either.
	Write(ctx context.Context, b *Batch, recs []int32) error
	// Flush returns once every record a Write took before Flush was
	// called is durable. It is called on an interval (pipeline
	// flush_every), from one goroutine, concurrently with Write.
	Flush(ctx context.Context) error
	// Close flushes what was written and releases the sink.
	Close(ctx context.Context) error
}

// PartialError is what Write returns when it took some of the records it
// was given but not all: Failed lists those it did not take (indices into
// the batch's Records, ascending, a subset of the recs Write was given,
// in a slice of the sink's own: never sharing recs' memory, which the
// caller rewrites while it reads Failed), and Err says why. The runner retries (or dead-letters) only those; the
// others count as delivered.
type PartialError struct {
	Failed []int32
	Err    error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%d records not taken: %v", len(e.Failed), e.Err)
}

func (e *PartialError) Unwrap() error { return e.Err }
