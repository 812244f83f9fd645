package parsers

import (
	"math/bits"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/tracepipe/tracepipe/pipeline"
)

// jsonl: one JSON object per line, fields found by the candidate paths of
// Options.JSONL.
//
// Signal rule: a line is a span when it has a (valid, non-empty) span id and
// a duration field; otherwise it is a log. Name is the name field; a log
// without one takes the message field. Severity is read for logs only; kind
// and status only when their value is recognized (so an HTTP "status": 200
// stays an attribute). A line without a time field gets Time 0.
//
// Times: numbers, and strings holding a number, are Unix time in
// Options.TimeUnit (by magnitude under "auto": DefaultTimeUnitRule); other
// strings are RFC 3339. Durations: numbers and numeric strings are in the
// unit of their DurationField (the default "duration" and "event.duration"
// are nanoseconds, as in Datadog spans and ECS), other strings Go duration
// syntax ("12.5ms"). Ids: hex strings, any case, stored lowercase; an empty
// or all-zero id is missing; a number is wrong_type.
//
// Every value that did not go into a record field becomes an attribute:
// nested objects are flattened with dotted keys (one prefix buffer, cut back
// after each level), down to maxFlattenDepth levels and maxFlatKey bytes of
// key, past which the object is kept whole as AttrJSON; arrays are AttrJSON.
//
// Number literals are checked as the values are used (every value is either
// a field, an attribute, or, when the record fails, walked), so a valid line
// is read once after Parse.

// hit is the best candidate found so far for one field.
type hit struct {
	v    *fastjson.Value
	prio uint32
	top  int32 // index of the top-level key v is, or -1 when nested
	unit int8
	conv uint8
}

const noHit = ^uint32(0)

