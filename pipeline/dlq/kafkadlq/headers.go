package kafkadlq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// Header names: "dlq." followed by the entry field's JSON path (see the
// package comment). Keep in step with dlq.Entry.
const (
	hVersion         = "dlq.v"
	hID              = "dlq.id"
	hTime            = "dlq.time"
	hPayloadBinary   = "dlq.payload_binary"
	hPayloadSize     = "dlq.payload_size"
	hPayloadSHA256   = "dlq.payload_sha256"
	hTruncated       = "dlq.truncated"
	hRedacted        = "dlq.redacted"
	hSourceKind      = "dlq.source.kind"
	hSourcePath      = "dlq.source.path"
	hSourceFormat    = "dlq.source.format"
	hSourceOffset    = "dlq.source.offset"
	hSourceLine      = "dlq.source.line"
	hSourceTopic     = "dlq.source.topic"
	hSourcePartition = "dlq.source.partition"
	hSourceKafkaOff  = "dlq.source.kafka_offset"
	hSourceStream    = "dlq.source.stream"
	hSourceStreamID  = "dlq.source.stream_id"
	hStage           = "dlq.stage"
	hComponent       = "dlq.component"
	hSinks           = "dlq.sinks" // comma-separated; sink names hold no comma
	hHost            = "dlq.host"
	hPipelineVersion = "dlq.pipeline_version"
	hErrorClass      = "dlq.error.class"
	hErrorCode       = "dlq.error.code"
	hErrorMessage    = "dlq.error.message"
	hAttempts        = "dlq.attempts"
	hFirstFailure    = "dlq.first_failure"
	hLastFailure     = "dlq.last_failure"
	hEventTime       = "dlq.event_time"
	hWindowStart     = "dlq.window_start"
	hWindowEnd       = "dlq.window_end"
	hTraceID         = "dlq.trace_id"
	hSpanID          = "dlq.span_id"
	hReplayCount     = "dlq.replay_count"
	hReplayedFrom    = "dlq.replayed_from"
)

// headerWriter appends headers, leaving zero values out.
type headerWriter []kafkago.Header

func (h *headerWriter) str(k, v string) {
	if v != "" {
		*h = append(*h, kafkago.Header{Key: k, Value: []byte(v)})
	}
}

func (h *headerWriter) int(k string, v int64) {
	if v != 0 {
		*h = append(*h, kafkago.Header{Key: k, Value: strconv.AppendInt(nil, v, 10)})
	}
}

func (h *headerWriter) bool(k string, v bool) {
	if v {
		*h = append(*h, kafkago.Header{Key: k, Value: []byte("true")})
	}
}

func (h *headerWriter) time(k string, t time.Time) {
	if !t.IsZero() {
		*h = append(*h, kafkago.Header{Key: k, Value: t.AppendFormat(nil, time.RFC3339Nano)})
	}
}

func (h *headerWriter) timePtr(k string, t *time.Time) {
	if t != nil {
		*h = append(*h, kafkago.Header{Key: k, Value: t.AppendFormat(nil, time.RFC3339Nano)})
	}
}

// encode returns the message for e: key the id, value the raw payload,
// every other field a header.
func encode(e *dlq.Entry) kafkago.Message {
	h := make(headerWriter, 0, 24)
	h.int(hVersion, int64(e.Version))
	h.str(hID, e.ID)
	h.time(hTime, e.Time)
	h.bool(hPayloadBinary, e.PayloadBase64 != nil)
	h.int(hPayloadSize, e.PayloadSize)
	h.str(hPayloadSHA256, e.PayloadSHA256)
	h.bool(hTruncated, e.Truncated)
	h.bool(hRedacted, e.Redacted)
	s := &e.Source
	h.str(hSourceKind, s.Kind)
	h.str(hSourcePath, s.Path)
	h.str(hSourceFormat, s.Format)
	h.int(hSourceOffset, s.Offset)
	h.int(hSourceLine, s.Line)
	h.str(hSourceTopic, s.Topic)
	h.int(hSourcePartition, int64(s.Partition))
	h.int(hSourceKafkaOff, s.KafkaOff)
	h.str(hSourceStream, s.Stream)
	h.str(hSourceStreamID, s.StreamID)
	h.str(hStage, e.Stage)
	h.str(hComponent, e.Component)
	h.str(hSinks, strings.Join(e.Sinks, ","))
	h.str(hHost, e.Host)
	h.str(hPipelineVersion, e.PipelineVersion)
	h.str(hErrorClass, e.Error.Class)
	h.str(hErrorCode, e.Error.Code)
	h.str(hErrorMessage, e.Error.Message)
	h.int(hAttempts, int64(e.Attempts))
	h.time(hFirstFailure, e.FirstFailure)
	h.time(hLastFailure, e.LastFailure)
	h.timePtr(hEventTime, e.EventTime)
	h.timePtr(hWindowStart, e.WindowStart)
	h.timePtr(hWindowEnd, e.WindowEnd)
	h.str(hTraceID, e.TraceID)
	h.str(hSpanID, e.SpanID)
	h.int(hReplayCount, int64(e.ReplayCount))
	h.str(hReplayedFrom, e.ReplayedFrom)

	var value []byte
	if e.PayloadBase64 != nil {
		value = e.PayloadBase64
	} else {
		value = []byte(e.Payload)
	}
	return kafkago.Message{Key: []byte(e.ID), Value: value, Headers: h, Time: e.Time}
}

