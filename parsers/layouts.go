package parsers

import (
	"strings"
)

// The layout table: every key of the common JSON-lines layouts that jsonl
// decoding recognises with no configuration, and what it becomes. It is the
// one place the layouts are mapped: DefaultJSONLFields is built from it (a
// field's candidates in table order, first present wins), the key table
// holds its containers, and the README reproduces it (layoutMarkdown; a
// test keeps the two equal).
//
// A path matches the literal key first, then nested objects along any split
// of its dots, so "trace.id" finds {"trace.id":…} and {"trace":{"id":…}}.
// What no row takes becomes an attribute: nested objects are flattened with
// dots, and the members of a container lose the container's key (see
// container).

// layoutRow is one row of the layout table.
type layoutRow struct {
	path  string
	field uint8 // a jsonl field index, or ctrAttrs / ctrResource
	unit  string
	conv  uint8
	// read says how the value is read, from says which layouts write the
	// key; both are documentation (the README's columns).
	read string
	from string
}

// Containers: rows whose object is not a field but holds attributes.
const (
	// ctrAttrs: the members become attributes under their own names.
	ctrAttrs = numFields + iota
	// ctrResource: the members become attributes prefixed "resource.", an
	// "attributes" object inside included (OTLP's resource attributes).
	ctrResource
)

// Value conversions of a candidate path (fieldEntry.conv).
const (
	convNone uint8 = iota
	// convDecimalID: an id written as a decimal integer (Datadog's 64-bit
	// ids), a string or number of digits; a trace id of 32 hex digits is
	// read as hex. See decimalID.
	convDecimalID
	// convSeverityNumber: an OpenTelemetry SeverityNumber (1-24) becomes
	// its short name (INFO, WARN2, ...); other values are taken as text.
	convSeverityNumber
)

const (
	hexRead  = "hex string, any case; 16 or 32 digits (span ids 16)"
	timeRead = "Unix time (number or numeric string, unit by magnitude) or RFC 3339"
	textRead = "string, number or boolean as text"
)

