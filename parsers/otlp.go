package parsers

import (
	"strconv"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/tracepipe/tracepipe/pipeline"
)

// otlp: OTLP/JSON export requests, traces and logs, one request per unit:
// a line of the Collector's file exporter or a whole pretty document. What
// exporters really write is read, not only the spec's examples:
//
//   - the names of OTLP 1.0 (resourceSpans / scopeSpans / scope / spans,
//     resourceLogs / scopeLogs / logRecords), the pre-1.0 ones still found
//     in files (instrumentationLibrarySpans, instrumentationLibraryLogs,
//     instrumentationLibrary, and logs for logRecords), and the proto field
//     names a protobuf JSON encoder writes when told to keep them
//     (resource_spans, trace_id, string_value, ...);
//   - ids in hex (OTLP/JSON) or in base64 (the protobuf JSON mapping of a
//     bytes field, as Python's MessageToJson writes them), see otlpID;
//   - enums as numbers or as their names (SPAN_KIND_SERVER,
//     STATUS_CODE_ERROR, SEVERITY_NUMBER_WARN).
//
// Data the decoder cannot place is never dropped in silence: an array of
// objects under a key it does not know, in the request, in a resource
// entry or in a scope entry (a misspelt resourceSpans, scopeLogs inside
// resourceSpans, resourceMetrics), is one invalid record, code
// "unknown_field" (or "unsupported_signal" for metrics and profiles), with
// that array as its payload; what the request holds besides is decoded.
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

// Invalid codes of OTLP requests.
const (
	// codeUnknownField: an array of objects under a key the decoder
	// does not know, where it looks for spans or log records.
	codeUnknownField = "unknown_field"
	// codeUnsupportedSignal: OTLP metrics or profiles.
	codeUnsupportedSignal = "unsupported_signal"
)

// otlpLevel is a level of an OTLP request: its containers by signal, and
// where the decoder goes from each.
type otlpLevel uint8

const (
	levelRequest otlpLevel = iota
	levelResourceSpans
	levelResourceLogs
	levelScopeSpans
	levelScopeLogs
)

// otlpContainer maps the key of a member at a level to what it holds:
// next is the level of its entries (levelRequest when the entries are the
// spans or log records themselves, see items), ok false for a key the
// level does not know.
func otlpContainer(level otlpLevel, key string) (next otlpLevel, items, ok bool) {
	switch level {
	case levelRequest:
		switch key {
		case "resourceSpans", "resource_spans":
			return levelResourceSpans, false, true
		case "resourceLogs", "resource_logs":
			return levelResourceLogs, false, true
		}
	case levelResourceSpans:
		switch key {
		case "scopeSpans", "scope_spans", "instrumentationLibrarySpans", "instrumentation_library_spans":
			return levelScopeSpans, false, true
		}
	case levelResourceLogs:
		switch key {
		case "scopeLogs", "scope_logs", "instrumentationLibraryLogs", "instrumentation_library_logs":
			return levelScopeLogs, false, true
		}
	case levelScopeSpans:
		if key == "spans" {
			return levelRequest, true, true
		}
	case levelScopeLogs:
		switch key {
		case "logRecords", "log_records", "logs":
			return levelRequest, true, true
		}
	}
	return 0, false, false
}

// otlpKnown lists the container keys of each level, for messages.
var otlpKnown = [...]string{
	levelRequest:       "resourceSpans, resourceLogs",
	levelResourceSpans: "scopeSpans, instrumentationLibrarySpans",
	levelResourceLogs:  "scopeLogs, instrumentationLibraryLogs",
	levelScopeSpans:    "spans",
	levelScopeLogs:     "logRecords, logs",
}

func (d *Decoder) decodeOTLP(b *pipeline.Batch, u int, root *fastjson.Value, size int) {
	if !d.checkedWalk(b, u, root) {
		return
	}
	if d.typ(root) != fastjson.TypeObject {
		d.failUnit(b, u, pipeline.ClassInvalid, failure{codeNotObject, "an OTLP request must be an object, not a " + root.Type().String()})
		return
	}
	d.budget = size
	if !d.otlpMembers(b, u, root, levelRequest) {
		d.failUnit(b, u, pipeline.ClassInvalid, failure{codeNotOTLP, "no resourceSpans or resourceLogs"})
	}
}