// messageSize is kafka-go's size of m as it checks it against BatchBytes,
// give or take a few bytes of varint lengths.
func messageSize(m *kafkago.Message) int64 {
	n := int64(len(m.Key) + len(m.Value) + 32)
	for _, h := range m.Headers {
		n += int64(len(h.Key) + len(h.Value) + 10)
	}
	return n
}

// errUndecodable is wrapped by decode's errors.
var errUndecodable = errors.New("not a DLQ entry")

// decode rebuilds the entry from a message's value and headers. Headers
// not named dlq.* and unknown dlq.* names are ignored (a newer writer may
// add fields); a missing header is the field's zero value.
func decode(value []byte, headers []kafkago.Header) (*dlq.Entry, error) {
	e := &dlq.Entry{}
	var binary bool
	var errs []string
	bad := func(k string, v []byte, err error) {
		errs = append(errs, fmt.Sprintf("%s %q: %v", k, v, err))
	}
	integer := func(k string, v []byte) int64 {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			bad(k, v, err)
		}
		return n
	}
	boolean := func(k string, v []byte) bool {
		b, err := strconv.ParseBool(string(v))
		if err != nil {
			bad(k, v, err)
		}
		return b
	}
	tm := func(k string, v []byte) time.Time {
		t, err := time.Parse(time.RFC3339Nano, string(v))
		if err != nil {
			bad(k, v, err)
		}
		return t
	}
	tmPtr := func(k string, v []byte) *time.Time {
		t := tm(k, v)
		return &t
	}
	for _, h := range headers {
		if !strings.HasPrefix(h.Key, "dlq.") {
			continue
		}
		k, v := h.Key, h.Value
		switch k {
		case hVersion:
			e.Version = int(integer(k, v))
		case hID:
			e.ID = string(v)
		case hTime:
			e.Time = tm(k, v)
		case hPayloadBinary:
			binary = boolean(k, v)
		case hPayloadSize:
			e.PayloadSize = integer(k, v)
		case hPayloadSHA256:
			e.PayloadSHA256 = string(v)
		case hTruncated:
			e.Truncated = boolean(k, v)
		case hRedacted:
			e.Redacted = boolean(k, v)
		case hSourceKind:
			e.Source.Kind = string(v)
		case hSourcePath:
			e.Source.Path = string(v)
		case hSourceFormat:
			e.Source.Format = string(v)
		case hSourceOffset:
			e.Source.Offset = integer(k, v)
		case hSourceLine:
			e.Source.Line = integer(k, v)
		case hSourceTopic:
			e.Source.Topic = string(v)
		case hSourcePartition:
			e.Source.Partition = int(integer(k, v))
		case hSourceKafkaOff:
			e.Source.KafkaOff = integer(k, v)
		case hSourceStream:
			e.Source.Stream = string(v)
		case hSourceStreamID:
			e.Source.StreamID = string(v)
		case hStage:
			e.Stage = string(v)
		case hComponent:
			e.Component = string(v)
		case hSinks:
			if len(v) > 0 {
				e.Sinks = strings.Split(string(v), ",")
			}
		case hHost:
			e.Host = string(v)
		case hPipelineVersion:
			e.PipelineVersion = string(v)
		case hErrorClass:
			e.Error.Class = string(v)
		case hErrorCode:
			e.Error.Code = string(v)
		case hErrorMessage:
			e.Error.Message = string(v)
		case hAttempts:
			e.Attempts = int(integer(k, v))
		case hFirstFailure:
			e.FirstFailure = tm(k, v)
		case hLastFailure:
			e.LastFailure = tm(k, v)
		case hEventTime:
			e.EventTime = tmPtr(k, v)
		case hWindowStart:
			e.WindowStart = tmPtr(k, v)
		case hWindowEnd:
			e.WindowEnd = tmPtr(k, v)
		case hTraceID:
			e.TraceID = string(v)
		case hSpanID:
			e.SpanID = string(v)
		case hReplayCount:
			e.ReplayCount = int(integer(k, v))
		case hReplayedFrom:
			e.ReplayedFrom = string(v)
		}
	}
	switch {
	case e.ID == "":
		errs = append(errs, "no "+hID+" header")
	case e.Version > dlq.SchemaVersion:
		errs = append(errs, fmt.Sprintf("schema version %d is newer than this reader's %d", e.Version, dlq.SchemaVersion))
	}
	if errs != nil {
		return nil, fmt.Errorf("%w: %s", errUndecodable, strings.Join(errs, "; "))
	}
	if binary {
		if len(value) > 0 {
			e.PayloadBase64 = append([]byte(nil), value...)
		}
	} else {
		e.Payload = string(value)
	}
	return e, nil
}
