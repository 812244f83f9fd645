package parsers

import (
	"github.com/valyala/fastjson"

	"github.com/tracepipe/tracepipe/pipeline"
)

// otlp: OTLP/JSON export requests, traces (resourceSpans / scopeSpans or
// the legacy instrumentationLibrarySpans / spans) and logs (resourceLogs /
// scopeLogs or instrumentationLibraryLogs / logRecords), one request per
// unit: a line of the Collector's file exporter or a whole pretty document.
//
// Each record carries, in order: the resource attributes except service.name
// (which is Service) with keys prefixed "resource.", "otel.scope.name" and
// "otel.scope.version" when non-empty, then its own attributes, then
// "otel.status_description" (spans) or "event.name" (logs) when non-empty.
// Attribute values: stringValue and bytesValue (base64 text) are AttrString,
// intValue and doubleValue AttrNumber with their literal text, boolValue
// AttrBool, arrayValue and kvlistValue AttrJSON in plain JSON (["a",1],
// {"k":"v"}), an empty value AttrNull. Events and links are checked, not kept.
//
// Resource attributes are repeated on every record of the resource, which
// could make a small hostile document expand quadratically: a unit may
// attach at most its own length in resource attributes in total; records
// past that fail with class too_large, code "attr_budget".

func (d *Decoder) decodeOTLP(b *pipeline.Batch, u int, root *fastjson.Value, size int) {
	if !d.checkedWalk(b, u, root) {
		return
	}
	o := root.GetObject()
	if o == nil {
		d.failUnit(b, u, pipeline.ClassInvalid, failure{codeNotObject, "an OTLP request must be an object, not a " + root.Type().String()})
		return
	}
	d.budget = size
	found := false
	for _, logs := range [2]bool{false, true} {
		name := "resourceSpans"
		if logs {
			name = "resourceLogs"
		}
		v := o.Get(name)
		if v == nil || v.Type() == fastjson.TypeNull {
			continue
		}
		found = true
		list := v.GetArray()
		if list == nil && v.Type() != fastjson.TypeArray {
			d.failValue(b, u, v, codeWrongType, name+" is not an array")
			continue
		}
		for _, res := range list {
			d.otlpResource(b, u, res, logs)
		}
	}
	if !found {
		d.failUnit(b, u, pipeline.ClassInvalid, failure{codeNotOTLP, "no resourceSpans or resourceLogs"})
	}
}

// getEither returns o's value for key a, else for key b; nulls are absent.
func getEither(o *fastjson.Object, a, b string) *fastjson.Value {
	if v := o.Get(a); v != nil && v.Type() != fastjson.TypeNull {
		return v
	}
	if v := o.Get(b); v != nil && v.Type() != fastjson.TypeNull {
		return v
	}
	return nil
}

func (d *Decoder) otlpResource(b *pipeline.Batch, u int, res *fastjson.Value, logs bool) {
	ro := res.GetObject()
	if ro == nil {
		d.failValue(b, u, res, codeWrongType, "a resource entry is not an object")
		return
	}
	clear(d.resAttrs)
	d.resAttrs = d.resAttrs[:0]
	d.service = nil
	d.replaced = false
	if r := ro.Get("resource"); r != nil {
		if attrs := r.Get("attributes"); attrs != nil {
			for _, kv := range attrs.GetArray() {
				ko := kv.GetObject()
				if ko == nil {
					continue
				}
				key, ok := d.str(ko.Get("key"))
				if !ok {
					continue
				}
				val := ko.Get("value")
				if string(key) == "service.name" && val != nil {
					if s, ok := d.str(val.Get("stringValue")); ok {
						d.service = d.copy(b, s)
						continue
					}
				}
				d.key = append(append(d.key[:0], "resource."...), key...)
				typ, v := d.anyValue(b, val)
				d.resAttrs = append(d.resAttrs, pipeline.Attr{Key: d.copy(b, d.key), Value: v, Type: typ})
			}
		}
	}
	d.resReplaced = d.replaced

	scopesKey, legacyKey := "scopeSpans", "instrumentationLibrarySpans"
	if logs {
		scopesKey, legacyKey = "scopeLogs", "instrumentationLibraryLogs"
	}
	scopes := getEither(ro, scopesKey, legacyKey)
	if scopes == nil {
		return
	}
	if scopes.Type() != fastjson.TypeArray {
		d.failValue(b, u, scopes, codeWrongType, scopesKey+" is not an array")
		return
	}
	for _, sc := range scopes.GetArray() {
		d.otlpScope(b, u, sc, logs)
	}
}

