package pipeline

import "context"

// Sink delivers records. Write is called from several workers at once, one
// batch per call; a sink that needs order or exclusivity locks per batch,
// never per record.
type Sink interface {
	// Name identifies the sink in logs, DLQ entries and the summary.
	Name() string
	// Write delivers every record of b that is neither failed nor filtered.
	// An error means no record of the batch was delivered by this call; the
	// runner then routes them to the DLQ. Write must not keep views into b
	// after it returns.
	Write(ctx context.Context, b *Batch) error
	// Close flushes and syncs what was written and releases the sink.
	Close(ctx context.Context) error
}
