// Package dlq owns the dead-letter queue: the entry schema (this file, the
// one place it is defined), the backends that store entries, and reading
// them back.
package dlq

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"
	"unicode/utf8"
)

// SchemaVersion is written in every entry as "v". Bump it on any change of
// meaning; readers accept every version up to their own.
//
// Version 2 added "sinks": every sink that still lacks a record that
// failed at delivery. A version-1 entry of stage "sink" lacks exactly its
// component (see LackingSinks).
const SchemaVersion = 2

// Entry is one record (or one whole file) that could not be delivered, with
// everything needed to understand, fix and replay it. Field names follow
// Kafka Connect's __connect.errors.* headers and Logstash's DLQ entry where
// they overlap.
type Entry struct {
	Version int       `json:"v"`
	ID      string    `json:"id"`   // time-sortable, unique; see NewID
	Time    time.Time `json:"time"` // when the entry was made

	// Payload holds the raw bytes when they are valid UTF-8, PayloadBase64
	// otherwise: exactly one of them is set (both empty for an empty payload).
	Payload       string `json:"payload,omitempty"`
	PayloadBase64 []byte `json:"payload_base64,omitempty"`
	PayloadSize   int64  `json:"payload_size"` // size of the original, before any cut
	// PayloadSHA256 is the hex SHA-256 of the bytes given to SetPayload,
	// before SetPayload's own cut: of the whole original only when the
	// caller passed all of it.
	PayloadSHA256 string `json:"payload_sha256"`
	Truncated     bool   `json:"truncated"` // payload holds only the first bytes

	Source    Source `json:"source"`
	Stage     string `json:"stage"`     // read, parse, filter, window, sink
	Component string `json:"component"` // parser or sink name, e.g. "otlp", "file"
	// Sinks names every sink that still lacks the record, for a record
	// that failed at delivery (stage sink): replay delivers to those.
	Sinks           []string `json:"sinks,omitempty"`
	Host            string   `json:"host"`
	PipelineVersion string   `json:"pipeline_version"`

	Error Error `json:"error"`

	Attempts     int       `json:"attempts"`
	FirstFailure time.Time `json:"first_failure"`
	LastFailure  time.Time `json:"last_failure"`

	EventTime   *time.Time `json:"event_time,omitempty"`
	WindowStart *time.Time `json:"window_start,omitempty"`
	WindowEnd   *time.Time `json:"window_end,omitempty"`
	TraceID     string     `json:"trace_id,omitempty"`
	SpanID      string     `json:"span_id,omitempty"`

	// Redacted says dlq.redact removed or hashed fields of the payload.
	Redacted     bool   `json:"redacted,omitempty"`
	ReplayCount  int    `json:"replay_count"`
	ReplayedFrom string `json:"replayed_from,omitempty"`
}

// LackingSinks names the sinks that still lack e's record: Sinks, or for
// an entry written before schema version 2, the component of a stage
// "sink" entry. Empty for a record that never reached delivery (it goes
// to every sink on replay).
func (e *Entry) LackingSinks() []string {
	if len(e.Sinks) > 0 || e.Stage != "sink" || e.Component == "" {
		return e.Sinks
	}
	return []string{e.Component}
}

// Source says where the payload was read from.
type Source struct {
	Kind string `json:"kind"`           // file, kafka, redis
	Path string `json:"path,omitempty"` // file path
	// Key identifies the input across renames and restarts where the path
	// does not (a followed file: device, inode and fingerprint); the DLQ's
	// dedupe keys entries by it.
	Key    string `json:"key,omitempty"`
	Format string `json:"format,omitempty"` // jsonl, otlp, zipkin
	// Offset is the byte offset of the payload in the decompressed input
	// (for a "file" entry: how far reading got).
	Offset int64 `json:"offset"`
	Line   int64 `json:"line,omitempty"` // 1-based line where the payload starts

	Topic     string `json:"topic,omitempty"`
	Partition int    `json:"partition,omitempty"`
	KafkaOff  int64  `json:"kafka_offset,omitempty"`
	// MessageKey is the Kafka message's key, as text when it is valid
	// UTF-8, else base64 (KeyBase64 set).
	MessageKey string `json:"message_key,omitempty"`
	KeyBase64  bool   `json:"message_key_base64,omitempty"`
	Stream     string `json:"stream,omitempty"`
	StreamID   string `json:"stream_id,omitempty"`
}