func (d *Decoder) decodeJSONL(b *pipeline.Batch, u int, root *fastjson.Value) {
	if d.typ(root) != fastjson.TypeObject {
		if d.checkedWalk(b, u, root) {
			d.failUnit(b, u, pipeline.ClassInvalid, failure{codeNotObject, "a jsonl line must be an object, not a " + root.Type().String()})
		}
		return
	}

	// Pass 1: find each field's best candidate.
	for i := range d.hits {
		d.hits[i] = hit{prio: noHit, top: -1}
	}
	kvs, mark := d.members(root)
	defer d.release(mark)
	keys := &d.pr.keys
	for i := range kvs {
		if s := keys.lookup(kvs[i].k); s != nil && len(s.entries) > 0 {
			d.match(s.entries, kvs[i].v, int32(i))
		}
	}

	r := b.NewRecord(u)
	d.replaced = false
	d.topUsed = 0
	clear(d.usedVals)
	d.usedVals = d.usedVals[:0]
	arenaStart := len(b.Arena)
	var fail failure

	h := &d.hits[fTrace]
	if h.v != nil {
		r.TraceID, fail = d.fieldID(b, h, true, "trace id")
		d.use(h)
	}
	if h = &d.hits[fSpan]; h.v != nil {
		var f failure
		r.SpanID, f = d.fieldID(b, h, false, "span id")
		fail = firstFailure(fail, f)
		d.use(h)
	}
	if h = &d.hits[fParent]; h.v != nil {
		var f failure
		r.ParentID, f = d.id(b, h.v, false, "parent span id")
		fail = firstFailure(fail, f)
		d.use(h)
	}
	const notTime = " is neither a Unix time nor RFC 3339"
	hasTime := false
	if h = &d.hits[fTime]; h.v != nil {
		var f failure
		r.Time, f = d.eventTime(h.v, d.pr.timeUnit, true, "time", notTime)
		fail = firstFailure(fail, f)
		hasTime = true
		d.use(h)
	}
	// A span start is the time when there is no time field, and with an
	// end the duration when there is no duration field (startEnd).
	hs, he, hd := &d.hits[fStart], &d.hits[fEnd], &d.hits[fDuration]
	pair := hs.v != nil && he.v != nil && hd.v == nil
	var start int64
	startOK := false
	if hs.v != nil && (!hasTime || pair) {
		var f failure
		start, f = d.eventTime(hs.v, d.pr.timeUnit, true, "start time", notTime)
		fail = firstFailure(fail, f)
		startOK = f.code == ""
		if !hasTime {
			r.Time = start
		}
		d.use(hs)
	}
	hasDuration := false
	if pair {
		end, f := d.eventTime(he.v, d.pr.timeUnit, true, "end time", notTime)
		switch {
		case f.code != "":
			fail = firstFailure(fail, f)
		case startOK && end < start:
			fail = firstFailure(fail, failure{codeBadDuration, "end time is before start time"})
		case startOK:
			r.Duration = end - start
		}
		hasDuration = true
		d.use(he)
	}
	if h = hd; h.v != nil {
		n, st, typed := d.nanos(h.v, int(h.unit), false)
		ok := st == tOK
		switch {
		case !typed:
			fail = firstFailure(fail, failure{codeWrongType, "duration is a " + h.v.Type().String()})
		case !ok || n < 0:
			fail = firstFailure(fail, failure{codeBadDuration, "duration is not a non-negative number or Go duration"})
		}
		if ok && n >= 0 {
			r.Duration = n
		}
		hasDuration = true
		d.use(h)
	}
	if len(r.SpanID) > 0 && hasDuration {
		r.Signal = pipeline.SignalSpan
	} else {
		r.Signal = pipeline.SignalLog
	}

	if fail.code != "" {
		d.failJSONL(b, u, r, root, arenaStart, fail)
		return
	}
	if len(r.TraceID) == 0 {
		d.missingTrace(r)
		if r.Failed() {
			d.failJSONL(b, u, r, root, arenaStart, failure{})
			return
		}
	}

	if h = &d.hits[fService]; h.v != nil {
		r.Service, _ = d.text(b, h.v)
		d.use(h)
	}
	if h = &d.hits[fName]; h.v != nil {
		r.Name, _ = d.text(b, h.v)
		d.use(h)
	} else if h = &d.hits[fMessage]; h.v != nil && r.Signal == pipeline.SignalLog {
		r.Name, _ = d.text(b, h.v)
		d.use(h)
	}
	if h = &d.hits[fSeverity]; h.v != nil && r.Signal == pipeline.SignalLog {
		if name := d.severityConv(h); name != "" {
			r.Severity = b.CopyString(name)
		} else {
			r.Severity, _ = d.text(b, h.v)
		}
		d.use(h)
	}
	if h = &d.hits[fKind]; h.v != nil {
		if k := kindName(d.enumText(h.v)); k != "" {
			r.Kind = b.CopyString(k)
			d.use(h)
		}
	}
	if h = &d.hits[fStatus]; h.v != nil {
		if s := statusName(d.enumText(h.v)); s != "" {
			r.Status = b.CopyString(s)
			d.use(h)
		}
	}

	// Pass 2: everything else becomes attributes.
	attrStart := len(b.Attrs)
	for i := range kvs {
		v := kvs[i].v
		if i < 64 {
			if d.topUsed&(1<<i) != 0 {
				continue
			}
		} else if d.usedValue(v) {
			continue
		}
		t := d.typ(v)
		k := kvs[i].k
		kb := unsafe.Slice(unsafe.StringData(k), len(k))
		if t == fastjson.TypeObject {
			if s := keys.lookup(k); s != nil && s.ctr != ctrNone && d.hasMembers(v) {
				d.container(b, v, s.ctr)
				continue
			}
		}
		// A key spelling a container member with dots is renamed as the
		// member would be: built in d.key (and copied) for a resource one.
		built := false
		if rest, ok := hoistRename(kb); ok {
			kb = rest
		} else if rest, ok := resRename(kb); ok {
			d.key = append(append(d.key[:0], resourcePrefix+"."...), rest...)
			built = true
		}
		if t != fastjson.TypeObject {
			// A top-level scalar or array: its key is the member's own.
			typ, val := d.attrValue(b, v, t)
			if built {
				d.appendAttr(b, typ, val)
			} else {
				b.Attrs = append(b.Attrs, pipeline.Attr{Key: d.copy(b, kb), Value: val, Type: typ})
			}
			continue
		}
		if !built {
			d.key = append(d.key[:0], kb...)
		}
		d.flatten(b, v, 0)
	}

	if d.bad.code != "" {
		b.Attrs = b.Attrs[:attrStart]
		b.Arena = b.Arena[:arenaStart]
		*r = pipeline.Record{Unit: int32(u)}
		r.Fail(stage, pipeline.ClassMalformed, d.bad.code, d.bad.msg)
		return
	}
	if len(b.Attrs) > attrStart {
		r.Attrs = b.Attrs[attrStart:len(b.Attrs):len(b.Attrs)]
	}
	d.finish(r)
}

