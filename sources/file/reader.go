// Package file is the file source: it resolves PATH arguments (files,
// folders, globs) to a list of files, and reads them, plain, gzip, zstd,
// bzip2 or xz (told by their magic bytes, not their names), concurrently
// into pipeline batches, cutting each file into units (lines of NDJSON, or
// whole JSON documents). A file whose name ends in .jsonl, .ndjson or .log
// (before a compression suffix) is lines; for any other the
// framing is detected from its content. A document that fails to frame
// (cut short, torn, too deep, too large) never swallows what follows it: see
// the splitter.
//
// Only regular files are read: a FIFO, device or socket among the inputs is
// a failed file (CodeNotRegular), found without blocking on it.
//
// Every unit is copied into its batch's buffer, so its bytes live as long as
// the batch does (until the batch is Reset or Put back in the pool). Memory
// per open file is bounded by the read buffer plus the largest allowed unit,
// whatever the input: an over-long line or document is kept only by its first
// bytes and flagged pipeline.UnitTooLarge.
package file

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Options configures a Reader. Zero numeric fields take their defaults (see
// DefaultOptions); negative ones are an error.
type Options struct {
	// MaxLineBytes: an NDJSON line (or a line of junk between documents)
	// longer than this is too large. Default 1 MiB.
	MaxLineBytes int
	// MaxDocumentBytes: a JSON document (document framing) longer than this
	// fails to frame: its first bytes, up to the next line that starts
	// with '{' or '[', become one too-large unit, and reading goes on from
	// that line. Default 16 MiB.
	MaxDocumentBytes int
	// KeepBytes is how many first bytes of a too-large unit are kept, for
	// the DLQ. Default 4096; capped at MaxLineBytes.
	KeepBytes int
	// BatchUnits is the most units a batch holds. Default 1024.
	BatchUnits int
	// BatchBytes is the most unit bytes a batch holds; a batch always holds
	// at least one unit, however large. Default 1 MiB.
	BatchBytes int
	// Concurrency is how many files are read at once. Default 4.
	Concurrency int
	// ReadBufferBytes is the size of each open file's read buffer. Default
	// 1 MiB. The buffer grows past it only to hold one unit up to the
	// limits above.
	ReadBufferBytes int
	// Format is the input format. With FormatAuto, Detect is called on each
	// file's first batch to resolve it.
	Format pipeline.Format
	// Detect resolves the format of a file from its first batch; required
	// when Format is FormatAuto. A FormatAuto answer is taken as JSONL. It
	// is called from reader goroutines, concurrently.
	Detect func(*pipeline.Batch) pipeline.Format
	// FormatLimits, when set for a format (indexed by pipeline.Format;
	// zero fields are unset), are the line and document limits of a file
	// of that format: files are framed under MaxLineBytes and
	// MaxDocumentBytes (the largest of the limits, when the format is
	// auto), and once a file's format is detected, on its first batch,
	// that batch's units over the format's own limit are cut to their
	// first KeepBytes and flagged too large, and the rest of the file is
	// framed under it. So a 3 MiB line is too large in a jsonl file and
	// whole in an OTLP one, read with the same options.
	FormatLimits [pipeline.FormatZipkin + 1]Limits
	// OnFileDone, when set, is called once per file after its last batch
	// was sent (or it failed, or reading was cancelled), with the file's
	// index in Run's list (its Source.ID) and how many batches were sent.
	// Called from reader goroutines, concurrently.
	OnFileDone func(id int, batches int64)
}

// Limits are the line and document limits of one format (0: unset).
type Limits struct{ Line, Document int }

// Default limits.
const (
	DefaultMaxLineBytes     = 1 << 20
	DefaultMaxDocumentBytes = 16 << 20
	DefaultKeepBytes        = 4096
	DefaultBatchUnits       = 1024
	DefaultBatchBytes       = 1 << 20
	DefaultConcurrency      = 4
	DefaultReadBufferBytes  = 1 << 20
)

// zstdMaxWindow bounds the memory a zstd stream may ask for: the decoder
// keeps up to one window of decoded history per file being read, so at
// most Concurrency times 128 MiB (512 MiB with the default 4 files at
// once), and only as the file's data fills it. It is the zstd tool's own
// default decoding limit (window log 27), so anything that tool decodes
// without --memory is read here too, `zstd --long` (--long=27) output
// included; a frame asking for more is a CodeZstd file error.
const zstdMaxWindow = 128 << 20

// DefaultOptions returns the default options, with FormatAuto and no Detect.
func DefaultOptions() Options {
	return Options{
		MaxLineBytes:     DefaultMaxLineBytes,
		MaxDocumentBytes: DefaultMaxDocumentBytes,
		KeepBytes:        DefaultKeepBytes,
		BatchUnits:       DefaultBatchUnits,
		BatchBytes:       DefaultBatchBytes,
		Concurrency:      DefaultConcurrency,
		ReadBufferBytes:  DefaultReadBufferBytes,
	}
}

// withDefaults fills zero fields and checks the rest.
func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	fields := []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxLineBytes", &o.MaxLineBytes, d.MaxLineBytes},
		{"MaxDocumentBytes", &o.MaxDocumentBytes, d.MaxDocumentBytes},
		{"KeepBytes", &o.KeepBytes, d.KeepBytes},
		{"BatchUnits", &o.BatchUnits, d.BatchUnits},
		{"BatchBytes", &o.BatchBytes, d.BatchBytes},
		{"Concurrency", &o.Concurrency, d.Concurrency},
		{"ReadBufferBytes", &o.ReadBufferBytes, d.ReadBufferBytes},
	}
	for _, f := range fields {
		if *f.v < 0 {
			return o, fmt.Errorf("file source: %s is %d, must not be negative", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	o.KeepBytes = min(o.KeepBytes, o.MaxLineBytes, o.MaxDocumentBytes)
	if o.Format > pipeline.FormatZipkin {
		return o, fmt.Errorf("file source: unknown format %d", o.Format)
	}
	if o.Format == pipeline.FormatAuto && o.Detect == nil {
		return o, errors.New("file source: format auto needs a Detect function")
	}
	return o, nil
}

// Reader reads files into batches. Its progress counters may be read while
// Run is going; they add up over every Run of the same Reader.
type Reader struct {
	opts Options

	bytesRead    atomic.Int64
	bytesDecoded atomic.Int64
	filesDone    atomic.Int64
}

// NewReader checks opts and returns a Reader.
func NewReader(opts Options) (*Reader, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Reader{opts: o}, nil
}

// BytesRead returns the on-disk (compressed) bytes consumed so far.
func (r *Reader) BytesRead() int64 { return r.bytesRead.Load() }

// BytesDecoded returns the decompressed bytes read so far.
func (r *Reader) BytesDecoded() int64 { return r.bytesDecoded.Load() }

// FilesDone returns how many files have been read to their end or to their
// error.
func (r *Reader) FilesDone() int64 { return r.filesDone.Load() }

// Run reads files, Options.Concurrency at a time, and sends their batches on
// out: each batch holds units of one file only, and the batches of one file
// are sent in order, numbered by Seq 1, 2, 3..., all sharing one
// *pipeline.Source. onErr is called once per file that could not be opened
// or read to its end, from reader goroutines, possibly concurrently (nil
// ignores errors); the units read from that file before the error have been
// sent by then. An incomplete unit the error cut short is not sent: the
// error's Offset covers it. Run returns when every file is done or ctx is
// cancelled, and never closes out. The receiver owns each batch it gets and
// must PutBatch it when done.
func (r *Reader) Run(ctx context.Context, files []File, out chan<- *pipeline.Batch, onErr func(FileError)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(r.opts.Concurrency, len(files)) {
		wg.Go(func() {
			w := newWorker(r)
			defer w.close()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(files)) {
					return
				}
				w.sent = 0
				if ferr, failed := w.readFile(ctx, files[i], int(i), out); failed && ctx.Err() == nil && onErr != nil {
					onErr(ferr)
				}
				if r.opts.OnFileDone != nil {
					r.opts.OnFileDone(int(i), w.sent)
				}
				if ctx.Err() == nil {
					r.filesDone.Add(1)
				}
			}
		})
	}
	wg.Wait()
}

