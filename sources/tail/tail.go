// Package tail is the file source of `pipeline run`: it follows the files
// that match a source's include globs (and none of its exclude globs), as a
// log shipper's tail does, and feeds their lines to the job as batches,
// committing per file the position after the last batch acked in order.
//
// # What it follows
//
// A followed file is read as JSON lines, whatever its name, framed exactly
// as the replay reader frames a line-framed file (file.Lines). A compressed
// file that appears (a rotated archive: gzip or zstd, told by its first
// bytes) is not followed: once it has been quiet for partial_line_timeout
// (gzip writes it progressively) it is read once, whole, through the replay
// reader (file.Reader.ReadOne: decompressed, framed by its name), and
// remembered by its fingerprint so it is never read again. `exclude:
// ["**/*.gz"]` skips archives altogether.
//
// # Identity
//
// A file is its device and inode plus a fingerprint: a checksum (SHA-256,
// first 16 bytes kept) of its first fingerprint_bytes bytes. Device and
// inode tell apart two files with the same first bytes; the fingerprint
// tells a new file from an old one whose inode was freed and reused. A
// renamed file keeps both, so it is not read again (only its path is
// updated); a new file at an old path has another inode, so it is read from
// its start. A file shorter than fingerprint_bytes is not read until it has
// them or has been quiet for partial_line_timeout; it is then fingerprinted
// by the bytes it has (their count is kept with the checksum), and re-keyed
// to the full fingerprint once it has grown to fingerprint_bytes (if its
// first bytes changed meanwhile, it was rewritten: it is read again from
// its start). Two files whose inode was reused with the same first bytes
// cannot be told apart (the later one is taken for the earlier one, and
// read from where that one stopped, or from its start if it is shorter).
//
// # Rotation, truncation, deletion
//
//   - Rotation by rename: the old file is held open and read to its end;
//     it is released once it has been at its end, with no partial line
//     held, for partial_line_timeout (the writer's grace to reopen its
//     log). If its new name still matches the globs, it simply stays
//     followed under that name.
//   - Copytruncate: a file found shorter than what was read of it (or
//     whose first bytes changed when it is reopened) was truncated: the old
//     instance is released and the file is read again from its start, as a
//     new origin (logged).
//   - Deleted while open: read to its end, then released as above.
//
// A released file's origin is done (SourceEvents.OriginDone after its last
// batch). Its position stays in the checkpoint until its batches are all
// acked, then moves to a list of released files, the last
// Options.Remember of them, each kept for Options.RememberFor, so that a
// file renamed back into the globs is resumed, not read again.
//
// # Partial lines
//
// A last line with no newline is held until its newline comes or until it
// has not grown for partial_line_timeout; it is then taken as it is (as a
// replay takes a file's unterminated last line). What the writer appends
// to that line later is a new unit (same line number, next offset), which
// a JSON parser rejects as malformed: the writer was too slow, not the
// pipeline.
//
// # Bounds
//
//   - Open files: at most max_open_files descriptors. A file that has to be
//     read while the limit is reached takes the descriptor of the open file
//     least recently read (closed, to be reopened and checked by
//     fingerprint on growth). Files with data wait in one round-robin
//     queue, each read for a bounded quantum (8 batches' worth) before the
//     next, so none starves. A file that did not grow for close_inactive
//     is closed; the scan or a notification reopens it when it grows.
//   - Memory: the framing buffers are a fixed handful (readers), lent to
//     the file being read and taken back (their state, a few integers and
//     at most KeepBytes, stays with the file); per followed file a few
//     hundred bytes of state. Run builds one batch at a time and blocks on
//     out: a slow job slows the tail, never makes it buffer.
//   - Checkpoint: one entry per followed file, plus the bounded list of
//     released ones.
//
// # Watching
//
// With watch: auto, fsnotify watches the directories the include globs'
// static prefixes name and the directories of the followed files: a create,
// rename or removal there triggers a scan within poll_interval, a write
// makes the file read at once. Polling stays as the floor (and is all there
// is with watch: poll, or where fsnotify fails): the globs are matched
// again every scan_interval; an open file is checked for growth (fstat)
// every poll_interval, or, in a watched folder, every scan_interval (in
// case a notification was lost: on NFS a watch is accepted but remote
// writes send none); a file renamed away or deleted, every poll_interval;
// a closed file at each scan. A file that is created and renamed out of
// the globs within one scan_interval, with no notification, is never
// seen.
//
// # Where a file starts
//
// A file with a checkpoint entry resumes there, whatever start_at says.
// Otherwise, a file found by the first scan starts at its beginning if
// read_existing is true and start_at is beginning, else at its end (past
// its last complete line; its lines are counted, reading it once, so line
// numbers stay true). A file that appears later is read from its start.
package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/fsnotify/fsnotify"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/state"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sources/file"
)

