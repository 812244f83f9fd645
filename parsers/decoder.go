package parsers

import (
	"encoding/binary"
	"strconv"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/tracepipe/tracepipe/pipeline"
)

// stage is the Failure.Stage of every failure this package sets.
const stage = "parse"

// Invalid codes.
const (
	codeNotObject    = "not_object"
	codeNotOTLP      = "not_otlp"
	codeMissingTrace = "missing_trace_id"
	codeBadTimestamp = "bad_timestamp"
	// codeTimeOutOfRange: an event time that is well-formed but outside
	// [MinEventTime, MaxEventTime) (see timestamp.go).
	codeTimeOutOfRange = "time_out_of_range"
	codeBadDuration    = "bad_duration"
	codeBadID          = "bad_id"
	codeWrongType      = "wrong_type"
	codeTooLarge       = "too_large"
	codeAttrBudget     = "attr_budget"
	codeBadFormat      = "bad_format"
)

// Limits that keep decoding linear in the input and its memory bounded.
const (
	// maxFlattenDepth and maxFlatKey bound jsonl flattening: a deeper
	// object, or one under a longer key, becomes one AttrJSON attribute.
	maxFlattenDepth = 16
	maxFlatKey      = 256
	// maxPooledScratch caps the scratch a pooled decoder keeps.
	maxPooledScratch = 1 << 20
)

// Decoder decodes units into records. It holds a fastjson.Parser and
// scratch space; use one per worker per batch, from GetDecoder, and give it
// back with PutDecoder. A Decoder is not safe for concurrent use.
type Decoder struct {
	p  fastjson.Parser
	pr *prepared

	fix []byte // unit with lone surrogates rewritten
	num []byte // literal of the number last read
	key []byte // jsonl flattening prefix; OTLP prefixed keys

	kvStack []fjKV // object members when fastView is off

	// vsrc is the unit as fastjson copied it (from its first non-space
	// byte) and vbase the address of that copy: a string or number of the
	// parsed tree at vbase+i is vsrc[i:] (see unitView). vsrc is nil when
	// the views are off (no fast view, or not decoding a batch's unit).
	vsrc  []byte
	vbase uintptr

	maxUnit int  // largest unit parsed since GetDecoder
	badUTF8 bool // the current unit has invalid UTF-8 (replace mode)
	escapes bool // the current unit has backslash escapes
	raw     bool // fastView && !escapes: raw strings need no unescaping
	// replaced is set when a copy replaced invalid UTF-8 since the record
	// (or resource) started.
	replaced bool
	bad      failure // sticky malformed finding of the current unit

	// jsonl state of the current line.
	hits     [numFields]hit
	topUsed  uint64            // bit i: top-level value i went into a field
	usedVals []*fastjson.Value // the other values that went into a field

	// single-pass jsonl state of the current line (singlepass.go): the
	// candidates hold views into the batch's Buf, valid until it is Reset
	// (PutDecoder clears them).
	spHits [numFields]spHit
	spPos  []int32 // per attribute appended: offset of its scalar value, or -1
	spTmp  []byte  // unescaped text of a string read from scratch

	// OTLP state of the current resource and scope.
	resAttrs    []pipeline.Attr
	resReplaced bool
	service     []byte
	scopeAttrs  [2]pipeline.Attr
	nScope      int
	budget      int
}

var decoderPool sync.Pool

// GetDecoder returns a decoder for opts (nil means DefaultOptions). opts
// should have been prepared with Options.Prepare; unprepared options are
// prepared on every call, and invalid ones panic. The decoder keeps opts'
// prepared form, not opts.
func GetDecoder(opts *Options) *Decoder {
	d, _ := decoderPool.Get().(*Decoder)
	if d == nil {
		d = new(Decoder)
	}
	d.pr = opts.prepared()
	return d
}

