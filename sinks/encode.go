// Package sinks holds the outputs records are delivered to, and the one
// encoding of a normalized record as JSON that they share.
package sinks

import (
	"strconv"
	"time"

	"github.com/tracepipe/tracepipe/internal/jsonstr"

	"github.com/tracepipe/tracepipe/pipeline"
)

// AppendRecord appends r as one line of JSON (with the trailing newline) to
// dst and returns the extended slice. It allocates nothing once dst has room.
//
// Fields, in order, empty ones left out: time (RFC 3339, nanoseconds, UTC),
// time_unix_nano (exact), signal, trace_id, span_id, parent_span_id, service,
// name, kind, status, severity, duration_ns, attributes (an object; numbers
// as they came in, nested values as JSON), utf8_replaced.
func AppendRecord(dst []byte, r *pipeline.Record) []byte {
	dst = append(dst, `{"time":"`...)
	dst = time.Unix(0, r.Time).UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","time_unix_nano":`...)
	dst = strconv.AppendInt(dst, r.Time, 10)
	dst = append(dst, `,"signal":"`...)
	dst = append(dst, r.Signal.String()...)
	dst = append(dst, '"')
	dst = appendField(dst, `,"trace_id":`, r.TraceID)
	dst = appendField(dst, `,"span_id":`, r.SpanID)
	dst = appendField(dst, `,"parent_span_id":`, r.ParentID)
	dst = appendField(dst, `,"service":`, r.Service)
	dst = appendField(dst, `,"name":`, r.Name)
	dst = appendField(dst, `,"kind":`, r.Kind)
	dst = appendField(dst, `,"status":`, r.Status)
	dst = appendField(dst, `,"severity":`, r.Severity)
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
			dst = AppendString(dst, a.Key)
			dst = append(dst, ':')
			dst = appendValue(dst, a)
		}
		dst = append(dst, '}')
	}
	if r.Flags&pipeline.FlagUTF8Replaced != 0 {
		dst = append(dst, `,"utf8_replaced":true`...)
	}
	return append(dst, "}\n"...)
}

func appendField(dst []byte, key string, v []byte) []byte {
	if len(v) == 0 {
		return dst
	}
	dst = append(dst, key...)
	return AppendString(dst, v)
}

func appendValue(dst []byte, a *pipeline.Attr) []byte {
	switch a.Type {
	case pipeline.AttrNumber, pipeline.AttrBool, pipeline.AttrJSON:
		if len(a.Value) > 0 {
			return append(dst, a.Value...)
		}
		return append(dst, "null"...)
	case pipeline.AttrNull:
		return append(dst, "null"...)
	}
	return AppendString(dst, a.Value)
}

// AppendString appends s as a quoted JSON string (see package jsonstr).
// Bytes that are not valid UTF-8 are written as U+FFFD: parsers reject or
// replace them before, so this is a last line of defence that keeps every
// output line valid JSON.
func AppendString(dst, s []byte) []byte { return jsonstr.Append(dst, s) }
