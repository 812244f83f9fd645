package parsers

import (
	"github.com/valyala/fastjson"

	"github.com/tracepipe/tracepipe/pipeline"
)

// zipkin: Zipkin v2 JSON, a unit holding an array of spans (each failing
// span gets its own JSON as payload) or one span object.
//
// traceId (32 or 16 hex), id, parentId, name, kind (SERVER -> server),
// timestamp and duration (microseconds, numbers or digit strings) map to the
// record; localEndpoint.serviceName is Service; tags become attributes (in
// their order), then remoteEndpoint.serviceName as "peer.service". Status is
// "error" when a tag "error" exists, else the tag "otel.status_code" when it
// names one, else "unset". Annotations are checked, not kept.

func (d *Decoder) decodeZipkin(b *pipeline.Batch, u int, root *fastjson.Value) {
	if !d.checkedWalk(b, u, root) {
		return
	}
	switch root.Type() {
	case fastjson.TypeArray:
		for _, sp := range root.GetArray() {
			d.zipkinSpan(b, u, sp, true)
		}
	case fastjson.TypeObject:
		d.zipkinSpan(b, u, root, false)
	default:
		d.failUnit(b, u, pipeline.ClassInvalid, failure{codeNotObject, "a Zipkin unit must be a span array or object, not a " + root.Type().String()})
	}
}

// zipkin span fields, first occurrence wins.
type zipkinFields struct {
	trace, id, parent, name, kind, ts, dur, local, remote, tags *fastjson.Value
}

func (d *Decoder) zipkinSpan(b *pipeline.Batch, u int, sp *fastjson.Value, inArray bool) {
	so := sp.GetObject()
	if so == nil {
		d.failValue(b, u, sp, codeNotObject, "a Zipkin span must be an object, not a "+sp.Type().String())
		return
	}
	var fs zipkinFields
	kvs, mark := d.members(sp)
	for i := range kvs {
		v := kvs[i].v
		var p **fastjson.Value
		switch kvs[i].k {
		case "traceId":
			p = &fs.trace
		case "id":
			p = &fs.id
		case "parentId":
			p = &fs.parent
		case "name":
			p = &fs.name
		case "kind":
			p = &fs.kind
		case "timestamp":
			p = &fs.ts
		case "duration":
			p = &fs.dur
		case "localEndpoint":
			p = &fs.local
		case "remoteEndpoint":
			p = &fs.remote
		case "tags":
			p = &fs.tags
		default:
			continue
		}
		if *p == nil && d.typ(v) != fastjson.TypeNull {
			*p = v
		}
	}
	d.release(mark)

	r := b.NewRecord(u)
	r.Signal = pipeline.SignalSpan
	d.replaced = false
	var fail, f failure
	if fs.trace != nil {
		r.TraceID, fail = d.id(b, fs.trace, true, "traceId")
	}
	if fs.id != nil {
		r.SpanID, f = d.id(b, fs.id, false, "id")
		fail = firstFailure(fail, f)
	}
	if fs.parent != nil {
		r.ParentID, f = d.id(b, fs.parent, false, "parentId")
		fail = firstFailure(fail, f)
	}
	if fs.ts != nil {
		var f failure
		r.Time, f = d.eventTime(fs.ts, unitUS, false, "timestamp", " is not Unix microseconds")
		fail = firstFailure(fail, f)
	}
	if fs.dur != nil {
		n, st, typed := d.nanos(fs.dur, unitUS, false)
		ok := st == tOK
		switch {
		case !typed:
			fail = firstFailure(fail, failure{codeWrongType, "duration is a " + fs.dur.Type().String()})
		case !ok || n < 0:
			fail = firstFailure(fail, failure{codeBadDuration, "duration is not non-negative microseconds"})
		}
		if ok && n >= 0 {
			r.Duration = n
		}
	}
	if fs.name != nil {
		r.Name, _ = d.text(b, fs.name)
	}
	if fs.kind != nil {
		if k, ok := d.str(fs.kind); ok {
			if name := kindName(k); name != "" {
				r.Kind = b.CopyString(name)
			}
		}
	}
	if fs.local != nil {
		if s, ok := d.str(fs.local.Get("serviceName")); ok && len(s) > 0 {
			r.Service = d.copy(b, s)
		}
	}
	attrStart := len(b.Attrs)
	status := "unset"
	if fail.code == "" {
		if fs.tags != nil && d.typ(fs.tags) == fastjson.TypeObject {
			kvs, mark := d.members(fs.tags)
			for i := range kvs {
				k, v := kvs[i].k, kvs[i].v
				d.key = append(d.key[:0], k...)
				typ, val := d.scalarAttr(b, v)
				d.appendAttr(b, typ, val)
				switch k {
				case "error":
					status = "error"
				case "otel.status_code":
					if s := statusName(d.enumText(v)); s != "" && status != "error" {
						status = s
					}
				}
			}
			d.release(mark)
		}
		if fs.remote != nil {
			if s, ok := d.str(fs.remote.Get("serviceName")); ok && len(s) > 0 {
				b.Attrs = append(b.Attrs, pipeline.Attr{Key: b.CopyString("peer.service"), Value: d.copy(b, s), Type: pipeline.AttrString})
			}
		}
	}
	r.Status = b.CopyString(status)
	if fail.code == "" && len(r.TraceID) == 0 {
		d.missingTrace(r)
	}
	if fail.code != "" || r.Failed() {
		clear(b.Attrs[attrStart:])
		b.Attrs = b.Attrs[:attrStart]
		if inArray {
			r.Payload = d.appendArenaJSON(b, sp)
		}
		if fail.code != "" {
			r.Fail(stage, pipeline.ClassInvalid, fail.code, fail.msg)
		}
		return
	}
	if len(b.Attrs) > attrStart {
		r.Attrs = b.Attrs[attrStart:len(b.Attrs):len(b.Attrs)]
	}
	d.finish(r)
}