func (d *Decoder) otlpScope(b *pipeline.Batch, u int, sc *fastjson.Value, logs bool) {
	so := sc.GetObject()
	if so == nil {
		d.failValue(b, u, sc, codeWrongType, "a scope entry is not an object")
		return
	}
	d.nScope = 0
	d.replaced = d.resReplaced
	if s := getEither(so, "scope", "instrumentationLibrary"); s != nil {
		if name, ok := d.str(s.Get("name")); ok && len(name) > 0 {
			d.scopeAttrs[d.nScope] = pipeline.Attr{Key: b.CopyString("otel.scope.name"), Value: d.copy(b, name), Type: pipeline.AttrString}
			d.nScope++
		}
		if ver, ok := d.str(s.Get("version")); ok && len(ver) > 0 {
			d.scopeAttrs[d.nScope] = pipeline.Attr{Key: b.CopyString("otel.scope.version"), Value: d.copy(b, ver), Type: pipeline.AttrString}
			d.nScope++
		}
	}
	d.resReplaced = d.replaced
	itemsKey := "spans"
	if logs {
		itemsKey = "logRecords"
	}
	items := so.Get(itemsKey)
	if items == nil || items.Type() == fastjson.TypeNull {
		return
	}
	if items.Type() != fastjson.TypeArray {
		d.failValue(b, u, items, codeWrongType, itemsKey+" is not an array")
		return
	}
	for _, it := range items.GetArray() {
		if logs {
			d.otlpLog(b, u, it)
		} else {
			d.otlpSpan(b, u, it)
		}
	}
}

// otlpRecord starts a record for item, appending the resource and scope
// attributes from attrStart on; ok is false (and the failed record
// appended) when item is not an object or the attribute budget is spent.
func (d *Decoder) otlpRecord(b *pipeline.Batch, u int, item *fastjson.Value, sig pipeline.Signal) (*pipeline.Record, int, bool) {
	if d.typ(item) != fastjson.TypeObject {
		d.failValue(b, u, item, codeNotObject, "a "+sig.String()+" must be an object, not a "+item.Type().String())
		return nil, 0, false
	}
	d.budget -= len(d.resAttrs)
	if d.budget < 0 {
		r := b.NewRecord(u)
		r.Payload = d.appendArenaJSON(b, item)
		r.Fail(stage, pipeline.ClassTooLarge, codeAttrBudget, "resource attributes times records exceed the unit's size")
		return nil, 0, false
	}
	r := b.NewRecord(u)
	r.Signal = sig
	r.Service = d.service
	d.replaced = d.resReplaced
	attrStart := len(b.Attrs)
	b.Attrs = append(b.Attrs, d.resAttrs...)
	b.Attrs = append(b.Attrs, d.scopeAttrs[:d.nScope]...)
	return r, attrStart, true
}

