package dlq

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Position says where an entry is stored: the segment's path (the directory
// given to Scan joined with the file name) and the byte offset of its line.
type Position struct {
	Segment string
	Offset  int64
}

// Corruption is a line Scan skipped: torn (the last line has no newline,
// as after a crash mid-write), a checksum mismatch, a line not in the
// segment format, JSON that does not decode, or a schema version newer than
// this reader. Offset is where the line starts.
type Corruption struct {
	Segment string
	Offset  int64
	Reason  string
}

// Error makes a Corruption usable as an error; it names the file.
func (c Corruption) Error() string {
	return fmt.Sprintf("dlq: %s at offset %d: %s", c.Segment, c.Offset, c.Reason)
}

// Scan reads every segment in dir, oldest first, and calls fn for each good
// entry with its position; fn may keep e (each call gets a new Entry).
// Corruptions are reported to onCorrupt (nil ignores them) and reading goes
// on at the next line: they are never fatal. Scan returns the first I/O
// error, naming the file, or fn's error unchanged, which stops the scan.
// A segment removed while Scan runs (evicted by a live writer) is skipped;
// the open segment of a live writer may show its last line as torn.
//
// Entries listed in the directory's tombstone file (deleted by a DLQ
// replay, in steps) are skipped.
func Scan(dir string, fn func(e *Entry, pos Position) error, onCorrupt func(Corruption)) error {
	names, err := segmentNames(dir)
	if err != nil {
		return err
	}
	dead, err := readTombstones(dir)
	if err != nil {
		return err
	}
	if len(dead) > 0 {
		inner := fn
		fn = func(e *Entry, pos Position) error {
			if dead[e.ID] {
				return nil
			}
			return inner(e, pos)
		}
	}
	if onCorrupt == nil {
		onCorrupt = func(Corruption) {}
	}
	r := bufio.NewReaderSize(nil, 64<<10)
	var line []byte
	for _, name := range names {
		if err := scanSegment(filepath.Join(dir, name), r, &line, fn, onCorrupt); err != nil {
			return err
		}
	}
	return nil
}

// ScanNewest calls fn with every entry of the newest n segments of the
// file DLQ in dir, oldest first, deleted (tombstoned) ones included: what
// a process that died may have written since its last sync. Corrupt lines
// (a torn tail) are skipped.
func ScanNewest(dir string, n int, fn func(e *Entry) error) error {
	names, err := segmentNames(dir)
	if err != nil {
		return err
	}
	names = names[max(0, len(names)-n):]
	r := bufio.NewReaderSize(nil, 64<<10)
	var line []byte
	for _, name := range names {
		if err := scanSegment(filepath.Join(dir, name), r, &line, func(e *Entry, _ Position) error { return fn(e) }, func(Corruption) {}); err != nil {
			return err
		}
	}
	return nil
}

// scanSegment reads one segment with r, reusing *line as the line buffer.
func scanSegment(path string, r *bufio.Reader, line *[]byte, fn func(*Entry, Position) error, onCorrupt func(Corruption)) error {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dlq: open %s: %w", path, err)
	}
	defer fh.Close()
	r.Reset(fh)
	var off int64
	for {
		// Read one line; past MaxLineBytes keep only its length.
		buf := (*line)[:0]
		var n int64
		tooLong := false
		var rerr error
		for {
			chunk, err := r.ReadSlice('\n')
			n += int64(len(chunk))
			if !tooLong {
				if n > maxLine {
					tooLong, buf = true, buf[:0]
				} else {
					buf = append(buf, chunk...)
				}
			}
			if err != bufio.ErrBufferFull {
				rerr = err
				break
			}
		}
		*line = buf
		start := off
		off += n
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("dlq: read %s at offset %d: %w", path, start, rerr)
		}
		if n == 0 { // clean end
			return nil
		}
		corrupt := func(reason string) { onCorrupt(Corruption{Segment: path, Offset: start, Reason: reason}) }
		switch {
		case rerr == io.EOF:
			corrupt(fmt.Sprintf("torn write: last line (%d bytes) has no newline", n))
			return nil
		case tooLong:
			corrupt(fmt.Sprintf("line of %d bytes is longer than MaxLineBytes %d", n, maxLine))
			continue
		}
		js, reason := parseLine(buf[:len(buf)-1])
		if reason != "" {
			corrupt(reason)
			continue
		}
		e := new(Entry)
		if err := json.Unmarshal(js, e); err != nil {
			corrupt("checksum matches but the JSON does not decode: " + err.Error())
			continue
		}
		if e.Version > SchemaVersion {
			corrupt(fmt.Sprintf("schema version %d is newer than this reader's %d", e.Version, SchemaVersion))
			continue
		}
		if err := fn(e, Position{Segment: path, Offset: start}); err != nil {
			return err
		}
	}
}

// tornTail reports whether the segment at path (of the given size) ends in
// the middle of a line, as a crash mid-write leaves it, and where that last
// line starts. It reads at most the last 64 KiB: enough for the common case,
// and a torn line longer than that is still caught by Scan.
func tornTail(path string, size int64) (Corruption, bool) {
	if size == 0 {
		return Corruption{}, false
	}
	f, err := os.Open(path)
	if err != nil {
		return Corruption{}, false
	}
	defer f.Close()
	n := min(size, 64<<10)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return Corruption{}, false
	}
	if buf[n-1] == '\n' {
		return Corruption{}, false
	}
	start := size - n + int64(bytes.LastIndexByte(buf, '\n')+1)
	return Corruption{Segment: path, Offset: start, Reason: "torn write: the last line has no newline"}, true
}
