package config

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// FormatSizes is a size per input format. In config it is a mapping
// ({jsonl: 1MiB, otlp: 64MiB, zipkin: 64MiB}; a format left out keeps its
// default) or a single size for every format, the form the knob had
// before it was per format.
type FormatSizes struct {
	JSONL  ByteSize `yaml:"jsonl"`
	OTLP   ByteSize `yaml:"otlp"`
	Zipkin ByteSize `yaml:"zipkin"`

	// scalar: the config wrote one size (so a problem names the key
	// itself, which is what ${VAR} expansion recorded).
	scalar bool
}

// UnmarshalYAML implements yaml.Unmarshaler: a size, or a mapping of
// format to size with no other key.
func (f *FormatSizes) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var b ByteSize
		if err := b.UnmarshalYAML(n); err != nil {
			return err
		}
		*f = FormatSizes{JSONL: b, OTLP: b, Zipkin: b, scalar: true}
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			var p *ByteSize
			switch k.Value {
			case "jsonl":
				p = &f.JSONL
			case "otlp":
				p = &f.OTLP
			case "zipkin":
				p = &f.Zipkin
			default:
				return fmt.Errorf("line %d: unknown format %q: want jsonl, otlp or zipkin (or one size for all)", k.Line, k.Value)
			}
			if err := p.UnmarshalYAML(v); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("line %d: want a size, or a size per format {jsonl: 1MiB, otlp: 64MiB, zipkin: 64MiB}", n.Line)
}

// MarshalYAML writes the mapping (validate prints the effective values).
func (f FormatSizes) MarshalYAML() (any, error) {
	return map[string]ByteSize{"jsonl": f.JSONL, "otlp": f.OTLP, "zipkin": f.Zipkin}, nil
}

// For returns the size of format (a config spelling); for "auto" (or
// anything else) the largest, since the format is not known yet.
func (f FormatSizes) For(format string) ByteSize {
	switch format {
	case "jsonl":
		return f.JSONL
	case "otlp":
		return f.OTLP
	case "zipkin":
		return f.Zipkin
	}
	return f.Max()
}

// Max is the largest of the sizes.
func (f FormatSizes) Max() ByteSize { return max(f.JSONL, f.OTLP, f.Zipkin) }

// setDefaults fills the formats left out.
func (f *FormatSizes) setDefaults(d FormatSizes) {
	setSize(&f.JSONL, d.JSONL)
	setSize(&f.OTLP, d.OTLP)
	setSize(&f.Zipkin, d.Zipkin)
}

// validate checks each size against (0, limit].
func (f *FormatSizes) validate(v *check, key string, limit ByteSize) {
	for _, x := range []struct {
		name string
		n    ByteSize
	}{{"jsonl", f.JSONL}, {"otlp", f.OTLP}, {"zipkin", f.Zipkin}} {
		k := key + "." + x.name
		if f.scalar {
			k = key
		}
		v.positive(k, int64(x.n))
		atMost(v, k, x.n, limit)
		if f.scalar {
			return
		}
	}
}

// Default line and document limits per format. OTLP and Zipkin units are
// whole export requests: the Collector's file exporter writes one per
// line, often past 1 MiB, so their limit is far above a log line's.
var (
	defaultMaxLineBytes     = FormatSizes{JSONL: 1 << 20, OTLP: 64 << 20, Zipkin: 64 << 20}
	defaultMaxDocumentBytes = FormatSizes{JSONL: 16 << 20, OTLP: 64 << 20, Zipkin: 64 << 20}
)

// MissingTraceID is parse.missing_trace_id: what becomes of a record
// without a trace id, per signal: invalid (DLQ), filter (counted, not
// written) or keep. In config it is a mapping ({spans: invalid, logs:
// keep}; a signal left out keeps its default) or one policy for both
// signals, the form the knob had before it was per signal.
type MissingTraceID struct {
	Spans string `yaml:"spans"`
	Logs  string `yaml:"logs"`

	scalar bool
}

// UnmarshalYAML implements yaml.Unmarshaler: a policy, or a mapping of
// signal to policy with no other key.
func (m *MissingTraceID) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*m = MissingTraceID{Spans: n.Value, Logs: n.Value, scalar: true}
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: %s: want invalid, filter or keep", v.Line, k.Value)
			}
			switch k.Value {
			case "spans":
				m.Spans = v.Value
			case "logs":
				m.Logs = v.Value
			default:
				return fmt.Errorf("line %d: unknown signal %q: want spans or logs (or one policy for both)", k.Line, k.Value)
			}
		}
		return nil
	}
	return fmt.Errorf("line %d: want a policy, or one per signal {spans: invalid, logs: keep}", n.Line)
}

// MarshalYAML writes the mapping.
func (m MissingTraceID) MarshalYAML() (any, error) {
	return map[string]string{"spans": m.Spans, "logs": m.Logs}, nil
}

func (m *MissingTraceID) validate(v *check) {
	policies := []string{"invalid", "filter", "keep"}
	if m.scalar {
		v.oneOf("parse.missing_trace_id", m.Spans, policies...)
		return
	}
	v.oneOf("parse.missing_trace_id.spans", m.Spans, policies...)
	v.oneOf("parse.missing_trace_id.logs", m.Logs, policies...)
}
