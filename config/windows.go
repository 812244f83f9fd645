package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// MetricFields are the record fields a metric may count, group by or test;
// any other field is attributes.KEY.
var MetricFields = []string{"trace_id", "span_id", "parent_span_id", "service", "name", "kind", "status", "severity", "signal"}

// AttributePrefix starts a metric field that names an attribute.
const AttributePrefix = "attributes."

func (w *Windows) applyDefaults() {
	if w.Size == 0 {
		w.Size = time.Minute
	}
	if w.AllowedLateness == 0 {
		w.AllowedLateness = 30 * time.Second
	}
	setInt(&w.Precision, 14)
	setStr(&w.LatePolicy, "update")
	if w.KeepClosedFor == 0 {
		w.KeepClosedFor = 10 * time.Minute
	}
	if w.UpdateEvery == 0 {
		w.UpdateEvery = time.Second
	}
	setInt(&w.MaxOpenWindows, 64)
	setInt(&w.MaxGroups, 10000)
	setSize(&w.MaxMemory, 256<<20)
	if w.MaxFuture == 0 {
		w.MaxFuture = 10 * time.Minute
	}
	if w.Instance == "" {
		w.InstanceFromHost = true
		w.Instance, _ = os.Hostname()
		setStr(&w.Instance, "local")
	}
	setStr(&w.Sink.Type, "file")
	if w.Sink.Type == "file" && w.Sink.File == nil {
		w.Sink.File = &WindowsFile{}
	}
	if f := w.Sink.File; f != nil {
		setStr(&f.Dir, "out/windows")
	}
	if r := w.Sink.Redis; r != nil {
		r.Redis.applyDefaults()
		setStr(&r.KeyPrefix, "tracepipe:")
	}
}

func (r *Redis) applyDefaults() {
	setStr(&r.Addr, "127.0.0.1:6379")
	if r.Timeout == 0 {
		r.Timeout = 5 * time.Second
	}
}

// ValidMetricField reports whether f names a record field or an attribute.
func ValidMetricField(f string) bool {
	if k, ok := strings.CutPrefix(f, AttributePrefix); ok {
		return k != ""
	}
	for _, m := range MetricFields {
		if f == m {
			return true
		}
	}
	return false
}

func (w *Windows) validate(v *check) {
	v.positive("windows.size", int64(w.Size))
	if w.Size > 0 && (w.Size%time.Second != 0 || (24*time.Hour)%w.Size != 0) {
		v.bad("windows.size: %s must be whole seconds and divide a day evenly (windows align to midnight UTC)", v.val("windows.size", w.Size))
	}
	if w.AllowedLateness < 0 {
		v.bad("windows.allowed_lateness: must not be negative")
	}
	if w.Precision < 4 || w.Precision > 18 {
		v.bad("windows.precision: %d is outside 4..18", v.val("windows.precision", w.Precision))
	}
	v.oneOf("windows.late_policy", w.LatePolicy, "dlq", "drop", "update")
	v.positive("windows.keep_closed_for", int64(w.KeepClosedFor))
	v.positive("windows.update_every", int64(w.UpdateEvery))
	v.positive("windows.max_open_windows", int64(w.MaxOpenWindows))
	atMost(v, "windows.max_open_windows", w.MaxOpenWindows, maxOpenWindows)
	v.positive("windows.max_groups", int64(w.MaxGroups))
	atMost(v, "windows.max_groups", w.MaxGroups, maxGroups)
	if w.MaxMemory < minWindowMemory {
		v.bad("windows.max_memory: %s is below %s (the state of one busy window)", v.val("windows.max_memory", w.MaxMemory), ByteSize(minWindowMemory))
	}
	atMost(v, "windows.max_memory", w.MaxMemory, maxWindowMemory)
	v.positive("windows.max_future", int64(w.MaxFuture))
	if strings.ContainsAny(w.Instance, "\t\n") {
		v.bad("windows.instance: must not hold tabs or newlines")
	}
	names := map[string]bool{}
	for i, m := range w.Metrics {
		key := fmt.Sprintf("windows.metrics[%d]", i)
		switch {
		case m.Name == "":
			v.bad("%s.name: must be set", key)
		case strings.ContainsAny(m.Name, ": \t\n*?[]"):
			v.bad("%s.name: %q must not hold spaces, ':' or glob characters (it is part of store keys)", key, v.val(key+".name", m.Name))
		case names[m.Name]:
			v.bad("%s.name: %q is used twice", key, v.val(key+".name", m.Name))
		}
		names[m.Name] = true
		field := func(k, f string) {
			if !ValidMetricField(f) {
				v.bad("%s: %q is not a record field (%s) or attributes.KEY", k, v.val(k, f), strings.Join(MetricFields, ", "))
			}
		}
		field(key+".count", m.Count)
		seen := map[string]bool{}
		for j, g := range m.GroupBy {
			k := fmt.Sprintf("%s.group_by[%d]", key, j)
			field(k, g)
			if seen[g] {
				v.bad("%s: %q is listed twice", k, v.val(k, g))
			}
			seen[g] = true
		}
		for j, c := range m.Where {
			ck := fmt.Sprintf("%s.where[%d]", key, j)
			field(ck+".field", c.Field)
			n := 0
			if len(c.In) > 0 {
				n++
			}
			if len(c.NotIn) > 0 {
				n++
			}
			if c.Exists != nil {
				n++
			}
			if n != 1 {
				v.bad("%s: exactly one of in, not_in, exists must be set", ck)
			}
		}
	}
	switch w.Sink.Type {
	case "file":
		if w.Sink.File == nil || w.Sink.File.Dir == "" {
			v.bad("windows.sink.file.dir: must be set for a file windows sink")
		}
		if w.Sink.Redis != nil {
			v.bad("windows.sink.redis: only for type redis")
		}
	case "redis":
		if w.Sink.Redis == nil {
			v.bad("windows.sink.redis: must be set for type redis")
		} else {
			w.Sink.Redis.Redis.validate("windows.sink.redis", v)
			if w.Sink.Redis.TTL < 0 {
				v.bad("windows.sink.redis.ttl: must not be negative")
			}
		}
		if w.Sink.File != nil {
			v.bad("windows.sink.file: only for type file")
		}
	default:
		v.bad("windows.sink.type: %q is not one of file, redis", v.val("windows.sink.type", w.Sink.Type))
	}
}

func (r *Redis) validate(key string, v *check) {
	if r.Addr == "" {
		v.bad("%s.addr: must be set", key)
	}
	if r.DB < 0 {
		v.bad("%s.db: must not be negative", key)
	}
	v.positive(key+".timeout", int64(r.Timeout))
}