// worker holds what one reader goroutine reuses from file to file.
type worker struct {
	r    *Reader
	br   *bufio.Reader
	gz   *gzip.Reader
	zd   *zstd.Decoder
	sp   splitter
	disk countingReader
	dec  countingReader
	sent int64 // batches of the current file sent
	// limited: the current file's format limits are in force (see
	// Options.FormatLimits).
	limited bool
	// For ReadOne: units starting before skip are dropped, and onSend is
	// called with each batch before it is sent.
	skip   int64
	onSend func(*pipeline.Batch)
}

func newWorker(r *Reader) *worker {
	w := &worker{r: r}
	w.disk.n = &r.bytesRead
	w.dec.n = &r.bytesDecoded
	w.br = bufio.NewReaderSize(&w.disk, 256<<10)
	return w
}

func (w *worker) close() {
	if w.zd != nil {
		w.zd.Close()
	}
}

// countingReader counts the bytes read through it into n and remembers the
// last error its source returned, so that an error coming out of a
// decompressor can be told apart from a disk read error.
type countingReader struct {
	src io.Reader
	n   *atomic.Int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.src.Read(p)
	if n > 0 {
		c.n.Add(int64(n))
	}
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// CodeNotRegular is the FileError code of an input that is not a regular
// file (a FIFO, a device, a socket): it is not read, since it may never end.
const CodeNotRegular = "not_regular"

// lineFramed reports whether a file's name says it holds one JSON value per
// line: it ends in .jsonl, .ndjson or .log, once compression suffixes are
// taken off (.gz, .zst, .zstd, .bz2, .xz). Such a file is never read as documents, whatever its first
// bytes.
func lineFramed(path string) bool {
	name := strings.ToLower(filepath.Base(path))
	for {
		ext := filepath.Ext(name)
		if ext != ".gz" && ext != ".zst" && ext != ".zstd" && ext != ".bz2" && ext != ".xz" {
			break
		}
		name = strings.TrimSuffix(name, ext)
	}
	return strings.HasSuffix(name, ".jsonl") || strings.HasSuffix(name, ".ndjson") || strings.HasSuffix(name, ".log")
}

// notRegular describes a file type that is not read.
func notRegular(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file (" + m.Type().String() + ")"
}

// Magic numbers of the compressed formats.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	// bzip2Magic is followed by the block size, '1' to '9'.
	bzip2Magic = []byte("BZh")
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
)