// PutDecoder resets d and returns it to the pool. d must not be used after.
func PutDecoder(d *Decoder) {
	if d.maxUnit > maxPooledScratch {
		// The parser keeps a copy of the largest unit and a value per
		// JSON value in it: let a huge document's go.
		d.p = fastjson.Parser{}
	}
	d.maxUnit = 0
	if cap(d.fix) > maxPooledScratch {
		d.fix = nil
	}
	if cap(d.key) > maxPooledScratch {
		d.key = nil
	}
	d.fix, d.num, d.key = d.fix[:0], d.num[:0], d.key[:0]
	d.vsrc, d.vbase = nil, 0
	d.hits = [numFields]hit{}
	d.spHits = [numFields]spHit{}
	if cap(d.spPos) > maxPooledScratch {
		d.spPos = nil
	}
	d.spPos = d.spPos[:0]
	if cap(d.spTmp) > maxPooledScratch {
		d.spTmp = nil
	}
	d.spTmp = d.spTmp[:0]
	clear(d.kvStack)
	d.kvStack = d.kvStack[:0]
	clear(d.usedVals)
	d.usedVals = d.usedVals[:0]
	clear(d.resAttrs)
	d.resAttrs = d.resAttrs[:0]
	d.scopeAttrs = [2]pipeline.Attr{}
	d.service = nil
	d.pr = nil
	decoderPool.Put(d)
}

// Decode decodes unit u of b as format f and appends its records to b: one
// failed record when the unit is too large, malformed, or valid JSON that
// is not what f expects; otherwise one record per span or log record in it
// (none for a valid document without any). Every []byte of the records is a
// view into b.Buf (text taken verbatim from the unit) or b.Arena (text
// unescaped, transformed or built), valid until b is Reset. f should not be FormatAuto; if
// it is, the unit's own content decides. jsonl lines go through the single
// pass first (decodeJSONLSinglePass), and through fastjson's tree when it
// gives up.
func (d *Decoder) Decode(b *pipeline.Batch, u int, f pipeline.Format) {
	unit := &b.Units[u]
	if unit.Flags&pipeline.UnitTooLarge != 0 {
		r := b.NewRecord(u)
		r.Fail(stage, pipeline.ClassTooLarge, codeTooLarge,
			"line or document of "+strconv.FormatInt(unit.Size, 10)+" bytes is over the maximum (input.max_line_bytes / input.max_document_bytes); first "+
				strconv.Itoa(unit.End-unit.Start)+" bytes kept")
		return
	}
	if f == pipeline.FormatJSONL && singlePass && fastView && unit.Flags == 0 && d.decodeJSONLSinglePass(b, u) {
		return
	}
	d.decodeTree(b, u, f)
}

// decodeTree is Decode through fastjson's tree: every format, and the jsonl
// lines the single pass gives up on (see decodeJSONLSinglePass).
func (d *Decoder) decodeTree(b *pipeline.Batch, u int, f pipeline.Format) {
	unit := &b.Units[u]
	d.bad = failure{}
	d.badUTF8, d.escapes, d.raw = false, false, false
	data := b.Buf[unit.Start:unit.End]
	v, fl := d.parse(data, d.pr.replaceUTF8)
	if fl.code != "" {
		if unit.Flags&pipeline.UnitTruncated != 0 {
			fl = failure{codeTruncated, pipeline.CutMessage("input ended inside this document: " + fl.msg)}
		}
		d.failUnit(b, u, pipeline.ClassMalformed, fl)
		return
	}
	d.setViews(data)
	if f == pipeline.FormatAuto {
		f = detectValue(v)
	}
	switch f {
	case pipeline.FormatJSONL:
		d.decodeJSONL(b, u, v)
	case pipeline.FormatOTLP:
		d.decodeOTLP(b, u, v, len(data))
	case pipeline.FormatZipkin:
		d.decodeZipkin(b, u, v)
	default:
		d.failUnit(b, u, pipeline.ClassInvalid, failure{codeBadFormat, "unknown format " + f.String()})
	}
}