var layoutTable = []layoutRow{
	{path: "trace_id", field: fTrace, read: hexRead, from: "flat, zap/zerolog/logrus (OTel bridges), OTLP-shaped lines"},
	{path: "traceId", field: fTrace, read: hexRead, from: "camelCase layouts, logback MDC"},
	{path: "traceID", field: fTrace, read: hexRead, from: "Jaeger-style"},
	{path: "TraceId", field: fTrace, read: hexRead, from: "OTel log data model (field names as in the model)"},
	{path: "trace.id", field: fTrace, read: hexRead, from: "ECS"},
	{path: "dd.trace_id", field: fTrace, conv: convDecimalID, read: "decimal 64-bit id (string or number) -> 16 zeros + 16 hex digits; 32 hex digits as they are", from: "Datadog log injection"},
	{path: "span_id", field: fSpan, read: hexRead, from: "flat, loggers, OTLP-shaped lines"},
	{path: "spanId", field: fSpan, read: hexRead, from: "camelCase layouts, logback MDC"},
	{path: "spanID", field: fSpan, read: hexRead, from: "Jaeger-style"},
	{path: "SpanId", field: fSpan, read: hexRead, from: "OTel log data model"},
	{path: "span.id", field: fSpan, read: hexRead, from: "ECS"},
	{path: "dd.span_id", field: fSpan, conv: convDecimalID, read: "decimal 64-bit id -> 16 hex digits", from: "Datadog log injection"},
	{path: "parent_span_id", field: fParent, read: hexRead, from: "flat, OTLP-shaped lines"},
	{path: "parentSpanId", field: fParent, read: hexRead, from: "camelCase layouts"},
	{path: "parent_id", field: fParent, read: hexRead, from: "flat"},
	{path: "parentId", field: fParent, read: hexRead, from: "Zipkin-style"},
	{path: "parent.id", field: fParent, read: hexRead, from: "ECS"},
	{path: "timestamp", field: fTime, read: timeRead, from: "flat, OTel log data model, logback JSON"},
	{path: "time", field: fTime, read: timeRead, from: "zerolog, logrus"},
	{path: "ts", field: fTime, read: timeRead + " (zap: float seconds)", from: "zap"},
	{path: "@timestamp", field: fTime, read: timeRead, from: "ECS, logstash-logback-encoder"},
	{path: "Timestamp", field: fTime, read: timeRead, from: "OTel log data model"},
	{path: "time_unix_nano", field: fTime, read: timeRead, from: "OTLP-shaped log lines"},
	{path: "timeUnixNano", field: fTime, read: timeRead, from: "OTLP-shaped log lines"},
	{path: "observed_timestamp", field: fTime, read: timeRead + "; only when no event time above", from: "OTel log data model"},
	{path: "observedTimestamp", field: fTime, read: timeRead, from: "OTel log data model"},
	{path: "ObservedTimestamp", field: fTime, read: timeRead, from: "OTel log data model"},
	{path: "observed_time_unix_nano", field: fTime, read: timeRead, from: "OTLP-shaped log lines"},
	{path: "observedTimeUnixNano", field: fTime, read: timeRead, from: "OTLP-shaped log lines"},
	{path: "start_time_unix_nano", field: fStart, read: timeRead + "; the time when no time field above", from: "OTLP-shaped span lines"},
	{path: "startTimeUnixNano", field: fStart, read: timeRead, from: "OTLP-shaped span lines"},
	{path: "startTime", field: fStart, read: timeRead, from: "camelCase span lines"},
	{path: "start_time", field: fStart, read: timeRead, from: "span lines"},
	{path: "start", field: fStart, read: timeRead, from: "span lines"},
	{path: "end_time_unix_nano", field: fEnd, read: timeRead + "; duration = end - start when no duration field", from: "OTLP-shaped span lines"},
	{path: "endTimeUnixNano", field: fEnd, read: timeRead, from: "OTLP-shaped span lines"},
	{path: "endTime", field: fEnd, read: timeRead, from: "camelCase span lines"},
	{path: "end_time", field: fEnd, read: timeRead, from: "span lines"},
	{path: "end", field: fEnd, read: timeRead, from: "span lines"},
	{path: "duration_ns", field: fDuration, unit: "ns", read: "number in ns, or Go duration (\"12.5ms\")", from: "flat"},
	{path: "duration_us", field: fDuration, unit: "us", read: "number in µs, or Go duration", from: "flat"},
	{path: "duration_ms", field: fDuration, unit: "ms", read: "number in ms, or Go duration", from: "flat"},
	{path: "duration", field: fDuration, unit: "ns", read: "number in ns, or Go duration", from: "flat, Datadog spans"},
	{path: "event.duration", field: fDuration, unit: "ns", read: "number in ns", from: "ECS"},
	{path: "service.name", field: fService, read: textRead, from: "flat, ECS, OTLP-shaped lines"},
	{path: "service", field: fService, read: textRead, from: "flat"},
	{path: "service_name", field: fService, read: textRead, from: "flat"},
	{path: "serviceName", field: fService, read: textRead, from: "camelCase layouts"},
	{path: "resource.service.name", field: fService, read: textRead, from: "OTel log data model (resource map)"},
	{path: "Resource.service.name", field: fService, read: textRead, from: "OTel log data model"},
	{path: "resource.attributes.service.name", field: fService, read: textRead, from: "OTLP-shaped lines"},
	{path: "name", field: fName, read: textRead, from: "span lines"},
	{path: "span_name", field: fName, read: textRead, from: "flat"},
	{path: "spanName", field: fName, read: textRead, from: "camelCase layouts"},
	{path: "operation", field: fName, read: textRead, from: "flat"},
	{path: "operationName", field: fName, read: textRead, from: "Jaeger"},
	{path: "message", field: fMessage, read: textRead + "; a log's name when it has none", from: "ECS, zerolog, logback"},
	{path: "msg", field: fMessage, read: textRead, from: "zap, logrus"},
	{path: "body", field: fMessage, read: textRead + " (an object body stays attributes body.*)", from: "OTel log data model"},
	{path: "Body", field: fMessage, read: textRead, from: "OTel log data model"},
	{path: "kind", field: fKind, read: "OTLP number 1-5 or name, with or without SPAN_KIND_, any case", from: "span lines"},
	{path: "span.kind", field: fKind, read: "as kind", from: "flat"},
	{path: "span_kind", field: fKind, read: "as kind", from: "flat"},
	{path: "spanKind", field: fKind, read: "as kind", from: "camelCase layouts"},
	{path: "status", field: fStatus, read: "OTLP number 0-2 or name, with or without STATUS_CODE_, any case (OK, ERROR, Unset); other values stay attributes", from: "span lines"},
	{path: "status.code", field: fStatus, read: "as status; status.message stays an attribute", from: "OTLP-shaped span lines ({\"code\":…,\"message\":…})"},
	{path: "status_code", field: fStatus, read: "as status", from: "flat"},
	{path: "otel.status_code", field: fStatus, read: "as status", from: "OTel-to-other exporters"},
	{path: "level", field: fSeverity, read: textRead + " (logs only)", from: "zap, zerolog, logrus, logback"},
	{path: "severity", field: fSeverity, read: textRead, from: "flat"},
	{path: "severity_text", field: fSeverity, read: textRead, from: "OTel log data model"},
	{path: "severityText", field: fSeverity, read: textRead, from: "OTel log data model"},
	{path: "SeverityText", field: fSeverity, read: textRead, from: "OTel log data model"},
	{path: "lvl", field: fSeverity, read: textRead, from: "flat"},
	{path: "log.level", field: fSeverity, read: textRead, from: "ECS"},
	{path: "severity_number", field: fSeverity, conv: convSeverityNumber, read: "1-24 -> short name (9 -> INFO, 14 -> WARN2); only without a severity text", from: "OTel log data model"},
	{path: "severityNumber", field: fSeverity, conv: convSeverityNumber, read: "as severity_number", from: "OTel log data model"},
	{path: "SeverityNumber", field: fSeverity, conv: convSeverityNumber, read: "as severity_number", from: "OTel log data model"},
	{path: "attributes", field: ctrAttrs, read: "object: each member an attribute under its own name (\"attributes.user.id\" -> user.id)", from: "OTLP-shaped lines, OTel log data model"},
	{path: "Attributes", field: ctrAttrs, read: "as attributes", from: "OTel log data model"},
	{path: "labels", field: ctrAttrs, read: "as attributes", from: "ECS"},
	{path: "resource", field: ctrResource, read: "object: each member an attribute prefixed resource. (an attributes object inside too)", from: "OTLP-shaped lines, OTel log data model"},
	{path: "Resource", field: ctrResource, read: "as resource", from: "OTel log data model"},
	{path: "resource.attributes", field: ctrResource, read: "as resource", from: "OTLP-shaped lines"},
}

