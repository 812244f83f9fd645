// Package stages holds the record stages of the core that need no adapter:
// filter. (Parsing is parsers.Stage, windows are pipeline/windows.)
package stages

import (
	"context"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Filter marks records filtered by service: when Include is non-empty only
// its services pass; services in Exclude never pass. Filtered records are
// counted, not written.
type Filter struct {
	include, exclude map[string]struct{}
}

// NewFilter returns the filter stage, or nil when there is nothing to filter
// (so the runner skips it).
func NewFilter(include, exclude []string) *Filter {
	if len(include) == 0 && len(exclude) == 0 {
		return nil
	}
	set := func(names []string) map[string]struct{} {
		if len(names) == 0 {
			return nil
		}
		m := make(map[string]struct{}, len(names))
		for _, n := range names {
			m[n] = struct{}{}
		}
		return m
	}
	return &Filter{include: set(include), exclude: set(exclude)}
}

// Name implements pipeline.Stage.
func (f *Filter) Name() string { return "filter" }

// Process implements pipeline.Stage.
func (f *Filter) Process(_ context.Context, b *pipeline.Batch) {
	for i := range b.Records {
		r := &b.Records[i]
		if r.Failed() || r.Filtered {
			continue
		}
		// Map lookups with a string(bytes) key do not allocate.
		if f.include != nil {
			if _, ok := f.include[string(r.Service)]; !ok {
				r.Filtered = true
				continue
			}
		}
		if _, ok := f.exclude[string(r.Service)]; ok {
			r.Filtered = true
		}
	}
}
