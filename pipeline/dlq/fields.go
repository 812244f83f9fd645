package dlq

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Field is one scalar field of an Entry as the flat codecs carry it: the
// Kafka backend as a header "dlq.<Path>", the Redis backend as a stream
// field named Redis. Fields is the one table both codecs run over, so a
// field added to Entry is added here once (TestFieldsCoverEntry in each
// backend fails until it is). The payload is not in the table: each codec
// stores it its own way (the message value, a binary-safe field).
type Field struct {
	Path  string // the JSON path in the file DLQ's entry: "source.kind", "error.class"
	Redis string // the Redis stream field name
	// Always: the Redis codec writes the field even when zero (the
	// entries it has always written, which stream readers may expect).
	// The Kafka codec leaves every zero value out.
	Always bool
	// Get returns the field as text, and whether it holds the zero value.
	Get func(e *Entry) (text string, zero bool)
	// Set parses text into the field.
	Set func(e *Entry, text string) error
}

// Errors of Field.Set, wrapped by the codecs with the field's name.
var (
	errNotInt  = errors.New("is not an integer")
	errNotTime = errors.New("is not an RFC 3339 time")
	errNotBool = errors.New("is not a boolean")
)

func strField(path, redis string, always bool, p func(*Entry) *string) Field {
	return Field{Path: path, Redis: redis, Always: always,
		Get: func(e *Entry) (string, bool) { v := *p(e); return v, v == "" },
		Set: func(e *Entry, s string) error { *p(e) = s; return nil }}
}

func int64Field(path, redis string, always bool, p func(*Entry) *int64) Field {
	return Field{Path: path, Redis: redis, Always: always,
		Get: func(e *Entry) (string, bool) { v := *p(e); return strconv.FormatInt(v, 10), v == 0 },
		Set: func(e *Entry, s string) error {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return errNotInt
			}
			*p(e) = n
			return nil
		}}
}

func intField(path, redis string, always bool, p func(*Entry) *int) Field {
	return Field{Path: path, Redis: redis, Always: always,
		Get: func(e *Entry) (string, bool) { v := *p(e); return strconv.Itoa(v), v == 0 },
		Set: func(e *Entry, s string) error {
			n, err := strconv.ParseInt(s, 10, strconv.IntSize)
			if err != nil {
				return errNotInt
			}
			*p(e) = int(n)
			return nil
		}}
}

func timeField(path, redis string, p func(*Entry) *time.Time) Field {
	return Field{Path: path, Redis: redis, Always: true,
		Get: func(e *Entry) (string, bool) { v := *p(e); return v.Format(time.RFC3339Nano), v.IsZero() },
		Set: func(e *Entry, s string) error {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return errNotTime
			}
			*p(e) = t
			return nil
		}}
}

func timePtrField(path, redis string, p func(*Entry) **time.Time) Field {
	return Field{Path: path, Redis: redis,
		Get: func(e *Entry) (string, bool) {
			v := *p(e)
			if v == nil {
				return "", true
			}
			return v.Format(time.RFC3339Nano), false
		},
		Set: func(e *Entry, s string) error {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return errNotTime
			}
			*p(e) = &t
			return nil
		}}
}

func boolField(path, redis string, always bool, p func(*Entry) *bool) Field {
	return Field{Path: path, Redis: redis, Always: always,
		Get: func(e *Entry) (string, bool) { v := *p(e); return strconv.FormatBool(v), !v },
		Set: func(e *Entry, s string) error {
			switch s {
			case "true":
				*p(e) = true
			case "false", "":
				*p(e) = false
			default:
				return errNotBool
			}
			return nil
		}}
}

