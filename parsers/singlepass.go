package parsers

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Single-pass jsonl decoding.
//
// decodeJSONLSinglePass decodes a jsonl line in one forward walk over its
// bytes, without fastjson: the walk validates the text (RFC 8259 grammar,
// number literals, UTF-8, control bytes), appends every top-level member as
// attributes as it goes (flattening objects as decodeJSONL does, arrays and
// objects kept whole re-encoded as compact JSON), and notes the candidates
// of each record field. Once the line is read, the fields are set from the
// best candidates and the attributes of the values that went into a field
// are dropped again.
//
// It is a fast path for the common line, not a second implementation of
// every rule: it gives up (returns false, having appended nothing that
// stays) whenever the line is not plainly a valid object whose record
// succeeds, and Decode then runs the fastjson path (decodeTree) on it, which
// sets every failure class, code and message as before. It gives up on:
//
//   - anything malformed (syntax, numbers, escapes, UTF-8, control bytes),
//     or nested deeper than spMaxDepth (below fastjson's limit, so too_deep
//     stays the tree path's verdict);
//   - invalid UTF-8 under invalid_utf8 "replace" too (the tree path
//     replaces it and flags the record);
//   - a root that is not an object;
//   - a record field that fails (bad id, time, duration, wrong type) or a
//     missing trace id under MissingTraceID "invalid".
//
// What it hands out follows decodeJSONL with the fast view on: strings
// without escapes and number literals are views into b.Buf (the unit's own
// bytes, which need no escaping); strings with escapes (unescaped, a lone
// surrogate read as U+FFFD), flattened keys, booleans, normalized kind and
// status, lowercased ids and compact JSON (strings with escapes re-escaped
// as appendQuoted does) are copies in b.Arena; all are valid until b is
// Reset. Decode uses it only when fastView is on, so that the two paths
// agree on which text is a view. FuzzJSONLSinglePass checks that both paths
// give the same records.

// singlePass turns the single-pass jsonl path on; off, Decode reads every
// unit through fastjson (for measuring one against the other).
var singlePass = true

// spMaxDepth is the nesting depth past which the single pass gives up.
const spMaxDepth = 256

// Value kinds of spVal.
const (
	spString byte = iota + 1
	spNumber
	spTrue
	spFalse
	spNull
	spObject
	spArray
)

// spVal is one value of the line: its kind, its offset in the unit and, for
// strings and numbers, its text (a string's bytes without the quotes, a
// number's literal) as a view into the unit.
type spVal struct {
	s    []byte
	pos  int32
	kind byte
	esc  bool // a string with escapes: s is its raw text, see spUnescape
}

// spHit is the best candidate found so far for one field.
type spHit struct {
	v    spVal
	prio uint32
	attr int32 // index (from the line's first) of v's attribute; -1: look it up by position
	unit int8
	conv uint8
}

func (v *spVal) scalarText() bool { return v.kind >= spString && v.kind <= spFalse }

// decodeJSONLSinglePass decodes unit u of b, a jsonl line, and reports
// whether it did. When it returns false b is as it was and the caller
// decodes the unit with decodeTree.
func (d *Decoder) decodeJSONLSinglePass(b *pipeline.Batch, u int) bool {
	unit := &b.Units[u]
	data := b.Buf[unit.Start:unit.End:unit.End]
	attrStart, arenaStart := len(b.Attrs), len(b.Arena)
	for i := range d.spHits {
		d.spHits[i] = spHit{prio: noHit}
	}
	d.spPos = d.spPos[:0]
	d.badUTF8 = false // appendQuoted's mode: the single pass takes valid UTF-8 only
	if d.spLine(b, data) && d.spRecord(b, u, attrStart) {
		return true
	}
	clear(b.Attrs[attrStart:])
	b.Attrs = b.Attrs[:attrStart]
	b.Arena = b.Arena[:arenaStart]
	return false
}