// failJSONL fails r (already failed by the policy when f is empty). The
// whole line is walked first: a bad number makes it malformed instead.
func (d *Decoder) failJSONL(b *pipeline.Batch, u int, r *pipeline.Record, root *fastjson.Value, arenaStart int, f failure) {
	if d.bad.code != "" || !d.walk(root) {
		b.Arena = b.Arena[:arenaStart]
		*r = pipeline.Record{Unit: int32(u)}
		r.Fail(stage, pipeline.ClassMalformed, d.bad.code, d.bad.msg)
		return
	}
	if f.code != "" {
		r.Fail(stage, pipeline.ClassInvalid, f.code, f.msg)
	}
}

func firstFailure(a, b failure) failure {
	if a.code != "" {
		return a
	}
	return b
}

// match records the candidates among es that top-level value v (the
// idx-th key) satisfies better than the best so far.
func (d *Decoder) match(es []fieldEntry, v *fastjson.Value, idx int32) {
	for i := range es {
		e := &es[i]
		h := &d.hits[e.field]
		if e.prio >= h.prio {
			continue
		}
		t, top := v, idx
		if e.rest != "" {
			if t = resolve(v, e.rest); t == nil {
				continue
			}
			top = -1
		}
		if d.typ(t) == fastjson.TypeNull {
			continue
		}
		switch e.field {
		case fService, fName, fMessage, fSeverity, fKind, fStatus:
			if !d.isScalarText(t) {
				continue
			}
		case fStart, fEnd:
			// Only a string or number is taken as a span's start or
			// end; an object or a boolean so named stays an attribute.
			if tt := d.typ(t); tt != fastjson.TypeString && tt != fastjson.TypeNumber {
				continue
			}
		}
		*h = hit{v: t, prio: e.prio, top: top, unit: e.unit, conv: e.conv}
	}
}

// resolve finds path inside object v: the literal key first, then each
// split at a dot, outermost first. Nulls do not count.
func resolve(v *fastjson.Value, path string) *fastjson.Value {
	o := v.GetObject()
	if o == nil {
		return nil
	}
	if c := o.Get(path); c != nil && c.Type() != fastjson.TypeNull {
		return c
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		if c := o.Get(path[:i]); c != nil {
			if r := resolve(c, path[i+1:]); r != nil {
				return r
			}
		}
	}
	return nil
}

// use marks the value of h as gone into a field.
func (d *Decoder) use(h *hit) {
	if h.top >= 0 && h.top < 64 {
		d.topUsed |= 1 << h.top
		return
	}
	d.usedVals = append(d.usedVals, h.v)
}

func (d *Decoder) usedValue(v *fastjson.Value) bool {
	for _, u := range d.usedVals {
		if u == v {
			return true
		}
	}
	return false
}

// flatten appends v as attributes under the key in d.key.
func (d *Decoder) flatten(b *pipeline.Batch, v *fastjson.Value, depth int) {
	if t := d.typ(v); t != fastjson.TypeObject {
		typ, val := d.attrValue(b, v, t)
		d.appendAttr(b, typ, val)
		return
	}
	kvs, mark := d.members(v)
	if len(kvs) == 0 || depth >= maxFlattenDepth || len(d.key) > maxFlatKey {
		d.release(mark)
		d.appendAttr(b, pipeline.AttrJSON, d.appendArenaJSON(b, v))
		return
	}
	n := len(d.key)
	for i := range kvs {
		c := kvs[i].v
		if len(d.usedVals) > 0 && d.usedValue(c) {
			continue
		}
		d.key = append(d.key[:n], '.')
		d.key = append(d.key, kvs[i].k...)
		d.flatten(b, c, depth+1)
	}
	d.key = d.key[:n]
	d.release(mark)
}

// hasMembers reports whether object v has a member.
func (d *Decoder) hasMembers(v *fastjson.Value) bool {
	kvs, mark := d.members(v)
	d.release(mark)
	return len(kvs) > 0
}