// failUnit appends the one failed record of unit u (its payload is the
// unit's bytes).
func (d *Decoder) failUnit(b *pipeline.Batch, u int, class pipeline.Class, f failure) {
	r := b.NewRecord(u)
	r.Fail(stage, class, f.code, f.msg)
}

// failValue appends a failed record for v, one part of unit u, with v's
// compact JSON as its payload.
func (d *Decoder) failValue(b *pipeline.Batch, u int, v *fastjson.Value, code, msg string) {
	r := b.NewRecord(u)
	r.Payload = d.appendArenaJSON(b, v)
	r.Fail(stage, pipeline.ClassInvalid, code, msg)
}

// checkedWalk runs walk on a whole unit and, when it finds a bad number,
// appends the unit's one malformed record.
func (d *Decoder) checkedWalk(b *pipeline.Batch, u int, v *fastjson.Value) bool {
	if d.walk(v) {
		return true
	}
	d.failUnit(b, u, pipeline.ClassMalformed, d.bad)
	return false
}

// setViews turns on unitView for the tree just parsed from data, a unit in
// the batch's Buf.
func (d *Decoder) setViews(data []byte) {
	if !fastView {
		return
	}
	pb := (*fjParser)(unsafe.Pointer(&d.p)).b
	lead := len(data) - len(pb)
	if lead < 0 || len(pb) == 0 || pb[0] != data[lead] || pb[len(pb)-1] != data[len(data)-1] {
		return
	}
	d.vsrc = data[lead:len(data):len(data)]
	d.vbase = uintptr(unsafe.Pointer(unsafe.SliceData(pb)))
}

// unitView returns the bytes of the unit that s, a non-empty slice of
// fastjson's copy of it, was parsed from: the same text as long as fastjson
// did not unescape it in place (so, for strings, only in units without
// escapes; number literals are never rewritten). ok is false when s is not
// in that copy (for example scratch or arena bytes) or views are off.
func (d *Decoder) unitView(s []byte) (view []byte, ok bool) {
	off := uintptr(unsafe.Pointer(unsafe.SliceData(s))) - d.vbase
	n := uintptr(len(s))
	if off >= uintptr(len(d.vsrc)) || n > uintptr(len(d.vsrc))-off || n == 0 {
		return nil, false
	}
	return d.vsrc[off : off+n : off+n], true
}

// strView is unitView for the text of a string (or a suffix of one).
func (d *Decoder) strView(s []byte) ([]byte, bool) {
	v, ok := d.unitView(s)
	if !ok || d.escapes && !d.verbatim(v) {
		return nil, false
	}
	return v, true
}

// verbatim reports whether v, the unitView of a string's text (or of a
// suffix of it) in a unit with escapes, is that text: fastjson unescapes a
// string with escapes in place, from its start, and always shortens it
// (scanText let through only escapes that do), so the text is the unit's own
// bytes exactly when the closing quote follows v. A '"' inside a string is
// escaped, so preceded by a backslash, which the last byte of a text without
// escapes cannot be.
func (d *Decoder) verbatim(v []byte) bool {
	end := int(uintptr(unsafe.Pointer(unsafe.SliceData(v)))-uintptr(unsafe.Pointer(unsafe.SliceData(d.vsrc)))) + len(v)
	return end < len(d.vsrc) && d.vsrc[end] == '"' && v[len(v)-1] != '\\'
}

// copy returns s, text read from the parsed tree or built in scratch, as a
// view valid until b is Reset: into the unit itself when s is verbatim text
// of it, else a copy in the arena, with invalid UTF-8 replaced when the unit
// has some (replace mode).
func (d *Decoder) copy(b *pipeline.Batch, s []byte) []byte {
	if !d.badUTF8 {
		if v, ok := d.strView(s); ok {
			return v
		}
		return b.Copy(s)
	}
	start := len(b.Arena)
	b.Arena = d.appendValidUTF8(b.Arena, s)
	return b.Arena[start:len(b.Arena):len(b.Arena)]
}