// spWS returns the offset of the first non-whitespace byte at or after i.
func spWS(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// spStr returns the offset of the closing quote of the string whose text
// starts at i, or -1 when the string has a bad escape, a control byte or
// invalid UTF-8, or does not end; esc reports a backslash escape.
func spStr(data []byte, i int) (end int, esc bool) {
	n := len(data)
	for {
		if i+8 <= n {
			m := specialQ(binary.LittleEndian.Uint64(data[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		}
		if i >= n {
			return -1, esc
		}
		c := data[i]
		switch {
		case c == '"':
			return i, esc
		case c >= 0x80:
			size := utf8Len(data, i)
			if size == 0 {
				return -1, esc
			}
			i += size
		case c == '\\':
			next, ok, _ := checkEscape(data, i)
			if !ok {
				return -1, esc
			}
			esc = true
			i = next
		case c < 0x20:
			return -1, esc
		default:
			i++
		}
	}
}

// spNum returns the end of the number literal starting at i (RFC 8259
// grammar), or -1.
func spNum(data []byte, i int) int {
	n := len(data)
	if i < n && data[i] == '-' {
		i++
	}
	if i >= n {
		return -1
	}
	switch c := data[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i++
		for i < n && data[i]-'0' <= 9 {
			i++
		}
	default:
		return -1
	}
	if i < n && data[i] == '.' {
		i++
		start := i
		for i < n && data[i]-'0' <= 9 {
			i++
		}
		if i == start {
			return -1
		}
	}
	if i < n && data[i]|0x20 == 'e' {
		i++
		if i < n && (data[i] == '+' || data[i] == '-') {
			i++
		}
		start := i
		for i < n && data[i]-'0' <= 9 {
			i++
		}
		if i == start {
			return -1
		}
	}
	return i
}

// spScalar reads the scalar at data[i] (not an object or array) and
// returns it with the offset after it; next is -1 when it is malformed.
func spScalar(data []byte, i int) (v spVal, next int) {
	v.pos = int32(i)
	switch data[i] {
	case '"':
		e, esc := spStr(data, i+1)
		if e < 0 {
			return v, -1
		}
		v.kind, v.s, v.esc = spString, data[i+1:e:e], esc
		return v, e + 1
	case 't':
		if i+4 <= len(data) && string(data[i:i+4]) == "true" {
			v.kind = spTrue
			return v, i + 4
		}
	case 'f':
		if i+5 <= len(data) && string(data[i:i+5]) == "false" {
			v.kind = spFalse
			return v, i + 5
		}
	case 'n':
		if i+4 <= len(data) && string(data[i:i+4]) == "null" {
			v.kind = spNull
			return v, i + 4
		}
	default:
		e := spNum(data, i)
		if e < 0 {
			return v, -1
		}
		v.kind, v.s = spNumber, data[i:e:e]
		return v, e
	}
	return v, -1
}

// spUnescape appends the text of a string whose raw text (checked by
// spStr) is raw: escapes decoded, a surrogate pair as one rune and a lone
// surrogate as U+FFFD, as the tree path reads it.
func spUnescape(dst, raw []byte) []byte {
	for {
		k := bytes.IndexByte(raw, '\\')
		if k < 0 {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:k]...)
		raw = raw[k:]
		switch c := raw[1]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw, 2)
			next, _, lone := checkEscape(raw, 0)
			switch {
			case lone:
				r = utf8.RuneError
			case next == 12:
				r2, _ := hex4(raw, 8)
				r = utf16.DecodeRune(r, r2)
			}
			dst = utf8.AppendRune(dst, r)
			raw = raw[next:]
			continue
		default: // " \\ /
			dst = append(dst, c)
		}
		raw = raw[2:]
	}
}

// spStrText returns the text of string v: v.s, or its unescaped text in
// the arena when it has escapes (as copy does for text that is not the
// unit's own).
func spStrText(b *pipeline.Batch, v *spVal) []byte {
	if !v.esc {
		return spView(b, v.s)
	}
	start := len(b.Arena)
	b.Arena = spUnescape(b.Arena, v.s)
	return b.Arena[start:len(b.Arena):len(b.Arena)]
}

// spView returns s, a non-empty view into the unit, as it is; an empty s is
// copied (to the arena), as copy does.
func spView(b *pipeline.Batch, s []byte) []byte {
	if len(s) > 0 {
		return s
	}
	return b.Copy(s)
}

// spKey returns an attribute key: d.key copied to the arena when key is
// nil (a flattened key), else key, a top-level key in the unit (see
// spView). It is called after the value is in place, as decodeJSONL does,
// so that an empty key is nil or not exactly as there.
func (d *Decoder) spKey(b *pipeline.Batch, key []byte) []byte {
	if key == nil {
		return b.Copy(d.key)
	}
	return spView(b, key)
}

// spScalarAttr appends scalar v as an attribute under spKey(key) and notes
// its position.
func (d *Decoder) spScalarAttr(b *pipeline.Batch, key []byte, v *spVal) {
	var a pipeline.Attr
	switch v.kind {
	case spString:
		a.Type, a.Value = pipeline.AttrString, spStrText(b, v)
	case spNumber:
		a.Type, a.Value = pipeline.AttrNumber, v.s
	case spTrue:
		a.Type, a.Value = pipeline.AttrBool, b.CopyString("true")
	case spFalse:
		a.Type, a.Value = pipeline.AttrBool, b.CopyString("false")
	default:
		a.Type = pipeline.AttrNull
	}
	a.Key = d.spKey(b, key)
	b.Attrs = append(b.Attrs, a)
	d.spPos = append(d.spPos, v.pos)
}

// spLine walks the line: the root object's members become attributes and
// field candidates. It reports false when the single pass gives up.
func (d *Decoder) spLine(b *pipeline.Batch, data []byte) bool {
	i := spWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = spWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return spWS(data, i+1) == len(data)
	}
	keys := &d.pr.keys
	for {
		if i >= len(data) || data[i] != '"' {
			return false
		}
		ke, esc := spStr(data, i+1)
		if ke < 0 {
			return false
		}
		// key is the key's text: a view into the unit, or nil when it has
		// escapes (its text is then in d.key, see spKey).
		key := data[i+1 : ke : ke]
		lk := key
		if esc {
			d.key = spUnescape(d.key[:0], key)
			key, lk = nil, d.key
		}
		slot := keys.lookup(b2s(lk))
		i = spWS(data, ke+1)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = spWS(data, i+1)
		if i >= len(data) {
			return false
		}
		v := spVal{pos: int32(i)}
		if data[i] == '{' && slot != nil && slot.ctr != ctrNone && spNonEmpty(data, i) {
			v.kind = spObject
			if slot.ctr == ctrHoist {
				i = d.spHoist(b, data, i)
			} else {
				i = d.spResource(b, data, i)
			}
		} else {
			// A key spelling a container member with dots is renamed as
			// the member would be (as decodeJSONL does): a view of its
			// tail, or built in d.key.
			if rest, ok := hoistRename(lk); ok {
				if key != nil {
					key = rest
				} else {
					d.key = append(d.key[:0], rest...)
				}
			} else if rest, ok := resRename(lk); ok {
				d.spTmp = append(d.spTmp[:0], rest...)
				d.key = append(append(d.key[:0], resourcePrefix+"."...), d.spTmp...)
				key = nil
			}
			switch data[i] {
			case '{':
				v.kind = spObject
				if key != nil {
					d.key = append(d.key[:0], key...)
				}
				i = d.spFlatten(b, data, i, 0)
			case '[':
				v.kind = spArray
				i = d.spJSONAttr(b, data, i, key, 1)
			default:
				v, i = spScalar(data, i)
				if i >= 0 {
					d.spScalarAttr(b, key, &v)
				}
			}
		}
		if i < 0 {
			return false
		}
		if slot != nil && len(slot.entries) > 0 {
			attr := int32(-1)
			if v.kind < spObject {
				attr = int32(len(d.spPos) - 1)
			}
			d.spMatch(data, slot.entries, &v, attr)
		}
		i = spWS(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = spWS(data, i+1)
			continue
		case '}':
			return spWS(data, i+1) == len(data)
		}
		return false
	}
}

