package redisdlq

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// fPayload is the stream field of the payload, the one field of an entry
// outside dlq.Fields (binary safe: the raw bytes).
const fPayload = "payload"

// appendFields appends e's fields as name, value pairs (the arguments of
// XADD after the id) to dst and returns it with the bytes they hold: every
// field of dlq.Fields under its Redis name, zero values left out unless
// the field is Always written, then the payload (the text payload, or the
// bytes of PayloadBase64). Times are RFC 3339 with nanoseconds.
func appendFields(dst []any, e *dlq.Entry) ([]any, int64) {
	var n int64
	for i := range dlq.Fields {
		f := &dlq.Fields[i]
		if v, zero := f.Get(e); !zero || f.Always {
			dst = append(dst, f.Redis, v)
			n += int64(len(f.Redis) + len(v))
		}
	}
	switch {
	case len(e.PayloadBase64) > 0:
		dst = append(dst, fPayload, e.PayloadBase64)
		n += int64(len(fPayload) + len(e.PayloadBase64))
	case e.Payload != "":
		dst = append(dst, fPayload, e.Payload)
		n += int64(len(fPayload) + len(e.Payload))
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
	for i := range dlq.Fields {
		f := &dlq.Fields[i]
		v, _ := values[f.Redis].(string)
		if v == "" {
			continue
		}
		if err := f.Set(&e, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q %w", f.Redis, v, err))
		}
	}
	if p, _ := values[fPayload].(string); utf8.ValidString(p) {
		e.Payload = p
	} else {
		e.PayloadBase64 = []byte(p)
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
