package file

import (
	"io"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Lines frames a line-framed stream that may still be growing (a file being
// followed) into exactly the units Reader makes of a line-framed file: one
// per non-blank line, its '\r' before the '\n' dropped, offsets and 1-based
// line numbers counting every line, a UTF-8 byte order mark and the blank
// lines at the very start dropped, a line over MaxLineBytes kept by its
// first KeepBytes and flagged pipeline.UnitTooLarge with its full Size.
//
// The difference is at the end of what the stream holds: a last line with
// no newline is held, not returned (the writer may be half way through it),
// until more comes or the caller gives up waiting and calls TakePartial. A
// too-large line whose end has not come yet is held the same way, by its
// first bytes and its length so far. After Next returns false at the end,
// it can be called again once the stream has grown: it reads on.
//
// Its memory is its read buffer (ReadBufferBytes, growing to hold one line
// up to MaxLineBytes) and KeepBytes; it does not depend on the stream. A
// Lines can be detached from one stream (State) and reattached to another
// (Reset), so a few of them serve any number of files.
type Lines struct {
	sp  splitter
	lim splitterLimits
}

// LineState is where a Lines is in its stream, enough to go on framing it
// later from a reader positioned at Offset.
type LineState struct {
	// Offset is the stream offset of the next byte to frame, Line its line
	// number (1-based; 0 is taken as 1).
	Offset, Line int64
	// Started is true once the start of the stream was passed (a byte
	// order mark and leading blank lines are dropped only before).
	Started bool
	// Skip, when set, is the too-large line being read through: its
	// offset, line, bytes so far, and first bytes in Keep.
	Skip                          bool
	SkipOffset, SkipLine, SkipLen int64
	SkipBlank, SkipCR             bool
	Keep                          []byte
}

// NewLines returns a Lines with o's MaxLineBytes, KeepBytes and
// ReadBufferBytes (zero ones take their defaults; the rest of o is not
// used).
func NewLines(o Options) (*Lines, error) {
	o.Format = pipeline.FormatJSONL // not used here; keeps withDefaults from asking for Detect
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Lines{lim: splitterLimits{maxLine: o.MaxLineBytes, maxDoc: o.MaxLineBytes, keep: o.KeepBytes, readSize: o.ReadBufferBytes, framing: framingNDJSON, follow: true}}
	l.sp.reset(nil, l.lim)
	return l, nil
}

// Reset starts framing src, positioned at st.Offset, from st.
func (l *Lines) Reset(src io.Reader, st LineState) {
	s := &l.sp
	s.reset(src, l.lim)
	s.base = st.Offset
	s.line = max(st.Line, 1)
	if st.Started {
		s.mode = framingNDJSON
	}
	if st.Skip {
		s.sk = skipping{active: true, off: st.SkipOffset, line: st.SkipLine, size: st.SkipLen, blank: st.SkipBlank, lastCR: st.SkipCR}
		s.keepBuf = append(s.keepBuf[:0], st.Keep...)
	}
}

// State returns where l is: after a unit Next returned, just past that
// unit's line. Keep, when a too-large line is being read through, is
// appended to keep.
func (l *Lines) State(keep []byte) LineState {
	s := &l.sp
	st := LineState{Offset: s.base + int64(s.r), Line: s.line, Started: s.mode != framingUnknown}
	if s.sk.active {
		st.Skip, st.SkipOffset, st.SkipLine, st.SkipLen = true, s.sk.off, s.sk.line, s.sk.size
		st.SkipBlank, st.SkipCR = s.sk.blank, s.sk.lastCR
		st.Keep = append(keep, s.keepBuf...)
	}
	return st
}

// Next returns the next whole line's unit, valid until the next call. ok is
// false at the end of what the stream holds now, or on a read error (Err).
func (l *Lines) Next() (u Unit, ok bool) { return l.sp.next() }

// Held returns the bytes of the last line held back at the end of the
// stream (0 when the stream ends with a newline).
func (l *Lines) Held() int64 { return l.sp.held() }

// TakePartial, called after Next returned false at the end of the stream,
// returns the held last line as it is, as a replay would at the end of the
// file. What is later appended to that line is framed as a new line (with
// the same line number). ok is false when nothing was held but blanks.
func (l *Lines) TakePartial() (Unit, bool) { return l.sp.takePartial() }

// Err returns the read error that stopped the stream, if any.
func (l *Lines) Err() error { return l.sp.err }

// Pos returns the stream offset and line number just past the last unit
// Next or TakePartial returned (and any blank lines read after it): where
// a reader that has delivered that unit resumes.
func (l *Lines) Pos() (offset, line int64) { return l.sp.base + int64(l.sp.r), l.sp.line }

// Scanned returns the stream offset up to which bytes were read from the
// source: at the end of the stream, its size when last read.
func (l *Lines) Scanned() int64 { return l.sp.offset() }
