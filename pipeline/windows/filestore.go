package windows

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The file store is the embedded default windows sink: each run appends
// its rows, as AppendJSON lines, to a file of its own in one folder, and
// query reads every file there. Files are never rewritten: a later
// revision of a row is one more line, and merging keeps the union.

// FileWriter appends window rows to this run's file. Every WriteRows is one
// write(2) followed by an fsync, so a crash leaves at most a torn last line,
// which FileReader skips; Flush fsyncs again only what a failed sync left.
type FileWriter struct {
	mu     sync.Mutex
	f      *os.File
	path   string
	size   int64 // bytes written to the file so far
	buf    []byte
	torn   bool // a failed write left a partial line that could not be cut off
	dirty  bool // bytes were written that no fsync has made durable yet
	closed bool
}

// OpenFileWriter creates dir and this run's file in it, named
// windows-<instance>-<UTC start, 20060102T150405Z>-<pid>.jsonl, with the
// instance reduced to [A-Za-z0-9._-]. The file is created exclusively: in
// the unlikely case the name is taken (two writers of one process started
// in the same second), a counter is added before ".jsonl".
func OpenFileWriter(dir, instance string) (*FileWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("windows file store: %w", err)
	}
	base := fmt.Sprintf("windows-%s-%s-%d", sanitizeFileInstance(instance),
		time.Now().UTC().Format("20060102T150405Z"), os.Getpid())
	for n := 1; ; n++ {
		name := base + ".jsonl"
		if n > 1 {
			name = base + "-" + strconv.Itoa(n) + ".jsonl"
		}
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) && n < 1000 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("windows file store: %w", err)
		}
		syncStoreDir(dir) // make the new name durable with the rows it will hold
		return &FileWriter{f: f, path: path}, nil
	}
}

// sanitizeFileInstance keeps [A-Za-z0-9._-] and turns anything else into
// '_', so that an instance name is always one safe path element.
func sanitizeFileInstance(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

func syncStoreDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: not every file system syncs folders
		_ = d.Close()
	}
}

// Name implements RowWriter.
func (w *FileWriter) Name() string { return "file" }

// Path is the file this writer appends to.
func (w *FileWriter) Path() string { return w.path }

// WriteRows implements RowWriter: all rows in one write, then fsync. A
// write that fails part way is cut back off the file, so the file only
// ever holds whole lines (or, if even that fails, the next write starts
// with a newline and the partial line reads as one corrupt line). ctx is
// not consulted: a local append is not worth abandoning, and the last rows
// of a run are often written while it is being cancelled. Writing the same
// rows again after an error is harmless: query merges duplicates away.
func (w *FileWriter) WriteRows(_ context.Context, rows []Row) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("windows file store: %s: write after close", w.path)
	}
	if len(rows) == 0 {
		return nil
	}
	b := w.buf[:0]
	if w.torn {
		b = append(b, '\n')
	}
	for i := range rows {
		b = rows[i].AppendJSON(b)
	}
	if cap(b) <= 1<<20 { // keep a small buffer, not one a burst of dense rows grew
		w.buf = b
	} else {
		w.buf = nil
	}
	n, err := w.f.Write(b)
	if err != nil {
		if n > 0 {
			if terr := w.f.Truncate(w.size); terr != nil {
				w.torn = true
				w.dirty = true
				w.size += int64(n)
			}
		}
		return fmt.Errorf("windows file store: %w", err)
	}
	w.torn = false
	w.dirty = true
	w.size += int64(n)
	return w.sync()
}

// sync fsyncs the file if bytes were written since the last good fsync.
// w.mu is held.
func (w *FileWriter) sync() error {
	if !w.dirty {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("windows file store: %w", err)
	}
	w.dirty = false
	return nil
}

// Flush implements RowWriter: every row written so far is on disk. A
// WriteRows that returned nil has fsynced already, so this fsyncs only
// after a write or sync that failed (and a torn line's remains); after
// Close it reports whether the closing fsync left anything unsynced.
func (w *FileWriter) Flush(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		if w.dirty {
			return fmt.Errorf("windows file store: %s: closed with rows not synced", w.path)
		}
		return nil
	}
	return w.sync()
}

