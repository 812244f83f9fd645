package dlq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// OverflowPolicy names what the file DLQ does when its segments reach
// FileOptions.MaxBytes.
type OverflowPolicy string

const (
	// OverflowFail stops accepting input: Full() closes so the runner stops
	// reading, and entries already in flight are still written, so the cap
	// is exceeded by what is in flight. Nothing is lost.
	OverflowFail OverflowPolicy = "fail"
	// OverflowDropOldest deletes the oldest whole segments to make room,
	// counting the entries lost in Stats.Evicted and logging each eviction
	// at error level.
	OverflowDropOldest OverflowPolicy = "drop_oldest"
)

// ParseOverflowPolicy parses a config value; "" is OverflowFail.
func ParseOverflowPolicy(s string) (OverflowPolicy, error) {
	switch p := OverflowPolicy(s); p {
	case "":
		return OverflowFail, nil
	case OverflowFail, OverflowDropOldest:
		return p, nil
	}
	return "", fmt.Errorf("dlq: unknown overflow policy %q (want %q or %q)", s, OverflowFail, OverflowDropOldest)
}

// UnmarshalText lets config decoders parse and check the policy.
func (p *OverflowPolicy) UnmarshalText(b []byte) error {
	v, err := ParseOverflowPolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Defaults for FileOptions fields left zero.
const (
	DefaultSegmentBytes = 64 << 20
	DefaultMaxBytes     = 1 << 30
	DefaultQueueSize    = 1024
	DefaultSyncEvery    = time.Second
)

// FileOptions configure OpenFile. Zero values take the defaults above.
type FileOptions struct {
	// Dir holds the segments; it is created with mode 0700 if missing. One
	// File per directory: two writers would each count only their own
	// segments against the cap.
	Dir string
	// SegmentBytes: a segment is closed and a new one started before a
	// line would take it past this size (a single larger line gets a
	// segment of its own). Default 64 MiB.
	SegmentBytes int64
	// MaxBytes caps the segments in Dir, those of earlier runs included;
	// at least SegmentBytes. Default 1 GiB.
	MaxBytes int64
	// Overflow says what happens at MaxBytes; default OverflowFail.
	Overflow OverflowPolicy
	// QueueSize bounds the entries waiting for the writer; when they are
	// that many, Put blocks. Default 1024.
	QueueSize int
	// SyncEvery: written entries are synced at least this often while
	// running, and always at rotation, Sync and Close. Default 1s.
	SyncEvery time.Duration
	// Logger gets overflow, eviction and write-failure reports; default
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults fills zero fields and checks the rest.
func (o FileOptions) withDefaults() (FileOptions, error) {
	if o.Dir == "" {
		return o, errors.New("dlq: file options: dir is empty")
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = max(DefaultMaxBytes, o.SegmentBytes)
	}
	if o.QueueSize == 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.SyncEvery == 0 {
		o.SyncEvery = DefaultSyncEvery
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	p, err := ParseOverflowPolicy(string(o.Overflow))
	if err != nil {
		return o, err
	}
	o.Overflow = p
	switch {
	case o.SegmentBytes < 0:
		return o, fmt.Errorf("dlq: file options: segment_bytes %d is negative", o.SegmentBytes)
	case o.MaxBytes < o.SegmentBytes:
		return o, fmt.Errorf("dlq: file options: max_bytes %d is less than segment_bytes %d", o.MaxBytes, o.SegmentBytes)
	case o.QueueSize < 0:
		return o, fmt.Errorf("dlq: file options: queue size %d is negative", o.QueueSize)
	case o.SyncEvery < 0:
		return o, fmt.Errorf("dlq: file options: sync_every %s is negative", o.SyncEvery)
	}
	return o, nil
}

// File is the file DLQ backend: checksummed segment files in one directory,
// written by one goroutine fed by a bounded queue. It implements Backend.
type File struct {
	opts  FileOptions
	log   *slog.Logger
	queue chan *item
	full  chan struct{}
	done  chan struct{} // closed when the writer has finished

	// mu orders Close against Puts: a Put registers in inflight under the
	// read lock unless closed, so Close can wait for every Put that got in
	// before it closes the queue.
	mu        sync.RWMutex
	closed    bool
	inflight  sync.WaitGroup
	closeOnce sync.Once
	isClosed  atomic.Bool
	blocked   atomic.Int64 // Puts waiting for room in the queue

	broken atomic.Pointer[error] // set once a write fails; Put refuses then

	// size is the writer's total of segment bytes as of its last sync (or
	// of OpenFile), for Size: stored once per sync, never per entry.
	size atomic.Int64

	statsMu sync.Mutex
	stats   Stats
	err     error // first error, returned by Close

	w    writer   // owned by the writer goroutine
	lock *os.File // the directory's lock, released when the writer is done
}

var _ Backend = (*File)(nil)

// segmentFile is what the writer needs of an open segment.
type segmentFile interface {
	io.Writer
	Sync() error
	Close() error
}

// fileHooks let tests slow the writer down or make writes fail.
type fileHooks struct {
	beforeWrite func()                                 // called by the writer before each entry
	openSegment func(path string) (segmentFile, error) // default createSegment
}

// OpenFile opens (creating if needed) the DLQ directory, takes stock of the
// segments earlier runs left there and starts the writer. It fails at once
// if the directory cannot be written. Segments are created on the first
// entry: a run with no failures leaves no file.
func OpenFile(opts FileOptions) (*File, error) {
	return openFile(opts, fileHooks{})
}

func openFile(opts FileOptions, hooks fileHooks) (*File, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if hooks.openSegment == nil {
		hooks.openSegment = createSegment
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("dlq: create directory %s: %w", o.Dir, err)
	}
	probe, err := os.CreateTemp(o.Dir, ".dlq-probe-*")
	if err != nil {
		return nil, fmt.Errorf("dlq: directory %s is not writable: %w", o.Dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	lock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}

	names, err := segmentNames(o.Dir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	var run [4]byte
	_, _ = rand.Read(run[:])
	f := &File{
		opts:  o,
		log:   o.Logger,
		queue: make(chan *item, o.QueueSize),
		full:  make(chan struct{}),
		done:  make(chan struct{}),
		stats: Stats{Written: map[string]int64{}},
		lock:  lock,
	}
	f.w = writer{f: f, hooks: hooks, runID: hex.EncodeToString(run[:]), nextSeq: 1, pending: map[EntryKey]int64{}, lastSync: time.Now()}
	for _, name := range names {
		path := filepath.Join(o.Dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			lock.Close()
			return nil, fmt.Errorf("dlq: stat %s: %w", path, err)
		}
		f.w.segs = append(f.w.segs, segInfo{path: path, size: fi.Size(), entries: -1})
		f.w.total += fi.Size()
		if c, torn := tornTail(path, fi.Size()); torn {
			f.log.Warn("dlq: torn write found: the last entry of a segment is incomplete (a crash mid-write?); readers skip it",
				"segment", c.Segment, "offset", c.Offset)
		}
		if seq, ok := segmentSeq(name); ok && seq >= f.w.nextSeq {
			f.w.nextSeq = seq + 1
		}
	}
	f.size.Store(f.w.total)
	if o.Overflow == OverflowFail && f.w.total >= o.MaxBytes {
		f.w.setFull()
	}
	go f.w.run()
	return f, nil
}

// createSegment creates a new segment file, mode 0600, failing if it exists.
func createSegment(path string) (segmentFile, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
}

// Put encodes e and queues it for the writer. It fills e.Version, e.ID and
// e.Time when they are zero, then refuses (without queueing) an entry that
// fails Validate or whose line would exceed MaxLineBytes. If the queue has
// room Put returns at once, even when ctx is done; otherwise it blocks
// (backpressure) until there is room (nil) or ctx is done (ctx.Err(), the
// entry not taken). After Close it returns ErrClosed; after a write failure,
// that failure. A nil error means the entry will be written, or counted in
// Stats.Failed. The file backend does not keep e after Put returns.
func (f *File) Put(ctx context.Context, e *Entry) error {
	if e == nil {
		return errors.New("dlq: Put of a nil entry")
	}
	if err := f.refusal(); err != nil {
		return err
	}
	if err := e.Prepare(); err != nil {
		return err
	}
	it, err := encodeItem(e)
	if err != nil {
		return err
	}
	if n := int64(len(it.line)); n > maxLine {
		putItem(it)
		return fmt.Errorf("dlq: entry %s is %d bytes encoded, over MaxLineBytes %d: keep fewer payload bytes", e.ID, n, maxLine)
	}
	return f.enqueue(ctx, it)
}

// Sync waits until every entry Put accepted before it is written and synced,
// and Stats counts them. Use it before committing input positions that
// depend on those entries being durable. It queues like Put (backpressure).
func (f *File) Sync(ctx context.Context) error {
	if err := f.refusal(); err != nil {
		return err
	}
	it := &item{done: make(chan error, 1)}
	if err := f.enqueue(ctx, it); err != nil {
		return err
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refusal returns why the File takes no more entries, or nil.
func (f *File) refusal() error {
	if f.isClosed.Load() {
		return fmt.Errorf("%w: %s", ErrClosed, f.opts.Dir)
	}
	if p := f.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// enqueue hands it to the writer, blocking while the queue is full.
func (f *File) enqueue(ctx context.Context, it *item) error {
	f.mu.RLock()
	if f.closed {
		f.mu.RUnlock()
		putItem(it)
		return fmt.Errorf("%w: %s", ErrClosed, f.opts.Dir)
	}
	f.inflight.Add(1)
	f.mu.RUnlock()
	defer f.inflight.Done()

	select {
	case f.queue <- it:
		return nil
	default:
	}
	f.blocked.Add(1)
	defer f.blocked.Add(-1)
	select {
	case f.queue <- it:
		return nil
	case <-ctx.Done():
		putItem(it)
		return ctx.Err()
	}
}

// Close stops taking entries, waits for the writer to write and sync all
// that Put accepted (Puts blocked at that moment included), closes the
// segment and returns the first error of the File's life (write, sync,
// close or eviction), which names the file. If ctx ends first, Close returns
// an error wrapping ctx.Err(); the writer goes on draining in the background
// and a later Close waits for it again. Close may be called more than once.
func (f *File) Close(ctx context.Context) error {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed = true
		f.isClosed.Store(true)
		f.mu.Unlock()
		go func() {
			f.inflight.Wait()
			close(f.queue)
		}()
	})
	select {
	case <-f.done:
		f.statsMu.Lock()
		defer f.statsMu.Unlock()
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("dlq: close %s: %w (the writer goes on draining in the background)", f.opts.Dir, ctx.Err())
	}
}

// Stats returns a copy of the counts; final once Close has returned nil or a
// write error.
func (f *File) Stats() Stats {
	f.statsMu.Lock()
	defer f.statsMu.Unlock()
	return f.stats.clone()
}

// Full is closed when the segments reach MaxBytes under OverflowFail
// (possibly at OpenFile, if earlier runs left that much). It stays closed.
func (f *File) Full() <-chan struct{} { return f.full }

// Size is the bytes of the directory's segments, earlier runs' included
// (what MaxBytes bounds), as of the writer's last sync.
func (f *File) Size() int64 { return f.size.Load() }

// MaxBytes is the cap on Size (FileOptions.MaxBytes, defaulted).
func (f *File) MaxBytes() int64 { return f.opts.MaxBytes }

// Dir returns the directory holding the segments.
func (f *File) Dir() string { return f.opts.Dir }

// recordErr keeps err if it is the first error.
func (f *File) recordErr(err error) {
	f.statsMu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.statsMu.Unlock()
}
