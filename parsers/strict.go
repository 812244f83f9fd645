package parsers

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Strictness is fastjson.Parser.Parse (fast, depth-bounded, lenient) plus
// checks for what it lets through, each linear in the input:
//
//   - scanText, one pass over the bytes before Parse: UTF-8, control bytes
//     inside strings, and the grammar of every backslash escape. Once Parse
//     has accepted the text, a backslash, a byte >= 0x80 or a control byte
//     other than \t \n \r can only be inside a string, so the scan needs no
//     string state until it meets one of those three whitespace bytes; then
//     it starts over, once, tracking strings.
//   - validNumber on the literal of every number value, done where the
//     decoders walk the tree (every value is visited).
//
// Lone surrogate escapes (\ud800 with no low half, or a lone \udc00) are
// accepted, as encoding/json does, and decode to U+FFFD: the scan notes them
// and they are rewritten to \ufffd (same length) in a copy before Parse,
// because fastjson's unescaping keeps them as literal text.
//
// fastjson stops at nesting depth fastjson.MaxDepth (300): deeper documents
// are malformed with code "too_deep", although RFC 8259 sets no limit.

// Malformed codes.
const (
	codeEmpty     = "empty"
	codeSyntax    = "json_syntax"
	codeTooDeep   = "too_deep"
	codeTruncated = "truncated"
	codeUTF8      = "utf8"
	codeControl   = "control_char"
	codeEscape    = "bad_escape"
	codeNumber    = "bad_number"
)

// failure is a code and message of a failed unit or record; code "" is none.
type failure struct {
	code string
	msg  string
}

