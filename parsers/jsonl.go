package parsers

import (
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
		if es := keys.lookup(kvs[i].k); es != nil {
			d.match(es, kvs[i].v, int32(i))
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
		r.TraceID, fail = d.id(b, h.v, true, "trace id")
		d.use(h)
	}
	if h = &d.hits[fSpan]; h.v != nil {
		var f failure
		r.SpanID, f = d.id(b, h.v, false, "span id")
		fail = firstFailure(fail, f)
		d.use(h)
	}
	if h = &d.hits[fParent]; h.v != nil {
		var f failure
		r.ParentID, f = d.id(b, h.v, false, "parent span id")
		fail = firstFailure(fail, f)
		d.use(h)
	}
	if h = &d.hits[fTime]; h.v != nil {
		var f failure
		r.Time, f = d.eventTime(h.v, d.pr.timeUnit, true, "time", " is neither a Unix time nor RFC 3339")
		fail = firstFailure(fail, f)
		d.use(h)
	}
	hasDuration := false
	if h = &d.hits[fDuration]; h.v != nil {
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
		r.Severity, _ = d.text(b, h.v)
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
		if t := d.typ(v); t != fastjson.TypeObject {
			// A top-level scalar or array: its key is the member's own.
			k := kvs[i].k
			typ, val := d.attrValue(b, v, t)
			b.Attrs = append(b.Attrs, pipeline.Attr{Key: d.copy(b, unsafe.Slice(unsafe.StringData(k), len(k))), Value: val, Type: typ})
			continue
		}
		d.key = append(d.key[:0], kvs[i].k...)
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
		}
		*h = hit{v: t, prio: e.prio, top: top, unit: e.unit}
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