// copyLit is copy for a number literal (ASCII, and never rewritten by
// fastjson's unescaping).
func (d *Decoder) copyLit(b *pipeline.Batch, lit []byte) []byte {
	if v, ok := d.unitView(lit); ok {
		return v
	}
	return b.Copy(lit)
}

// appendValidUTF8 appends s with each invalid UTF-8 byte replaced by U+FFFD.
func (d *Decoder) appendValidUTF8(dst, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			continue
		}
		if n := validRuneLen(s[i:]); n > 0 {
			i += n
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, "\uFFFD"...)
		d.replaced = true
		i++
		start = i
	}
	return append(dst, s[start:]...)
}

// str returns the unescaped bytes of string v (valid until the next Parse),
// or nil, false if v is nil or not a string.
func (d *Decoder) str(v *fastjson.Value) ([]byte, bool) {
	if v == nil || d.typ(v) != fastjson.TypeString {
		return nil, false
	}
	return d.strBytes(v), true
}

// text copies the text of a scalar: a string's bytes, a number's literal,
// true or false. It returns nil, false for null, objects and arrays.
func (d *Decoder) text(b *pipeline.Batch, v *fastjson.Value) ([]byte, bool) {
	switch d.typ(v) {
	case fastjson.TypeString:
		return d.copy(b, d.strBytes(v)), true
	case fastjson.TypeNumber:
		return d.copyLit(b, d.number(v)), true
	case fastjson.TypeTrue:
		return b.CopyString("true"), true
	case fastjson.TypeFalse:
		return b.CopyString("false"), true
	}
	return nil, false
}

// isScalarText reports whether text would accept v.
func (d *Decoder) isScalarText(v *fastjson.Value) bool {
	switch d.typ(v) {
	case fastjson.TypeString, fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
		return true
	}
	return false
}

// hexWord lowercases the 8 bytes of w and reports whether all of them are
// hex digits. Setting bit 5 lowercases A-F and keeps 0-9; bytes below 0x20
// (which it would turn into digits) and above 0x7f are refused first, so no
// range test below carries across bytes.
func hexWord(w uint64) (uint64, bool) {
	if ((w|highs)-0x20*ones)&^w&highs != highs { // each byte in [0x20, 0x80)
		return 0, false
	}
	l := w | 0x20*ones
	digit := (l + (0x80-'0')*ones) &^ (l + (0x80-'9'-1)*ones) // '0' <= b <= '9'
	af := (l + (0x80-'a')*ones) &^ (l + (0x80-'f'-1)*ones)    // 'a' <= b <= 'f'
	return l, (digit|af)&highs == highs
}

// copyID returns a hex id in lowercase: view, s's own bytes in the unit
// (nil if none), when s is lowercase already, else a lowercased copy in the
// arena. Trace ids have 32 or 16 digits, span ids 16. An empty or all-zero
// id is missing (nil, true).
func copyID(b *pipeline.Batch, s, view []byte, trace bool) ([]byte, bool) {
	n := len(s)
	if n == 0 {
		return nil, true
	}
	if n != 16 && !(trace && n == 32) {
		return nil, false
	}
	var nonzero, upper uint64
	for p := s; len(p) >= 8; p = p[8:] {
		w := binary.LittleEndian.Uint64(p)
		l, ok := hexWord(w)
		if !ok {
			return nil, false
		}
		nonzero |= l ^ '0'*ones
		upper |= l ^ w
	}
	if nonzero == 0 {
		return nil, true
	}
	if upper == 0 && view != nil {
		return view, true
	}
	start := len(b.Arena)
	b.Arena = append(b.Arena, s...)
	id := b.Arena[start:len(b.Arena):len(b.Arena)]
	for p := id; len(p) >= 8; p = p[8:] {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)|0x20*ones)
	}
	return id, true
}