// otlpMembers decodes the containers among the members of v, an object at
// level, in the order they come, and fails each array of objects under a
// key the level does not know. found reports whether any member was a
// known container or such an array (so the request was not just empty).
func (d *Decoder) otlpMembers(b *pipeline.Batch, u int, v *fastjson.Value, level otlpLevel) (found bool) {
	kvs, mark := d.members(v)
	defer d.release(mark)
	for i := range kvs {
		key, c := kvs[i].k, kvs[i].v
		next, items, ok := otlpContainer(level, key)
		t := d.typ(c)
		if !ok {
			if t == fastjson.TypeArray && holdsObject(c) {
				found = true
				d.otlpUnknown(b, u, c, level, key)
			}
			continue
		}
		if t == fastjson.TypeNull {
			continue
		}
		found = true
		if t != fastjson.TypeArray {
			d.failValue(b, u, c, codeWrongType, key+" is not an array")
			continue
		}
		for _, e := range c.GetArray() {
			switch {
			case items && level == levelScopeLogs:
				d.otlpLog(b, u, e)
			case items:
				d.otlpSpan(b, u, e)
			case next == levelResourceSpans || next == levelResourceLogs:
				d.otlpResource(b, u, e, next)
			default:
				d.otlpScope(b, u, e, next)
			}
		}
	}
	return found
}

// holdsObject reports whether array v has an object among its elements.
func holdsObject(v *fastjson.Value) bool {
	for _, e := range v.GetArray() {
		if e.Type() == fastjson.TypeObject {
			return true
		}
	}
	return false
}

