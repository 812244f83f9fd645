package dlq

import (
	"strings"
	"time"
)

// Filter selects entries for `pipeline dlq` commands; zero fields match
// everything. Source matches a substring of the source's path, topic or
// stream.
type Filter struct {
	Class, Code, Stage, Source string
	Since, Until               time.Time // entry time in [Since, Until)
}

// Empty reports whether f matches every entry.
func (f Filter) Empty() bool { return f == Filter{} }

// Match reports whether e passes f.
func (f Filter) Match(e *Entry) bool {
	switch {
	case f.Class != "" && e.Error.Class != f.Class,
		f.Code != "" && e.Error.Code != f.Code,
		f.Stage != "" && e.Stage != f.Stage,
		!f.Since.IsZero() && e.Time.Before(f.Since),
		!f.Until.IsZero() && !e.Time.Before(f.Until):
		return false
	}
	if f.Source != "" {
		s := e.Source
		return strings.Contains(s.Path, f.Source) || strings.Contains(s.Topic, f.Source) || strings.Contains(s.Stream, f.Source)
	}
	return true
}