// id reads an id field: a string of hex digits. code is "" on success.
func (d *Decoder) id(b *pipeline.Batch, v *fastjson.Value, trace bool, name string) ([]byte, failure) {
	s, ok := d.str(v)
	if !ok {
		if d.typ(v) == fastjson.TypeNull {
			return nil, failure{}
		}
		return nil, failure{codeWrongType, name + " is a " + v.Type().String() + ", not a string"}
	}
	view, _ := d.strView(s)
	id, ok := copyID(b, s, view, trace)
	if !ok {
		if trace {
			return nil, failure{codeBadID, name + " is not 32 or 16 hex digits"}
		}
		return nil, failure{codeBadID, name + " is not 16 hex digits"}
	}
	return id, failure{}
}

// nanos reads a time or duration value in unit (unitAuto: by magnitude): a
// number, or a string holding a number. A string that is not a number is
// tried as RFC 3339 when rfc3339 is set, else as a Go duration. typed is
// false when v is neither a number nor a string.
func (d *Decoder) nanos(v *fastjson.Value, unit int, rfc3339 bool) (n int64, st tstatus, typed bool) {
	switch d.typ(v) {
	case fastjson.TypeNumber:
		n, st = decimalNanos(d.number(v), unit)
		return n, st, true
	case fastjson.TypeString:
		s := d.strBytes(v)
		if len(s) > 0 && (s[0] == '-' || s[0]-'0' <= 9) && validNumber(s) {
			n, st = decimalNanos(s, unit)
			return n, st, true
		}
		if rfc3339 {
			n, st = parseRFC3339(s)
			return n, st, true
		}
		n, ok := parseGoDuration(s)
		if !ok {
			return 0, tBad, true
		}
		return n, tOK, true
	}
	return 0, tBad, false
}

// eventTime reads the event time in field name (v, in unit; RFC 3339 too
// when rfc3339 is set) and judges it: wrong_type, bad_timestamp (message
// name + notTime) or time_out_of_range; 0 with the failure. Only a failure
// builds a message.
func (d *Decoder) eventTime(v *fastjson.Value, unit int, rfc3339 bool, name, notTime string) (int64, failure) {
	n, st, typed := d.nanos(v, unit, rfc3339)
	if !typed {
		return 0, failure{codeWrongType, name + " is a " + v.Type().String()}
	}
	if f := eventTimeFailure(n, st, name, notTime); f.code != "" {
		return 0, f
	}
	return n, failure{}
}

// appendAttr appends an attribute whose key is d.key (copied) and whose
// value is already in the arena.
func (d *Decoder) appendAttr(b *pipeline.Batch, typ pipeline.AttrType, val []byte) {
	b.Attrs = append(b.Attrs, pipeline.Attr{Key: d.copy(b, d.key), Value: val, Type: typ})
}

// scalarAttr converts a JSON value to an attribute value in the arena.
func (d *Decoder) scalarAttr(b *pipeline.Batch, v *fastjson.Value) (pipeline.AttrType, []byte) {
	return d.attrValue(b, v, d.typ(v))
}

// attrValue is scalarAttr for v of type t.
func (d *Decoder) attrValue(b *pipeline.Batch, v *fastjson.Value, t fastjson.Type) (pipeline.AttrType, []byte) {
	switch t {
	case fastjson.TypeString:
		return pipeline.AttrString, d.copy(b, d.strBytes(v))
	case fastjson.TypeNumber:
		return pipeline.AttrNumber, d.copyLit(b, d.number(v))
	case fastjson.TypeTrue:
		return pipeline.AttrBool, b.CopyString("true")
	case fastjson.TypeFalse:
		return pipeline.AttrBool, b.CopyString("false")
	case fastjson.TypeNull:
		return pipeline.AttrNull, nil
	}
	return pipeline.AttrJSON, d.appendArenaJSON(b, v)
}

// appendArenaJSON appends v's compact JSON to the arena and returns it.
func (d *Decoder) appendArenaJSON(b *pipeline.Batch, v *fastjson.Value) []byte {
	start := len(b.Arena)
	b.Arena = d.appendJSON(b.Arena, v)
	return b.Arena[start:len(b.Arena):len(b.Arena)]
}

