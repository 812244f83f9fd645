package dlq

// Redaction of DLQ payloads (config dlq.redact).
//
// A record that failed may carry personal data (an email, a user id) that
// must not sit in the DLQ. A Redactor removes the configured fields from a
// payload, or replaces their values with a hash, before the entry is made.
//
// Field names are dotted paths, matched exactly (case-sensitive, after JSON
// unescaping of the keys). In a payload that is valid JSON (or a sequence of
// JSON values, such as JSON lines), "user.email" matches:
//
//   - a nested path: {"user":{"email":…}};
//   - a flat key holding dots: {"user.email":…};
//   - any mix of the two: {"user":{"address.city":…}} for "user.address.city";
//   - at any depth: a path may begin at any object in the document, not only
//     at the top, so the record may sit in an envelope, a span array or a
//     tags map ({"tags":{"user.email":…}} matches "user.email");
//   - through arrays: arrays do not take a path segment, each element is
//     looked into ({"users":[{"email":…},…]} matches "users.email"), which
//     covers Zipkin span arrays and OTLP resourceSpans[].scopeSpans[].spans[];
//   - an OTLP attribute: an element {"key":"user.email","value":{…}} of any
//     array named "attributes" (resource, scope, span, event, link or log
//     attributes): its key must equal the whole field name.
//
// Mode remove deletes the member (or the whole attribute element) with its
// separating comma. Mode hash replaces the value with the JSON string
// "sha256:<16 hex>", the first 16 hex digits of the SHA-256 of the value's
// JSON text (a string is hashed with its quotes, as written; an object or
// array with the whitespace outside strings left out), so equal values stay
// joinable; an attribute's value becomes {"stringValue":"sha256:<16 hex>"},
// hashed from the scalar inside the AnyValue ({"stringValue":"a@b.c"} hashes
// as "a@b.c", like a plain "email":"a@b.c") or from the whole value when it
// is not a single scalar (arrayValue, kvlistValue). A value that already is
// such a hash is left alone, so redacting again (a replayed entry failing
// again) changes nothing. Everything else is kept byte for byte: key order,
// number literals, whitespace, invalid UTF-8.
//
// Input that is not valid JSON (truncated or malformed records, or nesting
// deeper than redactMaxDepth) gets a best-effort, linear scan instead: no
// structure can be trusted, so no member is removed (that could not be done
// safely) and paths are not followed. Every member whose key equals the
// field's last segment, or a dotted tail of it ("email", "user.email" for
// field "user.email"), at any depth, has its value replaced: a string (also
// one cut off by the end of the input), a number, a literal or a bare word
// (up to the next , } ] or line end) becomes the hash (mode hash) or the
// string "[redacted]" (mode remove); an object or array value has every
// scalar inside it replaced so. After an OTLP-style "key":"<whole field
// name>" member, every scalar value in the rest of that object is replaced.
// Keys are never changed. This over-redacts rather than under-redacts:
// {"order":{"email":…}} loses its email for field "user.email" too.
//
// Time and memory are linear in the payload size (times the number and
// length of the field names): one validating pass that records byte ranges,
// at most one fallback pass, then one splice.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"unicode/utf16"
	"unicode/utf8"
)

// Redactor removes or hashes named fields from DLQ payloads. It is immutable
// and safe for concurrent use.
type Redactor struct {
	fields []string
	hash   bool
}

// redactMaxDepth is the deepest nesting the structured pass follows; deeper
// input gets the fallback scan (which keeps valid JSON valid).
const redactMaxDepth = 1000

// NewRedactor returns nil when fields is empty (nothing to do). mode is
// "remove" or "hash". An empty field name is an error; repeated names count
// once.
func NewRedactor(fields []string, mode string) (*Redactor, error) {
	if len(fields) == 0 {
		return nil, nil
	}
	r := &Redactor{}
	switch mode {
	case "remove":
	case "hash":
		r.hash = true
	default:
		return nil, fmt.Errorf("dlq: redact mode %q: want remove or hash", mode)
	}
	seen := make(map[string]bool, len(fields))
	for _, f := range fields {
		if f == "" {
			return nil, errors.New("dlq: redact: empty field name")
		}
		if !seen[f] {
			seen[f] = true
			r.fields = append(r.fields, f)
		}
	}
	return r, nil
}

