package parsers

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Stage is the parse stage: it decodes every unit of a batch into records
// with the parser of the batch's origin format and the field mapping its
// origin names (Origin.Mapping: the index of one of the option sets given
// to NewStage; a source with its own parse.jsonl paths has its own). One
// pooled decoder per batch; a panic while decoding one unit fails that
// unit alone, as class panic.
type Stage struct {
	opts []*Options
}

// NewStage returns the parse stage. opts[0] is the default mapping, and
// every option set must be prepared (Options.Prepare).
func NewStage(opts ...*Options) *Stage { return &Stage{opts: opts} }

// Name implements pipeline.Stage.
func (p *Stage) Name() string { return "parse" }

// Process implements pipeline.Stage.
func (p *Stage) Process(_ context.Context, b *pipeline.Batch) {
	format := pipeline.FormatJSONL
	opts := p.opts[0]
	if o := b.Origin; o != nil {
		if o.Format != pipeline.FormatAuto {
			format = o.Format
		}
		if o.Mapping > 0 && o.Mapping < len(p.opts) {
			opts = p.opts[o.Mapping]
		}
	}
	d := GetDecoder(opts)
	for u := range b.Units {
		n := len(b.Records)
		p.decode(d, b, u, format)
		if u < len(b.Replays) {
			for i := n; i < len(b.Records); i++ {
				b.Records[i].ReplayCount, b.Records[i].ReplayedFrom = b.Replays[u].Count, b.Replays[u].From
			}
		}
	}
	PutDecoder(d)
}

// decode decodes one unit (too-large units included: the decoder fails
// them); on panic it drops what the unit had appended and
// leaves one panic record in its place.
func (p *Stage) decode(d *Decoder, b *pipeline.Batch, u int, format pipeline.Format) {
	n := len(b.Records)
	defer func() {
		if r := recover(); r != nil {
			b.Records = b.Records[:n]
			b.NewRecord(u).Fail("parse", pipeline.ClassPanic, "panic", fmt.Sprintf("panic while parsing %s: %v\n%s", format, r, debug.Stack()))
		}
	}()
	d.Decode(b, u, format)
}