// appendJSON appends v as compact JSON. Strings are re-escaped (only what
// JSON requires), numbers keep their literal (and are checked).
func (d *Decoder) appendJSON(dst []byte, v *fastjson.Value) []byte {
	switch d.typ(v) {
	case fastjson.TypeObject:
		dst = append(dst, '{')
		kvs, mark := d.members(v)
		for i := range kvs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = d.appendQuotedString(dst, kvs[i].k)
			dst = append(dst, ':')
			dst = d.appendJSON(dst, kvs[i].v)
		}
		d.release(mark)
		return append(dst, '}')
	case fastjson.TypeArray:
		dst = append(dst, '[')
		for i, c := range v.GetArray() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = d.appendJSON(dst, c)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		return d.appendQuoted(dst, d.strBytes(v))
	case fastjson.TypeNumber:
		return append(dst, d.number(v)...)
	case fastjson.TypeTrue:
		return append(dst, "true"...)
	case fastjson.TypeFalse:
		return append(dst, "false"...)
	}
	return append(dst, "null"...)
}

const hexDigits = "0123456789abcdef"

// appendQuoted appends s as a JSON string, escaping '"', '\\' and control
// bytes, and replacing invalid UTF-8 when the unit has some.
func (d *Decoder) appendQuoted(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			if !d.badUTF8 {
				i++
				continue
			}
			if n := validRuneLen(s[i:]); n > 0 {
				i += n
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			d.replaced = true
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendQuotedString is appendQuoted for a string.
func (d *Decoder) appendQuotedString(dst []byte, s string) []byte {
	return d.appendQuoted(dst, unsafe.Slice(unsafe.StringData(s), len(s)))
}

// finish sets the record's UTF-8 flag after its strings were copied.
func (d *Decoder) finish(r *pipeline.Record) {
	if d.replaced {
		r.Flags |= pipeline.FlagUTF8Replaced
	}
}

// missingTrace applies the missing trace id policy of r's signal to r
// (r.Signal must be set).
func (d *Decoder) missingTrace(r *pipeline.Record) {
	switch d.pr.missingFor(r.Signal) {
	case missingInvalid:
		r.Fail(stage, pipeline.ClassInvalid, codeMissingTrace, "no trace id")
	case missingFilter:
		r.Filtered = true
	}
}

// kindName normalizes a span kind: OTLP numbers 1-5, and names with or
// without the SPAN_KIND_ prefix in any case. "" when unknown or unspecified.
func kindName(s []byte) string {
	if len(s) == 1 {
		switch s[0] {
		case '1':
			return "internal"
		case '2':
			return "server"
		case '3':
			return "client"
		case '4':
			return "producer"
		case '5':
			return "consumer"
		}
		return ""
	}
	if len(s) > 10 && equalFold(s[:10], "span_kind_") {
		s = s[10:]
	}
	for _, k := range [...]string{"server", "client", "producer", "consumer", "internal"} {
		if equalFold(s, k) {
			return k
		}
	}
	return ""
}

// statusName normalizes a span status: OTLP numbers 0-2 and names with or
// without the STATUS_CODE_ prefix in any case. "" when unknown.
func statusName(s []byte) string {
	if len(s) == 1 {
		switch s[0] {
		case '0':
			return "unset"
		case '1':
			return "ok"
		case '2':
			return "error"
		}
		return ""
	}
	if len(s) > 12 && equalFold(s[:12], "status_code_") {
		s = s[12:]
	}
	for _, k := range [...]string{"unset", "ok", "error"} {
		if equalFold(s, k) {
			return k
		}
	}
	return ""
}

// equalFold compares s with the lowercase ASCII word w, ignoring case.
func equalFold(s []byte, w string) bool {
	if len(s) != len(w) {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

// enumText returns the bytes a kind or status is read from: a string's
// bytes or a number's literal.
func (d *Decoder) enumText(v *fastjson.Value) []byte {
	switch d.typ(v) {
	case fastjson.TypeString:
		return d.strBytes(v)
	case fastjson.TypeNumber:
		return d.number(v)
	}
	return nil
}