// Redact returns the payload with every named field removed (mode remove) or
// its value replaced by the string "sha256:<first 16 hex digits of sha256 of
// the value's JSON text>" (mode hash: equal values stay joinable), and
// whether anything changed. It never modifies p; when nothing changed, out is
// p itself. A nil Redactor changes nothing. See the top of this file for
// what matches, and for the best-effort handling of input that is not valid
// JSON.
func (r *Redactor) Redact(p []byte) (out []byte, changed bool) {
	if r == nil || len(p) == 0 {
		return p, false
	}
	w := rdWalker{r: r, p: p}
	w.plan()
	return w.splice()
}

// plan records the edits: from the structured pass, or from the fallback
// scan when p is not JSON.
func (w *rdWalker) plan() {
	if !w.strict() {
		w.edits = w.edits[:0]
		w.values = w.values[:0]
		w.states = w.states[:0]
		w.loose()
	}
}

// rdKind is what an edit puts in place of its byte range.
type rdKind uint8

const (
	rdNone     rdKind = iota // dropped edit (a placeholder, or inside a replaced value)
	rdDelete                 // nothing
	rdHash                   // "sha256:<hex>"
	rdHashAttr               // {"stringValue":"sha256:<hex>"}
	rdMark                   // "[redacted]"
)

const (
	rdHashLen = len(`"sha256:`) + 16 + len(`"`)
	rdAttrPre = `{"stringValue":"sha256:`
	rdMarkStr = `"[redacted]"`
)

// rdEdit replaces p[start:end]; hashes are of p[src0:src1], compacted
// (whitespace outside strings left out) unless raw. A filled attribute
// value's edit has skip set to the index after the edits it dropped.
type rdEdit struct {
	start, end int
	src0, src1 int
	skip       int
	kind       rdKind
	raw        bool
}

// rdState says that the field's first off bytes (whole segments and their
// dot) were matched by the keys on the way to the current value.
type rdState struct{ field, off int }

// rdValueRef is a "value" member of an element of an "attributes" array,
// waiting for its element's "key" to be known.
type rdValueRef struct {
	edit       int // index of its placeholder edit
	editsEnd   int // len(edits) once the value was parsed
	start, end int // the value
	src0, src1 int // what to hash
}

// rdAttr collects what an element of an "attributes" array says.
type rdAttr struct{ match bool }

type rdWalker struct {
	r       *Redactor
	p       []byte
	edits   []rdEdit     // in order of start, not overlapping
	states  []rdState    // a stack of partial path matches
	values  []rdValueRef // a stack of attribute values
	scratch []byte       // unescaped key
	// single0, single1: set by object to the range of its only member's
	// value when it has exactly one member and that value is a scalar, else
	// single0 is -1.
	single0, single1 int
}

