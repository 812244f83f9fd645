// Package jsonstr writes JSON string literals: the one escaper that sinks
// and the DLQ share. Output matches encoding/json with HTML escaping off,
// byte for byte: quote, backslash and control bytes escaped (\b \f \n \r \t
// short forms), invalid UTF-8 written as \ufffd, U+2028 and U+2029 escaped.
package jsonstr

import (
	"encoding/binary"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain8 reports whether all 8 bytes of w need no escaping: printable ASCII
// other than '"' and '\\'.
func plain8(w uint64) bool {
	ctl := (w - 0x20*ones) &^ w // high bit set where a byte < 0x20 (for ASCII bytes)
	q := w ^ '"'*ones
	q = (q - ones) &^ q // high bit set where a byte == '"'
	bs := w ^ '\\'*ones
	bs = (bs - ones) &^ bs // high bit set where a byte == '\\'
	return (w|ctl|q|bs)&highs == 0
}

// Append appends s as a quoted JSON string to dst.
func Append(dst, s []byte) []byte {
	dst = append(dst, '"')
	start, i := 0, 0
	for i < len(s) {
		// Fast path: skip 8 plain bytes at a time.
		for i+8 <= len(s) && plain8(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendString is Append for a string; it does not allocate.
func AppendString(dst []byte, s string) []byte {
	return Append(dst, unsafeBytes(s))
}