// spFlatten appends the object at data[i] as attributes under the key in
// d.key, as flatten does, and returns the offset after it (-1: give up).
func (d *Decoder) spFlatten(b *pipeline.Batch, data []byte, i, depth int) int {
	j := spWS(data, i+1)
	if j >= len(data) {
		return -1
	}
	if data[j] == '}' || depth >= maxFlattenDepth || len(d.key) > maxFlatKey {
		return d.spJSONAttr(b, data, i, nil, depth+1)
	}
	n := len(d.key)
	i = j
	for {
		if i >= len(data) || data[i] != '"' {
			return -1
		}
		ke, esc := spStr(data, i+1)
		if ke < 0 {
			return -1
		}
		d.key = append(d.key[:n], '.')
		if esc {
			d.key = spUnescape(d.key, data[i+1:ke])
		} else {
			d.key = append(d.key, data[i+1:ke]...)
		}
		i = spWS(data, ke+1)
		if i >= len(data) || data[i] != ':' {
			return -1
		}
		i = spWS(data, i+1)
		if i >= len(data) {
			return -1
		}
		switch data[i] {
		case '{':
			i = d.spFlatten(b, data, i, depth+1)
		case '[':
			i = d.spJSONAttr(b, data, i, nil, depth+2)
		default:
			var v spVal
			v, i = spScalar(data, i)
			if i >= 0 {
				d.spScalarAttr(b, nil, &v)
			}
		}
		if i < 0 {
			return -1
		}
		i = spWS(data, i)
		if i >= len(data) {
			return -1
		}
		switch data[i] {
		case ',':
			i = spWS(data, i+1)
			continue
		case '}':
			d.key = d.key[:n]
			return i + 1
		}
		return -1
	}
}

