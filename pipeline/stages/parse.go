// Package stages holds the stages a batch goes through between its source
// and its sinks: parse, filter (and window, later). One file each.
package stages

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
)

// Parse decodes every unit of a batch into records with the parser of the
// batch's source format. One pooled decoder per batch; a panic while
// decoding one unit fails that unit alone, as class panic.
type Parse struct {
	opts *parsers.Options
}

// NewParse returns the parse stage; opts must be prepared (parsers.Options.Prepare).
func NewParse(opts *parsers.Options) *Parse { return &Parse{opts: opts} }

// Name implements pipeline.Stage.
func (p *Parse) Name() string { return "parse" }

// Process implements pipeline.Stage.
func (p *Parse) Process(_ context.Context, b *pipeline.Batch) {
	format := pipeline.FormatJSONL
	if b.Origin != nil && b.Origin.Format != pipeline.FormatAuto {
		format = b.Origin.Format
	}
	d := parsers.GetDecoder(p.opts)
	for u := range b.Units {
		n := len(b.Records)
		p.decode(d, b, u, format)
		if u < len(b.Replays) {
			for i := n; i < len(b.Records); i++ {
				b.Records[i].ReplayCount, b.Records[i].ReplayedFrom = b.Replays[u].Count, b.Replays[u].From
			}
		}
	}
	parsers.PutDecoder(d)
}

// decode decodes one unit (too-large units included: the decoder fails
// them); on panic it drops what the unit had appended and
// leaves one panic record in its place.
func (p *Parse) decode(d *parsers.Decoder, b *pipeline.Batch, u int, format pipeline.Format) {
	n := len(b.Records)
	defer func() {
		if r := recover(); r != nil {
			b.Records = b.Records[:n]
			b.NewRecord(u).Fail("parse", pipeline.ClassPanic, "panic", fmt.Sprintf("panic while parsing %s: %v\n%s", format, r, debug.Stack()))
		}
	}()
	d.Decode(b, u, format)
}
