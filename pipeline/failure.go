package pipeline

// Class is the failure class of a record or a file. It decides what happens
// to it (see the failure model in docs/ARCHITECTURE.md) and names its DLQ
// counter.
type Class string

// Failure classes. Adding one means adding it to Classes too.
const (
	// ClassMalformed: not JSON, not UTF-8, truncated.
	ClassMalformed Class = "malformed"
	// ClassInvalid: valid JSON that is not a record (not an object, no trace
	// id, bad timestamp or id, wrong type).
	ClassInvalid Class = "invalid"
	// ClassTooLarge: a line or document over the configured maximum.
	ClassTooLarge Class = "too_large"
	// ClassFile: a whole file could not be opened or read to its end.
	ClassFile Class = "file"
	// ClassPanic: a stage panicked on this record.
	ClassPanic Class = "panic"
	// ClassLate: event time behind the watermark.
	ClassLate Class = "late"
	// ClassSinkExhausted: a sink could not take the record within the retry policy.
	ClassSinkExhausted Class = "sink_exhausted"
	// ClassSinkPermanent: a sink rejected the record for good.
	ClassSinkPermanent Class = "sink_permanent"
)

// NumClasses is len(Classes), as a constant for arrays of counters.
const NumClasses = 8

// Classes lists every failure class, in report order.
var Classes = [NumClasses]Class{
	ClassMalformed, ClassInvalid, ClassTooLarge, ClassFile, ClassPanic,
	ClassLate, ClassSinkExhausted, ClassSinkPermanent,
}

// ClassIndex returns the position of c in Classes, or -1.
func ClassIndex(c Class) int {
	for i, k := range Classes {
		if k == c {
			return i
		}
	}
	return -1
}

// Failure says why a record was not delivered: the stage that gave up, the
// class, a short machine-readable code and a human message.
type Failure struct {
	Stage string
	// Component names the parser or sink within the stage, when known.
	Component string
	Class     Class
	Code      string
	Message   string
}

// MaxErrorMessage bounds any error text that leaves the process (DLQ entries,
// logs): some parser errors repeat a prefix per nesting level.
const MaxErrorMessage = 512

// MaxPanicMessage bounds a panic's message, which carries its stack.
const MaxPanicMessage = 8 << 10

// CutMessage bounds msg to MaxErrorMessage bytes without splitting a UTF-8
// sequence.
func CutMessage(msg string) string {
	if len(msg) <= MaxErrorMessage {
		return msg
	}
	cut := MaxErrorMessage
	for cut > 0 && msg[cut]&0xC0 == 0x80 {
		cut--
	}
	return msg[:cut] + "…"
}