// Error says why: class (see pipeline.Classes), a short machine-readable code
// and a bounded human message that never holds secrets.
type Error struct {
	Class   string `json:"class"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// SetPayload copies p into the entry, keeping at most keep bytes (0 keeps
// all); size is the full size of the original, which may be larger than p.
// The SHA-256 is of p as given, before the cut to keep bytes: if the caller
// already cut p, it is the hash of that cut, not of the original. A cut that
// would split a UTF-8 sequence of an otherwise valid text payload backs off
// to the sequence's start (at most 3 bytes), so the kept part stays text.
// SetPayload does not retain p.
func (e *Entry) SetPayload(p []byte, size int64, keep int) {
	e.PayloadSize = size
	if size < int64(len(p)) {
		e.PayloadSize = int64(len(p))
	}
	sum := sha256.Sum256(p)
	e.PayloadSHA256 = hex.EncodeToString(sum[:])
	if keep > 0 && len(p) > keep {
		p = p[:cutUTF8(p, keep)]
	}
	e.Truncated = e.PayloadSize > int64(len(p))
	if utf8.Valid(p) {
		e.Payload = string(p)
		e.PayloadBase64 = nil
	} else {
		e.Payload = ""
		e.PayloadBase64 = append([]byte(nil), p...)
	}
}

// cutUTF8 returns where to cut p to keep at most keep bytes (0 < keep <
// len(p)): keep itself, or up to 3 bytes less when that lands inside a UTF-8
// sequence and the shorter prefix is valid UTF-8.
func cutUTF8(p []byte, keep int) int {
	cut := keep
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(p[cut]); i++ {
		cut--
	}
	if cut == keep || cut == 0 || !utf8.Valid(p[:cut]) {
		return keep
	}
	return cut
}

// PayloadBytes returns the stored payload bytes: for a base64 payload the
// entry's own slice (valid while the entry is, not to be modified), for a
// text payload a fresh copy.
func (e *Entry) PayloadBytes() []byte {
	if e.PayloadBase64 != nil {
		return e.PayloadBase64
	}
	return []byte(e.Payload)
}

// idState makes NewID monotonic within a process even when the clock stalls.
var idState struct {
	sync.Mutex
	started bool
	lastMS  uint64
	seq     uint64 // low 40 bits of the id's random part, counted up
	rnd     [6]byte
}

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// maxIDMillis is the largest time an id can carry (48 bits of milliseconds).
const maxIDMillis = 1<<48 - 1

// NewID returns a 26-character, time-sortable id (ULID layout: 48 bits of
// milliseconds, then 80 bits that are random per millisecond and counted up
// within it, so ids made by one process sort in the order they were made).
// A t that is not after the last one seen reuses the last millisecond (the
// clock stalled or stepped back), so pass the current time, never an event
// time from the input; a t before 1970 counts as 1970.
func NewID(t time.Time) string {
	var ms uint64
	if m := t.UnixMilli(); m > 0 {
		ms = min(uint64(m), maxIDMillis)
	}
	idState.Lock()
	if idState.started && ms <= idState.lastMS {
		ms = idState.lastMS
		idState.seq++
		if idState.seq == 1<<40 {
			// Carry into the upper 40 bits: the 80 bits count as one.
			idState.seq = 0
			for i := 4; i >= 0; i-- {
				idState.rnd[i]++
				if idState.rnd[i] != 0 {
					break
				}
			}
		}
	} else {
		idState.started = true
		idState.lastMS = ms
		var r [8]byte
		_, _ = rand.Read(r[:])
		idState.seq = binary.BigEndian.Uint64(r[:]) >> 24 // 40 bits, room to count up
		_, _ = rand.Read(idState.rnd[:5])
	}
	seq := idState.seq
	rnd := idState.rnd
	idState.Unlock()

	var b [16]byte
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	copy(b[6:11], rnd[:5])
	b[11], b[12], b[13], b[14], b[15] = byte(seq>>32), byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	return encodeCrockford(b)
}

// encodeCrockford writes 128 bits as 26 base32 characters, most significant
// first (the first character carries the top 3 bits).
func encodeCrockford(b [16]byte) string {
	var out [26]byte
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// Prepare fills Version, Time and ID when they are zero and validates the
// entry: what every backend's Put does first.
func (e *Entry) Prepare() error {
	if e.Version == 0 {
		e.Version = SchemaVersion
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.ID == "" {
		e.ID = NewID(e.Time)
	}
	return e.Validate()
}
