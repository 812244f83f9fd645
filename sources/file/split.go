package file

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"

	"github.com/tracepipe/tracepipe/pipeline"
)

// framing is how a stream is cut into units.
type framing uint8

const (
	framingUnknown  framing = iota // not decided yet: decided on the first call to next
	framingNDJSON                  // one unit per line
	framingDocument                // one unit per top-level JSON document
)

// unit is one line or document found by the splitter. Data is a view into the
// splitter's buffer (or its keep buffer), valid until the next call to next.
type unit struct {
	Data   []byte
	Offset int64 // byte offset of the unit's first byte in the decompressed stream
	Line   int64 // 1-based line of the unit's first byte
	Size   int64 // full length in the input; > len(Data) only when UnitTooLarge is set
	Flags  uint8
}

// Phases of the document-mode scanner.
const (
	phaseBetween uint8 = iota // between documents: skipping whitespace
	phaseDoc                  // inside a document
)

// docState is the state of the string-aware bracket-depth scanner. It is
// resumable: scan can be fed a stream in pieces of any size.
type docState struct {
	depth int
	inStr bool
	esc   bool
}

// byteClass marks the bytes the document scanner stops at outside strings.
var byteClass = [256]bool{'{': true, '[': true, '}': true, ']': true, '"': true}

// scan advances the state over p and returns the index just past the byte
// that brings the depth back to zero (the end of the document), or -1 when
// the document goes on past p. It is linear in len(p) and never recurses.
// The caller starts a document by passing p beginning at its '{' or '['.
func (st *docState) scan(p []byte) int {
	depth, inStr, esc := st.depth, st.inStr, st.esc
	i := 0
	for i < len(p) {
		if inStr {
			// Inside a string only '"' and '\\' matter: jump to the next of
			// them.
			if esc {
				esc = false
				i++
				continue
			}
			// Skip 8 bytes at a time while none is '"' or '\\'.
			for i+8 <= len(p) {
				v := binary.LittleEndian.Uint64(p[i:])
				if hasByte(v, '"')|hasByte(v, '\\') != 0 {
					break
				}
				i += 8
			}
			for i < len(p) && p[i] != '"' && p[i] != '\\' {
				i++
			}
			if i == len(p) {
				break
			}
			if p[i] == '\\' {
				esc = true
			} else {
				inStr = false
			}
			i++
			continue
		}
		c := p[i]
		i++
		if !byteClass[c] {
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
		default: // '}' or ']'
			depth--
			if depth <= 0 {
				st.depth, st.inStr, st.esc = 0, false, false
				return i
			}
		}
	}
	st.depth, st.inStr, st.esc = depth, inStr, esc
	return -1
}

// hasByte is non-zero when one of the 8 bytes of v is c.
func hasByte(v uint64, c byte) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	x := v ^ (lo * uint64(c))
	return (x - lo) &^ x & hi
}

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// isBlank reports whether p holds only JSON whitespace.
func isBlank(p []byte) bool {
	for _, c := range p {
		if !isSpace(c) {
			return false
		}
	}
	return true
}

// errNoProgress is returned when the underlying reader keeps returning no
// bytes and no error.
var errNoProgress = errors.New("reader returned no data and no error 100 times")

// splitterLimits bounds what a splitter keeps in memory.
type splitterLimits struct {
	maxLine  int // a line longer than this is too large
	maxDoc   int // a document longer than this is too large
	keep     int // bytes kept of a too-large unit
	readSize int // initial (and usual) buffer size
}

// splitter cuts a decompressed stream into units: lines (NDJSON) or top-level
// JSON documents, with the framing detected from the first bytes. Its buffer
// grows to at most about the largest allowed unit plus two bytes (or
// readSize, if larger); anything longer is skipped through without being
// held, keeping only its first lim.keep bytes.
//
// A splitter is not safe for concurrent use. It is reused across files with
// reset.
type splitter struct {
	src io.Reader
	lim splitterLimits

	buf  []byte // buf[r:w] is read and not yet consumed
	r, w int
	scan int   // where the search for the current unit's end resumes, r <= scan <= w
	base int64 // stream offset of buf[0]
	line int64 // 1-based line number at buf[r]

	mode  framing
	phase uint8    // document mode: phaseBetween or phaseDoc
	doc   docState // document mode: state of the current document's scan

	eof bool
	err error // the read error that ended the stream early, if any

	keepBuf []byte // first bytes of a too-large unit, reused
}