// Close implements RowWriter: it syncs and closes the file. A run that
// wrote no rows leaves no file behind. Closing twice is a no-op.
func (w *FileWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.f.Sync()
	if err == nil {
		w.dirty = false
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("windows file store: %w", err)
	}
	if w.size == 0 {
		_ = os.Remove(w.path)
	}
	return nil
}

// FileReader reads the rows of every *.jsonl file in a folder (not its
// subfolders): the files of every run and instance that wrote there.
type FileReader struct {
	dir     string
	warn    func(msg string)
	skipped atomic.Int64
}

// OpenFileReader returns a reader of dir. warn (nil: ignore) is called with
// "file:line: error" for every line that is not a window row; the reader
// skips it and goes on. Opening does no I/O: a missing dir is reported by
// ReadRows.
func OpenFileReader(dir string, warn func(msg string)) *FileReader {
	if warn == nil {
		warn = func(string) {}
	}
	return &FileReader{dir: dir, warn: warn}
}

var (
	_ RowWriter = (*FileWriter)(nil)
	_ RowReader = (*FileReader)(nil)
)

// Close implements RowReader; a FileReader holds nothing open between
// reads.
func (r *FileReader) Close() error { return nil }

// Skipped is how many lines ReadRows skipped as corrupt so far (a torn
// last line, a write still in progress, is not counted).
func (r *FileReader) Skipped() int64 { return r.skipped.Load() }

// ReadRows implements RowReader. A zero from or to leaves that end of the
// range open.
func (r *FileReader) ReadRows(ctx context.Context, metric string, from, to time.Time, fn func(*Row) error) error {
	entries, err := os.ReadDir(r.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStoreMissingError{r.dir}
	}
	if err != nil {
		return fmt.Errorf("windows file store: %w", err)
	}
	var line []byte
	for _, e := range entries { // sorted by name
		if !strings.HasSuffix(e.Name(), ".jsonl") || e.IsDir() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if line, err = r.readFile(ctx, filepath.Join(r.dir, e.Name()), line, metric, from, to, fn); err != nil {
			return err
		}
	}
	return nil
}

// fileStoreMissingError is a store folder that does not exist; it is an
// fs.ErrNotExist.
type fileStoreMissingError struct{ dir string }

func (e fileStoreMissingError) Error() string {
	return "windows file store: " + e.dir + " does not exist: no windows were written there yet"
}

func (e fileStoreMissingError) Unwrap() error { return fs.ErrNotExist }

func (r *FileReader) readFile(ctx context.Context, path string, line []byte, metric string, from, to time.Time, fn func(*Row) error) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return line, nil // removed since the listing (a run that wrote nothing)
	}
	if err != nil {
		return line, fmt.Errorf("windows file store: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return line, nil
	}
	br := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		var complete bool
		line, complete, err = readRowLine(br, line[:0])
		if err != nil {
			return line, fmt.Errorf("windows file store: %s: %w", path, err)
		}
		if !complete {
			return line, nil // EOF; a last line without newline is a torn write: skipped
		}
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return line, err
			}
		}
		body := bytes.TrimSpace(line)
		if len(body) == 0 {
			continue
		}
		row, err := ParseRow(body)
		if err != nil {
			r.skipped.Add(1)
			r.warn(fmt.Sprintf("%s:%d: %v", path, n, err))
			continue
		}
		if row.Metric != metric || !startInQueryRange(row.Start, from, to) {
			continue
		}
		if err := fn(row); err != nil {
			return line, err
		}
	}
}

// readRowLine appends the next line of br to buf, without its newline.
// complete is false at end of input; buf then holds what followed the last
// newline (a torn line, or nothing). Lines may be of any length.
func readRowLine(br *bufio.Reader, buf []byte) (line []byte, complete bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return buf[:len(buf)-1], true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return buf, false, nil
		default:
			return buf, false, err
		}
	}
}

// startInQueryRange reports whether a window starting at start is in [from,
// to); a zero bound is open.
func startInQueryRange(start, from, to time.Time) bool {
	return (from.IsZero() || !start.Before(from)) && (to.IsZero() || start.Before(to))
}