// spNonEmpty reports whether the object at data[i] seems to have a member
// (a malformed one makes the walk give up later).
func spNonEmpty(data []byte, i int) bool {
	j := spWS(data, i+1)
	return j < len(data) && data[j] != '}'
}

// spHoist appends the members of the object at data[i] (not empty), a
// ctrHoist container's, as attributes under their own names, as container
// does, and returns the offset after it (-1: give up).
func (d *Decoder) spHoist(b *pipeline.Batch, data []byte, i int) int {
	i = spWS(data, i+1)
	for {
		if i >= len(data) || data[i] != '"' {
			return -1
		}
		ke, esc := spStr(data, i+1)
		if ke < 0 {
			return -1
		}
		key := data[i+1 : ke : ke]
		if esc {
			d.key = spUnescape(d.key[:0], key)
			key = nil
		}
		i = spWS(data, ke+1)
		if i >= len(data) || data[i] != ':' {
			return -1
		}
		i = spWS(data, i+1)
		if i >= len(data) {
			return -1
		}
		switch data[i] {
		case '{':
			if key != nil {
				d.key = append(d.key[:0], key...)
			}
			i = d.spFlatten(b, data, i, 1)
		case '[':
			i = d.spJSONAttr(b, data, i, key, 2)
		default:
			var v spVal
			v, i = spScalar(data, i)
			if i >= 0 {
				d.spScalarAttr(b, key, &v)
			}
		}
		if i < 0 {
			return -1
		}
		if i = spWS(data, i); i >= len(data) {
			return -1
		}
		switch data[i] {
		case ',':
			i = spWS(data, i+1)
			continue
		case '}':
			return i + 1
		}
		return -1
	}
}