// Kind is the checkpoint kind of the file source.
const Kind = "file"

// Options are what the composition root gives a Source besides its config
// block. Zero numeric fields take their defaults.
type Options struct {
	// Origin is the template of every followed file's Origin: its Format
	// (and any other field the parse stage reads, such as a field-mapping
	// index) is copied; ID, Kind ("file") and Path are set per file.
	Origin pipeline.Origin
	// Detect resolves the format of a file from its first batch when
	// Origin.Format is FormatAuto (a FormatAuto answer is taken as JSONL).
	Detect func(*pipeline.Batch) pipeline.Format
	// IDs hands out origin ids; one per followed file instance (a file
	// read again after a truncation is a new instance). Required.
	IDs *pipeline.OriginIDs
	// Events is how failed files, released files and idle files are told.
	Events pipeline.SourceEvents
	// State holds the checkpoints; nil runs without (Commit does nothing,
	// nothing is resumed).
	State *state.Dir

	BatchUnits   int // default file.DefaultBatchUnits
	BatchBytes   int // default file.DefaultBatchBytes
	MaxLineBytes int // default file.DefaultMaxLineBytes
	KeepBytes    int // default file.DefaultKeepBytes
	// ReadBufferBytes is each reader's buffer. Default 1 MiB.
	ReadBufferBytes int
	// Readers is how many framing buffers are lent to files. Default 4.
	Readers int
	// Remember bounds the released files kept in the checkpoint (default
	// 4096), RememberFor how long each is kept (default 7 days).
	Remember    int
	RememberFor time.Duration

	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Source follows the files of one `sources:` entry. It implements
// pipeline.Source.
type Source struct {
	name string
	cfg  config.FileSource
	o    Options
	log  *slog.Logger

	include, exclude []string // cleaned, slash-separated
	reader           *file.Reader
	readExisting     bool

	// Run's own state (one goroutine).
	running   atomic.Bool
	ctx       context.Context
	out       chan<- *pipeline.Batch
	slots     []*slot
	ready     []*tfile // round-robin queue of files with something to do
	byPath    map[string]*tfile
	failures  map[devIno]failMark
	failPaths map[string]bool
	scanDue   bool
	scanned   bool // the first scan is done
	scanGen   uint64
	watch     *fsnotify.Watcher
	watched   map[string]bool
	watchFull bool // the system refused more watches: polling covers the rest
	countBuf  []byte
	statBuf   statBuf
	openCount int
	readTick  uint64 // counts reads, for the least recently read

	// mu guards what Commit reads: the file tables and every tfile field
	// Commit reads (identity, path, origin, released state).
	mu       sync.Mutex
	live     map[devIno]*tfile
	draining []*tfile    // released, batches still unacked
	known    []*position // from the checkpoint, or released and acked
	lastSave []byte

	bytesRead  atomic.Int64
	filesOpen  atomic.Int64
	followed   atomic.Int64
	lag        atomic.Int64
	commitErrs atomic.Int64
	scans      atomic.Uint64 // scans and polls done, for tests to wait on
	polls      atomic.Uint64
}

// New checks cfg and o, loads the source's checkpoint (if State is set) and
// returns the Source. cfg is taken with its defaults applied (config.Load
// does that).
func New(name string, cfg config.FileSource, o Options) (*Source, error) {
	if !supported {
		return nil, errors.New("tail: following files needs device and inode numbers (a unix system)")
	}
	if o.IDs == nil {
		return nil, errors.New("tail: Options.IDs is required")
	}
	if len(cfg.Include) == 0 {
		return nil, fmt.Errorf("tail: %s: no include glob", name)
	}
	if o.Origin.Format == pipeline.FormatAuto && o.Detect == nil {
		return nil, fmt.Errorf("tail: %s: format auto needs Options.Detect", name)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.ScanInterval, 10 * time.Second}, {&cfg.PollInterval, 250 * time.Millisecond},
		{&cfg.PartialLineTimeout, 5 * time.Second}, {&cfg.CloseInactive, 5 * time.Minute},
		{&cfg.IdleTimeout, 30 * time.Second}, {&o.RememberFor, 7 * 24 * time.Hour},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("tail: %s: negative duration", name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxOpenFiles <= 0 {
		cfg.MaxOpenFiles = 1024
	}
	if cfg.FingerprintBytes <= 0 {
		cfg.FingerprintBytes = 1024
	}
	if cfg.FingerprintBytes > 64<<10 {
		return nil, fmt.Errorf("tail: %s: fingerprint_bytes over 64KiB", name)
	}
	if o.Readers <= 0 {
		o.Readers = 4
	}
	if o.Remember <= 0 {
		o.Remember = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	fo := file.Options{
		MaxLineBytes: o.MaxLineBytes, KeepBytes: o.KeepBytes, BatchUnits: o.BatchUnits, BatchBytes: o.BatchBytes,
		ReadBufferBytes: o.ReadBufferBytes, Concurrency: 1, Format: o.Origin.Format, Detect: o.Detect,
	}
	if fo.Format == pipeline.FormatAuto {
		fo.Detect = o.Detect
	}
	rd, err := file.NewReader(fo)
	if err != nil {
		return nil, fmt.Errorf("tail: %s: %w", name, err)
	}
	d := file.DefaultOptions()
	o.BatchUnits = orDefault(o.BatchUnits, d.BatchUnits)
	o.BatchBytes = orDefault(o.BatchBytes, d.BatchBytes)
	o.MaxLineBytes = orDefault(o.MaxLineBytes, d.MaxLineBytes)
	o.KeepBytes = min(orDefault(o.KeepBytes, d.KeepBytes), o.MaxLineBytes)
	o.ReadBufferBytes = orDefault(o.ReadBufferBytes, d.ReadBufferBytes)
	s := &Source{
		name: name, cfg: cfg, o: o, log: o.Logger.With("source", name), reader: rd,
		readExisting: cfg.ReadExisting == nil || *cfg.ReadExisting,
		byPath:       map[string]*tfile{}, failures: map[devIno]failMark{}, failPaths: map[string]bool{},
		live: map[devIno]*tfile{}, watched: map[string]bool{},
	}
	for _, g := range cfg.Include {
		g = filepath.ToSlash(filepath.Clean(g))
		if !doublestar.ValidatePattern(g) {
			return nil, fmt.Errorf("tail: %s: include %q is not a valid glob", name, g)
		}
		s.include = append(s.include, g)
	}
	for _, g := range cfg.Exclude {
		g = filepath.ToSlash(filepath.Clean(g))
		if !doublestar.ValidatePattern(g) {
			return nil, fmt.Errorf("tail: %s: exclude %q is not a valid glob", name, g)
		}
		s.exclude = append(s.exclude, g)
	}
	for range o.Readers {
		l, err := file.NewLines(file.Options{MaxLineBytes: o.MaxLineBytes, KeepBytes: o.KeepBytes, ReadBufferBytes: o.ReadBufferBytes})
		if err != nil {
			return nil, fmt.Errorf("tail: %s: %w", name, err)
		}
		s.slots = append(s.slots, &slot{lines: l})
	}
	if o.State != nil {
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Name is the source's name (its checkpoint's name).
func (s *Source) Name() string { return s.name }

// BytesRead returns the bytes read from files so far (on disk: compressed
// for archives).
func (s *Source) BytesRead() int64 { return s.bytesRead.Load() }

// FilesOpen returns how many files are open now.
func (s *Source) FilesOpen() int64 { return s.filesOpen.Load() }

// FilesFollowed returns how many files are followed now (open or not).
func (s *Source) FilesFollowed() int64 { return s.followed.Load() }

// LagBytes returns, summed over the followed files, the bytes on disk not
// read yet, as of the last poll.
func (s *Source) LagBytes() int64 { return s.lag.Load() }

// excluded reports whether path matches an exclude glob: against the whole
// path, or, for a glob with no '/', against the file's name.
func (s *Source) excluded(path string) bool {
	p := filepath.ToSlash(path)
	for _, g := range s.exclude {
		if ok, _ := doublestar.PathMatch(g, p); ok {
			return true
		}
		if !strings.Contains(g, "/") {
			if ok, _ := doublestar.PathMatch(g, filepath.Base(p)); ok {
				return true
			}
		}
	}
	return false
}

// Run follows the files until ctx is cancelled, then returns nil (batches
// already sent stay sent). It may be called once.
func (s *Source) Run(ctx context.Context, out chan<- *pipeline.Batch) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("tail: Run called twice")
	}
	s.ctx, s.out = ctx, out
	defer s.shutdown()
	if s.cfg.Watch != "poll" {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			s.log.Warn("file notifications unavailable: polling only", "err", err)
		} else {
			s.watch = w
			s.watchStatic()
		}
	}
	s.scan()
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	scan := time.NewTicker(s.cfg.ScanInterval)
	defer scan.Stop()
	var events <-chan fsnotify.Event
	var werrs <-chan error
	if s.watch != nil {
		events, werrs = s.watch.Events, s.watch.Errors
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		if len(s.ready) > 0 {
			f := s.ready[0]
			s.ready = s.ready[1:]
			f.queued = false
			s.serve(f)
			// Between quanta, take what else happened without waiting.
			select {
			case ev := <-events:
				s.onEvent(ev)
			case <-poll.C:
				s.poll()
			case <-scan.C:
				s.scan()
			default:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case ev := <-events:
			s.onEvent(ev)
		case err := <-werrs:
			s.onWatchError(err)
		case <-poll.C:
			s.poll()
		case <-scan.C:
			s.scan()
		}
	}
}

// shutdown closes what Run opened. Files stay in the tables (Commit may
// still run).
func (s *Source) shutdown() {
	for _, f := range s.live {
		s.closeFile(f)
	}
	if s.watch != nil {
		_ = s.watch.Close()
	}
}

// enqueue puts f at the end of the ready queue (once).
func (s *Source) enqueue(f *tfile) {
	if f.queued || f.released {
		return
	}
	f.queued = true
	s.ready = append(s.ready, f)
}

// failOnce reports a file that cannot be read: one SourceEvents.Failed and
// one log line per file (by identity, or by path when it has none).
func (s *Source) failOnce(path string, k devIno, fi fileMark, code string, offset, line int64, err error) {
	if k.ok() {
		if m, seen := s.failures[k]; seen {
			m.mark = fi
			s.failures[k] = m
			return
		}
		s.failures[k] = failMark{mark: fi}
	} else {
		if s.failPaths[path] {
			return
		}
		s.failPaths[path] = true
	}
	s.log.Warn("file cannot be read: skipped", "path", path, "code", code, "err", err)
	if s.o.Events.Failed != nil {
		s.o.Events.Failed(s.ctx, pipeline.SourceFailure{Kind: "file", Source: s.name, Path: path, Code: code, Offset: offset, Line: line, Err: err})
	}
}
