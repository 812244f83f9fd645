package windows

import (
	"strings"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline"
)

type fieldKind uint8

const (
	fieldTraceID fieldKind = iota
	fieldSpanID
	fieldParentID
	fieldService
	fieldName
	fieldSpanKind
	fieldStatus
	fieldSeverity
	fieldSignal
	fieldAttr
)

// field reads one metric field of a record. An attribute is looked up once
// per record for every metric (see extract), at index attr.
type field struct {
	kind fieldKind
	attr int
}

var (
	signalSpan = []byte("span")
	signalLog  = []byte("log")
)

// get returns the field's value; empty when the record lacks it. attrs
// holds this record's values of the attributes the metrics read.
func (f field) get(r *pipeline.Record, attrs [][]byte) []byte {
	switch f.kind {
	case fieldTraceID:
		return r.TraceID
	case fieldSpanID:
		return r.SpanID
	case fieldParentID:
		return r.ParentID
	case fieldService:
		return r.Service
	case fieldName:
		return r.Name
	case fieldSpanKind:
		return r.Kind
	case fieldStatus:
		return r.Status
	case fieldSeverity:
		return r.Severity
	case fieldSignal:
		switch r.Signal {
		case pipeline.SignalSpan:
			return signalSpan
		case pipeline.SignalLog:
			return signalLog
		}
		return nil
	}
	return attrs[f.attr]
}

// condition is one compiled where clause.
type condition struct {
	f      field
	in     map[string]struct{}
	notIn  map[string]struct{}
	exists int8 // 0: not tested, 1: must have a value, -1: must not
}

func (c *condition) holds(r *pipeline.Record, attrs [][]byte) bool {
	v := c.f.get(r, attrs)
	switch {
	case c.exists > 0:
		return len(v) > 0
	case c.exists < 0:
		return len(v) == 0
	case c.in != nil:
		_, ok := c.in[string(v)]
		return ok
	default:
		_, ok := c.notIn[string(v)]
		return !ok
	}
}

// metric is one compiled config metric.
type metric struct {
	name  string
	count field
	where []condition
	set   int // index of its group set
	slot  int // index among the set's metrics
}

// groupSet is a distinct group_by list shared by one or more metrics, so
// the group is found once per record for all of them.
type groupSet struct {
	keys    []string
	fields  []field
	metrics []int
}

// compiled is the metrics of a config, ready for the hot path.
type compiled struct {
	metrics  []metric
	sets     []groupSet
	attrKeys [][]byte // attributes read by any metric, looked up once per record
	attrLens uint64   // bit n set: some key in attrKeys is n bytes long (n < 64)
	longKeys bool     // some key in attrKeys is 64 bytes or longer
}

func compile(ms []config.Metric) *compiled {
	c := &compiled{}
	attrIndex := map[string]int{}
	fieldOf := func(path string) field {
		if k, ok := strings.CutPrefix(path, config.AttributePrefix); ok {
			i, seen := attrIndex[k]
			if !seen {
				i = len(c.attrKeys)
				attrIndex[k] = i
				c.attrKeys = append(c.attrKeys, []byte(k))
				if len(k) < 64 {
					c.attrLens |= 1 << len(k)
				} else {
					c.longKeys = true
				}
			}
			return field{kind: fieldAttr, attr: i}
		}
		for i, name := range config.MetricFields {
			if name == path {
				return field{kind: fieldKind(i)}
			}
		}
		panic("windows: field not validated by config: " + path)
	}
	setIndex := map[string]int{}
	for _, m := range ms {
		cm := metric{name: m.Name, count: fieldOf(m.Count)}
		for _, w := range m.Where {
			cond := condition{f: fieldOf(w.Field)}
			switch {
			case w.Exists != nil && *w.Exists:
				cond.exists = 1
			case w.Exists != nil:
				cond.exists = -1
			case len(w.In) > 0:
				cond.in = stringSet(w.In)
			default:
				cond.notIn = stringSet(w.NotIn)
			}
			cm.where = append(cm.where, cond)
		}
		key := strings.Join(m.GroupBy, "\x00")
		si, ok := setIndex[key]
		if !ok {
			si = len(c.sets)
			setIndex[key] = si
			gs := groupSet{keys: append([]string(nil), m.GroupBy...)}
			for _, g := range m.GroupBy {
				gs.fields = append(gs.fields, fieldOf(g))
			}
			c.sets = append(c.sets, gs)
		}
		cm.set = si
		cm.slot = len(c.sets[si].metrics)
		c.sets[si].metrics = append(c.sets[si].metrics, len(c.metrics))
		c.metrics = append(c.metrics, cm)
	}
	return c
}

func stringSet(vs []string) map[string]struct{} {
	m := make(map[string]struct{}, len(vs))
	for _, v := range vs {
		m[v] = struct{}{}
	}
	return m
}

// extract fills attrs with the record's values of the attributes the
// metrics read (first occurrence wins), in one pass over its attributes.
// A bit per key length skips most attributes without comparing bytes.
func (c *compiled) extract(r *pipeline.Record, attrs [][]byte) {
	clear(attrs)
	left := len(c.attrKeys)
	if left == 0 {
		return
	}
	for i := range r.Attrs {
		k := r.Attrs[i].Key
		if n := uint(len(k)); n == 0 || n < 64 && c.attrLens&(1<<n) == 0 || n >= 64 && !c.longKeys {
			continue
		}
		for j, want := range c.attrKeys {
			if len(k) == len(want) && k[0] == want[0] && k[len(k)-1] == want[len(k)-1] && attrs[j] == nil && string(k) == string(want) {
				attrs[j] = r.Attrs[i].Value
				if attrs[j] == nil {
					attrs[j] = empty
				}
				left--
				if left == 0 {
					return
				}
				break
			}
		}
	}
}

var empty = []byte{}