// spResource appends the members of the object at data[i] (not empty), a
// ctrRes container's, as attributes prefixed "resource.", as container
// does, and returns the offset after it (-1: give up).
func (d *Decoder) spResource(b *pipeline.Batch, data []byte, i int) int {
	const attrsDot = attrsKeyPrefix + "."
	i = spWS(data, i+1)
	for {
		if i >= len(data) || data[i] != '"' {
			return -1
		}
		ke, esc := spStr(data, i+1)
		if ke < 0 {
			return -1
		}
		k := data[i+1 : ke]
		if esc {
			d.spTmp = spUnescape(d.spTmp[:0], k)
			k = d.spTmp
		}
		i = spWS(data, ke+1)
		if i >= len(data) || data[i] != ':' {
			return -1
		}
		i = spWS(data, i+1)
		if i >= len(data) {
			return -1
		}
		d.key = append(d.key[:0], resourcePrefix...)
		switch {
		case string(k) == attrsKeyPrefix && data[i] == '{' && spNonEmpty(data, i):
			// The resource's attributes: flattened under "resource".
		case len(k) > len(attrsDot) && string(k[:len(attrsDot)]) == attrsDot:
			d.key = append(append(d.key, '.'), k[len(attrsDot):]...)
		default:
			d.key = append(append(d.key, '.'), k...)
		}
		switch data[i] {
		case '{':
			i = d.spFlatten(b, data, i, 1)
		case '[':
			i = d.spJSONAttr(b, data, i, nil, 2)
		default:
			var v spVal
			v, i = spScalar(data, i)
			if i >= 0 {
				d.spScalarAttr(b, nil, &v)
			}
		}
		if i < 0 {
			return -1
		}
		if i = spWS(data, i); i >= len(data) {
			return -1
		}
		switch data[i] {
		case ',':
			i = spWS(data, i+1)
			continue
		case '}':
			return i + 1
		}
		return -1
	}
}

// spJSONAttr appends the object or array at data[i] as one AttrJSON
// attribute under spKey(key): its compact JSON (the text without whitespace
// outside strings, which is what appendJSON writes for a unit without
// escapes) in the arena. nest is its nesting depth in the line.
func (d *Decoder) spJSONAttr(b *pipeline.Batch, data []byte, i int, key []byte, nest int) int {
	end, spaced := spSkip(data, i, nest)
	if end < 0 {
		return -1
	}
	start := len(b.Arena)
	if !spaced {
		b.Arena = append(b.Arena, data[i:end]...)
	} else {
		b.Arena = d.appendCompact(b.Arena, data[i:end])
	}
	val := b.Arena[start:len(b.Arena):len(b.Arena)]
	b.Attrs = append(b.Attrs, pipeline.Attr{Key: d.spKey(b, key), Value: val, Type: pipeline.AttrJSON})
	d.spPos = append(d.spPos, -1)
	return end
}

// appendCompact appends src, valid JSON, as appendJSON writes it: without
// the whitespace outside strings, and strings with escapes unescaped and
// quoted again (appendQuoted).
func (d *Decoder) appendCompact(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			i++
		case '"':
			e, esc := spStr(src, i+1)
			if esc {
				d.spTmp = spUnescape(d.spTmp[:0], src[i+1:e])
				dst = d.appendQuoted(dst, d.spTmp)
			} else {
				dst = append(dst, src[i:e+1]...)
			}
			i = e + 1
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst
}

