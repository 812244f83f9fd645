package dlq

import (
	"context"
	"encoding/base64"
	"time"
	"unicode/utf8"

	"github.com/tracepipe/tracepipe/pipeline"
)

// RecorderOptions say what a Recorder writes into every entry besides the
// failure itself.
type RecorderOptions struct {
	Host, Version string
	// KeepBytes bounds the payload copied into an entry (0 keeps all).
	KeepBytes int
	// Redact, when set, removes or hashes personal fields from a payload
	// before it goes into an entry (Redactor.Redact).
	Redact func(p []byte) ([]byte, bool)
}

// Recorder is the pipeline's dead-letter queue: it builds an entry from
// each failed record (or failed file, or refused window row) and hands it
// to a Backend. It implements pipeline.DeadLetters.
type Recorder struct {
	b Backend
	o RecorderOptions
}

var _ pipeline.DeadLetters = (*Recorder)(nil)

// NewRecorder returns a Recorder writing to b.
func NewRecorder(b Backend, o RecorderOptions) *Recorder { return &Recorder{b: b, o: o} }

// newEntry starts an entry for failure f, made now by this process.
func (r *Recorder) newEntry(f pipeline.Failure, msg string, src Source) *Entry {
	now := time.Now().UTC()
	return &Entry{
		Version:         SchemaVersion,
		ID:              NewID(now),
		Time:            now,
		Stage:           f.Stage,
		Component:       f.Component,
		Host:            r.o.Host,
		PipelineVersion: r.o.Version,
		Error:           Error{Class: string(f.Class), Code: f.Code, Message: msg},
		Attempts:        1,
		FirstFailure:    now,
		LastFailure:     now,
		Source:          src,
	}
}

// PutRecord implements pipeline.DeadLetters.
func (r *Recorder) PutRecord(ctx context.Context, b *pipeline.Batch, i int, lacking []string) error {
	rec := &b.Records[i]
	u := &b.Units[rec.Unit]
	f := rec.Failure
	src := Source{Kind: "file", Offset: u.Offset, Line: u.Line}
	if b.Origin != nil {
		src.Kind, src.Path, src.Key, src.Format = b.Origin.Kind, b.Origin.Path, b.Origin.Key, b.Origin.Format.String()
		if f.Component == "" && f.Stage == "parse" {
			f.Component = b.Origin.Format.String()
		}
		src.setStreamPosition(b, int(rec.Unit))
	}
	e := r.newEntry(f, pipeline.CutFailure(f), src)
	if len(lacking) > 0 {
		e.Sinks = lacking
	}
	e.TraceID, e.SpanID = string(rec.TraceID), string(rec.SpanID)
	e.ReplayCount, e.ReplayedFrom = int(rec.ReplayCount), string(rec.ReplayedFrom)
	if rec.Time != 0 {
		t := time.Unix(0, rec.Time).UTC()
		e.EventTime = &t
	}
	payload := b.Payload(i)
	size := int64(len(payload))
	if rec.Payload == nil && u.Size > size {
		size = u.Size
	}
	if r.o.Redact != nil {
		if out, changed := r.o.Redact(payload); changed {
			size += int64(len(out) - len(payload))
			payload = out
			e.Redacted = true
		}
	}
	e.SetPayload(payload, size, r.o.KeepBytes)
	return r.b.Put(ctx, e)
}

// setStreamPosition fills the Kafka or Redis Stream fields of a record
// read from one: where its message is, and its key or entry id.
func (s *Source) setStreamPosition(b *pipeline.Batch, unit int) {
	key := b.UnitKey(unit)
	switch s.Kind {
	case "kafka":
		s.Topic, s.Partition, s.KafkaOff, s.Path = s.Path, b.Origin.Partition, s.Offset, ""
		if utf8.Valid(key) {
			s.MessageKey = string(key)
		} else {
			s.MessageKey, s.KeyBase64 = base64.StdEncoding.EncodeToString(key), true
		}
	case "redis":
		s.Stream, s.StreamID, s.Path = s.Path, string(key), ""
	}
}

// PutSource implements pipeline.DeadLetters: one entry of class file, with
// no payload, saying how far reading got.
func (r *Recorder) PutSource(ctx context.Context, s pipeline.SourceFailure) error {
	f := pipeline.Failure{Stage: "read", Component: s.Kind, Class: pipeline.ClassFile, Code: s.Code}
	e := r.newEntry(f, pipeline.CutMessage(s.Err.Error()), Source{Kind: s.Kind, Path: s.Path, Offset: s.Offset, Line: s.Line})
	e.SetPayload(nil, 0, 0)
	return r.b.Put(ctx, e)
}

// PutOther implements pipeline.DeadLetters. The payload is kept whole: a
// window row is useless cut (its group values are the config's fields,
// not redacted).
func (r *Recorder) PutOther(ctx context.Context, o pipeline.OtherFailure) error {
	e := r.newEntry(o.Failure, pipeline.CutMessage(o.Failure.Message), Source{Kind: o.Kind, Path: o.Path})
	e.SetPayload(o.Payload, int64(len(o.Payload)), 0)
	if !o.WindowStart.IsZero() {
		ws, we := o.WindowStart, o.WindowEnd
		e.WindowStart, e.WindowEnd = &ws, &we
	}
	return r.b.Put(ctx, e)
}

// Sync implements pipeline.DeadLetters.
func (r *Recorder) Sync(ctx context.Context) error {
	return r.b.Sync(ctx)
}