// reset prepares s to split src, keeping its buffers.
func (s *splitter) reset(src io.Reader, lim splitterLimits) {
	if lim.readSize < 16 {
		lim.readSize = 16
	}
	if lim.keep > lim.maxLine {
		lim.keep = lim.maxLine
	}
	if lim.keep > lim.maxDoc {
		lim.keep = lim.maxDoc
	}
	// Drop a buffer a huge document made grow, so that one such file does
	// not pin its memory for the life of the reader.
	if cap(s.buf) > 2*lim.readSize || cap(s.buf) < lim.readSize {
		s.buf = make([]byte, lim.readSize)
	}
	s.buf = s.buf[:cap(s.buf)]
	*s = splitter{src: src, lim: lim, buf: s.buf, line: 1, keepBuf: s.keepBuf[:0]}
}

// offset returns the number of decompressed bytes read so far.
func (s *splitter) offset() int64 { return s.base + int64(s.w) }

// lineReached returns the 1-based line number of the last byte read so far.
func (s *splitter) lineReached() int64 {
	return s.line + int64(bytes.Count(s.buf[s.r:s.w], []byte{'\n'}))
}

// fill reads more data into the buffer, first moving the unconsumed bytes to
// its front and growing it (up to max) when it is full. It sets s.eof at the
// end of the stream and s.err (and s.eof) on a read error.
func (s *splitter) fill(max int) {
	if s.r > 0 {
		n := copy(s.buf, s.buf[s.r:s.w])
		s.base += int64(s.r)
		s.scan -= s.r
		s.w = n
		s.r = 0
	}
	if s.w == len(s.buf) {
		size := 2 * len(s.buf)
		if size > max {
			size = max
		}
		if size <= len(s.buf) {
			// Callers never ask for more than max bytes of unconsumed data.
			panic("file: splitter buffer full")
		}
		nb := make([]byte, size)
		copy(nb, s.buf[:s.w])
		s.buf = nb
	}
	for range 100 {
		n, err := s.src.Read(s.buf[s.w:])
		s.w += n
		if err != nil {
			s.eof = true
			if err != io.EOF {
				s.err = err
			}
			return
		}
		if n > 0 {
			return
		}
	}
	s.eof, s.err = true, errNoProgress
}

// bufMax returns the largest buffer the splitter may need to hold a unit of
// at most limit bytes plus its terminator.
func (s *splitter) bufMax(limit int) int { return max(s.lim.readSize, limit+2) }

// next returns the next unit. ok is false at the end of the stream or when a
// read error ended it (then s.err is set); a unit the error cut short is not
// returned. The unit's Data is valid until the next call to next.
func (s *splitter) next() (u unit, ok bool) {
	if s.mode == framingUnknown {
		if !s.detect() {
			return unit{}, false
		}
	}
	if s.mode == framingNDJSON {
		return s.nextLine()
	}
	return s.nextDoc()
}

