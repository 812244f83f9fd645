// Package pipeline owns the unit of work (Batch), the canonical Record, the
// failure vocabulary every stage uses, the runner that drives batches through
// stages, and the run's accounting.
package pipeline

// Signal says what kind of telemetry a record came from.
type Signal uint8

// Signals a record can carry.
const (
	SignalSpan Signal = iota + 1
	SignalLog
)

// String returns the lowercase name written to sinks.
func (s Signal) String() string {
	switch s {
	case SignalSpan:
		return "span"
	case SignalLog:
		return "log"
	}
	return "unknown"
}

// AttrType says how an attribute value is written out.
type AttrType uint8

// Attribute value types.
const (
	// AttrString values hold the unescaped string bytes.
	AttrString AttrType = iota + 1
	// AttrNumber values hold the number literal exactly as it came in.
	AttrNumber
	// AttrBool values hold "true" or "false".
	AttrBool
	// AttrNull values are empty.
	AttrNull
	// AttrJSON values hold compact JSON (arrays, objects, OTLP kvlists).
	AttrJSON
)

// Attr is one attribute of a record. Key and Value are views into the
// batch (Buf or Arena), valid until the batch is Reset.
type Attr struct {
	Key   []byte
	Value []byte
	Type  AttrType
}

// Record flags.
const (
	// FlagUTF8Replaced marks a record whose invalid UTF-8 was replaced with
	// U+FFFD under `invalid_utf8: replace`.
	FlagUTF8Replaced uint32 = 1 << iota
)

// Record is the canonical form of one span or log record, whatever the input
// format. Every []byte field is a view into its Batch (Buf or Arena) and is
// valid only until the Batch is Reset or Put back in the pool: copy what must
// outlive it.
type Record struct {
	Signal Signal
	// Time is the event time in Unix nanoseconds (span start for spans).
	Time int64
	// Duration in nanoseconds; 0 when unknown.
	Duration int64

	TraceID  []byte // lowercase hex
	SpanID   []byte // lowercase hex
	ParentID []byte // lowercase hex, empty for a root span
	Service  []byte
	Name     []byte // span name, or the log message
	Kind     []byte // server, client, producer, consumer, internal; empty if unknown
	Status   []byte // ok, error, unset; empty if unknown
	Severity []byte // log severity text, empty for spans
	Attrs    []Attr

	Flags uint32

	// ReplayCount and ReplayedFrom are set on records replayed from the
	// DLQ: how many times, and the id of the entry they came from.
	ReplayCount  int32
	ReplayedFrom []byte

	// Unit is the index in Batch.Units of the input unit (line or document)
	// this record came from.
	Unit int32

	// Payload, when non-nil, is the record's own raw bytes, used for the DLQ
	// when the record is one of several in a unit (an OTLP span inside a
	// request). When nil the unit's bytes are the payload.
	Payload []byte

	// Failure is set by the stage that could not handle the record. A failed
	// record goes to the DLQ and nowhere else.
	Failure Failure

	// Filtered is set when a stage decided, by configuration, that the record
	// is not to be delivered. It is counted, not lost.
	Filtered bool

	// lacking has a bit per sink (by index) that gave up on the record;
	// set by the runner when the batch is finalized.
	lacking uint8
}

// Failed reports whether a stage marked the record failed.
func (r *Record) Failed() bool { return r.Failure.Class != "" }

// Fail marks the record failed. The message must not hold secrets; it is cut
// to MaxErrorMessage bytes when the DLQ entry is built.
func (r *Record) Fail(stage string, class Class, code, msg string) {
	r.Failure = Failure{Stage: stage, Class: class, Code: code, Message: msg}
}

// Attr returns the value of the first attribute named key, or nil.
func (r *Record) Attr(key string) ([]byte, bool) {
	for i := range r.Attrs {
		if string(r.Attrs[i].Key) == key {
			return r.Attrs[i].Value, true
		}
	}
	return nil, false
}

func (r *Record) reset() { *r = Record{} }