// otlpEnd closes a record: on failure its attributes are dropped and its
// payload is item's JSON; the policy applies to a missing trace id.
func (d *Decoder) otlpEnd(b *pipeline.Batch, r *pipeline.Record, item *fastjson.Value, attrStart int, f failure) {
	if f.code == "" && len(r.TraceID) == 0 {
		d.missingTrace(r)
	}
	if f.code != "" || r.Failed() {
		clear(b.Attrs[attrStart:])
		b.Attrs = b.Attrs[:attrStart]
		r.Payload = d.appendArenaJSON(b, item)
		if f.code != "" {
			r.Fail(stage, pipeline.ClassInvalid, f.code, f.msg)
		}
		return
	}
	if len(b.Attrs) > attrStart {
		r.Attrs = b.Attrs[attrStart:len(b.Attrs):len(b.Attrs)]
	}
	d.finish(r)
}

// span fields, first occurrence wins.
type otlpSpanFields struct {
	trace, span, parent, name, kind, start, end, attrs, status *fastjson.Value
}

func (d *Decoder) otlpSpan(b *pipeline.Batch, u int, item *fastjson.Value) {
	r, attrStart, ok := d.otlpRecord(b, u, item, pipeline.SignalSpan)
	if !ok {
		return
	}
	var fs otlpSpanFields
	kvs, mark := d.members(item)
	for i := range kvs {
		v := kvs[i].v
		var p **fastjson.Value
		switch kvs[i].k {
		case "traceId":
			p = &fs.trace
		case "spanId":
			p = &fs.span
		case "parentSpanId":
			p = &fs.parent
		case "name":
			p = &fs.name
		case "kind":
			p = &fs.kind
		case "startTimeUnixNano":
			p = &fs.start
		case "endTimeUnixNano":
			p = &fs.end
		case "attributes":
			p = &fs.attrs
		case "status":
			p = &fs.status
		default:
			continue
		}
		if *p == nil && d.typ(v) != fastjson.TypeNull {
			*p = v
		}
	}
	d.release(mark)
	var fail, f failure
	if fs.trace != nil {
		r.TraceID, fail = d.id(b, fs.trace, true, "traceId")
	}
	if fs.span != nil {
		r.SpanID, f = d.id(b, fs.span, false, "spanId")
		fail = firstFailure(fail, f)
	}
	if fs.parent != nil {
		r.ParentID, f = d.id(b, fs.parent, false, "parentSpanId")
		fail = firstFailure(fail, f)
	}
	var start, end int64
	if fs.start != nil {
		start, f = d.otlpTime(fs.start, "startTimeUnixNano")
		fail = firstFailure(fail, f)
	}
	if fs.end != nil {
		end, f = d.otlpTime(fs.end, "endTimeUnixNano")
		fail = firstFailure(fail, f)
	}
	r.Time = start
	if fs.end != nil && end > start {
		r.Duration = end - start
	}
	if fs.name != nil {
		r.Name, _ = d.text(b, fs.name)
	}
	if fs.kind != nil {
		if k := kindName(d.enumText(fs.kind)); k != "" {
			r.Kind = b.CopyString(k)
		}
	}
	status := "unset"
	var statusMsg []byte
	if fs.status != nil {
		if c := fs.status.Get("code"); c != nil {
			if s := statusName(d.enumText(c)); s != "" {
				status = s
			}
		}
		statusMsg, _ = d.str(fs.status.Get("message"))
	}
	r.Status = b.CopyString(status)
	if fail.code == "" {
		if fs.attrs != nil {
			d.otlpAttrs(b, fs.attrs)
		}
		if len(statusMsg) > 0 {
			b.Attrs = append(b.Attrs, pipeline.Attr{Key: b.CopyString("otel.status_description"), Value: d.copy(b, statusMsg), Type: pipeline.AttrString})
		}
	}
	d.otlpEnd(b, r, item, attrStart, fail)
}

// log record fields, first occurrence wins.
type otlpLogFields struct {
	trace, span, time, observed, sevText, sevNum, body, attrs, event *fastjson.Value
}

