package tail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// positions is the file source's checkpoint (state.Dir's "positions"):
//
//	{"files":[{"fp":"…","fp_len":1024,"dev":2049,"ino":131,"path":"/var/log/app.log","offset":81920,"line":412}],
//	 "released":[{…,"released":"2026-12-02T14:32:05Z"}]}
//
// files holds each followed file's position after its last batch acked in
// order (and a released file's, until all its batches are acked);
// released holds the last positions of files let go, kept for a bounded
// number and time so that a file renamed back is not read again.
type positions struct {
	Files    []position `json:"files"`
	Released []position `json:"released"`
}

// position is one file's.
type position struct {
	// FP is the hex of the first 16 bytes of the SHA-256 of the file's
	// first FPLen bytes.
	FP    string `json:"fp"`
	FPLen int    `json:"fp_len"`
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	// Path is where the file was last seen (informative: files are found
	// by identity, not path).
	Path string `json:"path"`
	// Offset and Line: where reading resumes. For an archive, Offset is
	// in the decompressed stream, units starting before it were
	// delivered, and Line is 0; Done says it was read whole.
	Offset int64 `json:"offset"`
	Line   int64 `json:"line"`
	// Windowed, when set, is where reading resumes after a crash: before
	// it every record read is in a durable window row; from it to Offset
	// records are read again only for the windows (WindowsOnly batches),
	// their sinks and DLQ having them. Absent: the same as Offset.
	Windowed *wpos     `json:"windowed,omitempty"`
	Archive  bool      `json:"archive,omitempty"`
	Done     bool      `json:"done,omitempty"`
	Released time.Time `json:"released,omitzero"`
}

// wpos is a windowed position.
type wpos struct {
	Offset int64 `json:"offset"`
	Line   int64 `json:"line"`
}

// maxFPLen is the largest fingerprint length config allows.
const maxFPLen = 64 << 10

// decodePositions reads and checks a checkpoint's positions. Anything
// malformed is an error (a checkpoint is never half taken).
func decodePositions(raw []byte) (positions, error) {
	var p positions
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return positions{}, err
	}
	if dec.More() {
		return positions{}, errors.New("trailing data after the positions")
	}
	for _, list := range []struct {
		name     string
		l        []position
		released bool
	}{{"files", p.Files, false}, {"released", p.Released, true}} {
		for i, e := range list.l {
			if err := e.check(list.released); err != nil {
				return positions{}, fmt.Errorf("%s[%d]: %w", list.name, i, err)
			}
		}
	}
	return p, nil
}

func (e *position) check(released bool) error {
	fp, err := hex.DecodeString(e.FP)
	switch {
	case err != nil || len(fp) != fpSize:
		return fmt.Errorf("fp %q is not %d hex bytes", e.FP, fpSize)
	case e.FPLen < 1 || e.FPLen > maxFPLen:
		return fmt.Errorf("fp_len %d is outside 1..%d", e.FPLen, maxFPLen)
	case e.Path == "":
		return errors.New("no path")
	case e.Offset < 0:
		return fmt.Errorf("negative offset %d", e.Offset)
	case e.Archive && e.Line != 0:
		return fmt.Errorf("archive with line %d", e.Line)
	case !e.Archive && e.Line < 1:
		return fmt.Errorf("line %d, want >= 1", e.Line)
	case e.Done && !e.Archive:
		return errors.New("done is for archives")
	case e.Windowed != nil && e.Archive:
		return errors.New("windowed is not for archives")
	case e.Windowed != nil && (e.Windowed.Offset < 0 || e.Windowed.Offset > e.Offset || e.Windowed.Line < 1 || e.Windowed.Line > e.Line):
		return fmt.Errorf("windowed %d line %d is not within 0..offset %d, 1..line %d", e.Windowed.Offset, e.Windowed.Line, e.Offset, e.Line)
	case released && e.Released.IsZero():
		return errors.New("released entry with no time")
	case !released && !e.Released.IsZero():
		return errors.New("followed file with a released time")
	}
	return nil
}

// load reads the source's checkpoint into s.known.
func (s *Source) load() error {
	var raw json.RawMessage
	found, _, err := s.o.State.Load(s.name, Kind, &raw)
	if err != nil || !found {
		return err
	}
	p, err := decodePositions(raw)
	if err != nil {
		return fmt.Errorf("tail: %s: checkpoint %s: %w; `pipeline state reset %s` starts it afresh", s.name, s.o.State.File(s.name), err, s.name)
	}
	for _, l := range [][]position{p.Files, p.Released} {
		for i := range l {
			s.known = append(s.known, &l[i])
		}
	}
	return nil
}