// container appends the members of v, the object of a top-level container
// key (of kind ctr, not empty), as attributes: under their own names
// (ctrHoist), or prefixed "resource." with an "attributes" object's members
// taken as the container's own (ctrRes). Nested objects are flattened at
// the depth they are in the line.
func (d *Decoder) container(b *pipeline.Batch, v *fastjson.Value, ctr uint8) {
	kvs, mark := d.members(v)
	for i := range kvs {
		c := kvs[i].v
		if len(d.usedVals) > 0 && d.usedValue(c) {
			continue
		}
		k := kvs[i].k
		kb := unsafe.Slice(unsafe.StringData(k), len(k))
		t := d.typ(c)
		if ctr == ctrHoist {
			if t != fastjson.TypeObject {
				typ, val := d.attrValue(b, c, t)
				b.Attrs = append(b.Attrs, pipeline.Attr{Key: d.copy(b, kb), Value: val, Type: typ})
				continue
			}
			d.key = append(d.key[:0], kb...)
			d.flatten(b, c, 1)
			continue
		}
		d.key = append(d.key[:0], resourcePrefix...)
		switch {
		case k == attrsKeyPrefix && t == fastjson.TypeObject && d.hasMembers(c):
			// The resource's attributes: flattened under "resource".
		case len(k) > len(attrsKeyPrefix)+1 && k[:len(attrsKeyPrefix)+1] == attrsKeyPrefix+".":
			d.key = append(append(d.key, '.'), k[len(attrsKeyPrefix)+1:]...)
		default:
			d.key = append(append(d.key, '.'), k...)
		}
		d.flatten(b, c, 1)
	}
	d.release(mark)
}

// fieldID reads the id of candidate h: hex, or decimal for a convDecimalID
// path. The failure's code is "" on success.
func (d *Decoder) fieldID(b *pipeline.Batch, h *hit, trace bool, name string) ([]byte, failure) {
	if h.conv != convDecimalID {
		return d.id(b, h.v, trace, name)
	}
	var id []byte
	ok := false
	switch d.typ(h.v) {
	case fastjson.TypeString:
		s := d.strBytes(h.v)
		view, _ := d.strView(s)
		id, ok = decimalID(b, s, view, trace, true)
	case fastjson.TypeNumber:
		id, ok = decimalID(b, d.number(h.v), nil, trace, false)
	default:
		return nil, failure{codeWrongType, name + " is a " + h.v.Type().String() + ", not a string or number"}
	}
	if !ok {
		if trace {
			return nil, failure{codeBadID, name + " is not a decimal 64-bit id or 32 hex digits"}
		}
		return nil, failure{codeBadID, name + " is not a decimal 64-bit id"}
	}
	return id, failure{}
}

// severityConv returns the short name of a convSeverityNumber candidate's
// number, or "" (the value is then taken as text).
func (d *Decoder) severityConv(h *hit) string {
	if h.conv != convSeverityNumber {
		return ""
	}
	return severityName(d.enumText(h.v))
}

// decimalID reads s, an id written as a decimal integer of at most 64
// bits, into lowercase hex in the arena: 16 digits for a span id, and for a
// trace id 16 zeros and then those 16 (the 128-bit id whose high half is
// zero, the form OpenTelemetry gives a 64-bit trace id). A trace id of 32
// characters in a string (hexOK) is read as hex instead, see copyID (view is
// s's own bytes in the unit, or nil). An empty or zero id is missing (nil,
// true); ok is false when s is neither.
func decimalID(b *pipeline.Batch, s, view []byte, trace, hexOK bool) ([]byte, bool) {
	if trace && hexOK && len(s) == 32 {
		return copyID(b, s, view, true)
	}
	if len(s) == 0 {
		return nil, true
	}
	if len(s) > 20 {
		return nil, false
	}
	var n uint64
	for _, c := range s {
		if c-'0' > 9 {
			return nil, false
		}
		hi, lo := bits.Mul64(n, 10)
		lo, carry := bits.Add64(lo, uint64(c-'0'), 0)
		if hi != 0 || carry != 0 {
			return nil, false
		}
		n = lo
	}
	if n == 0 {
		return nil, true
	}
	start := len(b.Arena)
	if trace {
		b.Arena = append(b.Arena, "0000000000000000"...)
	}
	for shift := 60; shift >= 0; shift -= 4 {
		b.Arena = append(b.Arena, hexDigits[n>>uint(shift)&0xF])
	}
	return b.Arena[start:len(b.Arena):len(b.Arena)], true
}
