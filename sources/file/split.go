package file

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/bits"

	"github.com/tracepipe/tracepipe/pipeline"
)

// framing is how a stream is cut into units.
type framing uint8

const (
	framingUnknown  framing = iota // not decided yet: decided on the first call to next
	framingNDJSON                  // one unit per line
	framingDocument                // one unit per top-level JSON document
)

// Unit is one line or document found by a splitter (Lines in this package's
// API). Data is a view into the splitter's buffer (or its keep buffer), valid
// until the next call that returns a unit.
type Unit struct {
	Data   []byte
	Offset int64 // byte offset of the unit's first byte in the decompressed stream
	Line   int64 // 1-based line of the unit's first byte
	Size   int64 // full length in the input; > len(Data) only when UnitTooLarge is set
	Flags  uint8
}

// unit is the splitter's name for Unit.
type unit = Unit

// Phases of the document-mode scanner.
const (
	phaseBetween uint8 = iota // between documents: skipping whitespace
	phaseDoc                  // inside a document
)

// Ways a document fails. A failed document does not swallow what follows it:
// the splitter resynchronises (see nextDoc).
const (
	failNone    uint8 = iota
	failEOF           // the input ended inside it
	failNewline       // a raw newline inside a string: a torn line (JSON strings cannot hold one)
	failDeep          // nested deeper than the depth limit
	failBig           // longer than the size limit
)

// Results of docState.scan besides an end index.
const (
	scanMore = -1 // the document goes on past the bytes given
	scanFail = -2 // the document failed: see docState.fail and docState.at
)

// DefaultMaxDepth is the nesting depth past which a document fails to frame.
// It is above the parser's own limit (fastjson.MaxDepth, 300), so every
// document the parser could take frames whole.
const DefaultMaxDepth = 512

// docState is the state of the string-aware bracket-depth scanner. It is
// resumable: scan can be fed a stream in pieces of any size.
type docState struct {
	depth int
	inStr bool
	esc   bool
	// open[:depth] holds the stream offsets of the open brackets, outermost
	// first; len(open) is the depth limit.
	open []int64
	fail uint8 // after scanFail: how it failed
	at   int   // after scanFail: the index in p of the byte it failed at
}

// byteClass marks the bytes the document scanner stops at outside strings.
var byteClass = [256]bool{'{': true, '[': true, '}': true, ']': true, '"': true}

