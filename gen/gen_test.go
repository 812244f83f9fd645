package gen

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var formats = []string{FormatJSONL, FormatOTLP, FormatZipkin}

// unit is one generated line and its intended defect.
type unit struct {
	d    Defect
	line []byte
}

// run generates o and returns the output, the units as the hook saw them,
// and the stats. It checks the invariants that hold for every run.
func run(t testing.TB, o Options) ([]byte, []unit, Stats) {
	t.Helper()
	var out bytes.Buffer
	var units []unit
	st, err := generate(&out, o, func(d Defect, b []byte) {
		units = append(units, unit{d, bytes.Clone(b)})
	})
	if err != nil {
		t.Fatalf("generate(%+v): %v", o, err)
	}
	b := out.Bytes()
	if st.Bytes != int64(len(b)) {
		t.Fatalf("Stats.Bytes = %d, wrote %d", st.Bytes, len(b))
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if int64(len(lines)) != st.Units || len(units) != len(lines) {
		t.Fatalf("%d lines, %d units seen, Stats.Units = %d", len(lines), len(units), st.Units)
	}
	for i, l := range lines {
		if !bytes.Equal(l[:len(l)-1], units[i].line) || l[len(l)-1] != '\n' {
			t.Fatalf("line %d differs from the unit the hook saw", i+1)
		}
		if bytes.ContainsAny(units[i].line, "\r\n") {
			t.Fatalf("line %d holds a line break: %q", i+1, units[i].line)
		}
	}
	var sum int64
	for _, n := range st.Defects {
		sum += n
	}
	if sum != st.Units || st.Units-st.Defects[DefectNone] != st.Malformed || st.Records != st.Spans+st.Malformed {
		t.Fatalf("inconsistent stats %+v", st)
	}
	return b, units, st
}

func TestDeterministic(t *testing.T) {
	for _, format := range formats {
		o := Options{Format: format, Records: 3000, Seed: 7, Malformed: 0.05}
		a, _, _ := run(t, o)
		b, _, _ := run(t, o)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: same options, different output", format)
		}
		o.Seed = 8
		c, _, _ := run(t, o)
		if bytes.Equal(a, c) {
			t.Errorf("%s: seeds 7 and 8 give the same output", format)
		}
		o = Options{Format: format, Size: 300_000, Seed: 7, Services: 30, Users: 100, Traces: 50}
		a, _, _ = run(t, o)
		b, _, _ = run(t, o)
		if !bytes.Equal(a, b) {
			t.Errorf("%s (size): same options, different output", format)
		}
	}
}

// TestMalformedLeavesGoodUnitsAlone checks that asking for malformed units
// replaces units but does not change the good ones around them.
func TestMalformedLeavesGoodUnitsAlone(t *testing.T) {
	_, clean, _ := run(t, Options{Format: FormatJSONL, Records: 6000, Seed: 3})
	_, dirty, _ := run(t, Options{Format: FormatJSONL, Records: 5000, Seed: 3, Malformed: 0.2})
	j := 0
	for i, u := range dirty {
		if u.d != DefectNone {
			continue
		}
		for j < len(clean) && !bytes.Equal(clean[j].line, u.line) {
			j++
		}
		if j == len(clean) {
			t.Fatalf("good unit %d of the malformed run is not in the clean run", i)
		}
	}
}

var (
	hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hex16 = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

func TestWellFormedUnits(t *testing.T) {
	checks := map[string]func(t *testing.T, line []byte) int{
		FormatJSONL: checkJSONL, FormatOTLP: checkOTLP, FormatZipkin: checkZipkin,
	}
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			_, units, st := run(t, Options{Format: format, Records: 6000, Seed: 11, Malformed: 0.02})
			var spans int64
			for i, u := range units {
				if u.d != DefectNone {
					continue
				}
				if !utf8.Valid(u.line) || !json.Valid(u.line) {
					t.Fatalf("unit %d is not valid UTF-8 JSON: %q", i+1, u.line)
				}
				spans += int64(checks[format](t, u.line))
				if t.Failed() {
					t.Fatalf("unit %d: %s", i+1, u.line)
				}
			}
			if spans != st.Spans {
				t.Errorf("counted %d spans in good units, Stats.Spans = %d", spans, st.Spans)
			}
		})
	}
}