// otlpUnknown fails array c, found under key at level, which the decoder
// cannot place.
func (d *Decoder) otlpUnknown(b *pipeline.Batch, u int, c *fastjson.Value, level otlpLevel, key string) {
	if level == levelRequest {
		switch key {
		case "resourceMetrics", "resource_metrics":
			d.failValue(b, u, c, codeUnsupportedSignal, "OTLP metrics ("+key+") are not read: tracepipe reads spans and logs")
			return
		case "resourceProfiles", "resource_profiles":
			d.failValue(b, u, c, codeUnsupportedSignal, "OTLP profiles ("+key+") are not read: tracepipe reads spans and logs")
			return
		}
	}
	d.failValue(b, u, c, codeUnknownField, pipeline.CutMessage(strconv.Quote(key)+" holds objects the OTLP decoder cannot place (known here: "+otlpKnown[level]+")"))
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

func (d *Decoder) otlpResource(b *pipeline.Batch, u int, res *fastjson.Value, level otlpLevel) {
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
				if string(key) == "service.name" && val != nil && val.Type() == fastjson.TypeObject {
					if s, ok := d.str(getEither(val.GetObject(), "stringValue", "string_value")); ok {
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
	d.otlpMembers(b, u, res, level)
}

func (d *Decoder) otlpScope(b *pipeline.Batch, u int, sc *fastjson.Value, level otlpLevel) {
	so := sc.GetObject()
	if so == nil {
		d.failValue(b, u, sc, codeWrongType, "a scope entry is not an object")
		return
	}
	// The scope attributes, and the resource's UTF-8 flag, are set anew
	// per scope: a previous scope's must not leak into this one.
	resReplaced := d.resReplaced
	d.nScope = 0
	d.replaced = d.resReplaced
	s := getEither(so, "scope", "instrumentationLibrary")
	if s == nil {
		s = so.Get("instrumentation_library")
	}
	if s != nil {
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
	d.otlpMembers(b, u, sc, level)
	d.resReplaced = resReplaced
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
		case "traceId", "trace_id":
			p = &fs.trace
		case "spanId", "span_id":
			p = &fs.span
		case "parentSpanId", "parent_span_id":
			p = &fs.parent
		case "name":
			p = &fs.name
		case "kind":
			p = &fs.kind
		case "startTimeUnixNano", "start_time_unix_nano":
			p = &fs.start
		case "endTimeUnixNano", "end_time_unix_nano":
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
		r.TraceID, fail = d.otlpID(b, fs.trace, true, "traceId")
	}
	if fs.span != nil {
		r.SpanID, f = d.otlpID(b, fs.span, false, "spanId")
		fail = firstFailure(fail, f)
	}
	if fs.parent != nil {
		r.ParentID, f = d.otlpID(b, fs.parent, false, "parentSpanId")
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
		case "traceId", "trace_id":
			p = &fs.trace
		case "spanId", "span_id":
			p = &fs.span
		case "timeUnixNano", "time_unix_nano":
			p = &fs.time
		case "observedTimeUnixNano", "observed_time_unix_nano":
			p = &fs.observed
		case "severityText", "severity_text":
			p = &fs.sevText
		case "severityNumber", "severity_number":
			p = &fs.sevNum
		case "body":
			p = &fs.body
		case "attributes":
			p = &fs.attrs
		case "eventName", "event_name":
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
		r.TraceID, fail = d.otlpID(b, fs.trace, true, "traceId")
	}
	if fs.span != nil {
		r.SpanID, f = d.otlpID(b, fs.span, false, "spanId")
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
		if s, ok := d.str(d.stringValue(fs.body)); ok {
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

// severityName maps an OTLP severityNumber (1-24, or its enum name such as
// SEVERITY_NUMBER_WARN2, as protobuf JSON encoders write it) to its short
// name.
func severityName(s []byte) string {
	if len(s) > 16 && equalFold(s[:16], "severity_number_") {
		return severityEnumName(s[16:])
	}
	n, ok := atoiN(s)
	if !ok || len(s) > 2 || n < 1 || n > 24 {
		return ""
	}
	names := [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	sub := [...]string{"", "2", "3", "4"}
	return names[(n-1)/4] + sub[(n-1)%4]
}

// severityEnumName returns the short name of a severity enum name's tail
// (WARN, WARN2...WARN4), "" when it is none.
func severityEnumName(s []byte) string {
	for i := 1; i <= 24; i++ {
		if equalFold(s, severityNames[i][0]) {
			return severityNames[i][1]
		}
	}
	return ""
}

// severityNames are the short names of severityNumber 1-24 (0 unused), in
// lowercase (to match with equalFold) and as severityName answers.
var severityNames = func() (n [25][2]string) {
	names := [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	sub := [...]string{"", "2", "3", "4"}
	for i := 1; i <= 24; i++ {
		n[i][1] = names[(i-1)/4] + sub[(i-1)%4]
		n[i][0] = strings.ToLower(n[i][1])
	}
	return n
}()

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
		case "stringValue", "bytesValue", "string_value", "bytes_value":
			if s, ok := d.str(c); ok {
				typ, out = pipeline.AttrString, d.copy(b, s)
			}
		case "boolValue", "bool_value":
			switch d.typ(c) {
			case fastjson.TypeTrue, fastjson.TypeFalse:
				typ, out = d.scalarAttr(b, c)
			}
		case "intValue", "doubleValue", "int_value", "double_value":
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
		case "arrayValue", "kvlistValue", "array_value", "kvlist_value":
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
		case "stringValue", "bytesValue", "boolValue", "string_value", "bytes_value", "bool_value":
			dst = d.appendJSON(dst, c)
		case "intValue", "doubleValue", "int_value", "double_value":
			if s, ok := d.str(c); ok && validNumber(s) {
				dst = append(dst, s...)
			} else {
				dst = d.appendJSON(dst, c)
			}
		case "arrayValue", "array_value":
			dst = append(dst, '[')
			for i, e := range c.GetArray("values") {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = d.appendAnyJSON(dst, e)
			}
			dst = append(dst, ']')
		case "kvlistValue", "kvlist_value":
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

// stringValue returns the string member of an AnyValue object v (either
// spelling), nil when v is not an object or has none.
func (d *Decoder) stringValue(v *fastjson.Value) *fastjson.Value {
	if d.typ(v) != fastjson.TypeObject {
		return nil
	}
	return getEither(v.GetObject(), "stringValue", "string_value")
}

// otlpID reads an OTLP id: hex digits, as OTLP/JSON specifies, or base64
// of the id's bytes, which is what the protobuf JSON mapping of a bytes
// field gives (Python's MessageToJson, and any generic protobuf encoder):
// 24 characters for a 16-byte trace id, 12 for an 8-byte span id, or 22
// and 11 without padding, in the standard or the URL-safe alphabet. Some
// exporters base64-encode the hex text itself (opentelemetry-swift#537,
// opentelemetry-java#5785): 44 (43) characters for a trace id, 24 (22) for
// a span id, taken too. None of these lengths is that of a hex id (32 or
// 16 digits) and, per field, none is that of another form, so the length
// says which form an id is in. Whatever the form, the id comes out in
// lowercase hex.
func (d *Decoder) otlpID(b *pipeline.Batch, v *fastjson.Value, trace bool, name string) ([]byte, failure) {
	s, ok := d.str(v)
	if !ok || !isBase64IDLen(len(s), trace) {
		id, f := d.id(b, v, trace, name)
		if f.code == codeBadID {
			if trace {
				f.msg = name + " is not 32 or 16 hex digits, nor 16 bytes in base64"
			} else {
				f.msg = name + " is not 16 hex digits, nor 8 bytes in base64"
			}
		}
		return id, f
	}
	var raw [32]byte
	n, ok := decodeBase64(raw[:], s)
	size := 8
	if trace {
		size = 16
	}
	switch {
	case ok && n == size:
		var nonzero byte
		for _, c := range raw[:n] {
			nonzero |= c
		}
		if nonzero == 0 {
			return nil, failure{}
		}
		start := len(b.Arena)
		for _, c := range raw[:n] {
			b.Arena = append(b.Arena, hexDigits[c>>4], hexDigits[c&0xF])
		}
		return b.Arena[start:len(b.Arena):len(b.Arena)], failure{}
	case ok && n == 2*size:
		if id, ok := copyID(b, raw[:n], nil, trace); ok {
			return id, failure{}
		}
	}
	if trace {
		return nil, failure{codeBadID, name + " is not 16 bytes in base64"}
	}
	return nil, failure{codeBadID, name + " is not 8 bytes in base64"}
}

// isBase64IDLen reports whether n is the length of a trace id (trace) or
// span id in base64, padded or not: of its bytes, or of its hex text.
func isBase64IDLen(n int, trace bool) bool {
	if trace {
		return n == 24 || n == 22 || n == 44 || n == 43
	}
	return n == 12 || n == 11 || n == 24 || n == 22
}

// base64Values maps a byte to its 6-bit value in either base64 alphabet
// (standard "+/" or URL-safe "-_"), 0xff for any other byte.
var base64Values = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range len(std) {
		t[std[i]] = byte(i)
	}
	t['-'], t['_'] = 62, 63
	return t
}()

// decodeBase64 decodes s, base64 padded with '=' to a multiple of 4
// characters or not padded, into dst (at most len(dst) bytes); n is the
// number of bytes, ok false when s is not base64 of a whole number of
// bytes that fits. Bits past the last byte are ignored, as most decoders
// do.
func decodeBase64(dst []byte, s []byte) (n int, ok bool) {
	pad := 0
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
		pad++
	}
	if len(s)%4 == 1 || pad > 0 && (len(s)+pad)%4 != 0 || len(s)*6/8 > len(dst) {
		return 0, false
	}
	var acc uint32
	bits := 0
	for _, c := range s {
		v := base64Values[c]
		if v == 0xff {
			return 0, false
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			dst[n] = byte(acc >> bits)
			n++
		}
	}
	return n, true
}
