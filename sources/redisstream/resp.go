package redisstream

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// The new entries of the stream are read with XREADGROUP sent as a raw
// command (go-redis DoRawWriteTo into a buffer the source keeps) and the
// reply parsed here, in place: go-redis's own XREADGROUP reply builds a
// map and several strings for every entry, which cost more than the rest
// of the read together. Pending and claimed entries, and the re-read for
// the windows, are rarer and keep the go-redis commands.

// rawEntry is one entry of a raw XREADGROUP reply: slices of the reply.
type rawEntry struct {
	id      []byte
	payload []byte // the value of RecordField; nil when the entry has none
}

// serverError is an error reply of the server. It satisfies goredis.Error,
// so that goredis.HasErrorPrefix and redisconn.Classify treat it as they
// treat go-redis's own.
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

var errShortReply = errors.New("redis: truncated reply")

// respReader walks a RESP2 or RESP3 reply held whole in b.
type respReader struct {
	b []byte
	i int
}

// line returns the next line, without its CRLF.
func (r *respReader) line() ([]byte, error) {
	// A header line holds no LF but its end (strings are read by length).
	j := bytes.IndexByte(r.b[r.i:], '\n')
	if j < 2 || r.b[r.i+j-1] != '\r' {
		return nil, errShortReply
	}
	l := r.b[r.i : r.i+j-1]
	r.i += j + 1
	return l, nil
}

// header reads the next element's type and length (the count of an
// aggregate, the size of a string); null is true for a null reply (RESP2
// "*-1" and "$-1", RESP3 "_"). An error reply is returned as a
// serverError.
func (r *respReader) header() (typ byte, n int, null bool, err error) {
	l, err := r.line()
	if err != nil {
		return 0, 0, false, err
	}
	switch l[0] {
	case '-', '!':
		if l[0] == '!' { // RESP3 blob error: its text follows
			if n, err = strconv.Atoi(string(l[1:])); err != nil || n < 0 || r.i+n+2 > len(r.b) {
				return 0, 0, false, errShortReply
			}
			msg := r.b[r.i : r.i+n]
			r.i += n + 2
			return 0, 0, false, serverError(msg)
		}
		return 0, 0, false, serverError(l[1:])
	case '_':
		return '_', 0, true, nil
	}
	n, err = atoi(l[1:])
	if err != nil {
		return 0, 0, false, fmt.Errorf("redis: bad reply header %q", l)
	}
	return l[0], n, n < 0, nil
}

// atoi parses a small decimal integer, maybe negative, without allocating.
func atoi(b []byte) (int, error) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, errShortReply
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errShortReply
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// str reads a string element (bulk, verbatim or simple), nil for a null
// one.
func (r *respReader) str() ([]byte, error) {
	if r.i < len(r.b) && r.b[r.i] == '+' {
		l, err := r.line()
		if err != nil {
			return nil, err
		}
		return l[1:], nil
	}
	typ, n, null, err := r.header()
	if err != nil || null {
		return nil, err
	}
	if typ != '$' && typ != '=' {
		return nil, fmt.Errorf("redis: a string expected, got %q", typ)
	}
	if r.i+n+2 > len(r.b) {
		return nil, errShortReply
	}
	if r.b[r.i+n] != '\r' || r.b[r.i+n+1] != '\n' {
		return nil, fmt.Errorf("redis: a %d-byte string not ended by CRLF", n)
	}
	s := r.b[r.i : r.i+n]
	r.i += n + 2
	if typ == '=' && len(s) >= 4 { // RESP3 verbatim: "txt:" first
		s = s[4:]
	}
	return s, nil
}

// aggregate reads an array or map header and returns its element count
// (a map of n pairs counts 2n), -1 for a null one.
func (r *respReader) aggregate() (int, error) {
	typ, n, null, err := r.header()
	if err != nil {
		return 0, err
	}
	if null {
		return -1, nil
	}
	switch typ {
	case '*', '~':
		return n, nil
	case '%':
		return 2 * n, nil
	}
	return 0, fmt.Errorf("redis: an array expected, got %q", typ)
}

// parseRead appends to dst the entries of reply, the raw reply of an
// XREADGROUP over the one stream stream: in RESP2 an array of [stream,
// entries], in RESP3 a map stream → entries, null when nothing came in
// BLOCK's time; an entry is [id, [field, value, ...]], its field list
// null when the entry was deleted. It allocates nothing: the entries are
// slices of reply.
func parseRead(reply []byte, stream string, dst []rawEntry) ([]rawEntry, error) {
	r := respReader{b: reply}
	resp3 := len(reply) > 0 && reply[0] == '%'
	streams, err := r.aggregate()
	if err != nil || streams < 0 {
		return dst, err
	}
	if resp3 {
		streams /= 2 // a map: name and entries per stream
	}
	for range streams {
		if !resp3 {
			// RESP2: each stream is a two-element array.
			if n, err := r.aggregate(); err != nil || n != 2 {
				return dst, cmp(err, "a [stream, entries] pair")
			}
		}
		name, err := r.str()
		if err != nil {
			return dst, err
		}
		if string(name) != stream {
			return dst, fmt.Errorf("redis: reply for stream %q, not %q", name, stream)
		}
		n, err := r.aggregate()
		if err != nil {
			return dst, err
		}
		for range max(n, 0) {
			if m, err := r.aggregate(); err != nil || m != 2 {
				return dst, cmp(err, "an [id, fields] entry")
			}
			id, err := r.str()
			if err != nil || len(id) == 0 {
				return dst, cmp(err, "an entry id")
			}
			e := rawEntry{id: id}
			f, err := r.aggregate()
			if err != nil {
				return dst, err
			}
			for j := 0; j+1 < f; j += 2 {
				name, err := r.str()
				if err != nil {
					return dst, err
				}
				v, err := r.str()
				if err != nil {
					return dst, err
				}
				if e.payload == nil && string(name) == RecordField {
					e.payload = v
				}
			}
			if f > 0 && f%2 == 1 {
				return dst, errors.New("redis: an entry with an odd field list")
			}
			dst = append(dst, e)
		}
	}
	if r.i != len(reply) {
		return dst, errors.New("redis: trailing bytes after the reply")
	}
	return dst, nil
}

// cmp returns err, or an error saying what was expected.
func cmp(err error, what string) error {
	if err != nil {
		return err
	}
	return errors.New("redis: malformed reply: " + what + " expected")
}

// entry is a stream entry to emit: its id and its record (the value of
// RecordField; empty when the entry has none).
type entry struct {
	id      string
	payload []byte
}

// appendEntries appends es to dst as entries, their payloads still slices
// of the reply and their ids strings that share one allocation.
func appendEntries(dst []entry, es []rawEntry) []entry {
	var sb strings.Builder
	n := 0
	for _, e := range es {
		n += len(e.id)
	}
	sb.Grow(n)
	for _, e := range es {
		sb.Write(e.id)
	}
	all, at := sb.String(), 0
	for _, e := range es {
		dst = append(dst, entry{id: all[at : at+len(e.id)], payload: e.payload})
		at += len(e.id)
	}
	return dst
}

// entriesOf converts go-redis messages (pending, claimed and re-read
// entries) to entries.
func entriesOf(msgs []goredis.XMessage) []entry {
	out := make([]entry, len(msgs))
	for i, m := range msgs {
		payload, _ := m.Values[RecordField].(string)
		out[i] = entry{id: m.ID, payload: []byte(payload)}
	}
	return out
}
