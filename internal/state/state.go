// Package state keeps the checkpoints of `pipeline run`: one file per
// source in a state directory (state_dir), each written atomically (a
// temporary file, fsync, rename over the old one, fsync of the directory),
// so a crash at any point leaves either the previous checkpoint or the new
// one, never a torn file. One process holds the directory at a time (an
// flock on dir/.lock): two `pipeline run` processes given one state_dir
// would commit over each other's positions.
//
// A checkpoint file is JSON:
//
//	{"v":1,"source":"app-logs","kind":"file","saved":"2026-12-02T14:32:05.123Z","positions":...}
//
// positions is the source's own (file fingerprints and offsets for the
// file source). A file that cannot be read or parsed is an error naming it,
// never an empty state: starting over silently would re-read, or skip,
// everything. `pipeline state reset NAME` removes it on purpose.
package state

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Version is the checkpoint file format this package writes and reads.
const Version = 1

const suffix = ".json"

// validName is the shape of a source name, which is also its file name.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ErrLocked is returned by Open when another process holds the directory.
var ErrLocked = errors.New("state dir is in use by another process")

// Dir is an open state directory.
type Dir struct {
	path string
	lock *os.File // nil when opened read-only
}

// Open creates dir if needed and takes its lock, for a process that will
// commit positions. The lock is held until Close (or the process dies: an
// flock does not outlive its process).
func Open(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	lockPath := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lockPath)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder))
			return nil, fmt.Errorf("%w: %s (pid %s); give each process its own state_dir", ErrLocked, dir, pid)
		}
		return nil, fmt.Errorf("state dir: lock %s: %w", lockPath, err)
	}
	// Name the holder for the error above; the lock, not the text, is what
	// excludes.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Dir{path: dir, lock: f}, nil
}

// OpenReadOnly opens dir for reading checkpoints without its lock (`pipeline
// state ls` beside a running process). A missing directory has no
// checkpoints.
func OpenReadOnly(dir string) *Dir { return &Dir{path: dir} }

// Path is the directory.
func (d *Dir) Path() string { return d.path }

// Close releases the lock.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}

// instanceFile holds the directory's instance id.
const instanceFile = "instance-id"

// InstanceID returns the id of this state directory, made (random, 8 hex
// digits) and saved the first time: it tells apart two processes on one
// host (each holds its own directory) and stays the same across restarts,
// so a restarted process writes its window rows over its own earlier ones.
// It needs the lock (Open). `pipeline state reset` keeps it.
func (d *Dir) InstanceID() (string, error) {
	path := filepath.Join(d.path, instanceFile)
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if !isHexID(id) {
			return "", fmt.Errorf("state: %s holds %q, not an instance id (8 hex digits); remove it to make a new one", path, cut(id))
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("state: %w", err)
	}
	if d.lock == nil {
		return "", errors.New("state dir opened read-only")
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("state: instance id: %w", err)
	}
	id := hex.EncodeToString(r[:])
	tmp := path + ".tmp" // a crash leaves no torn id
	if err := writeSync(tmp, []byte(id+"\n")); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("state: %w", err)
	}
	return id, syncDir(d.path)
}

func isHexID(s string) bool {
	if len(s) != 8 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func cut(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// Checkpoint is one source's saved state.
type Checkpoint struct {
	V         int             `json:"v"`
	Source    string          `json:"source"`
	Kind      string          `json:"kind"`
	Saved     time.Time       `json:"saved"`
	Positions json.RawMessage `json:"positions"`
}

// File returns the path of source's checkpoint.
func (d *Dir) File(source string) string { return filepath.Join(d.path, source+suffix) }

// Save writes source's positions atomically. It needs the lock (Open).
func (d *Dir) Save(source, kind string, positions any) error {
	if d.lock == nil {
		return errors.New("state dir opened read-only")
	}
	if !validName.MatchString(source) {
		return fmt.Errorf("state: invalid source name %q", source)
	}
	raw, err := json.Marshal(positions)
	if err != nil {
		return fmt.Errorf("state: %s: %w", source, err)
	}
	data, err := json.Marshal(Checkpoint{V: Version, Source: source, Kind: kind, Saved: time.Now().UTC(), Positions: raw})
	if err != nil {
		return fmt.Errorf("state: %s: %w", source, err)
	}
	data = append(data, '\n')
	final := d.File(source)
	tmp := final + ".tmp"
	if err := writeSync(tmp, data); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("state: save %s: %w", source, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("state: save %s: %w", source, err)
	}
	if err := syncDir(d.path); err != nil {
		return fmt.Errorf("state: save %s: %w", source, err)
	}
	return nil
}

func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Load reads source's checkpoint into positions. found is false when there
// is none (a source never committed, or reset). A checkpoint that cannot
// be read, parsed, or that was written by a newer version, or for another
// kind of source, is an error naming the file.
func (d *Dir) Load(source, kind string, positions any) (found bool, saved time.Time, err error) {
	cp, err := d.read(source)
	if err != nil || cp == nil {
		return false, time.Time{}, err
	}
	path := d.File(source)
	if cp.Kind != kind {
		return false, time.Time{}, fmt.Errorf("state: %s holds positions of a %s source, not %s: the source changed kind; `pipeline state reset %s` starts it afresh", path, cp.Kind, kind, source)
	}
	dec := json.NewDecoder(bytes.NewReader(cp.Positions))
	dec.DisallowUnknownFields()
	if err := dec.Decode(positions); err != nil {
		return false, time.Time{}, fmt.Errorf("state: %s: positions: %w", path, err)
	}
	return true, cp.Saved, nil
}

// read returns source's checkpoint, nil when there is none.
func (d *Dir) read(source string) (*Checkpoint, error) {
	path := d.File(source)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, fmt.Errorf("state: %s is not a checkpoint (%v); move it away or `pipeline state reset %s`", path, err, source)
	}
	if cp.V > Version || cp.V < 1 {
		return nil, fmt.Errorf("state: %s has format version %d; this build reads %d", path, cp.V, Version)
	}
	if cp.Source != source {
		return nil, fmt.Errorf("state: %s names source %q, not %q", path, cp.Source, source)
	}
	return &cp, nil
}

// List returns every checkpoint in the directory, by source name. A file
// that is not a readable checkpoint is returned as an error beside the
// others.
func (d *Dir) List() ([]Checkpoint, []error) {
	ents, err := os.ReadDir(d.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("state: %w", err)}
	}
	var out []Checkpoint
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, suffix) {
			continue
		}
		cp, err := d.read(strings.TrimSuffix(name, suffix))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if cp != nil {
			out = append(out, *cp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out, errs
}

// Reset removes source's checkpoint: the source starts as if new (its
// start_at applies again). It needs the lock, so it cannot pull positions
// from under a running process. Removing one that does not exist is not an
// error; removed says whether there was one.
func (d *Dir) Reset(source string) (removed bool, err error) {
	if d.lock == nil {
		return false, errors.New("state dir opened read-only")
	}
	if !validName.MatchString(source) {
		return false, fmt.Errorf("state: invalid source name %q", source)
	}
	err = os.Remove(d.File(source))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("state: %w", err)
	}
	return true, syncDir(d.path)
}
