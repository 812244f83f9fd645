package config

import (
	"fmt"
	"log/slog"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Redacted is what a set Secret prints instead of its value.
const Redacted = "<redacted>"

// Secret is a credential read from the config (a password). It cannot print
// itself: String, %v, %+v, %#v, %q and every other verb, YAML, JSON, text
// and slog all give Redacted when it is set and "" when it is not. Reveal
// is the one way to the value, for the code that hands it to a client.
type Secret struct{ v string }

// NewSecret wraps a value, for code (and tests) that build a config.
func NewSecret(v string) Secret { return Secret{v} }

// Reveal returns the value.
func (s Secret) Reveal() string { return s.v }

// IsSet reports whether the value is not empty.
func (s Secret) IsSet() bool { return s.v != "" }

// String returns Redacted, or "" when unset.
func (s Secret) String() string {
	if s.v == "" {
		return ""
	}
	return Redacted
}

// GoString keeps %#v from showing the value.
func (s Secret) GoString() string { return "config.Secret(" + strconv.Quote(s.String()) + ")" }

// Format implements fmt.Formatter, so that no verb (%d, %x, a bad verb
// included) falls through to the underlying string.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	if verb != 'q' {
		verb = 's'
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// MarshalText implements encoding.TextMarshaler (used by slog's text
// handler and encoders that know no other interface).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalYAML implements yaml.Unmarshaler: any scalar (a number is taken
// as its text), already ${VAR}-expanded by Decode. Errors never quote it.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a password must be a single value, not a list or a mapping", n.Line)
	}
	s.v = n.Value
	return nil
}