func (d *Decoder) otlpLog(b *pipeline.Batch, u int, item *fastjson.Value) {
	r, attrStart, ok := d.otlpRecord(b, u, item, pipeline.SignalLog)
	if !ok {
		return
	}
	var fs otlpLogFields
	kvs, mark := d.members(item)
	for i := range kvs {
		v := kvs[i].v
		var p **fastjson.Value
		switch kvs[i].k {
		case "traceId":
			p = &fs.trace
		case "spanId":
			p = &fs.span
		case "timeUnixNano":
			p = &fs.time
		case "observedTimeUnixNano":
			p = &fs.observed
		case "severityText":
			p = &fs.sevText
		case "severityNumber":
			p = &fs.sevNum
		case "body":
			p = &fs.body
		case "attributes":
			p = &fs.attrs
		case "eventName":
			p = &fs.event
		default:
			continue
		}
		if *p == nil && d.typ(v) != fastjson.TypeNull {
			*p = v
		}
	}
	d.release(mark)
	var fail, f failure
	if fs.trace != nil {
		r.TraceID, fail = d.id(b, fs.trace, true, "traceId")
	}
	if fs.span != nil {
		r.SpanID, f = d.id(b, fs.span, false, "spanId")
		fail = firstFailure(fail, f)
	}
	var t int64
	if fs.time != nil {
		t, f = d.otlpTime(fs.time, "timeUnixNano")
		fail = firstFailure(fail, f)
	}
	if t == 0 && fs.observed != nil {
		t, f = d.otlpTime(fs.observed, "observedTimeUnixNano")
		fail = firstFailure(fail, f)
	}
	r.Time = t
	if s, ok := d.str(fs.sevText); ok && len(s) > 0 {
		r.Severity = d.copy(b, s)
	} else if fs.sevNum != nil {
		if name := severityName(d.enumText(fs.sevNum)); name != "" {
			r.Severity = b.CopyString(name)
		}
	}
	if fs.body != nil {
		if s, ok := d.str(fs.body.Get("stringValue")); ok {
			r.Name = d.copy(b, s)
		} else if fs.body.Type() == fastjson.TypeObject && fs.body.GetObject().Len() > 0 {
			start := len(b.Arena)
			b.Arena = d.appendAnyJSON(b.Arena, fs.body)
			r.Name = b.Arena[start:len(b.Arena):len(b.Arena)]
		}
	}
	if fail.code == "" {
		if fs.attrs != nil {
			d.otlpAttrs(b, fs.attrs)
		}
		if ev, ok := d.str(fs.event); ok && len(ev) > 0 {
			b.Attrs = append(b.Attrs, pipeline.Attr{Key: b.CopyString("event.name"), Value: d.copy(b, ev), Type: pipeline.AttrString})
		}
	}
	d.otlpEnd(b, r, item, attrStart, fail)
}

// otlpTime reads a Unix-nanosecond time, a string of digits or a number.
func (d *Decoder) otlpTime(v *fastjson.Value, name string) (int64, failure) {
	return d.eventTime(v, unitNS, false, name, " is not Unix nanoseconds")
}

