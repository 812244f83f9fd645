package redisdlq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// Stream entry field names: one per dlq.Entry field, flat. Keep in step
// with entry.go (TestFieldsCoverEntry checks that every Entry field has one).
const (
	fVersion         = "v"
	fID              = "id"
	fTime            = "time"
	fClass           = "class"
	fCode            = "code"
	fMessage         = "message"
	fStage           = "stage"
	fComponent       = "component"
	fSinks           = "sinks" // comma-separated; sink names hold no comma
	fHost            = "host"
	fPipelineVersion = "pipeline_version"
	fSourceKind      = "source_kind"
	fSourcePath      = "source_path"
	fSourceFormat    = "source_format"
	fSourceOffset    = "source_offset"
	fSourceLine      = "source_line"
	fSourceTopic     = "source_topic"
	fSourcePartition = "source_partition"
	fSourceKafkaOff  = "source_kafka_offset"
	fSourceStream    = "source_stream"
	fSourceStreamID  = "source_stream_id"
	fAttempts        = "attempts"
	fFirstFailure    = "first_failure"
	fLastFailure     = "last_failure"
	fEventTime       = "event_time"
	fWindowStart     = "window_start"
	fWindowEnd       = "window_end"
	fTraceID         = "trace_id"
	fSpanID          = "span_id"
	fReplayCount     = "replay_count"
	fReplayedFrom    = "replayed_from"
	fPayload         = "payload"
	fPayloadSize     = "payload_size"
	fPayloadSHA256   = "payload_sha256"
	fTruncated       = "truncated"
	fRedacted        = "redacted"
)

// appendFields appends e's fields as name, value pairs (the arguments of
// XADD after the id) to dst and returns it with the bytes they hold.
// Optional fields that are empty are left out, as in the file DLQ's JSON.
// Times are RFC 3339 with nanoseconds. The payload is the raw bytes
// (binary safe): the text payload, or the bytes of PayloadBase64.
func appendFields(dst []any, e *dlq.Entry) ([]any, int64) {
	start := len(dst)
	str := func(name, v string) {
		dst = append(dst, name, v)
	}
	opt := func(name, v string) {
		if v != "" {
			dst = append(dst, name, v)
		}
	}
	num := func(name string, v int64) {
		dst = append(dst, name, strconv.FormatInt(v, 10))
	}
	optNum := func(name string, v int64) {
		if v != 0 {
			num(name, v)
		}
	}
	tm := func(name string, t time.Time) {
		dst = append(dst, name, t.Format(time.RFC3339Nano))
	}
	optTime := func(name string, t *time.Time) {
		if t != nil {
			tm(name, *t)
		}
	}
	num(fVersion, int64(e.Version))
	str(fID, e.ID)
	tm(fTime, e.Time)
	str(fClass, e.Error.Class)
	str(fCode, e.Error.Code)
	str(fMessage, e.Error.Message)
	str(fStage, e.Stage)
	str(fComponent, e.Component)
	opt(fSinks, strings.Join(e.Sinks, ","))
	str(fHost, e.Host)
	str(fPipelineVersion, e.PipelineVersion)
	s := &e.Source
	str(fSourceKind, s.Kind)
	opt(fSourcePath, s.Path)
	opt(fSourceFormat, s.Format)
	num(fSourceOffset, s.Offset)
	optNum(fSourceLine, s.Line)
	opt(fSourceTopic, s.Topic)
	optNum(fSourcePartition, int64(s.Partition))
	optNum(fSourceKafkaOff, s.KafkaOff)
	opt(fSourceStream, s.Stream)
	opt(fSourceStreamID, s.StreamID)
	num(fAttempts, int64(e.Attempts))
	tm(fFirstFailure, e.FirstFailure)
	tm(fLastFailure, e.LastFailure)
	optTime(fEventTime, e.EventTime)
	optTime(fWindowStart, e.WindowStart)
	optTime(fWindowEnd, e.WindowEnd)
	opt(fTraceID, e.TraceID)
	opt(fSpanID, e.SpanID)
	num(fReplayCount, int64(e.ReplayCount))
	opt(fReplayedFrom, e.ReplayedFrom)
	if len(e.PayloadBase64) > 0 {
		dst = append(dst, fPayload, e.PayloadBase64)
	} else {
		opt(fPayload, e.Payload)
	}
	num(fPayloadSize, e.PayloadSize)
	str(fPayloadSHA256, e.PayloadSHA256)
	str(fTruncated, strconv.FormatBool(e.Truncated))
	if e.Redacted {
		str(fRedacted, "true")
	}

	var n int64
	for _, v := range dst[start:] {
		switch v := v.(type) {
		case string:
			n += int64(len(v))
		case []byte:
			n += int64(len(v))
		}
	}
	return dst, n
}