// CodeUnsupportedFormat is the FileError code of a file in a format
// recognised by its first bytes but not read (an archive, a compression
// with no decoder here, text not in UTF-8): the file fails whole, once,
// naming the format, instead of yielding a malformed unit for every line
// of binary or UTF-16 it holds.
const CodeUnsupportedFormat = "unsupported_format"

// sniffBytes is how many first bytes unsupportedFormat needs: a tar
// header is a 512-byte block, its magic at offset 257.
const sniffBytes = 512

// unsupported are the formats refused by their first bytes, tried in order.
var unsupported = []struct {
	magic []byte
	name  string
}{
	{[]byte{0x04, 0x22, 0x4d, 0x18}, "lz4"},
	{[]byte{0x02, 0x21, 0x4c, 0x18}, "lz4 (legacy format)"},
	{[]byte("PK\x03\x04"), "zip archive"},
	{[]byte("PK\x05\x06"), "zip archive (empty)"},
	{[]byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c}, "7z archive"},
	{[]byte{0xff, 0xfe, 0x00, 0x00}, "UTF-32 text"}, // before UTF-16 LE, whose BOM it starts with
	{[]byte{0x00, 0x00, 0xfe, 0xff}, "UTF-32 text"},
	{[]byte{0xff, 0xfe}, "UTF-16 text"},
	{[]byte{0xfe, 0xff}, "UTF-16 text"},
}