// severityName maps an OTLP severityNumber (1-24) to its short name.
func severityName(s []byte) string {
	n, ok := atoiN(s)
	if !ok || len(s) > 2 || n < 1 || n > 24 {
		return ""
	}
	names := [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	sub := [...]string{"", "2", "3", "4"}
	return names[(n-1)/4] + sub[(n-1)%4]
}

// otlpAttrs appends the attributes of an OTLP KeyValue list.
func (d *Decoder) otlpAttrs(b *pipeline.Batch, list *fastjson.Value) {
	for _, kv := range list.GetArray() {
		ko := kv.GetObject()
		if ko == nil {
			continue
		}
		key, ok := d.str(ko.Get("key"))
		if !ok {
			continue
		}
		k := d.copy(b, key)
		typ, v := d.anyValue(b, ko.Get("value"))
		b.Attrs = append(b.Attrs, pipeline.Attr{Key: k, Value: v, Type: typ})
	}
}

// anyValue converts an OTLP AnyValue to an attribute value in the arena.
func (d *Decoder) anyValue(b *pipeline.Batch, v *fastjson.Value) (pipeline.AttrType, []byte) {
	o := v.GetObject()
	if o == nil {
		if v == nil || d.typ(v) == fastjson.TypeNull {
			return pipeline.AttrNull, nil
		}
		return d.scalarAttr(b, v)
	}
	var typ pipeline.AttrType
	var out []byte
	kvs, mark := d.members(v)
	for i := 0; i < len(kvs) && typ == 0; i++ {
		c := kvs[i].v
		switch kvs[i].k {
		case "stringValue", "bytesValue":
			if s, ok := d.str(c); ok {
				typ, out = pipeline.AttrString, d.copy(b, s)
			}
		case "boolValue":
			switch d.typ(c) {
			case fastjson.TypeTrue, fastjson.TypeFalse:
				typ, out = d.scalarAttr(b, c)
			}
		case "intValue", "doubleValue":
			switch d.typ(c) {
			case fastjson.TypeNumber:
				typ, out = pipeline.AttrNumber, d.copyLit(b, d.number(c))
			case fastjson.TypeString:
				s := d.strBytes(c)
				if validNumber(s) {
					typ, out = pipeline.AttrNumber, d.copy(b, s)
				} else {
					typ, out = pipeline.AttrString, d.copy(b, s)
				}
			}
		case "arrayValue", "kvlistValue":
			typ = pipeline.AttrJSON
			start := len(b.Arena)
			b.Arena = d.appendAnyJSON(b.Arena, v)
			out = b.Arena[start:len(b.Arena):len(b.Arena)]
		}
	}
	d.release(mark)
	if typ == 0 {
		if o.Len() == 0 {
			return pipeline.AttrNull, nil
		}
		return pipeline.AttrJSON, d.appendArenaJSON(b, v)
	}
	return typ, out
}

// appendAnyJSON appends an OTLP AnyValue as plain JSON: strings and bytes
// quoted, numbers bare (intValue strings unquoted when they are numbers),
// arrays and kvlists as JSON arrays and objects, an empty value as null.
// Anything else is appended as it is.
func (d *Decoder) appendAnyJSON(dst []byte, v *fastjson.Value) []byte {
	o := v.GetObject()
	if o == nil {
		return d.appendJSON(dst, v)
	}
	done := false
	kvs, mark := d.members(v)
	for i := 0; i < len(kvs) && !done; i++ {
		c := kvs[i].v
		done = true
		switch kvs[i].k {
		case "stringValue", "bytesValue", "boolValue":
			dst = d.appendJSON(dst, c)
		case "intValue", "doubleValue":
			if s, ok := d.str(c); ok && validNumber(s) {
				dst = append(dst, s...)
			} else {
				dst = d.appendJSON(dst, c)
			}
		case "arrayValue":
			dst = append(dst, '[')
			for i, e := range c.GetArray("values") {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = d.appendAnyJSON(dst, e)
			}
			dst = append(dst, ']')
		case "kvlistValue":
			dst = append(dst, '{')
			n := 0
			for _, kv := range c.GetArray("values") {
				ko := kv.GetObject()
				if ko == nil {
					continue
				}
				key, ok := d.str(ko.Get("key"))
				if !ok {
					continue
				}
				if n > 0 {
					dst = append(dst, ',')
				}
				n++
				dst = d.appendQuoted(dst, key)
				dst = append(dst, ':')
				if val := ko.Get("value"); val != nil {
					dst = d.appendAnyJSON(dst, val)
				} else {
					dst = append(dst, "null"...)
				}
			}
			dst = append(dst, '}')
		default:
			done = false
		}
	}
	d.release(mark)
	if !done {
		if o.Len() == 0 {
			return append(dst, "null"...)
		}
		return d.appendJSON(dst, v)
	}
	return dst
}