// convOf returns the conversion of a candidate path of field f: the layout
// table's, so that a configured path reads as the default one does.
func convOf(f uint8, path string) uint8 {
	for i := range layoutTable {
		if r := &layoutTable[i]; r.field == f && r.path == path {
			return r.conv
		}
	}
	return convNone
}

// defaultPaths returns the layout table's candidate paths of field f.
func defaultPaths(f uint8) []string {
	var out []string
	for _, r := range layoutTable {
		if r.field == f {
			out = append(out, r.path)
		}
	}
	return out
}

var fieldNames = [...]string{
	fTrace: "trace_id", fSpan: "span_id", fParent: "parent_id", fTime: "time", fStart: "start_time",
	fEnd: "end_time", fDuration: "duration", fService: "service", fName: "name", fMessage: "message",
	fKind: "kind", fStatus: "status", fSeverity: "severity",
	ctrAttrs: "attributes (container)", ctrResource: "resource attributes (container)",
}

// layoutMarkdown renders the layout table as the README shows it.
func layoutMarkdown() string {
	var w strings.Builder
	w.WriteString("| key (path) | becomes | read as | layouts |\n|---|---|---|---|\n")
	for _, r := range layoutTable {
		read := r.read
		if r.unit != "" && !strings.Contains(read, "number in") {
			read = r.unit + "; " + read
		}
		w.WriteString("| `" + r.path + "` | " + fieldNames[r.field] + " | " + strings.ReplaceAll(read, "|", "\\|") + " | " + r.from + " |\n")
	}
	return w.String()
}

// Container keys at the top of a line (container).
const (
	ctrNone = iota
	ctrHoist
	ctrRes
)

// resourcePrefix is the prefix of the attributes a resource container
// holds, as the OTLP decoder names resource attributes.
const resourcePrefix = "resource"

// attrsKeyPrefix is the member of a resource container (and the dotted
// head of a key in one) whose own members are resource attributes too.
const attrsKeyPrefix = "attributes"

// hoistRename returns the attribute key of a top-level key that spells a
// container member with dots ("attributes.user.id", "labels.env"): the
// part after the container's key, and true; or false.
func hoistRename(k []byte) ([]byte, bool) {
	if len(k) < 8 {
		return nil, false
	}
	switch k[0] {
	case 'a', 'A':
		if len(k) > 11 && k[10] == '.' && string(k[1:10]) == "ttributes" {
			return k[11:], true
		}
	case 'l':
		if len(k) > 7 && k[6] == '.' && string(k[:6]) == "labels" {
			return k[7:], true
		}
	}
	return nil, false
}

// resRename reports whether a top-level key spells a resource attribute
// with dots, "resource.attributes.K": its attribute key is then
// "resource." + K (rest is K).
func resRename(k []byte) (rest []byte, ok bool) {
	const p = "resource.attributes."
	if len(k) > len(p) && k[0] == 'r' && string(k[:len(p)]) == p {
		return k[len(p):], true
	}
	return nil, false
}
