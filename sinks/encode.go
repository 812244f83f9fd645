// Package sinks holds the outputs records are delivered to, and the one
// encoding of a normalized record as JSON that they share.
package sinks

import (
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/tracepipe/tracepipe/internal/jsonstr"

	"github.com/tracepipe/tracepipe/pipeline"
)

// AppendRecord appends r as one line of JSON (with the trailing newline) to
// dst and returns the extended slice. It allocates nothing once dst has room.
//
// verbatim is the buffer of the batch r belongs to (Batch.Buf), or nil:
// strings that are views into it are JSON text taken verbatim from a
// validated unit (see Batch.Buf) and are written without escaping, which
// saves most of the encoding time; everything else is escaped.
//
// Fields, in order, empty ones left out: time (RFC 3339, nanoseconds, UTC),
// time_unix_nano (exact), signal, trace_id, span_id, parent_span_id, service,
// name, kind, status, severity, duration_ns, attributes (an object; numbers
// as they came in, nested values as JSON), utf8_replaced, and for records
// replayed from the DLQ replay_count and replayed_from (the entry id).
func AppendRecord(dst []byte, r *pipeline.Record, verbatim []byte) []byte {
	v := span(verbatim)
	dst = append(dst, `{"time":"`...)
	dst = time.Unix(0, r.Time).UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","time_unix_nano":`...)
	dst = strconv.AppendInt(dst, r.Time, 10)
	dst = append(dst, `,"signal":"`...)
	dst = append(dst, r.Signal.String()...)
	dst = append(dst, '"')
	dst = v.field(dst, `,"trace_id":`, r.TraceID)
	dst = v.field(dst, `,"span_id":`, r.SpanID)
	dst = v.field(dst, `,"parent_span_id":`, r.ParentID)
	dst = v.field(dst, `,"service":`, r.Service)
	dst = v.field(dst, `,"name":`, r.Name)
	dst = v.field(dst, `,"kind":`, r.Kind)
	dst = v.field(dst, `,"status":`, r.Status)
	dst = v.field(dst, `,"severity":`, r.Severity)
	if r.Duration != 0 {
		dst = append(dst, `,"duration_ns":`...)
		dst = strconv.AppendInt(dst, r.Duration, 10)
	}
	if len(r.Attrs) > 0 {
		dst = append(dst, `,"attributes":{`...)
		for i := range r.Attrs {
			a := &r.Attrs[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = v.str(dst, a.Key)
			dst = append(dst, ':')
			dst = v.value(dst, a)
		}
		dst = append(dst, '}')
	}
	if r.Flags&pipeline.FlagUTF8Replaced != 0 {
		dst = append(dst, `,"utf8_replaced":true`...)
	}
	if r.ReplayCount > 0 {
		dst = append(dst, `,"replay_count":`...)
		dst = strconv.AppendInt(dst, int64(r.ReplayCount), 10)
		dst = append(dst, `,"replayed_from":`...)
		dst = jsonstr.Append(dst, r.ReplayedFrom)
	}
	return append(dst, "}\n"...)
}

// bufSpan is the address range of a batch's Buf; strings inside it need no
// escaping.
type bufSpan struct{ lo, hi uintptr }

func span(b []byte) bufSpan {
	if len(b) == 0 {
		return bufSpan{}
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return bufSpan{lo, lo + uintptr(len(b))}
}

// str appends s quoted: verbatim when it lies in the span, else escaped.
func (v bufSpan) str(dst, s []byte) []byte {
	if len(s) > 0 {
		p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
		if p >= v.lo && p < v.hi && uintptr(len(s)) <= v.hi-p {
			dst = append(dst, '"')
			dst = append(dst, s...)
			return append(dst, '"')
		}
	}
	return AppendString(dst, s)
}

func (v bufSpan) field(dst []byte, key string, s []byte) []byte {
	if len(s) == 0 {
		return dst
	}
	dst = append(dst, key...)
	return v.str(dst, s)
}

func (v bufSpan) value(dst []byte, a *pipeline.Attr) []byte {
	switch a.Type {
	case pipeline.AttrNumber, pipeline.AttrBool, pipeline.AttrJSON:
		if len(a.Value) > 0 {
			return append(dst, a.Value...)
		}
		return append(dst, "null"...)
	case pipeline.AttrNull:
		return append(dst, "null"...)
	}
	return v.str(dst, a.Value)
}

// AppendString appends s as a quoted JSON string (see package jsonstr).
// Bytes that are not valid UTF-8 are written as U+FFFD: parsers reject or
// replace them before, so this is a last line of defence that keeps every
// output line valid JSON.
func AppendString(dst, s []byte) []byte { return jsonstr.Append(dst, s) }

// scratch holds encoding buffers: sinks run concurrently on one batch
// (retries run off the worker), so none may encode into the batch itself.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// maxScratch caps what a pooled buffer keeps.
const maxScratch = 8 << 20

// GetScratch returns an empty encoding buffer; give it back with
// PutScratch.
func GetScratch() *[]byte {
	b := scratch.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// PutScratch returns a buffer from GetScratch.
func PutScratch(b *[]byte) {
	if cap(*b) > maxScratch {
		return
	}
	scratch.Put(b)
}
