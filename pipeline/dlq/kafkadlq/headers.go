package kafkadlq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// Header names: "dlq." followed by the entry field's JSON path (see the
// package comment), one per field of dlq.Fields, plus hPayloadBinary.
const (
	hPrefix        = "dlq."
	hID            = hPrefix + "id"
	hPayloadBinary = hPrefix + "payload_binary" // the value holds raw bytes, not UTF-8 text
)

// headerKeys[i] is the header of dlq.Fields[i]; fieldOf maps a header back.
var headerKeys, fieldOf = func() ([]string, map[string]int) {
	keys := make([]string, len(dlq.Fields))
	of := make(map[string]int, len(dlq.Fields))
	for i, f := range dlq.Fields {
		keys[i] = hPrefix + f.Path
		of[keys[i]] = i
	}
	return keys, of
}()

// encode returns the message for e: key the id, value the raw payload,
// every other field a header (zero values left out).
func encode(e *dlq.Entry) kafkago.Message {
	h := make([]kafkago.Header, 0, 24)
	for i := range dlq.Fields {
		if v, zero := dlq.Fields[i].Get(e); !zero {
			h = append(h, kafkago.Header{Key: headerKeys[i], Value: []byte(v)})
		}
	}
	if e.PayloadBase64 != nil {
		h = append(h, kafkago.Header{Key: hPayloadBinary, Value: []byte("true")})
	}
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
	for _, h := range headers {
		if h.Key == hPayloadBinary {
			b, err := strconv.ParseBool(string(h.Value))
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s %q: %v", h.Key, h.Value, err))
			}
			binary = b
			continue
		}
		i, ok := fieldOf[h.Key]
		if !ok || len(h.Value) == 0 {
			continue // not ours, or a field a newer writer added
		}
		if err := dlq.Fields[i].Set(e, string(h.Value)); err != nil {
			errs = append(errs, fmt.Sprintf("%s %q: %v", h.Key, h.Value, err))
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