// unsupportedFormat names the format of a stream starting with head when
// it is one that is recognised but not read, else returns "".
func unsupportedFormat(head []byte) string {
	if isTarHeader(head) {
		return "tar archive"
	}
	for _, u := range unsupported {
		if hasPrefix(head, u.magic) {
			return u.name
		}
	}
	return ""
}

// ReadOne reads one file already open, fh, found at path, as Run reads each
// of its files (decompressing, framing by name or content), into batches
// whose Origin is origin (its Format resolved on the first batch when
// auto), numbered by Seq from 1. Units starting before skip (an offset in
// the decompressed stream) are dropped, as a reader resuming a file it had
// partly delivered does; onSend, when set, is called with each batch just
// before it is sent. It returns how many batches were sent and the file's
// error, if it failed; ctx cancelled stops it (failed false). It does not
// close fh and counts into the Reader's counters. Each call sets up its
// own buffers: it is for the odd whole file (a rotated archive a tail
// comes across), not for a stream of them.
func (r *Reader) ReadOne(ctx context.Context, fh *os.File, path string, origin *pipeline.Origin, skip int64, onSend func(*pipeline.Batch), out chan<- *pipeline.Batch) (sent int64, fe FileError, failed bool) {
	w := newWorker(r)
	defer w.close()
	w.skip, w.onSend = skip, onSend
	w.sp.reset(nil, w.limits())
	fe, failed = w.readOpen(ctx, fh, File{Path: path}, origin, out)
	return w.sent, fe, failed
}

// fail makes the FileError of f failing the given way.
func (w *worker) fail(path, code string, err error) (FileError, bool) {
	fe := FileError{Path: path, Offset: w.sp.offset(), Code: code, Err: err}
	if fe.Offset > 0 {
		fe.Line = w.sp.lineReached()
	}
	return fe, true
}

// readFile reads one file and sends its batches. It returns the file's error,
// if it failed.
func (w *worker) readFile(ctx context.Context, f File, id int, out chan<- *pipeline.Batch) (FileError, bool) {
	w.sp.reset(nil, w.limits())
	if f.Path == StdinPath {
		return w.readOpen(ctx, os.Stdin, f, &pipeline.Origin{ID: id, Kind: "file", Path: f.Path, Format: w.r.opts.Format}, out)
	}
	fh, err := openInput(f.Path)
	if err != nil {
		return w.fail(f.Path, openCode(err), err)
	}
	defer fh.Close()
	return w.readOpen(ctx, fh, f, &pipeline.Origin{ID: id, Kind: "file", Path: f.Path, Format: w.r.opts.Format}, out)
}

