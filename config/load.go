package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads, expands, strictly decodes, defaults and validates a config
// file. An empty path loads the embedded default.
func Load(path string) (*Config, error) {
	if path == "" {
		return Decode(Default, "config.yaml (embedded)", os.LookupEnv)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Decode(data, path, os.LookupEnv)
}

// Decode is Load on bytes; name prefixes every error, lookup resolves
// ${VAR}. Errors never quote a value that came from the environment.
func Decode(data []byte, name string, lookup func(string) (string, bool)) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, wrap(name, err)
	}
	cfg := &Config{}
	if len(root.Content) == 0 { // empty file: all defaults
		cfg.applyDefaults()
		return cfg, wrap(name, cfg.Validate())
	}
	doc := root.Content[0]

	var errs []error
	x := &expansion{lookup: lookup, lines: map[int]bool{}, env: map[string][]string{}, values: map[string]string{}, vars: map[*yaml.Node][]string{}}
	x.node(doc, "")
	errs = append(errs, x.errs...)
	checkKeys(doc, reflect.TypeFor[Config](), "", &errs)
	if len(errs) > 0 {
		return nil, wrap(name, errors.Join(errs...))
	}
	if err := doc.Decode(cfg); err != nil {
		return nil, wrap(name, redactTypeError(err, x.lines))
	}
	cfg.fromEnv, cfg.envValues = x.env, x.values
	cfg.applyDefaults()
	return cfg, wrap(name, cfg.Validate())
}

// wrap prefixes every line of err with the file name, as name:LINE: when
// the line names one, and sorts the lines by line number, so that editors
// and terminals can jump to each problem.
func wrap(name string, err error) error {
	if err == nil {
		return nil
	}
	lines := strings.Split(err.Error(), "\n")
	lineNo := func(s string) int {
		if m := typeErrLine.FindStringSubmatch(strings.TrimPrefix(s, "yaml: ")); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return 1 << 30 // problems without a line (Validate's) go last
	}
	slices.SortStableFunc(lines, func(a, b string) int { return lineNo(a) - lineNo(b) })
	for i, l := range lines {
		l = strings.TrimPrefix(l, "yaml: ")
		if m := typeErrLine.FindStringSubmatch(l); m != nil {
			lines[i] = name + ":" + m[1] + ": " + l[len(m[0]):]
		} else {
			lines[i] = name + ": " + l
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

// varRef matches $${...} (an escaped literal), ${NAME} and ${NAME:-default}.
var varRef = regexp.MustCompile(`\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expansion replaces ${VAR} and ${VAR:-default} in every scalar value
// (never in keys). It records the lines it touched, so that decoding errors
// there can be redacted, and, per key (input.format, sinks[0].type), the
// variables whose values went into it, so that Validate names the variable
// instead of quoting the value.
type expansion struct {
	lookup func(string) (string, bool)
	lines  map[int]bool        // lines holding a ${...}
	env    map[string][]string // key -> variables taken from the environment
	values map[string]string   // value taken from the environment -> its variable
	vars   map[*yaml.Node][]string
	errs   []error
}

func (x *expansion) node(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = varRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			if ref == "$${" {
				return "${"
			}
			m := varRef.FindStringSubmatch(ref)
			x.lines[n.Line] = true
			if v, ok := x.lookup(m[1]); ok && v != "" {
				if !slices.Contains(x.vars[n], m[1]) {
					x.vars[n] = append(x.vars[n], m[1])
				}
				x.values[v] = m[1]
				return v
			}
			if m[2] != "" {
				return m[3] // the default is the file's own text
			}
			x.errs = append(x.errs, fmt.Errorf("line %d: environment variable %s is not set (write ${%s:-default} for a default)", n.Line, m[1], m[1]))
			return ""
		})
		if n.Tag == "!!str" && x.lines[n.Line] {
			n.Tag = "" // let the expanded text resolve to its own type (a port number, say)
			n.Style = 0
		}
		x.record(n, path)
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if isMerge(n.Content[i-1]) && n.Content[i].Kind == yaml.SequenceNode {
				for _, c := range n.Content[i].Content { // <<: [*a, *b]
					x.node(c, path)
				}
				continue
			}
			x.node(n.Content[i], x.keyPath(path, n.Content[i-1]))
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			x.node(c, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.AliasNode:
		x.record(n.Alias, path) // expanded where its anchor is
	default:
		for _, c := range n.Content {
			x.node(c, path)
		}
	}
}

// keyPath is the path of the value of key k in the mapping at path; the
// fields merged by "<<: *anchor" belong to the mapping itself.
func (x *expansion) keyPath(path string, k *yaml.Node) string {
	if isMerge(k) {
		return path
	}
	return join(path, k.Value)
}

func isMerge(k *yaml.Node) bool { return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" }

// record notes, under path, the variables of the already expanded n and of
// what it holds (n may be reached again through an alias).
func (x *expansion) record(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.ScalarNode:
		for _, v := range x.vars[n] {
			if !slices.Contains(x.env[path], v) {
				x.env[path] = append(x.env[path], v)
			}
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if isMerge(n.Content[i-1]) && n.Content[i].Kind == yaml.SequenceNode {
				for _, c := range n.Content[i].Content {
					x.record(c, path)
				}
				continue
			}
			x.record(n.Content[i], x.keyPath(path, n.Content[i-1]))
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			x.record(c, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.AliasNode:
		x.record(n.Alias, path)
	default:
		for _, c := range n.Content {
			x.record(c, path)
		}
	}
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// checkKeys reports every mapping key that has no field in t, with its line,
// and a suggestion when a known key is close.
func checkKeys(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a type error; Decode reports it with its line
		}
		fields := map[string]reflect.Type{}
		structFields(t, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, fmt.Errorf("line %d: unknown key %q in %s%s", k.Line, k.Value, orTop(path), suggest(k.Value, fields)))
				continue
			}
			checkKeys(n.Content[i+1], ft, join(path, k.Value), errs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 1; i < len(n.Content); i += 2 {
			checkKeys(n.Content[i], t.Elem(), join(path, n.Content[i-1].Value), errs)
		}
	}
}

// structFields maps the yaml keys of struct t to their types, looking
// through `yaml:",inline"` fields.
func structFields(t reflect.Type, fields map[string]reflect.Type) {
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" && opts == "inline" && f.Type.Kind() == reflect.Struct {
			structFields(f.Type, fields)
			continue
		}
		if name != "" && name != "-" {
			fields[name] = f.Type
		}
	}
}

func orTop(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest names the known key closest to k, if it is close.
func suggest(k string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if d := editDistance(k, name); d < bestD {
			best, bestD = name, d
		}
	}
	if best == "" {
		return " (known: " + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var typeErrLine = regexp.MustCompile(`^line (\d+): `)

// redactTypeError rewrites decoding errors on lines that hold an expanded
// value so that the value (possibly a secret) is not quoted.
func redactTypeError(err error, expanded map[int]bool) error {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := make([]error, 0, len(msgs))
	for _, msg := range msgs {
		msg = strings.TrimPrefix(msg, "yaml: ")
		if m := typeErrLine.FindStringSubmatch(msg); m != nil {
			if line, _ := strconv.Atoi(m[1]); expanded[line] {
				msg = fmt.Sprintf("line %d: the value expanded from the environment has the wrong type (value not shown)", line)
			}
		}
		out = append(out, errors.New(msg))
	}
	return errors.Join(out...)
}