// spSkip validates the value at data[i] and returns the offset after it
// (-1 when malformed or nested deeper than spMaxDepth) and whether it has
// whitespace outside strings or escapes (so that its compact JSON is not
// its text). Recursion is bounded by spMaxDepth.
func spSkip(data []byte, i, nest int) (end int, spaced bool) {
	if nest > spMaxDepth {
		return -1, false
	}
	var close byte
	switch data[i] {
	case '{':
		close = '}'
	case '[':
		close = ']'
	default:
		v, e := spScalar(data, i)
		return e, v.esc
	}
	j := spWS(data, i+1)
	spaced = j != i+1
	if j < len(data) && data[j] == close {
		return j + 1, spaced
	}
	for {
		if j >= len(data) {
			return -1, false
		}
		if close == '}' {
			if data[j] != '"' {
				return -1, false
			}
			ke, esc := spStr(data, j+1)
			if ke < 0 {
				return -1, false
			}
			k := spWS(data, ke+1)
			if k >= len(data) || data[k] != ':' {
				return -1, false
			}
			j = spWS(data, k+1)
			spaced = spaced || esc || k != ke+1 || j != k+1
			if j >= len(data) {
				return -1, false
			}
		}
		e, sp := spSkip(data, j, nest+1)
		if e < 0 {
			return -1, false
		}
		j = spWS(data, e)
		spaced = spaced || sp || j != e
		if j >= len(data) {
			return -1, false
		}
		switch data[j] {
		case ',':
			k := spWS(data, j+1)
			spaced = spaced || k != j+1
			j = k
			continue
		case close:
			return j + 1, spaced
		}
		return -1, false
	}
}

// spMatch records the candidates among es that top-level value v satisfies
// better than the best so far (match, on the unit's bytes).
//
// attr is the index of v's attribute (-1 when it has none).
func (d *Decoder) spMatch(data []byte, es []fieldEntry, v *spVal, attr int32) {
	for i := range es {
		e := &es[i]
		h := &d.spHits[e.field]
		if e.prio >= h.prio {
			continue
		}
		t, at := *v, attr
		if e.rest != "" {
			var ok bool
			if t, ok = d.spResolve(data, *v, e.rest); !ok {
				continue
			}
			at = -1
		}
		if t.kind == spNull {
			continue
		}
		switch e.field {
		case fService, fName, fMessage, fSeverity, fKind, fStatus:
			if !t.scalarText() {
				continue
			}
		case fStart, fEnd:
			if t.kind != spString && t.kind != spNumber {
				continue
			}
		}
		*h = spHit{v: t, prio: e.prio, attr: at, unit: e.unit, conv: e.conv}
	}
}

// spResolve is resolve on the unit's bytes: path inside object v, the
// literal key first, then each split at a dot. Nulls do not count.
// v is taken by value: a pointer to the recursion's c would move c to the
// heap on every nested lookup.
func (d *Decoder) spResolve(data []byte, v spVal, path string) (spVal, bool) {
	if v.kind != spObject {
		return spVal{}, false
	}
	if c, ok := d.spGet(data, int(v.pos), path); ok && c.kind != spNull {
		return c, true
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		if c, ok := d.spGet(data, int(v.pos), path[:i]); ok {
			if r, ok := d.spResolve(data, c, path[i+1:]); ok {
				return r, true
			}
		}
	}
	return spVal{}, false
}

// spGet returns the first member named key (compared unescaped) of the
// object at data[i], text the walk has validated already.
func (d *Decoder) spGet(data []byte, i int, key string) (spVal, bool) {
	i = spWS(data, i+1)
	if data[i] == '}' {
		return spVal{}, false
	}
	for {
		ke, esc := spStr(data, i+1)
		k := data[i+1 : ke]
		if esc {
			d.spTmp = spUnescape(d.spTmp[:0], k)
			k = d.spTmp
		}
		i = spWS(data, ke+1)
		i = spWS(data, i+1) // after ':'
		if string(k) == key {
			v := spVal{pos: int32(i)}
			switch data[i] {
			case '{':
				v.kind = spObject
			case '[':
				v.kind = spArray
			default:
				v, _ = spScalar(data, i)
			}
			return v, true
		}
		i, _ = spSkip(data, i, 0)
		i = spWS(data, i)
		if data[i] == '}' {
			return spVal{}, false
		}
		i = spWS(data, i+1)
	}
}

