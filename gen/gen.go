package gen

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Output formats accepted in Options.Format.
const (
	FormatJSONL  = "jsonl"
	FormatOTLP   = "otlp"
	FormatZipkin = "zipkin"
)

// Defaults used for zero Options fields.
const (
	DefaultServices = 12
	DefaultUsers    = 50_000
)

// DefaultStart is the event time of the first record when Options.Start is zero.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Limits checked by Options.Validate.
const (
	MaxServices = 10_000
	MaxUsers    = 1 << 40
)

// Options says what Generate writes. Zero fields other than Format and the
// Size/Records pair take their defaults.
type Options struct {
	// Format is "jsonl", "otlp" or "zipkin".
	Format string
	// Size stops generation at the first unit boundary at or after this many
	// bytes. Exactly one of Size and Records is positive.
	Size int64
	// Records stops generation after exactly this many records
	// (Stats.Records: spans, counting each malformed unit as one); for jsonl
	// that is the number of lines. The last trace may be cut short.
	Records int64
	// Seed selects the output; the same Options give the same bytes.
	Seed uint64
	// Malformed is the fraction of units, in [0,1], that are broken.
	Malformed float64
	// Services is the number of distinct service names; 0 means DefaultServices.
	Services int
	// Users is the number of distinct user.id values, drawn with a Zipf-like
	// skew; 0 means DefaultUsers.
	Users int
	// Traces, when positive, is the number of distinct trace ids drawn from
	// (uniformly); 0 gives every trace a new id.
	Traces int
	// Start is the event time of the first record; zero means DefaultStart.
	// It must fall between 1970 and 2200.
	Start time.Time
}

// Validate reports the first problem with o, or nil. It does not change o.
func (o *Options) Validate() error {
	switch o.Format {
	case FormatJSONL, FormatOTLP, FormatZipkin:
	default:
		return fmt.Errorf("gen: unknown format %q (want jsonl, otlp or zipkin)", o.Format)
	}
	if o.Size < 0 || o.Records < 0 {
		return errors.New("gen: size and records must not be negative")
	}
	if (o.Size > 0) == (o.Records > 0) {
		return errors.New("gen: set exactly one of size and records")
	}
	if math.IsNaN(o.Malformed) || o.Malformed < 0 || o.Malformed > 1 {
		return fmt.Errorf("gen: malformed fraction %v is not in [0,1]", o.Malformed)
	}
	if o.Services < 0 || o.Services > MaxServices {
		return fmt.Errorf("gen: services %d is not in [0,%d]", o.Services, MaxServices)
	}
	if o.Users < 0 || int64(o.Users) > MaxUsers {
		return fmt.Errorf("gen: users %d is not in [0,%d]", o.Users, int64(MaxUsers))
	}
	if o.Traces < 0 {
		return fmt.Errorf("gen: traces %d is negative", o.Traces)
	}
	if !o.Start.IsZero() {
		if y := o.Start.UTC().Year(); y < 1970 || y >= 2200 {
			return fmt.Errorf("gen: start %s is not between 1970 and 2200", o.Start.Format(time.RFC3339))
		}
	}
	return nil
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.Services == 0 {
		o.Services = DefaultServices
	}
	if o.Users == 0 {
		o.Users = DefaultUsers
	}
	if o.Start.IsZero() {
		o.Start = DefaultStart
	}
	return o
}

// Defect names the way a malformed unit is broken.
type Defect uint8

// Defects, in the order of Stats.Defects.
const (
	// DefectNone marks a well-formed unit.
	DefectNone Defect = iota
	// DefectTruncated is a unit cut short mid-line (at a UTF-8 boundary):
	// invalid JSON.
	DefectTruncated
	// DefectInvalidUTF8 is a unit with invalid UTF-8 bytes inside a string.
	// Note that encoding/json.Valid accepts it; utf8.Valid does not.
	DefectInvalidUTF8
	// DefectControlChar is a unit with a raw control character (never \n or
	// \r) inside a string: invalid JSON.
	DefectControlChar
	// DefectBadNumber is a unit with a number JSON does not allow, such as
	// 01, 1., 1e, +1, .5 or NaN.
	DefectBadNumber
	// DefectMissingTraceID is valid JSON holding one span whose trace id is
	// absent or the empty string: an invalid record, not a syntax error.
	DefectMissingTraceID
	// DefectBareValue is a valid JSON scalar (number, string, true, false or
	// null) where an object (jsonl, otlp) or array (zipkin) is expected.
	DefectBareValue
	// DefectJunk is a line of non-JSON text (a stack trace line, an HTML
	// error page, a plain log line).
	DefectJunk
)

// NumDefects is the number of Defect values, DefectNone included.
const NumDefects = 8

var defectNames = [NumDefects]string{
	"none", "truncated", "invalid_utf8", "control_char", "bad_number",
	"missing_trace_id", "bare_value", "junk",
}

// String returns the defect's snake_case name.
func (d Defect) String() string {
	if int(d) < len(defectNames) {
		return defectNames[d]
	}
	return fmt.Sprintf("defect(%d)", uint8(d))
}

// Stats counts what Generate wrote.
type Stats struct {
	// Bytes written to the writer.
	Bytes int64
	// Units is the number of lines written, well-formed and malformed.
	Units int64
	// Records is Spans + Malformed: every span of a well-formed unit, and one
	// record per malformed unit (the one a reader should send to the DLQ).
	Records int64
	// Malformed is the number of malformed units written.
	Malformed int64
	// Spans is the number of spans in well-formed units: what a correct
	// reader delivers.
	Spans int64
	// Defects counts malformed units by Defect; Defects[DefectNone] counts
	// well-formed units.
	Defects [NumDefects]int64
}

// Generate writes trace logs described by o to w and returns what it wrote.
// It buffers about 1 MiB between writes; compression and files are the
// caller's. On a write error it returns the counts so far (Bytes is what w
// accepted) and the error.
func Generate(w io.Writer, o Options) (Stats, error) {
	return generate(w, o, nil)
}

// generate is Generate with a hook called after each unit with its defect
// and its bytes (without the newline, valid only during the call), for tests.
func generate(w io.Writer, o Options, onUnit func(d Defect, unit []byte)) (Stats, error) {
	if err := o.Validate(); err != nil {
		return Stats{}, err
	}
	g := newGenerator(w, o.withDefaults())
	g.onUnit = onUnit
	err := g.run()
	return g.st, err
}