// errVersion marks an entry written by a newer schema than this reader's.
var errVersion = errors.New("schema version is newer than this reader")

// decodeEntry reads a stream entry's fields back into an Entry. Fields it
// does not know are ignored (a newer writer may add some); a missing field
// is the zero value. The payload goes to Payload when it is valid UTF-8 and
// to PayloadBase64 otherwise, the rule dlq.Entry.SetPayload follows, so an
// entry made with SetPayload comes back equal.
func decodeEntry(values map[string]any) (*dlq.Entry, error) {
	var (
		e    dlq.Entry
		errs []error
	)
	str := func(name string) string {
		s, _ := values[name].(string)
		return s
	}
	num := func(name string) int64 {
		s := str(name)
		if s == "" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not an integer", name, s))
		}
		return n
	}
	tm := func(name string) time.Time {
		s := str(name)
		if s == "" {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not an RFC 3339 time", name, s))
		}
		return t
	}
	optTime := func(name string) *time.Time {
		if _, ok := values[name]; !ok {
			return nil
		}
		t := tm(name)
		return &t
	}
	e.Version = int(num(fVersion))
	e.ID = str(fID)
	e.Time = tm(fTime)
	e.Error = dlq.Error{Class: str(fClass), Code: str(fCode), Message: str(fMessage)}
	e.Stage = str(fStage)
	e.Component = str(fComponent)
	if v := str(fSinks); v != "" {
		e.Sinks = strings.Split(v, ",")
	}
	e.Host = str(fHost)
	e.PipelineVersion = str(fPipelineVersion)
	e.Source = dlq.Source{
		Kind:      str(fSourceKind),
		Path:      str(fSourcePath),
		Format:    str(fSourceFormat),
		Offset:    num(fSourceOffset),
		Line:      num(fSourceLine),
		Topic:     str(fSourceTopic),
		Partition: int(num(fSourcePartition)),
		KafkaOff:  num(fSourceKafkaOff),
		Stream:    str(fSourceStream),
		StreamID:  str(fSourceStreamID),
	}
	e.Attempts = int(num(fAttempts))
	e.FirstFailure = tm(fFirstFailure)
	e.LastFailure = tm(fLastFailure)
	e.EventTime = optTime(fEventTime)
	e.WindowStart = optTime(fWindowStart)
	e.WindowEnd = optTime(fWindowEnd)
	e.TraceID = str(fTraceID)
	e.SpanID = str(fSpanID)
	e.ReplayCount = int(num(fReplayCount))
	e.ReplayedFrom = str(fReplayedFrom)
	if p := str(fPayload); utf8.ValidString(p) {
		e.Payload = p
	} else {
		e.PayloadBase64 = []byte(p)
	}
	e.PayloadSize = num(fPayloadSize)
	e.PayloadSHA256 = str(fPayloadSHA256)
	switch t := str(fTruncated); t {
	case "true":
		e.Truncated = true
	case "false", "":
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not a boolean", fTruncated, t))
	}
	switch t := str(fRedacted); t {
	case "true":
		e.Redacted = true
	case "false", "":
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not a boolean", fRedacted, t))
	}
	if e.ID == "" {
		errs = append(errs, errors.New("no id field: not a DLQ entry"))
	}
	if e.Version > dlq.SchemaVersion {
		errs = append(errs, fmt.Errorf("%w: v %d > %d", errVersion, e.Version, dlq.SchemaVersion))
	}
	if errs != nil {
		return nil, errors.Join(errs...)
	}
	return &e, nil
}