// spRecord sets the record of unit u from the field candidates, drops the
// attributes of the values that went into a field, and appends the record.
// It reports false, appending no record, when the record would fail (the
// tree path then decodes the unit and reports why).
func (d *Decoder) spRecord(b *pipeline.Batch, u int, attrStart int) bool {
	var r pipeline.Record
	// used holds the attribute indexes of the values that went into a
	// field, in increasing order, without duplicates.
	var used [numFields]int32
	nUsed := 0
	use := func(h *spHit) {
		a := h.attr
		if a < 0 {
			// A nested value: its attribute, if it has one (it has
			// none inside an object or array kept whole as JSON).
			for k, pos := range d.spPos {
				if pos == h.v.pos {
					a = int32(k)
					break
				}
			}
			if a < 0 {
				return
			}
		}
		k := nUsed
		for k > 0 && used[k-1] >= a {
			if used[k-1] == a {
				return
			}
			k--
		}
		copy(used[k+1:nUsed+1], used[k:nUsed])
		used[k] = a
		nUsed++
	}
	var ok bool
	h := &d.spHits[fTrace]
	if h.prio != noHit {
		if r.TraceID, ok = d.spFieldID(b, h, true); !ok {
			return false
		}
		use(h)
	}
	if h = &d.spHits[fSpan]; h.prio != noHit {
		if r.SpanID, ok = d.spFieldID(b, h, false); !ok {
			return false
		}
		use(h)
	}
	if h = &d.spHits[fParent]; h.prio != noHit {
		if r.ParentID, ok = d.spID(b, &h.v, false); !ok {
			return false
		}
		use(h)
	}
	hasTime := false
	if h = &d.spHits[fTime]; h.prio != noHit {
		if r.Time, ok = spNanos(d.spRaw(&h.v), h.v.kind, d.pr.timeUnit, true); !ok || !inEventRange(r.Time) {
			return false
		}
		hasTime = true
		use(h)
	}
	// Span start and end, as decodeJSONL reads them.
	hs, he, hd := &d.spHits[fStart], &d.spHits[fEnd], &d.spHits[fDuration]
	pair := hs.prio != noHit && he.prio != noHit && hd.prio == noHit
	var start int64
	if hs.prio != noHit && (!hasTime || pair) {
		if start, ok = spNanos(d.spRaw(&hs.v), hs.v.kind, d.pr.timeUnit, true); !ok || !inEventRange(start) {
			return false
		}
		if !hasTime {
			r.Time = start
		}
		use(hs)
	}
	hasDuration := false
	if pair {
		end, ok := spNanos(d.spRaw(&he.v), he.v.kind, d.pr.timeUnit, true)
		if !ok || !inEventRange(end) || end < start {
			return false
		}
		r.Duration = end - start
		hasDuration = true
		use(he)
	}
	if h = hd; h.prio != noHit {
		if r.Duration, ok = spNanos(d.spRaw(&h.v), h.v.kind, int(h.unit), false); !ok || r.Duration < 0 {
			return false
		}
		hasDuration = true
		use(h)
	}
	if len(r.SpanID) > 0 && hasDuration {
		r.Signal = pipeline.SignalSpan
	} else {
		r.Signal = pipeline.SignalLog
	}
	if len(r.TraceID) == 0 {
		switch d.pr.missingFor(r.Signal) {
		case missingInvalid:
			return false
		case missingFilter:
			r.Filtered = true
		}
	}
	if h = &d.spHits[fService]; h.prio != noHit {
		r.Service = spText(b, &h.v)
		use(h)
	}
	if h = &d.spHits[fName]; h.prio != noHit {
		r.Name = spText(b, &h.v)
		use(h)
	} else if h = &d.spHits[fMessage]; h.prio != noHit && r.Signal == pipeline.SignalLog {
		r.Name = spText(b, &h.v)
		use(h)
	}
	if h = &d.spHits[fSeverity]; h.prio != noHit && r.Signal == pipeline.SignalLog {
		name := ""
		if h.conv == convSeverityNumber {
			name = severityName(d.spRaw(&h.v))
		}
		if name != "" {
			r.Severity = b.CopyString(name)
		} else {
			r.Severity = spText(b, &h.v)
		}
		use(h)
	}
	if h = &d.spHits[fKind]; h.prio != noHit {
		if k := kindName(d.spRaw(&h.v)); k != "" {
			r.Kind = b.CopyString(k)
			use(h)
		}
	}
	if h = &d.spHits[fStatus]; h.prio != noHit {
		if s := statusName(d.spRaw(&h.v)); s != "" {
			r.Status = b.CopyString(s)
			use(h)
		}
	}

	// Drop the attributes of the values that went into a field (a used
	// value is always a scalar, and only a scalar attribute has a position).
	if nUsed > 0 {
		attrs := b.Attrs[attrStart:]
		w, j := int(used[0]), 0
		for k := w; k < len(attrs); k++ {
			if j < nUsed && int(used[j]) == k {
				j++
				continue
			}
			attrs[w] = attrs[k]
			w++
		}
		clear(attrs[w:])
		b.Attrs = b.Attrs[:attrStart+w]
	}
	if len(b.Attrs) > attrStart {
		r.Attrs = b.Attrs[attrStart:len(b.Attrs):len(b.Attrs)]
	}
	r.Unit = int32(u)
	*b.NewRecord(u) = r
	return true
}