// detect decides the framing from the first bytes. A UTF-8 byte order mark at
// the very start is dropped, then leading whitespace. After it, '[' means
// documents; '{' means NDJSON when its first line is a complete value by
// itself or longer than the line limit (it is then a too-large line: a line
// limit applies to one line whatever its position in the file), and
// documents otherwise (a pretty-printed document); anything else means
// NDJSON. It returns false when the stream holds no unit at all.
func (s *splitter) detect() bool {
	max := s.bufMax(s.lim.maxLine)
	for !s.eof && s.w < 3 {
		s.fill(max)
	}
	if s.w >= 3 && s.buf[0] == 0xEF && s.buf[1] == 0xBB && s.buf[2] == 0xBF {
		s.r = 3
	}
	for {
		i := s.r
		for i < s.w && isSpace(s.buf[i]) {
			i++
		}
		s.line += int64(bytes.Count(s.buf[s.r:i], []byte{'\n'}))
		s.r, s.scan = i, i
		if i < s.w {
			break
		}
		if s.eof {
			return false
		}
		s.fill(max)
	}
	s.mode = framingNDJSON
	switch s.buf[s.r] {
	case '[':
		s.mode = framingDocument
	case '{':
		// Is the first line a complete value? Look at most one line limit
		// ahead.
		var st docState
		i := s.r
		for {
			nl := bytes.IndexByte(s.buf[i:s.w], '\n')
			end := s.w
			if nl >= 0 {
				end = i + nl
			}
			for i < end {
				j := st.scan(s.buf[i:end])
				if j < 0 {
					break
				}
				i += j
			}
			i = end
			if nl >= 0 || s.eof {
				if (st.depth != 0 || st.inStr) && end-s.r <= s.lim.maxLine {
					s.mode = framingDocument
				}
				break
			}
			if s.w-s.r > s.lim.maxLine+1 {
				break
			}
			r := s.r
			s.fill(max)
			i -= r - s.r
		}
	}
	s.scan = s.r
	return true
}

// nextLine returns the next non-blank line.
func (s *splitter) nextLine() (unit, bool) {
	for {
		if j := bytes.IndexByte(s.buf[s.scan:s.w], '\n'); j >= 0 {
			end := s.scan + j
			u, ok := s.lineUnit(end)
			s.r, s.scan = end+1, end+1
			s.line++
			if ok {
				return u, true
			}
			continue
		}
		s.scan = s.w
		if s.eof {
			if s.err != nil || s.r == s.w {
				return unit{}, false
			}
			u, ok := s.lineUnit(s.w)
			s.r, s.scan = s.w, s.w
			if ok {
				return u, true
			}
			return unit{}, false
		}
		// Longer than maxLine even if a "\r\n" ends it: too large.
		if s.w-s.r > s.lim.maxLine+1 {
			u, ok, done := s.skipLine()
			if ok {
				return u, true
			}
			if done {
				return unit{}, false
			}
			continue
		}
		s.fill(s.bufMax(s.lim.maxLine))
	}
}

// lineUnit makes a unit of buf[r:end], a whole line without its '\n'. It
// drops a trailing '\r' and returns false for a blank line.
func (s *splitter) lineUnit(end int) (unit, bool) {
	p := s.buf[s.r:end]
	if len(p) > 0 && p[len(p)-1] == '\r' {
		p = p[:len(p)-1]
	}
	if len(p) == 0 || (isSpace(p[0]) && isBlank(p)) {
		return unit{}, false
	}
	u := unit{Data: p, Offset: s.base + int64(s.r), Line: s.line, Size: int64(len(p))}
	if len(p) > s.lim.maxLine {
		u.Data, u.Flags = p[:s.lim.keep], pipeline.UnitTooLarge
	}
	return u, true
}

// skipLine handles a line known to be too large: it keeps its first bytes and
// reads on, without holding the rest, to the end of the line. ok is true when
// it returns the line's unit; done is true when the stream ended (or failed)
// without a unit to return.
func (s *splitter) skipLine() (u unit, ok, done bool) {
	p := s.buf[s.r:s.w]
	s.keepBuf = append(s.keepBuf[:0], p[:s.lim.keep]...)
	u = unit{Offset: s.base + int64(s.r), Line: s.line, Flags: pipeline.UnitTooLarge}
	size := int64(len(p))
	blank := isBlank(p)
	lastCR := p[len(p)-1] == '\r'
	s.r, s.scan = s.w, s.w
	for {
		if s.eof {
			if s.err != nil {
				return unit{}, false, true
			}
			break
		}
		s.fill(s.bufMax(s.lim.maxLine))
		p := s.buf[s.r:s.w]
		j := bytes.IndexByte(p, '\n')
		if j >= 0 {
			p = p[:j]
		}
		size += int64(len(p))
		if blank {
			blank = isBlank(p)
		}
		if len(p) > 0 {
			lastCR = p[len(p)-1] == '\r'
		}
		if j >= 0 {
			s.r, s.scan = s.r+j+1, s.r+j+1
			s.line++
			break
		}
		s.r, s.scan = s.w, s.w
	}
	if lastCR {
		size--
	}
	if blank {
		return unit{}, false, s.eof && s.r == s.w
	}
	u.Data, u.Size = s.keepBuf, size
	return u, true, false
}