// match finds, and takes out of the remembered positions, the one of the
// file f is (same device and inode, same first bytes): a followed file's
// first (the lowest offset if several), else the latest released. A
// released instance whose batches are still in flight counts too (a file
// renamed out and back in quickly): reading resumes after what it sent.
func (s *Source) match(f *tfile, head []byte) *position {
	var best *position
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.known[:0]
	for _, e := range s.known {
		if e.Dev != f.key.dev || e.Ino != f.key.ino || !s.sameStart(f, head, e.FPLen, e.FP) {
			keep = append(keep, e)
			continue
		}
		switch {
		case best == nil,
			best.Released.IsZero() && e.Released.IsZero() && e.Offset < best.Offset,
			!best.Released.IsZero() && e.Released.IsZero(),
			!best.Released.IsZero() && e.Released.After(best.Released):
			best = e
		}
	}
	clear(s.known[len(keep):])
	s.known = keep
	if best != nil {
		return best
	}
	for _, d := range s.draining {
		if d.key == f.key && d.fpLen > 0 && s.sameStart(f, head, d.fpLen, hex.EncodeToString(d.fp[:])) {
			return &position{Offset: d.sent.Off, Line: d.sent.Line, Archive: d.archive, Done: d.done, FPLen: d.fpLen}
		}
	}
	return nil
}

// sameStart reports whether f's first n bytes have fingerprint fp (hex).
func (s *Source) sameStart(f *tfile, head []byte, n int, fp string) bool {
	var b []byte
	switch {
	case n <= len(head):
		b = head[:n]
	case int64(n) <= f.size && f.fh != nil:
		b = make([]byte, n)
		if k, _ := f.fh.ReadAt(b, 0); k < n {
			return false
		}
	default:
		return false
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:fpSize]) == fp
}

// posOf returns f's committable position. Called with s.mu held.
//
// The delivered position never goes below where this process started
// delivering (floor): the windows-only batches it reads first end before
// it. The windowed one follows WindowAcks; it is written only when behind.
func (s *Source) posOf(f *tfile) position {
	_, p := f.tracker.Acked()
	if p.Off < f.floor.Off {
		p = f.floor
	}
	e := position{
		FP: hex.EncodeToString(f.fp[:]), FPLen: f.fpLen, Dev: f.key.dev, Ino: f.key.ino, Path: f.path,
		Offset: p.Off, Line: p.Line, Archive: f.archive,
	}
	if f.archive {
		e.Line = 0
		e.Done = f.done && f.tracker.InFlight() == 0
		return e
	}
	if _, w := f.wtracker.Acked(); w.Off < p.Off {
		e.Windowed = &wpos{Offset: w.Off, Line: max(w.Line, 1)}
	}
	return e
}

// inFlight reports whether f has batches not yet acked, or not yet
// window-acked.
func (f *tfile) inFlight() bool {
	return f.tracker.InFlight() > 0 || (f.wtracker != nil && f.wtracker.InFlight() > 0)
}

// Commit saves every file's position after its last batch acked in order
// (never past a gap) in the source's checkpoint, if anything changed since
// the last save. Released files whose batches are all acked move to the
// released list, which is trimmed to Options.Remember entries no older
// than Options.RememberFor.
func (s *Source) Commit(ctx context.Context) error {
	if s.o.State == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.o.Now()
	var p positions
	p.Files = []position{}
	p.Released = []position{}
	s.mu.Lock()
	for _, f := range s.live {
		if f.tracker != nil {
			p.Files = append(p.Files, s.posOf(f))
		}
	}
	keep := s.draining[:0]
	for _, f := range s.draining {
		e := s.posOf(f)
		if !f.inFlight() {
			e.Released = now
			s.known = append(s.known, &e)
			continue
		}
		p.Files = append(p.Files, e)
		keep = append(keep, f)
	}
	clear(s.draining[len(keep):])
	s.draining = keep
	s.trimKnown(now)
	for _, e := range s.known {
		if e.Released.IsZero() {
			p.Files = append(p.Files, *e)
		} else {
			p.Released = append(p.Released, *e)
		}
	}
	s.mu.Unlock()
	for _, l := range [][]position{p.Files, p.Released} {
		sort.Slice(l, func(i, j int) bool {
			a, b := &l[i], &l[j]
			if a.Path != b.Path {
				return a.Path < b.Path
			}
			if a.Dev != b.Dev {
				return a.Dev < b.Dev
			}
			if a.Ino != b.Ino {
				return a.Ino < b.Ino
			}
			return a.Offset < b.Offset
		})
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("tail: %s: %w", s.name, err)
	}
	if bytes.Equal(raw, s.lastSave) {
		return nil
	}
	if err := s.o.State.Save(s.name, Kind, json.RawMessage(raw)); err != nil {
		s.commitErrs.Add(1)
		return err
	}
	s.lastSave = raw
	return nil
}

// trimKnown drops released positions past Options.RememberFor, then the
// oldest past Options.Remember. Called with s.mu held.
func (s *Source) trimKnown(now time.Time) {
	keep := s.known[:0]
	released := 0
	for _, e := range s.known {
		if !e.Released.IsZero() {
			if now.Sub(e.Released) > s.o.RememberFor {
				continue
			}
			released++
		}
		keep = append(keep, e)
	}
	clear(s.known[len(keep):])
	s.known = keep
	if over := released - s.o.Remember; over > 0 {
		sort.SliceStable(s.known, func(i, j int) bool {
			a, b := s.known[i].Released, s.known[j].Released
			if a.IsZero() != b.IsZero() {
				return a.IsZero()
			}
			return a.After(b)
		})
		s.known = s.known[:len(s.known)-over]
	}
}