// checkJSONL checks one jsonl line and returns 1 (its span count).
func checkJSONL(t *testing.T, line []byte) int {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	str := func(k string) string {
		s, ok := m[k].(string)
		if !ok {
			t.Errorf("%q is %T, want a string", k, m[k])
		}
		return s
	}
	if _, err := time.Parse(time.RFC3339Nano, str("timestamp")); err != nil {
		t.Error(err)
	}
	if !hex32.MatchString(str("trace_id")) || !hex16.MatchString(str("span_id")) {
		t.Errorf("bad ids %v %v", m["trace_id"], m["span_id"])
	}
	if p, ok := m["parent_span_id"]; ok && !hex16.MatchString(p.(string)) {
		t.Errorf("bad parent_span_id %v", p)
	}
	for _, k := range []string{"service.name", "name", "message", "level"} {
		if str(k) == "" {
			t.Errorf("empty %q", k)
		}
	}
	kind := str("kind")
	if !slices.Contains([]string{"server", "client", "internal"}, kind) {
		t.Errorf("kind %q", kind)
	}
	if s := str("status"); !slices.Contains([]string{"ok", "error", "unset"}, s) {
		t.Errorf("status %q", s)
	}
	if d, ok := m["duration_ns"].(float64); !ok || d < 1000 || d != math.Trunc(d) {
		t.Errorf("duration_ns %v", m["duration_ns"])
	}
	if kind == "server" {
		if c, ok := m["http.status_code"].(float64); !ok || c < 200 || c > 599 {
			t.Errorf("http.status_code %v", m["http.status_code"])
		}
		if !strings.HasPrefix(str("user.id"), "user-") || str("http.route") == "" || str("http.method") == "" {
			t.Error("server span without http.route, http.method or user.id")
		}
		net, _ := m["net"].(map[string]any)
		peer, _ := net["peer"].(map[string]any)
		if _, ok := peer["port"].(float64); !ok {
			t.Errorf("net.peer.port missing: %v", m["net"])
		}
	}
	return 1
}