func (w *rdWalker) ws(i int) int {
	for i < len(w.p) {
		switch w.p[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// strict walks p as a sequence of one or more JSON values, recording edits;
// false when p is not that (or nests deeper than redactMaxDepth).
func (w *rdWalker) strict() bool {
	i := w.ws(0)
	if i == len(w.p) {
		return false
	}
	for i < len(w.p) {
		var ok bool
		if i, ok = w.value(i, 0, 0, 0, true, false); !ok {
			return false
		}
		i = w.ws(i)
	}
	return true
}

// value parses the value at p[i] and returns the index after it. The
// carried path states are states[cLo:cHi]; live is false inside a value that
// is already removed or hashed (parsed only to be validated); attrs says the
// value is the value of a member named "attributes".
func (w *rdWalker) value(i, depth, cLo, cHi int, live, attrs bool) (int, bool) {
	p := w.p
	if i >= len(p) {
		return i, false
	}
	switch p[i] {
	case '{':
		return w.object(i, depth+1, cLo, cHi, live, nil)
	case '[':
		return w.array(i, depth+1, cLo, cHi, live, attrs)
	case '"':
		return rdString(p, i)
	case 't':
		return rdLiteral(p, i, "true")
	case 'f':
		return rdLiteral(p, i, "false")
	case 'n':
		return rdLiteral(p, i, "null")
	default:
		return rdNumber(p, i)
	}
}

func (w *rdWalker) object(i, depth, cLo, cHi int, live bool, attr *rdAttr) (int, bool) {
	if depth > redactMaxDepth {
		return i, false
	}
	p := w.p
	i = w.ws(i + 1)
	if i < len(p) && p[i] == '}' {
		w.single0 = -1
		return i + 1, true
	}
	var rm rdRemover
	n, s0, s1 := 0, -1, -1
	for {
		if i >= len(p) || p[i] != '"' {
			return i, false
		}
		ks := i
		ke, ok := rdString(p, i)
		if !ok {
			return ke, false
		}
		if i = w.ws(ke); i >= len(p) || p[i] != ':' {
			return i, false
		}
		vs := w.ws(i + 1)
		matched, isAttrs, isKey, isValue := false, false, false, false
		lo := len(w.states)
		if live {
			key := w.unquote(ks+1, ke-1)
			matched = w.step(key, cLo, cHi)
			isAttrs = string(key) == "attributes"
			if attr != nil {
				isKey = string(key) == "key"
				isValue = string(key) == "value"
			}
		}
		rm.next(w, ks)
		var ve int
		if matched {
			w.states = w.states[:lo]
			if ve, ok = w.value(vs, depth, 0, 0, false, false); !ok {
				return ve, false
			}
			if w.r.hash {
				w.hashEdit(vs, ve)
				rm.keep(ve)
			} else {
				rm.remove(w, ks, ve)
			}
		} else {
			ph := -1
			if isValue {
				ph = len(w.edits)
				w.edits = append(w.edits, rdEdit{start: vs, end: vs})
			}
			ve, ok = w.value(vs, depth, lo, len(w.states), live, isAttrs)
			w.states = w.states[:lo]
			if !ok {
				return ve, false
			}
			if isKey && p[vs] == '"' && w.isField(w.unquote(vs+1, ve-1)) {
				attr.match = true
			}
			if isValue {
				ref := rdValueRef{edit: ph, editsEnd: len(w.edits), start: vs, end: ve, src0: vs, src1: ve}
				if p[vs] == '{' && w.single0 >= 0 {
					ref.src0, ref.src1 = w.single0, w.single1
				}
				w.values = append(w.values, ref)
			}
			rm.keep(ve)
		}
		n++
		if n == 1 && p[vs] != '{' && p[vs] != '[' {
			s0, s1 = vs, ve
		}
		i = w.ws(ve)
		if i < len(p) && p[i] == ',' {
			i = w.ws(i + 1)
			continue
		}
		if i < len(p) && p[i] == '}' {
			rm.finish(w)
			w.single0, w.single1 = -1, -1
			if n == 1 {
				w.single0, w.single1 = s0, s1
			}
			return i + 1, true
		}
		return i, false
	}
}

func (w *rdWalker) array(i, depth, cLo, cHi int, live, attrs bool) (int, bool) {
	if depth > redactMaxDepth {
		return i, false
	}
	p := w.p
	i = w.ws(i + 1)
	if i < len(p) && p[i] == ']' {
		return i + 1, true
	}
	var rm rdRemover
	for {
		es := i
		rm.next(w, es)
		var ee int
		var ok bool
		if attrs && i < len(p) && p[i] == '{' {
			mark, vmark := len(w.edits), len(w.values)
			var a rdAttr
			if ee, ok = w.object(i, depth+1, cLo, cHi, live, &a); !ok {
				return ee, false
			}
			switch {
			case !a.match:
				rm.keep(ee)
			case w.r.hash:
				w.fillValues(vmark)
				rm.keep(ee)
			default:
				w.edits = w.edits[:mark]
				rm.remove(w, es, ee)
			}
			w.values = w.values[:vmark]
		} else {
			if ee, ok = w.value(i, depth, cLo, cHi, live, false); !ok {
				return ee, false
			}
			rm.keep(ee)
		}
		i = w.ws(ee)
		if i < len(p) && p[i] == ',' {
			i = w.ws(i + 1)
			continue
		}
		if i < len(p) && p[i] == ']' {
			rm.finish(w)
			return i + 1, true
		}
		return i, false
	}
}

// fillValues turns the placeholders of the attribute values from
// values[vmark:] into hashes, dropping the edits made inside those values.
func (w *rdWalker) fillValues(vmark int) {
	for _, v := range w.values[vmark:] {
		if rdIsHash(w.p[v.src0:v.src1]) {
			continue // already redacted
		}
		w.edits[v.edit] = rdEdit{start: v.start, end: v.end, src0: v.src0, src1: v.src1, skip: v.editsEnd, kind: rdHashAttr}
		// Drop the edits inside, jumping over those an inner attribute
		// value already dropped (so nesting costs nothing more).
		for k := v.edit + 1; k < v.editsEnd; {
			e := &w.edits[k]
			e.kind = rdNone
			if e.skip > k {
				k = e.skip
			} else {
				k++
			}
		}
	}
}

// step matches key against every field from its start and from each
// carried state; it reports a whole match, else pushes the partial ones.
func (w *rdWalker) step(key []byte, cLo, cHi int) bool {
	for f, name := range w.r.fields {
		if w.advance(f, name, 0, key) {
			return true
		}
	}
	for k := cLo; k < cHi; k++ {
		s := w.states[k]
		if w.advance(s.field, w.r.fields[s.field], s.off, key) {
			return true
		}
	}
	return false
}

func (w *rdWalker) advance(f int, name string, off int, key []byte) bool {
	rest := name[off:]
	if len(key) > len(rest) || rest[:len(key)] != string(key) {
		return false
	}
	if len(key) == len(rest) {
		return true
	}
	if rest[len(key)] == '.' {
		w.states = append(w.states, rdState{f, off + len(key) + 1})
	}
	return false
}

func (w *rdWalker) isField(key []byte) bool {
	for _, f := range w.r.fields {
		if f == string(key) {
			return true
		}
	}
	return false
}

// isTail reports whether key is a field's last segment or a dotted tail of
// it (the fallback's rule).
func (w *rdWalker) isTail(key []byte) bool {
	for _, f := range w.r.fields {
		if len(key) <= len(f) && f[len(f)-len(key):] == string(key) &&
			(len(key) == len(f) || f[len(f)-len(key)-1] == '.') {
			return true
		}
	}
	return false
}

// unquote returns the text of the string whose contents are p[s:e],
// unescaped (in scratch, valid until the next call) when it has escapes.
func (w *rdWalker) unquote(s, e int) []byte {
	b := w.p[s:e]
	if bytes.IndexByte(b, '\\') < 0 {
		return b
	}
	w.scratch = rdUnescape(w.scratch[:0], b)
	return w.scratch
}

func (w *rdWalker) hashEdit(s, e int) {
	if !rdIsHash(w.p[s:e]) {
		w.edits = append(w.edits, rdEdit{start: s, end: e, src0: s, src1: e, kind: rdHash})
	}
}

func (w *rdWalker) del(s, e int) {
	if e > s {
		w.edits = append(w.edits, rdEdit{start: s, end: e, kind: rdDelete})
	}
}

// rdRemover deletes items (members or elements) of one container with the
// right commas: an item after a kept one goes with the comma before it, an
// item with no kept one before it goes with the comma after it.
type rdRemover struct {
	anyKept   bool
	pending   bool // an item with no kept one before it waits for the next start
	pendStart int
	lastEnd   int
}

func (rm *rdRemover) next(w *rdWalker, start int) {
	if rm.pending {
		w.del(rm.pendStart, start)
		rm.pending = false
	}
}

func (rm *rdRemover) remove(w *rdWalker, start, end int) {
	if rm.anyKept {
		w.del(rm.lastEnd, end)
	} else {
		rm.pending, rm.pendStart = true, start
	}
	rm.lastEnd = end
}

func (rm *rdRemover) keep(end int) { rm.anyKept, rm.lastEnd = true, end }

func (rm *rdRemover) finish(w *rdWalker) {
	if rm.pending {
		w.del(rm.pendStart, rm.lastEnd)
		rm.pending = false
	}
}

// loose is the fallback for input that is not valid JSON: a tolerant scan
// of string tokens, brackets and bare words (see the top of this file).
func (w *rdWalker) loose() {
	p := w.p
	depth, stop := 0, 0
	redacting := false // every scalar value is replaced while depth > stop
	for i := 0; i < len(p); {
		switch p[i] {
		case ' ', '\t', '\n', '\r', ',', ':':
			i++
		case '{', '[':
			depth++
			i++
		case '}', ']':
			depth--
			i++
			if redacting && depth <= stop {
				redacting = false
			}
		case '"':
			s := i
			e, closed := rdLooseString(p, i)
			j := w.ws(e)
			if j >= len(p) || p[j] != ':' {
				if redacting {
					w.looseEdit(s, e)
				}
				i = e
				continue
			}
			i = j + 1
			if redacting {
				continue
			}
			key := w.looseText(s, e, closed)
			v := w.ws(i)
			if w.isTail(key) {
				if v < len(p) && (p[v] == '{' || p[v] == '[') {
					redacting, stop = true, depth
					i = v
					continue
				}
				end, next := rdLooseScalar(p, v)
				if end > v {
					w.looseEdit(v, end)
				}
				i = next
				continue
			}
			if string(key) == "key" && v < len(p) && p[v] == '"' {
				ve, vclosed := rdLooseString(p, v)
				if w.isField(w.looseText(v, ve, vclosed)) {
					// The rest of this attribute element.
					redacting, stop = true, depth-1
				}
				i = ve
			}
		default:
			end, next := rdBare(p, i)
			if redacting {
				w.looseEdit(i, end)
			}
			i = next
		}
	}
}

// looseText returns the unescaped text of the string token p[s:e].
func (w *rdWalker) looseText(s, e int, closed bool) []byte {
	if closed {
		e--
	}
	return w.unquote(s+1, e)
}

func (w *rdWalker) looseEdit(s, e int) {
	b := w.p[s:e]
	if w.r.hash {
		if !rdIsHash(b) {
			w.edits = append(w.edits, rdEdit{start: s, end: e, src0: s, src1: e, kind: rdHash, raw: true})
		}
	} else if string(b) != rdMarkStr {
		w.edits = append(w.edits, rdEdit{start: s, end: e, kind: rdMark})
	}
}

// splice applies the edits.
func (w *rdWalker) splice() ([]byte, bool) {
	size, n := len(w.p), 0
	for _, e := range w.edits {
		switch e.kind {
		case rdNone:
			continue
		case rdHash:
			size += rdHashLen
		case rdHashAttr:
			size += len(rdAttrPre) + 16 + len(`"}`)
		case rdMark:
			size += len(rdMarkStr)
		}
		size -= e.end - e.start
		n++
	}
	if n == 0 {
		return w.p, false
	}
	out := make([]byte, 0, size)
	var h hash.Hash
	var sum [sha256.Size]byte
	pos := 0
	for _, e := range w.edits {
		if e.kind == rdNone || e.start < pos {
			continue // (overlap cannot happen; never write a range twice)
		}
		out = append(out, w.p[pos:e.start]...)
		pos = e.end
		switch e.kind {
		case rdMark:
			out = append(out, rdMarkStr...)
		case rdHash, rdHashAttr:
			if h == nil {
				h = sha256.New()
			} else {
				h.Reset()
			}
			if e.raw {
				h.Write(w.p[e.src0:e.src1])
			} else {
				rdWriteCompact(h, w.p[e.src0:e.src1])
			}
			h.Sum(sum[:0])
			if e.kind == rdHash {
				out = append(out, `"sha256:`...)
				out = hex.AppendEncode(out, sum[:8])
				out = append(out, '"')
			} else {
				out = append(out, rdAttrPre...)
				out = hex.AppendEncode(out, sum[:8])
				out = append(out, `"}`...)
			}
		}
	}
	out = append(out, w.p[pos:]...)
	return out, true
}

// rdWriteCompact writes JSON text b to h without the whitespace outside
// strings.
func rdWriteCompact(h hash.Hash, b []byte) {
	in, esc, from := false, false, 0
	for i, c := range b {
		if in {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				in = false
			}
			continue
		}
		switch c {
		case '"':
			in = true
		case ' ', '\t', '\n', '\r':
			if i > from {
				h.Write(b[from:i])
			}
			from = i + 1
		}
	}
	if from < len(b) {
		h.Write(b[from:])
	}
}

// rdIsHash reports whether b is a JSON string this file writes as a hash.
func rdIsHash(b []byte) bool {
	if len(b) != rdHashLen || string(b[:8]) != `"sha256:` || b[len(b)-1] != '"' {
		return false
	}
	for _, c := range b[8 : len(b)-1] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// rdString validates the JSON string at p[i] ('"') and returns the index
// after it. Bytes of 0x80 and up pass unchecked, as in encoding/json.Valid.
func rdString(p []byte, i int) (int, bool) {
	for i++; i < len(p); {
		switch c := p[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(p) {
				return len(p), false
			}
			switch p[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := rdHex4(p[i+2:]); !ok {
					return i, false
				}
				i += 6
			default:
				return i, false
			}
		case c < 0x20:
			return i, false
		default:
			i++
		}
	}
	return i, false
}

func rdLiteral(p []byte, i int, lit string) (int, bool) {
	if len(p)-i < len(lit) || string(p[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// rdNumber validates the JSON number at p[i].
func rdNumber(p []byte, i int) (int, bool) {
	if i < len(p) && p[i] == '-' {
		i++
	}
	digits := func() bool {
		s := i
		for i < len(p) && '0' <= p[i] && p[i] <= '9' {
			i++
		}
		return i > s
	}
	switch {
	case i < len(p) && p[i] == '0':
		i++
	case !digits():
		return i, false
	}
	if i < len(p) && p[i] == '.' {
		i++
		if !digits() {
			return i, false
		}
	}
	if i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		i++
		if i < len(p) && (p[i] == '+' || p[i] == '-') {
			i++
		}
		if !digits() {
			return i, false
		}
	}
	return i, true
}

func rdHex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// rdUnescape appends the unescaped string contents s to dst, as
// encoding/json decodes them (a lone surrogate becomes U+FFFD); a malformed
// escape (only in the fallback) is kept as written.
func rdUnescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			i++
			continue
		}
		switch e := s[i+1]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
			i += 2
		case 'b':
			dst = append(dst, '\b')
			i += 2
		case 'f':
			dst = append(dst, '\f')
			i += 2
		case 'n':
			dst = append(dst, '\n')
			i += 2
		case 'r':
			dst = append(dst, '\r')
			i += 2
		case 't':
			dst = append(dst, '\t')
			i += 2
		case 'u':
			r, ok := rdHex4(s[i+2:])
			if !ok {
				dst = append(dst, c)
				i++
				continue
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(0), false
				if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r2, ok2 = rdHex4(s[i+2:])
				}
				if d := utf16.DecodeRune(r, r2); ok2 && d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst
}

// rdLooseString returns the end of the string token at p[i] ('"'): after
// its closing quote, or the end of p when there is none.
func rdLooseString(p []byte, i int) (end int, closed bool) {
	for j := i + 1; j < len(p); j++ {
		switch p[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return len(p), false
}

// rdLooseScalar returns the scalar value at p[v] (end, trailing blanks left
// out) and where scanning goes on (next); end == v when there is none.
func rdLooseScalar(p []byte, v int) (end, next int) {
	if v >= len(p) {
		return v, v
	}
	switch p[v] {
	case '"':
		e, _ := rdLooseString(p, v)
		return e, e
	case ',', '}', ']', '{', '[':
		return v, v
	}
	return rdBare(p, v)
}

// rdBare returns a bare word at p[i] (a number, a literal, or anything
// unquoted): up to , } ] { [ " or a line end, trailing blanks left out.
func rdBare(p []byte, i int) (end, next int) {
	j := i
scan:
	for j < len(p) {
		switch p[j] {
		case ',', '}', ']', '{', '[', '"', '\r', '\n':
			break scan
		}
		j++
	}
	next = j
	for j > i && (p[j-1] == ' ' || p[j-1] == '\t') {
		j--
	}
	return j, next
}
