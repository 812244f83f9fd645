package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	"github.com/bmatcuk/doublestar/v4"
)

// Run configures the long-running job (`pipeline run`).
type Run struct {
	// StateDir holds one checkpoint file per source (and a lock: one
	// process per directory).
	StateDir string `yaml:"state_dir"`
	// CheckpointEvery is how often acked positions are committed (after a
	// durability barrier; never ahead of one).
	CheckpointEvery time.Duration `yaml:"checkpoint_every"`
	// ShutdownGrace bounds the drain on SIGINT/SIGTERM: stop reading,
	// finish in-flight batches, flush, emit open windows, commit. Past it
	// the process exits with what was committed.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// Source is one input of `pipeline run`. Exactly the block named by Type is
// set.
type Source struct {
	Name   string `yaml:"name"`
	Type   string `yaml:"type"`   // file
	Format string `yaml:"format"` // auto | jsonl | otlp | zipkin; default input.format
	// Parse overrides the top-level parse.jsonl field paths for this
	// source's JSON lines (a list left out keeps the top-level one).
	Parse *SourceParse `yaml:"parse"`
	File  *FileSource  `yaml:"file"`
}

// SourceParse is a source's own field mapping.
type SourceParse struct {
	JSONL JSONLPaths `yaml:"jsonl"`
}

// FileSource follows files matching globs, as a log shipper's tail does.
type FileSource struct {
	// Include globs, `**` for any depth; Exclude globs remove matches
	// (e.g. "**/*.gz" to skip rotated archives).
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
	// StartAt is where a file first seen is read from: beginning | end.
	// A file with a checkpoint resumes there whatever this says.
	StartAt string `yaml:"start_at"`
	// ReadExisting: files already there when the source starts (and not
	// in the checkpoint) are read (from start_at); false: only files
	// that appear later are, from their beginning.
	ReadExisting *bool `yaml:"read_existing"`
	// ScanInterval is how often the globs are matched again for new
	// files, and, where fsnotify does not work (NFS) or is off, how often
	// open files are checked for growth.
	ScanInterval time.Duration `yaml:"scan_interval"`
	// Watch: auto (fsnotify where it works, polling always as a floor) |
	// poll (polling only).
	Watch string `yaml:"watch"`
	// PollInterval is how often open files are checked for growth
	// without a notification.
	PollInterval time.Duration `yaml:"poll_interval"`
	// PartialLineTimeout: a last line with no newline is held until it
	// completes or for this long, then taken as it is.
	PartialLineTimeout time.Duration `yaml:"partial_line_timeout"`
	// MaxOpenFiles bounds the files held open at once; others wait
	// their turn.
	MaxOpenFiles int `yaml:"max_open_files"`
	// CloseInactive closes a file that did not grow for this long; it is
	// reopened when it grows (found by the scan or a notification).
	CloseInactive time.Duration `yaml:"close_inactive"`
	// IdleTimeout: a file at its end for this long no longer holds the
	// window watermark back.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// FingerprintBytes is how many first bytes identify a file (with its
	// device and inode); a file shorter than that is not read until it
	// has them or has been quiet for partial_line_timeout.
	FingerprintBytes ByteSize `yaml:"fingerprint_bytes"`
}

const (
	maxSources      = 64
	maxOpenFiles    = 65536
	maxFingerprint  = 64 << 10
	maxGraceOrEvery = 24 * time.Hour
)

var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (c *Config) applySourceDefaults() {
	setStr(&c.Run.StateDir, "out/state")
	if c.Run.CheckpointEvery == 0 {
		c.Run.CheckpointEvery = 5 * time.Second
	}
	if c.Run.ShutdownGrace == 0 {
		c.Run.ShutdownGrace = 30 * time.Second
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		if s.Format == "" {
			s.Format = c.Input.Format
			c.sameOrigin(fmt.Sprintf("sources[%d].format", i), "input.format")
		}
		if f := s.File; f != nil {
			setStr(&f.StartAt, "beginning")
			if f.ReadExisting == nil {
				t := true
				f.ReadExisting = &t
			}
			setStr(&f.Watch, "auto")
			setDur(&f.ScanInterval, 10*time.Second)
			setDur(&f.PollInterval, 250*time.Millisecond)
			setDur(&f.PartialLineTimeout, 5*time.Second)
			setInt(&f.MaxOpenFiles, 1024)
			setDur(&f.CloseInactive, 5*time.Minute)
			setDur(&f.IdleTimeout, 30*time.Second)
			setSize(&f.FingerprintBytes, 1024)
		}
	}
}

func setDur(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}

func (c *Config) validateSources(v *check) {
	if c.Run.StateDir == "" {
		v.bad("run.state_dir: must be set")
	}
	durIn(v, "run.checkpoint_every", c.Run.CheckpointEvery, 10*time.Millisecond, time.Hour)
	durIn(v, "run.shutdown_grace", c.Run.ShutdownGrace, time.Second, maxGraceOrEvery)
	if len(c.Sources) > maxSources {
		v.bad("sources: %d sources, at most %d", len(c.Sources), maxSources)
		return
	}
	names := map[string]bool{}
	for i, s := range c.Sources {
		key := fmt.Sprintf("sources[%d]", i)
		switch {
		case s.Name == "":
			v.bad("%s.name: must be set (it names the source's checkpoint)", key)
		case !sourceName.MatchString(s.Name):
			v.bad("%s.name: %q: letters, digits, '_', '.', '-', at most 64, starting with a letter or digit", key, v.val(key+".name", s.Name))
		case names[s.Name]:
			v.bad("%s.name: %q is used twice", key, v.val(key+".name", s.Name))
		}
		names[s.Name] = true
		v.oneOf(key+".format", s.Format, "auto", "jsonl", "otlp", "zipkin")
		if s.Parse != nil {
			s.Parse.JSONL.validatePaths(v, key+".parse.jsonl")
		}
		switch s.Type {
		case "file":
			if s.File == nil {
				v.bad("%s.file: must be set for type file", key)
				continue
			}
			s.File.validate(v, key+".file")
		case "":
			v.bad("%s.type: must be set (file)", key)
		default:
			v.bad("%s.type: %q is not a source type (file)", key, v.val(key+".type", s.Type))
		}
	}
}

func (f *FileSource) validate(v *check, key string) {
	if len(f.Include) == 0 {
		v.bad("%s.include: at least one glob is needed", key)
	}
	globs := func(k string, list []string) {
		for i, g := range list {
			gk := fmt.Sprintf("%s.%s[%d]", key, k, i)
			if g == "" {
				v.bad("%s: empty glob", gk)
				continue
			}
			if !doublestar.ValidatePattern(filepath.ToSlash(g)) {
				v.bad("%s: %q is not a valid glob", gk, v.val(gk, g))
			}
		}
	}
	globs("include", f.Include)
	globs("exclude", f.Exclude)
	v.oneOf(key+".start_at", f.StartAt, "beginning", "end")
	v.oneOf(key+".watch", f.Watch, "auto", "poll")
	durIn(v, key+".scan_interval", f.ScanInterval, 10*time.Millisecond, time.Hour)
	durIn(v, key+".poll_interval", f.PollInterval, time.Millisecond, time.Hour)
	durIn(v, key+".partial_line_timeout", f.PartialLineTimeout, time.Millisecond, time.Hour)
	durIn(v, key+".close_inactive", f.CloseInactive, time.Second, maxGraceOrEvery)
	durIn(v, key+".idle_timeout", f.IdleTimeout, 10*time.Millisecond, maxGraceOrEvery)
	v.positive(key+".max_open_files", int64(f.MaxOpenFiles))
	atMost(v, key+".max_open_files", f.MaxOpenFiles, maxOpenFiles)
	if f.FingerprintBytes < 16 || f.FingerprintBytes > maxFingerprint {
		v.bad("%s.fingerprint_bytes: %s is outside 16B..64KiB", key, v.val(key+".fingerprint_bytes", f.FingerprintBytes))
	}
}

// durIn refuses a duration outside [lo, hi].
func durIn(v *check, key string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.bad("%s: %s is outside %s..%s", key, v.val(key, d), lo, hi)
	}
}