type otlpRequest struct {
	ResourceSpans []struct {
		Resource struct {
			Attributes []otlpKV `json:"attributes"`
		} `json:"resource"`
		ScopeSpans []struct {
			Scope struct {
				Name       string   `json:"name"`
				Version    string   `json:"version"`
				Attributes []otlpKV `json:"attributes"`
			} `json:"scope"`
			Spans []otlpSpan `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

type otlpSpan struct {
	TraceID      *string  `json:"traceId"`
	SpanID       string   `json:"spanId"`
	ParentSpanID *string  `json:"parentSpanId"`
	Name         string   `json:"name"`
	Kind         int      `json:"kind"`
	Start        string   `json:"startTimeUnixNano"`
	End          string   `json:"endTimeUnixNano"`
	Attributes   []otlpKV `json:"attributes"`
	Events       []struct {
		Time       string   `json:"timeUnixNano"`
		Name       string   `json:"name"`
		Attributes []otlpKV `json:"attributes"`
	} `json:"events"`
	Status *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
}

type otlpKV struct {
	Key   string         `json:"key"`
	Value map[string]any `json:"value"`
}

func checkOTLPAttrs(t *testing.T, kvs []otlpKV) map[string]any {
	t.Helper()
	m := map[string]any{}
	for _, kv := range kvs {
		if len(kv.Value) != 1 {
			t.Errorf("attribute %q has %d value fields", kv.Key, len(kv.Value))
		}
		for typ, v := range kv.Value {
			switch typ {
			case "stringValue":
				_, ok := v.(string)
				if !ok {
					t.Errorf("%s: stringValue %T", kv.Key, v)
				}
			case "intValue": // a decimal string in OTLP/JSON
				s, _ := v.(string)
				if _, err := strconv.ParseInt(s, 10, 64); err != nil {
					t.Errorf("%s: intValue %v", kv.Key, v)
				}
			case "doubleValue":
				if _, ok := v.(float64); !ok {
					t.Errorf("%s: doubleValue %T", kv.Key, v)
				}
			case "boolValue":
				if _, ok := v.(bool); !ok {
					t.Errorf("%s: boolValue %T", kv.Key, v)
				}
			case "arrayValue":
			default:
				t.Errorf("%s: value type %q", kv.Key, typ)
			}
			m[kv.Key] = v
		}
	}
	return m
}

// checkOTLP checks one request line and returns its span count.
func checkOTLP(t *testing.T, line []byte) int {
	t.Helper()
	var req otlpRequest
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		t.Fatal(err)
	}
	if len(req.ResourceSpans) != 1 {
		t.Fatalf("%d resourceSpans", len(req.ResourceSpans))
	}
	rs := req.ResourceSpans[0]
	res := checkOTLPAttrs(t, rs.Resource.Attributes)
	if s, _ := res["service.name"].(string); s == "" {
		t.Error("no service.name resource attribute")
	}
	n := 0
	trace := ""
	for _, ss := range rs.ScopeSpans {
		if ss.Scope.Name == "" || len(ss.Spans) == 0 {
			t.Errorf("scope %q with %d spans", ss.Scope.Name, len(ss.Spans))
		}
		for _, sp := range ss.Spans {
			n++
			if sp.TraceID == nil || !hex32.MatchString(*sp.TraceID) || !hex16.MatchString(sp.SpanID) {
				t.Errorf("bad ids %v %q", sp.TraceID, sp.SpanID)
				continue
			}
			if trace == "" {
				trace = *sp.TraceID
			} else if trace != *sp.TraceID {
				t.Error("two traces in one request")
			}
			if sp.ParentSpanID != nil && !hex16.MatchString(*sp.ParentSpanID) {
				t.Errorf("bad parentSpanId %q", *sp.ParentSpanID)
			}
			start, err1 := strconv.ParseInt(sp.Start, 10, 64)
			end, err2 := strconv.ParseInt(sp.End, 10, 64)
			if err1 != nil || err2 != nil || end <= start {
				t.Errorf("times %q %q", sp.Start, sp.End)
			}
			if sp.Name == "" || sp.Kind < 1 || sp.Kind > 3 || sp.Status == nil || sp.Status.Code < 0 || sp.Status.Code > 2 {
				t.Errorf("name %q kind %d status %v", sp.Name, sp.Kind, sp.Status)
			}
			attrs := checkOTLPAttrs(t, sp.Attributes)
			if sp.Kind == 2 {
				if _, ok := attrs["http.status_code"].(string); !ok {
					t.Error("server span without http.status_code")
				}
			}
			for _, ev := range sp.Events {
				checkOTLPAttrs(t, ev.Attributes)
			}
		}
	}
	return n
}

type zipkinSpan struct {
	TraceID       *string           `json:"traceId"`
	ID            string            `json:"id"`
	ParentID      string            `json:"parentId"`
	Kind          string            `json:"kind"`
	Name          string            `json:"name"`
	Timestamp     int64             `json:"timestamp"`
	Duration      int64             `json:"duration"`
	LocalEndpoint map[string]any    `json:"localEndpoint"`
	Remote        map[string]any    `json:"remoteEndpoint"`
	Tags          map[string]string `json:"tags"`
}

// checkZipkin checks one span array and returns its span count.
func checkZipkin(t *testing.T, line []byte) int {
	t.Helper()
	var spans []zipkinSpan
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spans); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	roots := 0
	for i, sp := range spans {
		if sp.TraceID == nil || !hex32.MatchString(*sp.TraceID) || !hex16.MatchString(sp.ID) {
			t.Errorf("bad ids %v %q", sp.TraceID, sp.ID)
			continue
		}
		if *sp.TraceID != *spans[0].TraceID {
			t.Error("two traces in one array")
		}
		switch {
		case sp.ParentID == "":
			roots++
		case !ids[sp.ParentID]:
			t.Errorf("span %d: parent %s is not earlier in the trace", i, sp.ParentID)
		}
		ids[sp.ID] = true
		if !slices.Contains([]string{"", "SERVER", "CLIENT"}, sp.Kind) || sp.Name == "" || sp.Timestamp < 1e15 || sp.Duration < 1 {
			t.Errorf("kind %q name %q timestamp %d duration %d", sp.Kind, sp.Name, sp.Timestamp, sp.Duration)
		}
		if s, _ := sp.LocalEndpoint["serviceName"].(string); s == "" {
			t.Error("no localEndpoint.serviceName")
		}
		if sp.Kind == "CLIENT" && sp.Remote["serviceName"] == nil || sp.Kind == "" && sp.Remote != nil {
			t.Errorf("kind %q with remoteEndpoint %v", sp.Kind, sp.Remote)
		}
		if sp.Kind == "SERVER" && (sp.Tags["http.status_code"] == "" || sp.Tags["user.id"] == "") {
			t.Errorf("server span tags %v", sp.Tags)
		}
	}
	if roots != 1 {
		t.Errorf("%d roots", roots)
	}
	return len(spans)
}

func TestMalformedUnits(t *testing.T) {
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			const want = 0.1
			var units []unit
			var st Stats
			for seed := uint64(1); len(units) < 20_000; seed++ {
				_, u, s := run(t, Options{Format: format, Records: 20_000, Seed: seed, Malformed: want})
				units = append(units, u...)
				st.Units += s.Units
				st.Malformed += s.Malformed
				for d, n := range s.Defects {
					st.Defects[d] += n
				}
			}
			if got := float64(st.Malformed) / float64(st.Units); math.Abs(got-want) > 0.01 {
				t.Errorf("malformed fraction %.4f of %d units, want %.2f ± 0.01", got, st.Units, want)
			}
			for d := DefectNone + 1; d < NumDefects; d++ {
				if st.Defects[d] == 0 {
					t.Errorf("no %s unit in %d", d, st.Units)
				}
			}
			for i, u := range units {
				if u.d == DefectNone {
					continue
				}
				if err := checkDefect(format, u); err != nil {
					t.Fatalf("unit %d (%s): %v: %q", i+1, u.d, err, u.line)
				}
			}
		})
	}
}

// checkDefect reports whether a malformed unit is broken the way it should be.
func checkDefect(format string, u unit) error {
	valid := json.Valid(u.line)
	switch u.d {
	case DefectTruncated, DefectControlChar, DefectBadNumber, DefectJunk:
		if valid {
			return errors.New("valid JSON")
		}
		if !utf8.Valid(u.line) {
			return errors.New("invalid UTF-8")
		}
	case DefectInvalidUTF8:
		if utf8.Valid(u.line) {
			return errors.New("valid UTF-8")
		}
	case DefectBareValue:
		if !valid || u.line[0] == '{' || u.line[0] == '[' {
			return errors.New("not a bare JSON scalar")
		}
	case DefectMissingTraceID:
		if !valid {
			return errors.New("invalid JSON")
		}
		var tid any
		n := 0
		switch format {
		case FormatJSONL:
			var m map[string]any
			json.Unmarshal(u.line, &m)
			tid, n = m["trace_id"], 1
		case FormatOTLP:
			var req otlpRequest
			json.Unmarshal(u.line, &req)
			for _, ss := range req.ResourceSpans[0].ScopeSpans {
				for _, sp := range ss.Spans {
					n++
					if sp.TraceID != nil {
						tid = *sp.TraceID
					}
				}
			}
		case FormatZipkin:
			var spans []zipkinSpan
			json.Unmarshal(u.line, &spans)
			n = len(spans)
			if n > 0 && spans[0].TraceID != nil {
				tid = *spans[0].TraceID
			}
		}
		if n != 1 || (tid != nil && tid != "") {
			return fmt.Errorf("%d spans, trace id %v", n, tid)
		}
	default:
		return fmt.Errorf("unknown defect %d", u.d)
	}
	return nil
}

func TestStopRules(t *testing.T) {
	for _, format := range formats {
		for _, n := range []int64{1, 2, 7, 33, 1000} {
			for _, bad := range []float64{0, 0.3} {
				_, _, st := run(t, Options{Format: format, Records: n, Seed: uint64(n), Malformed: bad})
				if st.Records != n {
					t.Errorf("%s: Records %d (malformed %v): got %d", format, n, bad, st.Records)
				}
				if format == FormatJSONL && st.Units != n {
					t.Errorf("jsonl: Records %d wrote %d lines", n, st.Units)
				}
			}
		}
		for _, size := range []int64{1, 5000, 1 << 20, 3<<20 + 17} {
			b, units, st := run(t, Options{Format: format, Size: size, Seed: 5, Malformed: 0.05})
			last := int64(len(units[len(units)-1].line) + 1)
			if st.Bytes < size || st.Bytes-last >= size || st.Bytes != int64(len(b)) {
				t.Errorf("%s: Size %d: wrote %d bytes, last unit %d", format, size, st.Bytes, last)
			}
		}
	}
}

func TestOptionsShapeOutput(t *testing.T) {
	type rec struct {
		Timestamp time.Time `json:"timestamp"`
		Service   string    `json:"service.name"`
		TraceID   string    `json:"trace_id"`
		User      string    `json:"user.id"`
	}
	read := func(o Options) []rec {
		b, _, _ := run(t, o)
		var rs []rec
		for l := range bytes.Lines(b) {
			var r rec
			if err := json.Unmarshal(l, &r); err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	start := time.Date(2030, 5, 6, 7, 8, 9, 10, time.UTC)
	rs := read(Options{Format: FormatJSONL, Records: 20_000, Seed: 1, Services: 45, Users: 1000, Traces: 300, Start: start})
	svcs, traces, users := map[string]bool{}, map[string]bool{}, map[string]int{}
	late := 0
	var maxTime time.Time
	for _, r := range rs {
		svcs[r.Service] = true
		traces[r.TraceID] = true
		if r.User != "" {
			users[r.User]++
		}
		if r.Timestamp.Before(maxTime.Add(-time.Second)) {
			late++
			if r.Timestamp.Before(maxTime.Add(-6 * time.Second)) {
				t.Errorf("record %s is more than 6 s behind %s", r.Timestamp, maxTime)
			}
		}
		if r.Timestamp.After(maxTime) {
			maxTime = r.Timestamp
		}
	}
	if len(svcs) != 45 || !svcs["cart-2"] || !svcs["checkout-3"] {
		t.Errorf("%d services, want 45 with derived names: %v", len(svcs), svcs)
	}
	if len(traces) != 300 {
		t.Errorf("%d trace ids, want 300", len(traces))
	}
	if len(users) > 1000 || len(users) < 300 {
		t.Errorf("%d distinct users from 1000", len(users))
	}
	top := slices.Max(slices.Collect(func(yield func(int) bool) {
		for _, n := range users {
			yield(n)
		}
	}))
	if total := len(rs) / 3; top < total/50 {
		t.Errorf("top user has %d of ~%d server spans: not skewed", top, total)
	}
	if !rs[0].Timestamp.Equal(start) {
		t.Errorf("first record at %s, want %s", rs[0].Timestamp, start)
	}
	if late < len(rs)/1000 || late > len(rs)/30 {
		t.Errorf("%d of %d records are over 1 s behind the latest", late, len(rs))
	}
	if span := maxTime.Sub(start); span < 12*time.Second || span > 32*time.Second {
		t.Errorf("%d records span %s of event time, want about 1 ms each", len(rs), span)
	}

	// Defaults: 12 services, every trace new.
	rs = read(Options{Format: FormatJSONL, Records: 10_000, Seed: 2})
	clear(svcs)
	clear(traces)
	for _, r := range rs {
		svcs[r.Service] = true
		traces[r.TraceID] = true
	}
	if len(svcs) != DefaultServices || len(traces) < len(rs)/8 {
		t.Errorf("defaults: %d services, %d traces in %d records", len(svcs), len(traces), len(rs))
	}
}

// TestFormatsAgree checks that the formats carry the same spans for the same
// Options: ids, parents, services and times.
func TestFormatsAgree(t *testing.T) {
	type key struct{ trace, span, parent, service, name string }
	type val struct{ startUS, durUS int64 }
	collect := func(format string) map[key]val {
		b, _, _ := run(t, Options{Format: format, Records: 3000, Seed: 9, Services: 30})
		m := map[key]val{}
		for l := range bytes.Lines(b) {
			switch format {
			case FormatJSONL:
				var r struct {
					Timestamp time.Time `json:"timestamp"`
					Trace     string    `json:"trace_id"`
					Span      string    `json:"span_id"`
					Parent    string    `json:"parent_span_id"`
					Service   string    `json:"service.name"`
					Name      string    `json:"name"`
					Dur       int64     `json:"duration_ns"`
				}
				json.Unmarshal(l, &r)
				m[key{r.Trace, r.Span, r.Parent, r.Service, strings.ToLower(r.Name)}] = val{r.Timestamp.UnixNano() / 1000, max(r.Dur/1000, 1)}
			case FormatOTLP:
				var req otlpRequest
				json.Unmarshal(l, &req)
				rs := req.ResourceSpans[0]
				svc := checkOTLPAttrs(t, rs.Resource.Attributes)["service.name"].(string)
				for _, ss := range rs.ScopeSpans {
					for _, sp := range ss.Spans {
						start, _ := strconv.ParseInt(sp.Start, 10, 64)
						end, _ := strconv.ParseInt(sp.End, 10, 64)
						var parent string
						if sp.ParentSpanID != nil {
							parent = *sp.ParentSpanID
						}
						m[key{*sp.TraceID, sp.SpanID, parent, svc, strings.ToLower(sp.Name)}] = val{start / 1000, max((end-start)/1000, 1)}
					}
				}
			case FormatZipkin:
				var spans []zipkinSpan
				json.Unmarshal(l, &spans)
				for _, sp := range spans {
					m[key{*sp.TraceID, sp.ID, sp.ParentID, sp.LocalEndpoint["serviceName"].(string), strings.ToLower(sp.Name)}] = val{sp.Timestamp, sp.Duration}
				}
			}
		}
		return m
	}
	want := collect(FormatJSONL)
	if len(want) != 3000 {
		t.Fatalf("jsonl: %d distinct spans, want 3000", len(want))
	}
	for _, format := range []string{FormatOTLP, FormatZipkin} {
		got := collect(format)
		if len(got) != len(want) {
			t.Errorf("%s: %d spans, jsonl %d", format, len(got), len(want))
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Fatalf("%s: span %+v is %+v (found %v), jsonl has %+v", format, k, g, ok, v)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	f := func(o Options, wantErr string) {
		t.Helper()
		err := o.Validate()
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("Validate(%+v) = %v, want %q", o, err, wantErr)
		}
		if _, gerr := Generate(io.Discard, o); (gerr == nil) != (err == nil) {
			t.Errorf("Generate(%+v) = %v, Validate = %v", o, gerr, err)
		}
	}
	f(Options{Format: "jsonl", Records: 1}, "")
	f(Options{Format: "otlp", Size: 10, Malformed: 1, Services: 1, Users: 1, Traces: 1}, "")
	f(Options{Format: "zipkin", Records: 1, Start: time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)}, "")
	f(Options{Format: "csv", Records: 1}, "unknown format")
	f(Options{Format: "", Records: 1}, "unknown format")
	f(Options{Format: "jsonl"}, "exactly one")
	f(Options{Format: "jsonl", Size: 1, Records: 1}, "exactly one")
	f(Options{Format: "jsonl", Size: -1, Records: 1}, "negative")
	f(Options{Format: "jsonl", Records: 1, Malformed: 1.01}, "malformed")
	f(Options{Format: "jsonl", Records: 1, Malformed: math.NaN()}, "malformed")
	f(Options{Format: "jsonl", Records: 1, Services: -1}, "services")
	f(Options{Format: "jsonl", Records: 1, Services: MaxServices + 1}, "services")
	f(Options{Format: "jsonl", Records: 1, Users: -1}, "users")
	f(Options{Format: "jsonl", Records: 1, Traces: -1}, "traces")
	f(Options{Format: "jsonl", Records: 1, Start: time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)}, "start")
	f(Options{Format: "jsonl", Records: 1, Start: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)}, "start")
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, errors.New("disk full")
	}
	w.n--
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	st, err := Generate(&failWriter{n: 1}, Options{Format: FormatJSONL, Size: 10 << 20})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want disk full", err)
	}
	if st.Bytes < flushSize || st.Bytes >= 2*flushSize+64<<10 {
		t.Errorf("Stats.Bytes = %d after one accepted write", st.Bytes)
	}
}

func TestDefectString(t *testing.T) {
	if DefectMissingTraceID.String() != "missing_trace_id" || Defect(200).String() != "defect(200)" {
		t.Error(DefectMissingTraceID.String(), Defect(200).String())
	}
}

// BenchmarkGenerate measures throughput per format, writing to io.Discard.
func BenchmarkGenerate(b *testing.B) {
	const size = 32 << 20
	for _, format := range formats {
		b.Run(format, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(size)
			for i := range b.N {
				if _, err := Generate(io.Discard, Options{Format: format, Size: size, Seed: uint64(i), Malformed: 0.01}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBaselineJSONMarshal is the naive way: one encoding/json map per
// jsonl record of about the same shape, for the ratio with BenchmarkGenerate.
func BenchmarkBaselineJSONMarshal(b *testing.B) {
	b.ReportAllocs()
	var total int64
	for i := range b.N {
		m := map[string]any{
			"timestamp": time.Unix(1767225600, int64(i)).UTC().Format(time.RFC3339Nano), "level": "info",
			"service.name": "checkout", "trace_id": fmt.Sprintf("%016x%016x", i, i*7), "span_id": fmt.Sprintf("%016x", i*3),
			"parent_span_id": fmt.Sprintf("%016x", i*5), "name": "GET /api/v1/checkouts/{id}", "kind": "server",
			"status": "ok", "duration_ns": 1234567 + i, "message": fmt.Sprintf("GET /api/v1/checkouts/%d → 200 in 1.234 ms", i),
			"http.method": "GET", "http.route": "/api/v1/checkouts/{id}", "http.target": fmt.Sprintf("/api/v1/checkouts/%d", i),
			"http.status_code": 200, "user.id": fmt.Sprintf("user-%d", i%5000),
			"net":       map[string]any{"peer": map[string]any{"name": "frontend", "port": 40000 + i%20000}},
			"host.name": "checkout-d0d2e91c0-9mvl5", "service.version": "2.14.4", "deployment.environment": "production",
			"sampled": true, "thread.id": i % 256, "cpu.ms": 0.318,
		}
		line, err := json.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		total += int64(len(line)) + 1
	}
	b.SetBytes(total / int64(b.N))
}

// TestGoldenDigest pins the output: the same Options must give the same bytes
// on every platform and Go release. If a change to the output is intended,
// update the digests (and regenerate any golden files built from gen output).
func TestGoldenDigest(t *testing.T) {
	want := map[string]string{
		FormatJSONL:  "6a1198ca8366f50ebef297d2a307909560cb3ea13b4aac1dab0e419235b8046d",
		FormatOTLP:   "c7a9a517ba9ae0a1ed46eb9c7e9db2d75eacb9df162b03ce6abbcc73651b2700",
		FormatZipkin: "2cb554fe1815dac85701b3482d57ca6a353b6071b0b03e1bb178852df063a844",
	}
	for _, format := range formats {
		h := sha256.New()
		o := Options{Format: format, Records: 5000, Seed: 42, Malformed: 0.05, Services: 25, Users: 1000}
		if _, err := Generate(h, o); err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want[format] {
			t.Errorf("%s: sha256 %s, want %s", format, got, want[format])
		}
	}
}