// readOpen reads the open file fh, f, into batches of origin.
func (w *worker) readOpen(ctx context.Context, fh *os.File, f File, source *pipeline.Origin, out chan<- *pipeline.Batch) (FileError, bool) {
	opts := &w.r.opts
	fail := func(code string, err error) (FileError, bool) { return w.fail(f.Path, code, err) }
	fi, err := fh.Stat()
	switch {
	case err != nil:
		return fail(CodeStat, err)
	case fi.IsDir():
		return fail(CodeIsDir, errors.New("is a directory"))
	case !fi.Mode().IsRegular() && f.Path != StdinPath: // standard input is read whatever it is
		return fail(CodeNotRegular, errors.New(notRegular(fi.Mode())+", not a regular file: not read"))
	}

	w.disk.src, w.disk.err = fh, nil
	w.br.Reset(&w.disk)
	var src io.Reader = w.br
	code := CodeRead
	// Peeking does not consume, and the buffer (256 KiB) holds far more
	// than sniffBytes; a shorter file gives what it has.
	magic, _ := w.br.Peek(sniffBytes)
	if name := unsupportedFormat(magic); name != "" {
		return fail(CodeUnsupportedFormat, errors.New(name+": not read (unsupported format)"))
	}
	switch {
	case hasPrefix(magic, gzipMagic):
		code = CodeGzip
		if w.gz == nil {
			w.gz = new(gzip.Reader)
		}
		if err := w.gz.Reset(w.br); err != nil {
			return fail(w.codeOf(code, err), err)
		}
		src = w.gz
	case hasPrefix(magic, zstdMagic):
		code = CodeZstd
		if w.zd == nil {
			zd, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow))
			if err != nil {
				return fail(code, err)
			}
			w.zd = zd
		}
		if err := w.zd.Reset(w.br); err != nil {
			return fail(w.codeOf(code, err), err)
		}
		src = w.zd
	case hasPrefix(magic, bzip2Magic) && len(magic) > 3 && magic[3] >= '1' && magic[3] <= '9':
		// The standard library's reader holds one block, at most 900 kB
		// of input and its 3.6 MB of tables; it reads concatenated
		// streams (pbzip2's output) as one. It has no Reset: one is made
		// per file, which is cheap next to decoding.
		code = CodeBzip2
		src = bzip2.NewReader(w.br)
	case hasPrefix(magic, xzMagic):
		// The xz reader allocates the dictionary each block's header
		// asks for: 8 MiB for the xz tool's default level, 64 MiB for
		// -9, and up to the 4 GiB the format allows for a file made to
		// ask for it. It reads concatenated streams and padding too.
		code = CodeXz
		xr, err := xz.NewReader(w.br)
		if err != nil {
			return fail(w.codeOf(code, err), err)
		}
		src = xr
	}
	if src != w.br {
		// A container inside the compression (logs.tar.gz, UTF-16 text
		// gzipped) is refused as well: its first decoded bytes are read
		// ahead and put back in front of the stream.
		head := make([]byte, sniffBytes)
		n, err := io.ReadFull(src, head)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return fail(w.codeOf(code, err), err)
		}
		head = head[:n]
		if name := unsupportedFormat(head); name != "" {
			return fail(CodeUnsupportedFormat, fmt.Errorf("%s, %s-compressed: not read (unsupported format)", name, code))
		}
		src = io.MultiReader(bytes.NewReader(head), src)
	}
	w.dec.src = src
	lim := w.limits()
	if lineFramed(f.Path) {
		lim.framing = framingNDJSON
	}
	w.sp.reset(&w.dec, lim)
	w.limited = source.Format != pipeline.FormatAuto

	var b *pipeline.Batch
	var seq uint64 // batches of this file made so far
	for {
		u, ok := w.sp.next()
		if !ok {
			break
		}
		if u.Offset < w.skip {
			continue
		}
		if b != nil && len(b.Buf)+len(u.Data) > opts.BatchBytes {
			if !w.send(ctx, b, out) {
				return FileError{}, false
			}
			b = nil
		}
		if b == nil {
			b = pipeline.GetBatch()
			b.Origin = source
			seq++
			b.Seq = seq
			if cap(b.Buf) < opts.BatchBytes && f.Size > int64(opts.BatchBytes) {
				b.Buf = make([]byte, 0, opts.BatchBytes)
			}
		}
		b.AddUnit(u.Data, u.Offset, u.Line, u.Size, u.Flags)
		if len(b.Units) >= opts.BatchUnits || len(b.Buf) >= opts.BatchBytes {
			if !w.send(ctx, b, out) {
				return FileError{}, false
			}
			b = nil
		}
	}
	if b != nil && !w.send(ctx, b, out) {
		return FileError{}, false
	}
	if err := w.sp.err; err != nil {
		return fail(w.codeOf(code, err), err)
	}
	return FileError{}, false
}