// Fields lists every field of Entry but the payload, in the order the
// codecs write them.
var Fields = []Field{
	intField("v", "v", true, func(e *Entry) *int { return &e.Version }),
	strField("id", "id", true, func(e *Entry) *string { return &e.ID }),
	timeField("time", "time", func(e *Entry) *time.Time { return &e.Time }),
	int64Field("payload_size", "payload_size", true, func(e *Entry) *int64 { return &e.PayloadSize }),
	strField("payload_sha256", "payload_sha256", true, func(e *Entry) *string { return &e.PayloadSHA256 }),
	boolField("truncated", "truncated", true, func(e *Entry) *bool { return &e.Truncated }),
	boolField("redacted", "redacted", false, func(e *Entry) *bool { return &e.Redacted }),
	strField("source.kind", "source_kind", true, func(e *Entry) *string { return &e.Source.Kind }),
	strField("source.path", "source_path", false, func(e *Entry) *string { return &e.Source.Path }),
	strField("source.key", "source_key", false, func(e *Entry) *string { return &e.Source.Key }),
	strField("source.format", "source_format", false, func(e *Entry) *string { return &e.Source.Format }),
	int64Field("source.offset", "source_offset", true, func(e *Entry) *int64 { return &e.Source.Offset }),
	int64Field("source.line", "source_line", false, func(e *Entry) *int64 { return &e.Source.Line }),
	strField("source.topic", "source_topic", false, func(e *Entry) *string { return &e.Source.Topic }),
	intField("source.partition", "source_partition", false, func(e *Entry) *int { return &e.Source.Partition }),
	int64Field("source.kafka_offset", "source_kafka_offset", false, func(e *Entry) *int64 { return &e.Source.KafkaOff }),
	strField("source.message_key", "source_message_key", false, func(e *Entry) *string { return &e.Source.MessageKey }),
	boolField("source.message_key_base64", "source_message_key_base64", false, func(e *Entry) *bool { return &e.Source.KeyBase64 }),
	strField("source.stream", "source_stream", false, func(e *Entry) *string { return &e.Source.Stream }),
	strField("source.stream_id", "source_stream_id", false, func(e *Entry) *string { return &e.Source.StreamID }),
	strField("stage", "stage", true, func(e *Entry) *string { return &e.Stage }),
	strField("component", "component", true, func(e *Entry) *string { return &e.Component }),
	{Path: "sinks", Redis: "sinks", // comma-separated: sink names hold no comma (config checks)
		Get: func(e *Entry) (string, bool) { return strings.Join(e.Sinks, ","), len(e.Sinks) == 0 },
		Set: func(e *Entry, s string) error {
			e.Sinks = nil
			if s != "" {
				e.Sinks = strings.Split(s, ",")
			}
			return nil
		}},
	strField("host", "host", true, func(e *Entry) *string { return &e.Host }),
	strField("pipeline_version", "pipeline_version", true, func(e *Entry) *string { return &e.PipelineVersion }),
	strField("error.class", "class", true, func(e *Entry) *string { return &e.Error.Class }),
	strField("error.code", "code", true, func(e *Entry) *string { return &e.Error.Code }),
	strField("error.message", "message", true, func(e *Entry) *string { return &e.Error.Message }),
	intField("attempts", "attempts", true, func(e *Entry) *int { return &e.Attempts }),
	timeField("first_failure", "first_failure", func(e *Entry) *time.Time { return &e.FirstFailure }),
	timeField("last_failure", "last_failure", func(e *Entry) *time.Time { return &e.LastFailure }),
	timePtrField("event_time", "event_time", func(e *Entry) **time.Time { return &e.EventTime }),
	timePtrField("window_start", "window_start", func(e *Entry) **time.Time { return &e.WindowStart }),
	timePtrField("window_end", "window_end", func(e *Entry) **time.Time { return &e.WindowEnd }),
	strField("trace_id", "trace_id", false, func(e *Entry) *string { return &e.TraceID }),
	strField("span_id", "span_id", false, func(e *Entry) *string { return &e.SpanID }),
	intField("replay_count", "replay_count", true, func(e *Entry) *int { return &e.ReplayCount }),
	strField("replayed_from", "replayed_from", false, func(e *Entry) *string { return &e.ReplayedFrom }),
}
