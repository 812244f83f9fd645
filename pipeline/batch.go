package pipeline

import (
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Format names an input format. FormatAuto is resolved per file by content.
type Format uint8

// Input formats.
const (
	FormatAuto Format = iota
	FormatJSONL
	FormatOTLP
	FormatZipkin
)

// String returns the config spelling of the format.
func (f Format) String() string {
	switch f {
	case FormatJSONL:
		return "jsonl"
	case FormatOTLP:
		return "otlp"
	case FormatZipkin:
		return "zipkin"
	}
	return "auto"
}

// ParseFormat reads a config spelling; ok is false for an unknown name.
func ParseFormat(s string) (Format, bool) {
	switch s {
	case "", "auto":
		return FormatAuto, true
	case "jsonl":
		return FormatJSONL, true
	case "otlp":
		return FormatOTLP, true
	case "zipkin":
		return FormatZipkin, true
	}
	return FormatAuto, false
}

// Origin says where a batch's units came from. One batch holds units of one
// source only. An Origin is shared by every batch of that file and must not be
// changed once batches refer to it.
type Origin struct {
	// ID tells the run's sources apart (a file's index in the reader's
	// list; two sources may share a Path, e.g. a file given twice).
	ID   int
	Kind string // "file", "kafka", "redis", "dlq"
	// Path is the file's path; for a Kafka partition its topic, for a
	// Redis Stream the stream's key.
	Path string
	// Partition is a Kafka partition's number.
	Partition int
	// Key identifies the input across renames and restarts when the path
	// does not (a followed file's fingerprint); "" means Path. The DLQ's
	// dedupe keys records by it.
	Key string
	// Format is the resolved format of the file (never FormatAuto once the
	// reader has looked at the content).
	Format Format
	// Mapping selects the parse stage's field mapping (0: the default;
	// a source with its own parse.jsonl paths has its own index).
	Mapping int
	// Source is the name of the config source the input belongs to
	// (`pipeline run`), for telemetry: the batch duration's attribute and
	// the batch span's. "" for a replay's inputs.
	Source string
}

// Replay says which DLQ entry a replayed unit came from.
type Replay struct {
	Count int32  // the record's replay count: the entry's + 1
	From  []byte // the entry's id (a view into Arena)
}

// Unit flags.
const (
	// UnitTooLarge marks a unit cut to its first bytes because the line or
	// document was over the configured maximum. Size holds the full length.
	UnitTooLarge uint8 = 1 << iota
	// UnitTruncated marks a unit the input ended inside of (a document with
	// no closing bracket at EOF).
	UnitTruncated
)

// Unit is one line or one whole JSON document as read from a source, the
// thing a parser is handed. Its bytes are Batch.Buf[Start:End].
type Unit struct {
	Start, End int
	// Offset is the byte offset of the unit in the (decompressed) input.
	Offset int64
	// Line is the 1-based line number where the unit starts.
	Line int64
	// Size is the unit's full length in the input; larger than End-Start
	// only when UnitTooLarge is set.
	Size  int64
	Flags uint8
	// KeyStart and KeyEnd, when KeyEnd > KeyStart, make Buf[KeyStart:
	// KeyEnd] what the source says identifies the unit besides its
	// Offset: a Kafka message's key, a Redis Stream entry's id. Not part
	// of the unit's data; the DLQ entry and its dedupe key read it.
	KeyStart, KeyEnd int32
}

// Batch is the unit of work and of pooling. A reader fills Buf and Units; the
// parse stage appends Records, with their strings copied into Arena; later
// stages mark records failed or filtered.
//
// Every []byte view a batch hands out is valid until Reset. Get a batch with
// GetBatch and return it with PutBatch; it must not be used after PutBatch.
type Batch struct {
	Origin *Origin
	// Seq numbers the batches of one Origin in the order they were read:
	// 1, 2, 3... with no gap. 0 means unsequenced. Stages that must see a
	// source's batches as a contiguous prefix (the window watermark) and
	// the ack tracker rely on it.
	Seq uint64
	// Buf holds the units' raw bytes. A record field or attribute that is a
	// view into Buf is text taken verbatim from a strictly validated JSON
	// unit (a string's contents without escapes, a number literal, a hex
	// id): it needs no escaping to be written back as JSON, which sinks rely
	// on. Text that was unescaped, transformed or built goes into Arena.
	Buf   []byte
	Units []Unit

	Records []Record
	// Arena holds decoded strings and re-encoded payloads the records point
	// into. Appending may move it; views taken earlier stay valid (they keep
	// the old array) until Reset.
	Arena []byte
	// Attrs is the backing store of every record's Attrs.
	Attrs []Attr

	// Delivery state, owned by the runner: holds on the batch (the worker's
	// and each sink retry in flight), per sink the records it has still to
	// take, and each sink's final error.
	pending     atomic.Int32
	deliverable []int32 // records neither failed nor filtered
	todo        [MaxSinks][]int32
	sinkErr     [MaxSinks]error
	writes      [MaxSinks]sinkWrite

	// Replays, when set (a DLQ replay), holds per unit the DLQ entry the
	// unit came from; the parse stage copies it onto the unit's records.
	Replays []Replay
	// SinkMask, when non-zero, limits delivery to the sinks whose bit (by
	// index) is set: a DLQ replay of a sink failure goes back to that sink
	// only, the others having taken the record already.
	SinkMask uint8

	// Done, when set, is called by the runner once every record of the
	// batch has its outcome (taken by its sinks, queued for the DLQ,
	// filtered), before the batch is reset: the last moment its records
	// can be read. It is not an acknowledgement: nothing is durable yet.
	Done func(*Batch)
	// Acker, when set, is acked with Seq once the batch is durable (see
	// Acker). A batch with a record the DLQ refused is never acked. When
	// it is a WindowAcker it is also window-acked (see WindowAcker).
	Acker Acker
	// WindowsOnly marks a batch re-read only to rebuild window counts: a
	// source restarting from its windowed position sets it on the batches
	// that lie wholly before its delivered position. The runner runs the
	// stages on it (parse, filter, windows) but delivers nothing to the
	// sinks and puts nothing in the DLQ (its failed records were dead-
	// lettered on the first read), and counts its records in
	// Accounting.RecordsRewindowed only. It is acked (and window-acked)
	// like any other batch.
	WindowsOnly bool

	wh *WindowHold // the batch's window hold, once a stage took one

	// Telemetry, owned by the runner (telemetry.go): when a worker took
	// the batch (zero when nothing is timed), and its span.
	started time.Time
	span    trace.Span
}

// UnitBytes returns the bytes of unit i, valid until Reset.
func (b *Batch) UnitBytes(i int) []byte {
	u := &b.Units[i]
	return b.Buf[u.Start:u.End]
}

// AddUnit appends data as a new unit and returns its index.
func (b *Batch) AddUnit(data []byte, offset, line, size int64, flags uint8) int {
	start := len(b.Buf)
	b.Buf = append(b.Buf, data...)
	b.Units = append(b.Units, Unit{Start: start, End: len(b.Buf), Offset: offset, Line: line, Size: size, Flags: flags})
	return len(b.Units) - 1
}

// AddKeyedUnit appends data as a new unit with key as its source key (see
// Unit.KeyStart) and returns its index.
func (b *Batch) AddKeyedUnit(data, key []byte, offset, line, size int64, flags uint8) int {
	i := b.AddUnit(data, offset, line, size, flags)
	if len(key) > 0 {
		u := &b.Units[i]
		u.KeyStart = int32(len(b.Buf))
		b.Buf = append(b.Buf, key...)
		u.KeyEnd = int32(len(b.Buf))
	}
	return i
}

// UnitKey returns unit i's source key (nil when it has none), valid until
// Reset.
func (b *Batch) UnitKey(i int) []byte {
	u := &b.Units[i]
	if u.KeyEnd <= u.KeyStart {
		return nil
	}
	return b.Buf[u.KeyStart:u.KeyEnd]
}

// NewRecord appends a zeroed record for unit and returns it. The pointer is
// valid until the next NewRecord (which may grow the slice).
func (b *Batch) NewRecord(unit int) *Record {
	if len(b.Records) < cap(b.Records) {
		b.Records = b.Records[:len(b.Records)+1]
	} else {
		b.Records = append(b.Records, Record{})
	}
	r := &b.Records[len(b.Records)-1]
	r.reset()
	r.Unit = int32(unit)
	return r
}

// Payload returns the raw bytes that stand for record i in the DLQ: its own
// payload when it has one, else its unit's bytes.
func (b *Batch) Payload(i int) []byte {
	r := &b.Records[i]
	if r.Payload != nil {
		return r.Payload
	}
	return b.UnitBytes(int(r.Unit))
}

// Copy appends p to the arena and returns the view of it there.
func (b *Batch) Copy(p []byte) []byte {
	start := len(b.Arena)
	b.Arena = append(b.Arena, p...)
	return b.Arena[start:len(b.Arena):len(b.Arena)]
}

// CopyString is Copy for a string.
func (b *Batch) CopyString(s string) []byte {
	start := len(b.Arena)
	b.Arena = append(b.Arena, s...)
	return b.Arena[start:len(b.Arena):len(b.Arena)]
}

// Reset empties the batch for reuse, keeping its capacity.
func (b *Batch) Reset() {
	b.Origin = nil
	b.Seq = 0
	b.Buf = b.Buf[:0]
	b.Units = b.Units[:0]
	b.Records = b.Records[:0]
	b.Arena = b.Arena[:0]
	clear(b.Attrs) // drop views into old arenas so they can be collected
	b.Attrs = b.Attrs[:0]
	b.Done = nil
	b.Acker = nil
	b.WindowsOnly = false
	b.wh = nil // the runner (or whoever dropped the batch) owns its share
	b.started, b.span = time.Time{}, nil
	b.Replays = b.Replays[:0]
	b.SinkMask = 0
	b.pending.Store(0)
	clear(b.sinkErr[:])
	b.deliverable = b.deliverable[:0]
	for i := range b.todo {
		b.todo[i] = b.todo[i][:0]
	}
	for i := range b.writes { // keep the closures, drop what they point to
		b.writes[i].r, b.writes[i].sr = nil, nil
	}
}

// maxPooledBytes caps what a pooled batch keeps: a batch that held one huge
// document gives its buffers back to the GC instead of pinning them.
const maxPooledBytes = 8 << 20

var batchPool = sync.Pool{New: func() any { return new(Batch) }}

// GetBatch returns an empty batch from the pool.
func GetBatch() *Batch { return batchPool.Get().(*Batch) }

// PutBatch resets b and returns it to the pool. b must not be used after.
func PutBatch(b *Batch) {
	b.Reset()
	if cap(b.Buf) > maxPooledBytes {
		b.Buf = nil
	}
	if cap(b.Arena) > maxPooledBytes {
		b.Arena = nil
	}
	batchPool.Put(b)
}

// DeliverableRecords returns the indices of b's records that are neither
// failed nor filtered: what a sink's Write is given when every sink takes
// every record. It allocates; for tests and tools (the runner appends to
// the batch's own list).
func DeliverableRecords(b *Batch) []int32 { return appendDeliverable(nil, b) }

// appendDeliverable appends the indices of b's records that are neither
// failed nor filtered to dst.
func appendDeliverable(dst []int32, b *Batch) []int32 {
	for i := range b.Records {
		if r := &b.Records[i]; !r.Failed() && !r.Filtered {
			dst = append(dst, int32(i))
		}
	}
	return dst
}