// limits returns the splitter limits from the options.
func (w *worker) limits() splitterLimits {
	o := &w.r.opts
	return splitterLimits{maxLine: o.MaxLineBytes, maxDoc: o.MaxDocumentBytes, keep: o.KeepBytes, readSize: o.ReadBufferBytes}
}

// codeOf returns CodeRead when err came from the disk, else the code of the
// decompressor in use.
func (w *worker) codeOf(code string, err error) string {
	if w.disk.err != nil && errors.Is(err, w.disk.err) {
		return CodeRead
	}
	return code
}

// send resolves the file's format on its first batch, then sends b, or puts
// it back in the pool and returns false when ctx is cancelled first.
func (w *worker) send(ctx context.Context, b *pipeline.Batch, out chan<- *pipeline.Batch) bool {
	if b.Origin.Format == pipeline.FormatAuto {
		f := w.r.opts.Detect(b)
		if f == pipeline.FormatAuto {
			f = pipeline.FormatJSONL
		}
		b.Origin.Format = f
	}
	if !w.limited {
		w.limited = true
		w.formatLimits(b)
	}
	if ctx.Err() != nil {
		pipeline.PutBatch(b)
		return false
	}
	if w.onSend != nil {
		w.onSend(b)
	}
	select {
	case out <- b:
		w.sent++
		return true
	case <-ctx.Done():
		pipeline.PutBatch(b)
		return false
	}
}

// formatLimits puts the limits of the format just detected, b's, in force:
// b's units over them are cut and flagged too large, and the splitter
// frames the rest of the file under them. Limits only ever come down: the
// file was framed under the largest.
func (w *worker) formatLimits(b *pipeline.Batch) {
	o := &w.r.opts
	l := o.FormatLimits[b.Origin.Format]
	line, doc := w.sp.lim.maxLine, w.sp.lim.maxDoc
	if l.Line > 0 {
		line = min(line, l.Line)
	}
	if l.Document > 0 {
		doc = min(doc, l.Document)
	}
	if line == w.sp.lim.maxLine && doc == w.sp.lim.maxDoc {
		return
	}
	limit := line
	if w.sp.mode == framingDocument {
		limit = doc
	}
	keep := min(w.sp.lim.keep, line, doc)
	for i := range b.Units {
		u := &b.Units[i]
		if u.Size > int64(limit) && u.Flags&pipeline.UnitTooLarge == 0 {
			u.Flags |= pipeline.UnitTooLarge
			u.End = u.Start + min(keep, u.End-u.Start)
		}
	}
	w.sp.lim.maxLine, w.sp.lim.maxDoc, w.sp.lim.keep = line, doc, keep
}

// isTarHeader reports whether head starts with a tar header block: "ustar"
// at offset 257 (POSIX writes "ustar\x0000" there, GNU tar "ustar  \x00")
// and a header checksum that adds up, so that a JSON line which happens
// to hold "ustar" at that offset is not taken for one.
func isTarHeader(head []byte) bool {
	if len(head) < 512 || string(head[257:262]) != "ustar" {
		return false
	}
	// The checksum is the sum of the block's bytes with its own field
	// (148 to 156) counted as spaces, written in octal, ended by a NUL or
	// a space.
	want, digits := 0, 0
	for _, c := range head[148:156] {
		if c >= '0' && c <= '7' {
			want = want*8 + int(c-'0')
			digits++
		} else if c != ' ' && c != 0 || digits > 0 {
			break
		}
	}
	if digits == 0 {
		return false
	}
	sum := 8 * int(' ')
	for i, c := range head[:512] {
		if i < 148 || i >= 156 {
			sum += int(c)
		}
	}
	return sum == want
}

func hasPrefix(p, prefix []byte) bool {
	return len(p) >= len(prefix) && string(p[:len(prefix)]) == string(prefix)
}