// scanResult is what scanText found.
type scanResult struct {
	code      string // "" when the bytes pass
	pos       int    // offset of the offending byte
	badUTF8   bool   // invalid UTF-8 seen (only when allowed)
	surrogate bool   // a lone surrogate escape needs rewriting
	escapes   bool   // a backslash escape seen
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special flags (high bit of each byte) the bytes of w that are < 0x20,
// >= 0x80 or a backslash; it is zero exactly when w has none. The
// subtractions borrow only out of a byte that is flagged (or borrowed into
// and flagged), so false flags can appear only above a true one and the
// lowest flag is always exact: a byte in [0x20, 0x80) other than '\\' minus
// 0x20 stays below 0x60, and xor '\\' minus 1 below 0x7f.
func special(w uint64) uint64 {
	x := w ^ ('\\' * ones)
	return ((w - 0x20*ones) | (x - ones) | w) & highs
}

// specialQ is special plus the double quote.
func specialQ(w uint64) uint64 {
	x := w ^ ('\\' * ones)
	q := w ^ ('"' * ones)
	return ((w - 0x20*ones) | (x - ones) | (q - ones) | w) & highs
}

// nextSpecial returns the offset of the first byte at or after i that is
// < 0x20, >= 0x80 or a backslash, or len(data): 32 bytes per round while it
// can (for the CPU's parallelism), then 8, then one.
func nextSpecial(data []byte, i int) int {
	n := len(data)
	for i+32 <= n {
		p := data[i : i+32 : i+32]
		m := special(binary.LittleEndian.Uint64(p)) | special(binary.LittleEndian.Uint64(p[8:])) |
			special(binary.LittleEndian.Uint64(p[16:])) | special(binary.LittleEndian.Uint64(p[24:]))
		if m != 0 {
			break
		}
		i += 32
	}
	for i+8 <= n {
		if m := special(binary.LittleEndian.Uint64(data[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	for i < n {
		if c := data[i]; c < 0x20 || c >= 0x80 || c == '\\' {
			return i
		}
		i++
	}
	return n
}

// utf8Len returns the length of the valid UTF-8 sequence at data[i] (a byte
// >= 0x80), or 0 if it is not one. Two-byte sequences are read inline.
func utf8Len(data []byte, i int) int {
	if c := data[i]; c >= 0xC2 && c < 0xE0 && i+1 < len(data) && data[i+1]&0xC0 == 0x80 {
		return 2
	}
	return validRuneLen(data[i:])
}

// scanText checks the bytes of one JSON text (see the package comment at the
// top of this file). allowBadUTF8 reports invalid UTF-8 in badUTF8 instead
// of failing.
func scanText(data []byte, allowBadUTF8 bool) scanResult {
	var st scanResult
	n := len(data)
	for i := nextSpecial(data, 0); i < n; i = nextSpecial(data, i) {
		c := data[i]
		switch {
		case c == '\\':
			next, ok, lone := checkEscape(data, i)
			if !ok {
				st.code, st.pos = codeEscape, i
				return st
			}
			st.surrogate = st.surrogate || lone
			st.escapes = true
			i = next
		case c >= 0x80:
			size := utf8Len(data, i)
			if size == 0 {
				if !allowBadUTF8 {
					st.code, st.pos = codeUTF8, i
					return st
				}
				st.badUTF8 = true
				size = 1
			}
			i += size
		default: // c < 0x20
			if c == '\t' || c == '\n' || c == '\r' {
				return scanAware(data, allowBadUTF8)
			}
			st.code, st.pos = codeControl, i
			return st
		}
	}
	return st
}

// scanAware is scanText for text with whitespace control bytes: it tracks
// strings, so \t \n \r are allowed outside them only.
func scanAware(data []byte, allowBadUTF8 bool) scanResult {
	var st scanResult
	i, n := 0, len(data)
	for i < n {
		k := bytes.IndexByte(data[i:], '"')
		if k < 0 {
			break
		}
		i += k + 1
	str:
		for i < n {
			if i+8 <= n {
				m := specialQ(binary.LittleEndian.Uint64(data[i:]))
				if m == 0 {
					i += 8
					continue
				}
				i += bits.TrailingZeros64(m) >> 3
			}
			c := data[i]
			switch {
			case c == '"':
				i++
				break str
			case c == '\\':
				next, ok, lone := checkEscape(data, i)
				if !ok {
					st.code, st.pos = codeEscape, i
					return st
				}
				st.surrogate = st.surrogate || lone
				st.escapes = true
				i = next
			case c >= 0x80:
				size := utf8Len(data, i)
				if size == 0 {
					if !allowBadUTF8 {
						st.code, st.pos = codeUTF8, i
						return st
					}
					st.badUTF8 = true
					size = 1
				}
				i += size
			case c < 0x20:
				st.code, st.pos = codeControl, i
				return st
			default:
				i++
			}
		}
	}
	return st
}

// validRuneLen returns the length of the valid UTF-8 sequence at the start
// of p, or 0 if it is not one.
func validRuneLen(p []byte) int {
	r, size := utf8.DecodeRune(p)
	if r == utf8.RuneError && size == 1 {
		return 0
	}
	return size
}

// checkEscape checks the escape starting at data[i] == '\\' and returns the
// offset after it. lone reports a \u escape of a lone surrogate; a valid
// high+low pair is consumed as one escape.
func checkEscape(data []byte, i int) (next int, ok, lone bool) {
	if i+1 >= len(data) {
		return i + 1, false, false
	}
	switch data[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2, true, false
	case 'u':
		r, ok := hex4(data, i+2)
		if !ok {
			return i + 2, false, false
		}
		if r < 0xD800 || r >= 0xE000 {
			return i + 6, true, false
		}
		if r < 0xDC00 && i+12 <= len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
			if r2, ok := hex4(data, i+8); ok && r2 >= 0xDC00 && r2 < 0xE000 {
				return i + 12, true, false
			}
		}
		return i + 6, true, true
	}
	return i + 1, false, false
}

// hex4 reads four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// fixSurrogates copies data into dst with every lone surrogate escape
// rewritten to \ufffd. data must have passed scanText.
func fixSurrogates(dst, data []byte) []byte {
	dst = append(dst[:0], data...)
	i := 0
	for {
		k := bytes.IndexByte(dst[i:], '\\')
		if k < 0 {
			return dst
		}
		i += k
		next, _, lone := checkEscape(dst, i)
		if lone {
			copy(dst[i+2:i+6], "fffd")
		}
		i = next
	}
}

// validNumber reports whether s is a number per RFC 8259:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(s []byte) bool {
	i, n := 0, len(s)
	if i < n && s[i] == '-' {
		i++
	}
	if i >= n {
		return false
	}
	switch {
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		for i < n && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < n && s[i] == '.' {
		i++
		start := i
		for i < n && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < n && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < n && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == n
}

// isSpace reports JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func onlySpace(data []byte) bool {
	for _, c := range data {
		if !isSpace(c) {
			return false
		}
	}
	return true
}

// parse runs the byte checks and Parse on data. The value is valid until
// the next parse on d. Numbers are not checked yet: the caller walks them.
func (d *Decoder) parse(data []byte, allowBadUTF8 bool) (*fastjson.Value, failure) {
	d.vsrc, d.vbase = nil, 0
	if onlySpace(data) {
		return nil, failure{codeEmpty, "empty unit: no JSON value"}
	}
	st := scanText(data, allowBadUTF8)
	if st.code != "" {
		return nil, failure{st.code, scanMessage(data, st)}
	}
	src := data
	if st.surrogate {
		d.fix = fixSurrogates(d.fix, data)
		src = d.fix
	}
	if len(src) > d.maxUnit {
		d.maxUnit = len(src)
	}
	v, err := d.p.ParseBytes(src)
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, "too big depth") {
			return nil, failure{codeTooDeep, "nesting deeper than " + strconv.Itoa(fastjson.MaxDepth) + " levels"}
		}
		return nil, failure{codeSyntax, strings.Clone(pipeline.CutMessage(msg))}
	}
	d.badUTF8 = st.badUTF8
	d.escapes = st.escapes
	d.raw = fastView && !st.escapes
	return v, failure{}
}

func scanMessage(data []byte, st scanResult) string {
	at := " at byte " + strconv.Itoa(st.pos)
	switch st.code {
	case codeUTF8:
		return "invalid UTF-8" + at
	case codeControl:
		return "control character 0x" + strconv.FormatUint(uint64(data[st.pos]), 16) + " in a string" + at
	case codeEscape:
		end := min(st.pos+6, len(data))
		return "invalid escape " + strconv.QuoteToASCII(string(data[st.pos:end])) + at
	}
	return st.code + at
}

// walk checks the literal of every number under v, visiting every value.
// Recursion is bounded by fastjson's depth limit.
func (d *Decoder) walk(v *fastjson.Value) bool {
	switch d.typ(v) {
	case fastjson.TypeObject:
		kvs, mark := d.members(v)
		ok := true
		for i := range kvs {
			if !d.walk(kvs[i].v) {
				ok = false
				break
			}
		}
		d.release(mark)
		return ok
	case fastjson.TypeArray:
		for _, c := range v.GetArray() {
			if !d.walk(c) {
				return false
			}
		}
	case fastjson.TypeNumber:
		if lit := d.literal(v); !validNumber(lit) {
			d.setBadNumber(lit)
			return false
		}
	}
	return true
}

// number returns the literal text of number v, valid until the next Parse
// (or the next number call), and records a malformed failure when it breaks
// the grammar.
func (d *Decoder) number(v *fastjson.Value) []byte {
	lit := d.literal(v)
	if !validNumber(lit) {
		d.setBadNumber(lit)
	}
	return lit
}

func (d *Decoder) setBadNumber(lit []byte) {
	if d.bad.code != "" {
		return
	}
	if len(lit) > 40 {
		lit = lit[:40]
	}
	d.bad = failure{codeNumber, "invalid number " + strconv.QuoteToASCII(string(lit))}
}

// Valid reports whether data is exactly one JSON text valid per RFC 8259
// and valid UTF-8, with nesting at most fastjson.MaxDepth deep: the strict
// check Decode applies to every unit, whatever Options say about UTF-8.
func (d *Decoder) Valid(data []byte) bool {
	f := d.check(data)
	return f.code == ""
}

// check is Valid with the failure.
func (d *Decoder) check(data []byte) failure {
	d.bad = failure{}
	v, f := d.parse(data, false)
	if f.code != "" {
		return f
	}
	if !d.walk(v) {
		return d.bad
	}
	return failure{}
}