// spRaw returns the text of a string or number candidate (nil for others):
// v.s, or a string's unescaped text in scratch, valid until the next spRaw.
func (d *Decoder) spRaw(v *spVal) []byte {
	if !v.esc {
		return v.s
	}
	d.spTmp = spUnescape(d.spTmp[:0], v.s)
	return d.spTmp
}

// spFieldID reads the id of candidate h (fieldID): ok is false when it
// would fail the record.
func (d *Decoder) spFieldID(b *pipeline.Batch, h *spHit, trace bool) ([]byte, bool) {
	if h.conv != convDecimalID {
		return d.spID(b, &h.v, trace)
	}
	switch h.v.kind {
	case spString:
		var view []byte
		if len(h.v.s) > 0 && !h.v.esc {
			view = h.v.s
		}
		return decimalID(b, d.spRaw(&h.v), view, trace, true)
	case spNumber:
		return decimalID(b, h.v.s, nil, trace, false)
	}
	return nil, false
}

// spID reads an id: a string of hex digits (see copyID). ok is false when
// the id would fail the record.
func (d *Decoder) spID(b *pipeline.Batch, v *spVal, trace bool) ([]byte, bool) {
	if v.kind != spString {
		return nil, false
	}
	var view []byte
	if len(v.s) > 0 && !v.esc {
		view = v.s
	}
	return copyID(b, d.spRaw(v), view, trace)
}

// spNanos is nanos for a candidate: ok is false when the value would fail
// the record.
//
// s is the candidate's text (spRaw) and kind its kind.
func spNanos(s []byte, kind byte, unit int, rfc3339 bool) (int64, bool) {
	var n int64
	st := tBad
	switch kind {
	case spNumber:
		n, st = decimalNanos(s, unit)
	case spString:
		switch {
		case len(s) > 0 && (s[0] == '-' || s[0]-'0' <= 9) && validNumber(s):
			n, st = decimalNanos(s, unit)
		case rfc3339:
			n, st = parseRFC3339(s)
		default:
			return parseGoDuration(s)
		}
	}
	return n, st == tOK
}

// spText is text for a scalar candidate.
func spText(b *pipeline.Batch, v *spVal) []byte {
	switch v.kind {
	case spString:
		return spStrText(b, v)
	case spNumber:
		return spView(b, v.s)
	case spTrue:
		return b.CopyString("true")
	}
	return b.CopyString("false")
}
