package parsers

import (
	"github.com/valyala/fastjson"

	"github.com/tracepipe/tracepipe/pipeline"
)

// maxDetectUnits bounds how many units Detect tries to parse.
const maxDetectUnits = 16

// Detect picks the format of a file from its first units (the units of its
// first batch): the first unit that parses decides. OTLP when it is an
// object with resourceSpans or resourceLogs (or their proto field names
// resource_spans, resource_logs); Zipkin when it is an array
// whose first element is a span object (traceId and id), or a span object
// with traceId, id and a Zipkin-only field (localEndpoint, remoteEndpoint,
// annotations, or tags as an object); else jsonl. Empty arrays are skipped,
// and count as Zipkin when nothing else decides. jsonl when no unit parses.
func Detect(b *pipeline.Batch) pipeline.Format {
	d := GetDecoder(nil)
	defer PutDecoder(d)
	sawArray := false
	tried := 0
	for i := range b.Units {
		if tried == maxDetectUnits {
			break
		}
		if b.Units[i].Flags&pipeline.UnitTooLarge != 0 {
			continue
		}
		tried++
		v, err := d.p.ParseBytes(b.UnitBytes(i))
		if err != nil {
			continue
		}
		if a := v.GetArray(); v.Type() == fastjson.TypeArray && len(a) == 0 {
			sawArray = true
			continue
		}
		return detectValue(v)
	}
	if sawArray {
		return pipeline.FormatZipkin
	}
	return pipeline.FormatJSONL
}

// detectValue applies Detect's rules to one parsed unit.
func detectValue(v *fastjson.Value) pipeline.Format {
	switch v.Type() {
	case fastjson.TypeObject:
		o := v.GetObject()
		if o.Get("resourceSpans") != nil || o.Get("resourceLogs") != nil ||
			o.Get("resource_spans") != nil || o.Get("resource_logs") != nil {
			return pipeline.FormatOTLP
		}
		if isZipkinSpan(o, true) {
			return pipeline.FormatZipkin
		}
	case fastjson.TypeArray:
		if a := v.GetArray(); len(a) > 0 {
			if o := a[0].GetObject(); o != nil && isZipkinSpan(o, false) {
				return pipeline.FormatZipkin
			}
		}
	}
	return pipeline.FormatJSONL
}

// isZipkinSpan reports whether o has traceId and id and, when strict, a
// field only Zipkin spans have.
func isZipkinSpan(o *fastjson.Object, strict bool) bool {
	if o.Get("traceId") == nil || o.Get("id") == nil {
		return false
	}
	if !strict {
		return true
	}
	if o.Get("localEndpoint") != nil || o.Get("remoteEndpoint") != nil || o.Get("annotations") != nil {
		return true
	}
	t := o.Get("tags")
	return t != nil && t.Type() == fastjson.TypeObject
}