// scan advances the state over p, whose first byte is at stream offset off,
// and returns the index just past the byte that brings the depth back to
// zero (the end of the document), scanMore when the document goes on past
// p, or scanFail when it cannot be a JSON document: a raw newline inside a
// string (failNewline, at the newline) or an opening bracket past the depth
// limit (failDeep, at that bracket, not consumed). It is linear in len(p)
// and never recurses. The caller starts a document by passing p beginning
// at its '{' or '['.
func (st *docState) scan(p []byte, off int64) int {
	depth, inStr, esc, open := st.depth, st.inStr, st.esc, st.open
	i := 0
	for i < len(p) {
		if inStr {
			if esc {
				if p[i] == '\n' {
					break
				}
				esc = false
				i++
				continue
			}
			// Inside a string only '"', '\\' and a (forbidden) newline
			// matter: look 8 bytes at a time; the lowest bit of the mask
			// marks the first of them.
			for {
				if i+8 > len(p) {
					for i < len(p) && !strStop[p[i]] {
						i++
					}
					break
				}
				v := binary.LittleEndian.Uint64(p[i:])
				if m := hasByte(v, '"') | hasByte(v, '\\') | hasByte(v, '\n'); m != 0 {
					i += bits.TrailingZeros64(m) >> 3
					break
				}
				i += 8
			}
			if i == len(p) {
				break
			}
			switch p[i] {
			case '"':
				inStr = false
			case '\\':
				esc = true
			default: // a newline
				st.depth, st.inStr, st.esc = depth, inStr, esc
				st.fail, st.at = failNewline, i
				return scanFail
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
			if uint(depth) >= uint(len(open)) {
				st.depth, st.inStr, st.esc = depth, inStr, esc
				st.fail, st.at = failDeep, i-1
				return scanFail
			}
			open[depth] = off + int64(i-1)
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
	if i < len(p) { // stopped at a newline right after a backslash
		st.fail, st.at = failNewline, i
		return scanFail
	}
	return scanMore
}

// strStop marks the bytes the document scanner stops at inside strings.
var strStop = [256]bool{'"': true, '\\': true, '\n': true}

// start prepares st for a document, with open as its stack (and depth
// limit).
func (st *docState) start(open []int64) {
	*st = docState{open: open}
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

// splitterLimits configures a splitter and bounds what it keeps in memory.
type splitterLimits struct {
	maxLine  int // a line longer than this is too large
	maxDoc   int // a document longer than this fails to frame
	maxDepth int // a document nested deeper than this fails to frame; 0 means DefaultMaxDepth
	keep     int // bytes kept of a too-large unit
	readSize int // initial (and usual) buffer size
	// framing, when not framingUnknown, is used whatever the content: the
	// reader sets framingNDJSON for a file whose name says it holds lines.
	framing framing
	// follow: the end of the stream is only its end for now (a file still
	// being written). A last line with no newline is held, not returned,
	// until more of it comes or takePartial is called, and the next call
	// to next reads again. Only with framingNDJSON.
	follow bool
}

// splitter cuts a decompressed stream into units: lines (NDJSON) or top-level
// JSON documents, with the framing detected from the first bytes unless the
// limits impose it. Its buffer grows to at most about the largest allowed
// unit plus two bytes (or readSize, if larger); anything longer is skipped
// through without being held, keeping only its first lim.keep bytes.
//
// In document framing, a document that fails (the input ends inside it, a
// raw newline inside one of its strings, too deep, too large) cannot swallow
// what follows it: the bytes from its start up to the next line that begins
// with '{' or '[' at column 0 become one unit (which the parser rejects),
// and splitting goes on from that line. What the failed scan learnt is
// reused (see region), so no byte is scanned more than a few times.
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
	sub   docState // rescans of documents inside a region, and detect
	// stack backs doc.open, which is stack[lo:lo+maxDepth]; it is twice as
	// long so that a document resumed from inside a failed one (see resume)
	// keeps its whole depth limit without copying each time.
	stack []int64
	lo    int
	rg    region

	eof bool
	err error // the read error that ended the stream early, if any

	keepBuf []byte // first bytes of a too-large unit, reused
	sk      skipping

	// work counts the bytes the document-mode code scanned or searched,
	// and fallbacks the times a region rescan disagreed with the scan it
	// replays (never, unless there is a bug): for tests.
	work      int64
	fallbacks int
}

// skipping is the state of a too-large line being read through (skipLine),
// kept across calls when following a stream whose end may not be the line's.
type skipping struct {
	active bool
	off    int64 // the line's offset and line number
	line   int64
	size   int64 // bytes of it read so far, its newline not included
	blank  bool  // only whitespace so far
	lastCR bool  // its last byte so far is '\r'
}

// region is what the splitter knows after a document failed at stream
// offset end: every unit starting before end is decided by the failed
// scan. Units there start outside strings (a string cannot cross a line, and
// units start after a line or a closed document), so a document starting at
// such a unit start is in step with the failed scan: it ends where that
// scan came back to the depth it started at, or, if that did not happen
// before end (its bracket is still in doc.open[k:doc.depth]), it fails at
// end the same way (failEOF, failNewline) or goes on past end from the
// failed scan's state (failDeep, failBig). So a document inside a region is
// rescanned at most once, and only when it ends inside it.
type region struct {
	active bool
	end    int64 // stream offset where the document failed
	kind   uint8 // how it failed
	k      int   // doc.open[k:doc.depth]: the brackets still open at end, not yet passed
}

// reset prepares s to split src, keeping its buffers.
func (s *splitter) reset(src io.Reader, lim splitterLimits) {
	if lim.readSize < 16 {
		lim.readSize = 16
	}
	if lim.maxDepth <= 0 {
		lim.maxDepth = DefaultMaxDepth
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
	stack, subOpen := s.stack, s.sub.open
	if len(stack) != 2*lim.maxDepth {
		stack, subOpen = make([]int64, 2*lim.maxDepth), make([]int64, lim.maxDepth)
	}
	*s = splitter{src: src, lim: lim, buf: s.buf, line: 1, keepBuf: s.keepBuf[:0], stack: stack}
	s.sub.open = subOpen
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
	if s.lim.follow && s.eof && s.err == nil {
		s.eof = false // the stream may have grown since
	}
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
// the very start is dropped, then leading whitespace. Then the framing the
// limits impose, if any, is taken. Else '[' means documents; '{' means
// NDJSON when its first line is a complete value by itself or longer than
// the line limit (it is then a too-large line: a line limit applies to one
// line whatever its position in the file), and documents otherwise (a
// pretty-printed document); anything else means NDJSON. It returns false
// when the stream holds no unit at all.
func (s *splitter) detect() bool {
	max := s.bufMax(s.lim.maxLine)
	for !s.eof && s.w < 3 {
		s.fill(max)
	}
	if s.base == 0 && s.r == 0 {
		if s.w >= 3 && s.buf[0] == 0xEF && s.buf[1] == 0xBB && s.buf[2] == 0xBF {
			s.r = 3
		} else if s.lim.follow && s.w < 3 && string(s.buf[:s.w]) == "\xef\xbb\xbf"[:s.w] {
			return false // a byte order mark may be on its way
		}
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
	switch {
	case s.lim.framing != framingUnknown:
		s.mode = s.lim.framing
	case s.buf[s.r] == '[':
		s.mode = framingDocument
	case s.buf[s.r] == '{':
		// Is the first line a complete value? Look at most one line limit
		// ahead.
		st := &s.sub
		st.start(st.open)
		failed := false
		i := s.r
		for {
			nl := bytes.IndexByte(s.buf[i:s.w], '\n')
			end := s.w
			if nl >= 0 {
				end = i + nl
			}
			for i < end && !failed {
				j := st.scan(s.buf[i:end], 0)
				if j == scanFail { // too deep: not a value a line could hold
					failed = true
				}
				if j < 0 {
					break
				}
				i += j
			}
			i = end
			if nl >= 0 || s.eof {
				if (failed || st.depth != 0 || st.inStr) && end-s.r <= s.lim.maxLine {
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
	if s.sk.active {
		u, ok, done := s.skipOn()
		if ok {
			return u, true
		}
		if done {
			return unit{}, false
		}
	}
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
			if s.err != nil || s.r == s.w || s.lim.follow {
				return unit{}, false // following: the line may not be whole yet
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
// without a unit to return. Following a stream, the end of what is there
// now is not the line's: the state stays in s.sk and the next call to
// nextLine goes on with it.
func (s *splitter) skipLine() (u unit, ok, done bool) {
	p := s.buf[s.r:s.w]
	s.keepBuf = append(s.keepBuf[:0], p[:s.lim.keep]...)
	s.sk = skipping{active: true, off: s.base + int64(s.r), line: s.line, size: int64(len(p)), blank: isBlank(p), lastCR: p[len(p)-1] == '\r'}
	s.r, s.scan = s.w, s.w
	return s.skipOn()
}

// skipOn reads on through the too-large line s.sk describes.
func (s *splitter) skipOn() (u unit, ok, done bool) {
	sk := &s.sk
	for {
		if s.eof {
			if s.err != nil {
				sk.active = false
				return unit{}, false, true
			}
			if s.lim.follow {
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
		sk.size += int64(len(p))
		if sk.blank {
			sk.blank = isBlank(p)
		}
		if len(p) > 0 {
			sk.lastCR = p[len(p)-1] == '\r'
		}
		if j >= 0 {
			s.r, s.scan = s.r+j+1, s.r+j+1
			s.line++
			break
		}
		s.r, s.scan = s.w, s.w
	}
	u, ok = s.skipped()
	if !ok {
		return unit{}, false, s.eof && s.r == s.w
	}
	return u, true, false
}

// skipped ends the too-large line s.sk describes and returns its unit; ok
// is false for a blank one.
func (s *splitter) skipped() (unit, bool) {
	sk := &s.sk
	sk.active = false
	size := sk.size
	if sk.lastCR {
		size--
	}
	if sk.blank {
		return unit{}, false
	}
	return unit{Data: s.keepBuf, Offset: sk.off, Line: sk.line, Size: size, Flags: pipeline.UnitTooLarge}, true
}

// takePartial, when following, returns the last line of what the stream
// holds now though no newline ends it yet, as the end of a stream would:
// the writer was given time enough to finish it. It is called after next
// returned false at the end of the stream; ok is false when nothing is
// held (or only blanks, which are consumed). What the writer appends to
// that line later starts a new unit, on the same line number.
func (s *splitter) takePartial() (unit, bool) {
	if !s.lim.follow || !s.eof || s.err != nil {
		return unit{}, false
	}
	if s.mode == framingUnknown && s.r < s.w { // the start of a byte order mark, and no more
		s.mode = framingNDJSON
	}
	if s.mode != framingNDJSON {
		return unit{}, false
	}
	if s.sk.active {
		return s.skipped()
	}
	if s.r == s.w {
		return unit{}, false
	}
	u, ok := s.lineUnit(s.w)
	s.r, s.scan = s.w, s.w
	return u, ok
}

// held returns the bytes of a last line held back, when following: what
// takePartial would take.
func (s *splitter) held() int64 {
	if s.sk.active {
		return s.sk.size
	}
	return int64(s.w - s.r)
}

// nextDoc returns the next document, or the next run of junk (bytes that
// cannot start a document, up to the end of their line), or the bad part
// of a document that failed to frame.
//
// A document fails when the input ends inside it, when one of its strings
// holds a raw newline (a torn line: JSON strings cannot), when it nests
// deeper than lim.maxDepth or is longer than lim.maxDoc. Its bad part, from
// its start up to the next line that begins with '{' or '[' at column 0
// (or the end of the input), is one unit, and splitting goes on from that
// line as if from scratch. Scanning from scratch would rescan what the
// failed scan saw; the region it leaves behind answers instead (see
// region), so the work stays linear in the input.
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
			pos := s.base + int64(i)
			if s.rg.active && pos >= s.rg.end {
				s.rg.active = false
			}
			if c := s.buf[i]; c != '{' && c != '[' {
				// Junk: a line's worth of it is one unit.
				u, ok := s.nextLine()
				s.passed()
				return u, ok
			}
			if s.rg.active {
				if s.rg.k < s.doc.depth && s.doc.open[s.rg.k] == pos {
					// Still open where the region's document failed.
					if s.rg.kind == failEOF || s.rg.kind == failNewline {
						return s.badUnit(s.rg.kind)
					}
					s.resume()
					continue
				}
				if u, ok := s.subDoc(); ok {
					return u, true
				}
			}
			s.phase = phaseDoc
			s.lo = 0
			s.doc.start(s.stack[:s.lim.maxDepth])
		}
		limit := s.r + s.lim.maxDoc // the document must end before it
		end := min(s.w, limit)
		j := s.doc.scan(s.buf[s.scan:end], s.base+int64(s.scan))
		if j >= 0 {
			s.work += int64(j)
			s.phase = phaseBetween
			return s.docUnit(s.scan + j), true
		}
		if j == scanFail {
			s.work += int64(s.doc.at)
			return s.failDoc(s.doc.fail, s.scan+s.doc.at)
		}
		s.work += int64(end - s.scan)
		s.scan = end
		if end == limit {
			return s.failDoc(failBig, end)
		}
		if s.eof {
			if s.err != nil {
				// A read error cut the document short: no unit.
				s.phase = phaseBetween
				return unit{}, false
			}
			return s.failDoc(failEOF, end)
		}
		s.fill(s.bufMax(s.lim.maxDoc))
	}
}

// docUnit makes a unit of buf[r:end], a whole document, and consumes it.
func (s *splitter) docUnit(end int) unit {
	p := s.buf[s.r:end]
	u := unit{Data: p, Offset: s.base + int64(s.r), Line: s.line, Size: int64(len(p))}
	s.line += int64(bytes.Count(p, []byte{'\n'}))
	s.r, s.scan = end, end
	return u
}

// failDoc handles the document at buf[r:] failing the given way at buf[at]:
// it opens the region the failed scan describes and returns the bad part.
func (s *splitter) failDoc(kind uint8, at int) (unit, bool) {
	s.phase = phaseBetween
	s.rg = region{active: true, end: s.base + int64(at), kind: kind}
	return s.badUnit(kind)
}

// passed ends the region, or drops its open brackets, that units up to
// buf[r] have passed.
func (s *splitter) passed() {
	if !s.rg.active {
		return
	}
	pos := s.base + int64(s.r)
	if pos >= s.rg.end {
		s.rg.active = false
		return
	}
	for s.rg.k < s.doc.depth && s.doc.open[s.rg.k] < pos {
		s.rg.k++
	}
}

// resume goes on with the document that starts at buf[r], the bracket
// doc.open[rg.k] of the region's failed document, from where that one
// failed: its state there is the failed one's, less the rg.k brackets
// outside it. Only for failDeep and failBig, which do not fail it.
func (s *splitter) resume() {
	k := s.rg.k
	depth := s.doc.depth - k
	s.lo += k
	if s.lo+s.lim.maxDepth > len(s.stack) {
		copy(s.stack, s.stack[s.lo:s.lo+depth])
		s.lo = 0
	}
	s.doc.open = s.stack[s.lo : s.lo+s.lim.maxDepth]
	s.doc.depth = depth
	s.scan = int(s.rg.end - s.base)
	s.phase = phaseDoc
	s.rg.active = false
}

// subDoc returns the document at buf[r], inside the region and closed
// before its end. ok is false if the rescan does not find it so (a bug:
// the region is then dropped and the caller scans afresh).
func (s *splitter) subDoc() (unit, bool) {
	end := int(s.rg.end - s.base)
	s.sub.start(s.sub.open)
	j := s.sub.scan(s.buf[s.r:end], s.base+int64(s.r))
	if j < 0 {
		s.work += int64(end - s.r)
		s.fallbacks++
		s.rg.active = false
		return unit{}, false
	}
	s.work += int64(j)
	u := s.docUnit(s.r + j)
	s.passed()
	return u, true
}

// isStart reports whether c begins a unit at the start of a line after a
// failure.
func isStart(c byte) bool { return c == '{' || c == '[' }

// badUnit returns the bad part of a failed document starting at buf[r]:
// the bytes up to the newline before the next line that begins with '{' or
// '[', or to the end of the input. It is UnitTooLarge when longer than
// lim.maxDoc (its Size counts trailing whitespace); else its trailing
// whitespace is dropped. It is flagged UnitTruncated when the document
// failed because the input ended inside it and the part runs to that end.
// ok is false when a read error cut it short.
func (s *splitter) badUnit(kind uint8) (unit, bool) {
	from := s.r + 1 // where the search for a newline resumes
	q := -1         // the next unit's start
	for {
		if n := bytes.IndexByte(s.buf[from:s.w], '\n'); n >= 0 {
			s.work += int64(n + 1)
			n += from
			if n+1 < s.w {
				if isStart(s.buf[n+1]) {
					q = n + 1
					break
				}
				from = n + 1
				continue
			}
			from = n // look at the byte after it once it is read
		} else {
			s.work += int64(s.w - from)
			from = s.w
		}
		if s.eof {
			if s.err != nil {
				return unit{}, false
			}
			break
		}
		// With no start in buf[r:w], the part ends at w-1 or later.
		if s.w-s.r > s.lim.maxDoc+1 {
			return s.skipBad(kind, from)
		}
		r := s.r
		s.fill(s.bufMax(s.lim.maxDoc))
		from -= r - s.r
	}
	end, next := s.w, s.w
	if q >= 0 {
		end, next = q-1, q
	}
	p := s.buf[s.r:end]
	u := unit{Offset: s.base + int64(s.r), Line: s.line, Size: int64(len(p))}
	if q < 0 && kind == failEOF {
		u.Flags = pipeline.UnitTruncated
	}
	if len(p) > s.lim.maxDoc {
		u.Data = p[:s.lim.keep]
		u.Flags |= pipeline.UnitTooLarge
	} else {
		for isSpace(p[len(p)-1]) { // p[0] is a bracket
			p = p[:len(p)-1]
		}
		u.Data, u.Size = p, int64(len(p))
	}
	s.line += int64(bytes.Count(s.buf[s.r:next], []byte{'\n'}))
	s.r, s.scan = next, next
	s.passed()
	return u, true
}

// skipBad is badUnit for a part known to be too large: it keeps its first
// bytes and reads on, without holding the rest, to the next line that
// begins with '{' or '['. buf[r:from] holds no line start, and from is w,
// or w-1 holding a newline.
func (s *splitter) skipBad(kind uint8, from int) (unit, bool) {
	s.keepBuf = append(s.keepBuf[:0], s.buf[s.r:s.r+s.lim.keep]...)
	u := unit{Data: s.keepBuf, Offset: s.base + int64(s.r), Line: s.line, Flags: pipeline.UnitTooLarge}
	consume := func(to int) {
		s.line += int64(bytes.Count(s.buf[s.r:to], []byte{'\n'}))
		s.r, s.scan = to, to
	}
	for {
		if n := bytes.IndexByte(s.buf[from:s.w], '\n'); n >= 0 {
			s.work += int64(n + 1)
			n += from
			if n+1 < s.w {
				if isStart(s.buf[n+1]) {
					u.Size = s.base + int64(n) - u.Offset
					consume(n + 1)
					break
				}
				from = n + 1
				continue
			}
			from = n
		} else {
			s.work += int64(s.w - from)
			from = s.w
		}
		if s.eof {
			if s.err != nil {
				return unit{}, false
			}
			u.Size = s.base + int64(s.w) - u.Offset
			if kind == failEOF {
				u.Flags |= pipeline.UnitTruncated
			}
			consume(s.w)
			break
		}
		// Drop all but what the search still needs: a newline at the end.
		if from > s.r {
			consume(from)
		}
		s.fill(s.bufMax(s.lim.maxDoc))
		from = s.r
	}
	s.passed()
	return u, true
}
