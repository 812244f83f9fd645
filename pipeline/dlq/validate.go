package dlq

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidEntry is wrapped by every error Validate returns.
var ErrInvalidEntry = errors.New("dlq: invalid entry")

// Validate reports whether e holds what a reader needs: an id of NewID's
// form, a time, source kind, stage and error class, and a payload whose
// size, truncated flag and hash agree with what is stored. Version 0 is
// accepted (a backend sets SchemaVersion when it writes); a version newer
// than this package's is not. The error wraps ErrInvalidEntry and lists
// every problem found.
func (e *Entry) Validate() error {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	if e.Version < 0 || e.Version > SchemaVersion {
		add("version %d is not in 0..%d", e.Version, SchemaVersion)
	}
	switch {
	case e.ID == "":
		add("missing id")
	case !validID(e.ID):
		add("id %q is not a 26-character ULID", e.ID)
	}
	if e.Time.IsZero() {
		add("missing time")
	}
	if e.Source.Kind == "" {
		add("missing source.kind")
	}
	if e.Stage == "" {
		add("missing stage")
	}
	if e.Error.Class == "" {
		add("missing error.class")
	}
	stored := int64(len(e.Payload))
	if len(e.PayloadBase64) > 0 {
		stored = int64(len(e.PayloadBase64))
		if e.Payload != "" {
			add("both payload and payload_base64 are set")
		}
	}
	if e.PayloadSize < stored {
		add("payload_size %d is less than the %d bytes stored", e.PayloadSize, stored)
	} else if e.Truncated != (e.PayloadSize > stored) {
		add("truncated is %t but payload_size is %d with %d bytes stored", e.Truncated, e.PayloadSize, stored)
	}
	if e.PayloadSHA256 != "" && !isLowerHex(e.PayloadSHA256, 64) {
		add("payload_sha256 is not 64 lowercase hex digits")
	}
	if e.Attempts < 0 {
		add("attempts %d is negative", e.Attempts)
	}
	if e.ReplayCount < 0 {
		add("replay_count %d is negative", e.ReplayCount)
	}
	if problems == nil {
		return nil
	}
	return fmt.Errorf("%w %s: %s", ErrInvalidEntry, e.ID, strings.Join(problems, "; "))
}

// validID reports whether id has NewID's form: 26 Crockford base32
// characters (upper case) whose first carries only 3 bits.
func validID(id string) bool {
	if len(id) != 26 || id[0] > '7' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !crockfordSet[id[i]] {
			return false
		}
	}
	return true
}

// crockfordSet marks the bytes of the crockford alphabet.
var crockfordSet = func() (set [256]bool) {
	for i := 0; i < len(crockford); i++ {
		set[crockford[i]] = true
	}
	return set
}()

// isLowerHex reports whether s is n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if _, ok := unhex(s[i]); !ok {
			return false
		}
	}
	return true
}

// unhex returns the value of one lowercase hex digit.
func unhex(c byte) (uint32, bool) {
	switch {
	case '0' <= c && c <= '9':
		return uint32(c - '0'), true
	case 'a' <= c && c <= 'f':
		return uint32(c-'a') + 10, true
	}
	return 0, false
}
