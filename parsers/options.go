package parsers

import (
	"cmp"
	"fmt"
	"strings"
	"sync"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Options configure decoding. The zero value of a string field means its
// default; a nil field list in JSONL means the default list for that field,
// an empty non-nil list means no candidates. Call Prepare once after setting
// the fields (and again after changing them) and before GetDecoder.
type Options struct {
	// InvalidUTF8 is "reject" (default: the unit is malformed, code "utf8")
	// or "replace" (invalid sequences become U+FFFD in the copied strings
	// and the record gets pipeline.FlagUTF8Replaced).
	InvalidUTF8 string
	// MissingTraceID, when set, is the policy for a record without a
	// trace id of every signal (the form before there was one per
	// signal): "invalid" (the record fails, class invalid, code
	// "missing_trace_id"), "filter" (Record.Filtered) or "keep".
	MissingTraceID string
	// MissingTraceIDSpans and MissingTraceIDLogs are the policies per
	// signal, and win over MissingTraceID; when both are empty the
	// defaults hold: a span without a trace id is invalid, a log record
	// without one is kept (logs are written outside any trace all the
	// time, and a metric that does not count trace ids still wants them).
	MissingTraceIDSpans string
	MissingTraceIDLogs  string
	// TimeUnit is the unit of numeric timestamps (and strings holding a
	// bare number) in jsonl: "auto" (default, by magnitude, see
	// DefaultTimeUnitRule), "s", "ms", "us" or "ns".
	TimeUnit string
	// JSONL names the fields the jsonl decoder looks for.
	JSONL JSONLFields

	prep *prepared
}

// JSONLFields lists, per record field, the candidate paths a jsonl line is
// searched for, in order: the first one present (and not null) wins. A path
// "a.b.c" matches the literal key "a.b.c" first, then nested objects along
// any split of its dots ("a" -> "b" -> "c", "a.b" -> "c", "a" -> "b.c").
type JSONLFields struct {
	TraceID  []string
	SpanID   []string
	ParentID []string
	Service  []string
	Name     []string
	Message  []string
	Kind     []string
	Status   []string
	Severity []string
	Time     []string
	// Start and End are span start and end times: Start is the event time
	// when no Time candidate is present, and End minus Start the duration
	// when no Duration candidate is.
	Start    []string
	End      []string
	Duration []DurationField
}

// DurationField names a jsonl duration field and the unit of its bare
// numbers; string values in Go duration syntax ("12.5ms") are accepted too.
type DurationField struct {
	Path string // candidate path, as in JSONLFields
	Unit string // "ns", "us", "ms" or "s"; empty means "ns"
}

// DefaultTimeUnitRule documents how TimeUnit "auto" reads a number by the
// magnitude of its integer part.
const DefaultTimeUnitRule = "< 1e11: seconds; < 1e14: milliseconds; < 1e17: microseconds; else nanoseconds"

// DefaultOptions returns the defaults: reject invalid UTF-8, spans without
// a trace id are invalid and log records without one are kept, timestamps
// by magnitude, the default jsonl fields. The missing trace id fields are
// left empty, so that setting MissingTraceID alone sets every signal.
func DefaultOptions() Options {
	return Options{
		InvalidUTF8: "reject",
		TimeUnit:    "auto",
		JSONL:       DefaultJSONLFields(),
	}
}

// Default missing trace id policies, per signal.
const (
	DefaultMissingTraceIDSpans = "invalid"
	DefaultMissingTraceIDLogs  = "keep"
)

// DefaultJSONLFields returns the common spellings of each field: the
// layout table's candidates (layouts.go).
func DefaultJSONLFields() JSONLFields {
	f := JSONLFields{
		TraceID:  defaultPaths(fTrace),
		SpanID:   defaultPaths(fSpan),
		ParentID: defaultPaths(fParent),
		Service:  defaultPaths(fService),
		Name:     defaultPaths(fName),
		Message:  defaultPaths(fMessage),
		Kind:     defaultPaths(fKind),
		Status:   defaultPaths(fStatus),
		Severity: defaultPaths(fSeverity),
		Time:     defaultPaths(fTime),
		Start:    defaultPaths(fStart),
		End:      defaultPaths(fEnd),
	}
	for _, r := range layoutTable {
		if r.field == fDuration {
			f.Duration = append(f.Duration, DurationField{Path: r.path, Unit: r.unit})
		}
	}
	return f
}

// jsonl field indexes, also the order invalid fields are reported in.
const (
	fTrace = iota
	fSpan
	fParent
	fTime
	fStart
	fEnd
	fDuration
	fService
	fName
	fMessage
	fKind
	fStatus
	fSeverity
	numFields
)

// Time unit exponents: a value in the unit times 10^exp is nanoseconds.
const (
	unitAuto = -1
	unitNS   = 0
	unitUS   = 3
	unitMS   = 6
	unitS    = 9
)

// Missing trace id policies.
const (
	missingInvalid = iota
	missingFilter
	missingKeep
)

// maxPathSegments bounds the dots in a candidate path: nested lookup tries
// every split, 2^(dots) of them.
const maxPathSegments = 8

// fieldEntry says that a top-level key is (the start of) candidate cand of
// field: rest is what remains to look up inside its value ("" when the key
// is the whole path). prio orders candidates: lower wins.
type fieldEntry struct {
	rest  string
	prio  uint32
	field uint8
	unit  int8  // duration candidates: unit exponent
	conv  uint8 // how the value is read (convNone, convDecimalID, ...)
}

// prepared is the validated, precomputed form of Options, shared read-only
// by every decoder that uses them.
type prepared struct {
	replaceUTF8 bool
	// missingSpan and missingLog are the missing trace id policies per
	// signal (missingFor). The jsonl single pass gives a trace-less record
	// whose policy is invalid up to the tree path, which dead-letters it.
	missingSpan int
	missingLog  int
	timeUnit    int
	// first maps a top-level key to the candidates starting with it.
	first map[string][]fieldEntry
	keys  keyTable
}

// Prepare validates the option values and precomputes what decoding needs.
// The error names the bad option.
func (o *Options) Prepare() error {
	p, err := o.build()
	if err != nil {
		return err
	}
	o.prep = p
	return nil
}

func (o *Options) build() (*prepared, error) {
	p := &prepared{first: map[string][]fieldEntry{}}
	switch o.InvalidUTF8 {
	case "", "reject":
	case "replace":
		p.replaceUTF8 = true
	default:
		return nil, fmt.Errorf("parsers: option InvalidUTF8 (invalid_utf8) is %q: want \"reject\" or \"replace\"", o.InvalidUTF8)
	}
	spans, logs := o.MissingTraceIDSpans, o.MissingTraceIDLogs
	if spans == "" {
		spans = cmp.Or(o.MissingTraceID, DefaultMissingTraceIDSpans)
	}
	if logs == "" {
		logs = cmp.Or(o.MissingTraceID, DefaultMissingTraceIDLogs)
	}
	for _, m := range [...]struct {
		name, value string
		to          *int
	}{
		{"MissingTraceID", o.MissingTraceID, nil},
		{"MissingTraceIDSpans", spans, &p.missingSpan},
		{"MissingTraceIDLogs", logs, &p.missingLog},
	} {
		n, ok := missingPolicy(m.value)
		if !ok {
			return nil, fmt.Errorf("parsers: option %s (missing_trace_id) is %q: want \"invalid\", \"filter\" or \"keep\"", m.name, m.value)
		}
		if m.to != nil {
			*m.to = n
		}
	}
	if o.TimeUnit == "" || o.TimeUnit == "auto" {
		p.timeUnit = unitAuto
	} else if u, ok := unitExp(o.TimeUnit); ok {
		p.timeUnit = u
	} else {
		return nil, fmt.Errorf("parsers: option TimeUnit (time_unit) is %q: want \"auto\", \"s\", \"ms\", \"us\" or \"ns\"", o.TimeUnit)
	}

	def := DefaultJSONLFields()
	lists := [...]struct {
		name string
		got  []string
		def  []string
	}{
		fTrace:    {"TraceID", o.JSONL.TraceID, def.TraceID},
		fSpan:     {"SpanID", o.JSONL.SpanID, def.SpanID},
		fParent:   {"ParentID", o.JSONL.ParentID, def.ParentID},
		fTime:     {"Time", o.JSONL.Time, def.Time},
		fStart:    {"Start", o.JSONL.Start, def.Start},
		fEnd:      {"End", o.JSONL.End, def.End},
		fDuration: {"Duration", nil, nil},
		fService:  {"Service", o.JSONL.Service, def.Service},
		fName:     {"Name", o.JSONL.Name, def.Name},
		fMessage:  {"Message", o.JSONL.Message, def.Message},
		fKind:     {"Kind", o.JSONL.Kind, def.Kind},
		fStatus:   {"Status", o.JSONL.Status, def.Status},
		fSeverity: {"Severity", o.JSONL.Severity, def.Severity},
	}
	for f, l := range lists {
		if f == fDuration {
			durs := o.JSONL.Duration
			if durs == nil {
				durs = def.Duration
			}
			for i, df := range durs {
				u := unitNS
				if df.Unit != "" {
					var ok bool
					if u, ok = unitExp(df.Unit); !ok {
						return nil, fmt.Errorf("parsers: option JSONL.Duration[%d] (%q) has unit %q: want \"ns\", \"us\", \"ms\" or \"s\"", i, df.Path, df.Unit)
					}
				}
				if err := p.addPath(uint8(f), i, int8(u), df.Path); err != nil {
					return nil, fmt.Errorf("parsers: option JSONL.Duration[%d]: %v", i, err)
				}
			}
			continue
		}
		paths := l.got
		if paths == nil {
			paths = l.def
		}
		for i, path := range paths {
			if err := p.addPath(uint8(f), i, 0, path); err != nil {
				return nil, fmt.Errorf("parsers: option JSONL.%s[%d]: %v", l.name, i, err)
			}
		}
	}
	ctr := map[string]uint8{}
	for _, r := range layoutTable {
		switch r.field {
		case ctrAttrs:
			ctr[r.path] = ctrHoist
		case ctrResource:
			ctr[r.path] = ctrRes
		}
	}
	p.keys = newKeyTable(p.first, ctr)
	return p, nil
}

// addPath registers candidate cand of field: the whole path as a literal
// key, and each split at a dot as a first key plus a rest to resolve inside.
func (p *prepared) addPath(field uint8, cand int, unit int8, path string) error {
	if path == "" {
		return fmt.Errorf("empty path")
	}
	if path[0] == '.' || path[len(path)-1] == '.' || strings.Contains(path, "..") {
		return fmt.Errorf("path %q has an empty segment", path)
	}
	if strings.Count(path, ".") >= maxPathSegments {
		return fmt.Errorf("path %q has more than %d segments", path, maxPathSegments)
	}
	if cand >= 1<<16 {
		return fmt.Errorf("too many paths")
	}
	base := uint32(cand) << 8
	conv := convOf(field, path)
	p.first[path] = append(p.first[path], fieldEntry{prio: base, field: field, unit: unit, conv: conv})
	rank := uint32(1)
	for i := 0; i < len(path); i++ {
		if path[i] == '.' {
			k := path[:i]
			p.first[k] = append(p.first[k], fieldEntry{rest: path[i+1:], prio: base | rank, field: field, unit: unit, conv: conv})
			rank++
		}
	}
	return nil
}

// missingPolicy reads a missing trace id policy; "" is accepted (unset).
func missingPolicy(s string) (int, bool) {
	switch s {
	case "", "invalid":
		return missingInvalid, true
	case "filter":
		return missingFilter, true
	case "keep":
		return missingKeep, true
	}
	return 0, false
}

// missingFor is the missing trace id policy of signal sig.
func (p *prepared) missingFor(sig pipeline.Signal) int {
	if sig == pipeline.SignalLog {
		return p.missingLog
	}
	return p.missingSpan
}

func unitExp(s string) (int, bool) {
	switch s {
	case "ns":
		return unitNS, true
	case "us", "µs":
		return unitUS, true
	case "ms":
		return unitMS, true
	case "s":
		return unitS, true
	}
	return 0, false
}

var defaultPrepared = sync.OnceValue(func() *prepared {
	o := DefaultOptions()
	p, err := o.build()
	if err != nil {
		panic(err)
	}
	return p
})

// prepared returns the precomputed options: nil options mean the defaults.
// Options never prepared are built on the spot (not stored, so concurrent
// callers do not race); invalid ones panic, as Prepare would have said.
func (o *Options) prepared() *prepared {
	if o == nil {
		return defaultPrepared()
	}
	if o.prep != nil {
		return o.prep
	}
	p, err := o.build()
	if err != nil {
		panic(err.Error() + " (call Options.Prepare to validate)")
	}
	return p
}