// nextDoc returns the next document, or the next run of junk (bytes that
// cannot start a document, up to the end of their line).
func (s *splitter) nextDoc() (unit, bool) {
	for {
		if s.phase == phaseBetween {
			i := s.r
			for i < s.w && isSpace(s.buf[i]) {
				i++
			}
			s.line += int64(bytes.Count(s.buf[s.r:i], []byte{'\n'}))
			s.r, s.scan = i, i
			if i == s.w {
				if s.eof {
					return unit{}, false
				}
				s.fill(s.bufMax(s.lim.maxDoc))
				continue
			}
			if c := s.buf[i]; c != '{' && c != '[' {
				// Junk: a line's worth of it is one unit.
				return s.nextLine()
			}
			s.phase = phaseDoc
			s.doc = docState{}
		}
		if j := s.doc.scan(s.buf[s.scan:s.w]); j >= 0 {
			end := s.scan + j
			s.phase = phaseBetween
			return s.docUnit(end, 0), true
		}
		s.scan = s.w
		if s.eof {
			s.phase = phaseBetween
			if s.err != nil {
				return unit{}, false
			}
			return s.docUnit(s.w, pipeline.UnitTruncated), true
		}
		if s.w-s.r > s.lim.maxDoc {
			if u, ok := s.skipDoc(); ok {
				return u, true
			}
			return unit{}, false
		}
		s.fill(s.bufMax(s.lim.maxDoc))
	}
}

// docUnit makes a unit of buf[r:end], a whole document (or what the stream
// held of it), and consumes it.
func (s *splitter) docUnit(end int, flags uint8) unit {
	p := s.buf[s.r:end]
	u := unit{Data: p, Offset: s.base + int64(s.r), Line: s.line, Size: int64(len(p)), Flags: flags}
	if len(p) > s.lim.maxDoc {
		u.Data = p[:s.lim.keep]
		u.Flags |= pipeline.UnitTooLarge
	}
	s.line += int64(bytes.Count(p, []byte{'\n'}))
	s.r, s.scan = end, end
	return u
}

// skipDoc handles a document known to be too large: it keeps its first bytes
// and scans on, without holding the rest, to the document's end. ok is false
// only when a read error ended the stream inside the document.
func (s *splitter) skipDoc() (unit, bool) {
	p := s.buf[s.r:s.w]
	s.keepBuf = append(s.keepBuf[:0], p[:s.lim.keep]...)
	u := unit{Data: s.keepBuf, Offset: s.base + int64(s.r), Line: s.line, Flags: pipeline.UnitTooLarge}
	size := int64(len(p))
	s.line += int64(bytes.Count(p, []byte{'\n'}))
	s.r, s.scan = s.w, s.w
	for {
		if s.eof {
			if s.err != nil {
				return unit{}, false
			}
			u.Flags |= pipeline.UnitTruncated
			break
		}
		s.fill(s.bufMax(s.lim.maxDoc))
		p := s.buf[s.r:s.w]
		if j := s.doc.scan(p); j >= 0 {
			p = p[:j]
			size += int64(len(p))
			s.line += int64(bytes.Count(p, []byte{'\n'}))
			s.r, s.scan = s.r+j, s.r+j
			break
		}
		size += int64(len(p))
		s.line += int64(bytes.Count(p, []byte{'\n'}))
		s.r, s.scan = s.w, s.w
	}
	s.phase = phaseBetween
	u.Size = size
	return u, true
}
