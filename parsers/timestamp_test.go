package parsers

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
)

func TestDecimalNanos(t *testing.T) {
	f := func(in string, unit int, want int64, wantOK bool) {
		t.Helper()
		got, st := decimalNanos([]byte(in), unit)
		if ok := st == tOK; ok != wantOK || (ok && got != want) {
			t.Errorf("decimalNanos(%q, %d) = %d, %v; want %d, %v", in, unit, got, st, want, wantOK)
		}
		// A valid number that fails is out of range, never "bad".
		if wantOK == false && validNumber([]byte(in)) && st != tRange {
			t.Errorf("decimalNanos(%q, %d): status %d, want tRange (a number too large for int64 ns)", in, unit, st)
		}
	}
	// auto, by magnitude
	f("1700000000", unitAuto, 1700000000000000000, true)
	f("1700000000.123456789", unitAuto, 1700000000123456789, true)
	f("1700000000.1234567899", unitAuto, 1700000000123456789, true) // truncated
	f("1700000000123", unitAuto, 1700000000123000000, true)
	f("1700000000123.456", unitAuto, 1700000000123456000, true)
	f("1700000000123456", unitAuto, 1700000000123456000, true)
	f("1700000000123456789", unitAuto, 1700000000123456789, true)
	f("99999999999", unitAuto, 0, false)                        // 1e11 s overflows int64 ns
	f("100000000000", unitAuto, 100000000000000000, true)       // 1e11: ms
	f("99999999999999", unitAuto, 0, false)                     // ms, overflows
	f("100000000000000", unitAuto, 100000000000000000, true)    // 1e14: us
	f("100000000000000000", unitAuto, 100000000000000000, true) // 1e17: ns
	f("1.7e9", unitAuto, 1700000000000000000, true)
	f("1.7E+12", unitAuto, 1700000000000000000, true)
	f("17e-1", unitAuto, 1700000000, true)
	f("0", unitAuto, 0, true)
	f("0.000", unitAuto, 0, true)
	f("-1.5", unitAuto, -1500000000, true)
	f("1e-30", unitAuto, 0, true)
	f("1e999999999999", unitAuto, 0, false)
	f("9223372036854775807", unitNS, math.MaxInt64, true)
	f("9223372036854775808", unitNS, 0, false)
	f("-9223372036854775808", unitNS, math.MinInt64, true)
	f("0000000000000000000000001", unitNS, 1, false) // leading zeros are not JSON
	// fixed units
	f("1700000000", unitMS, 1700000000000000, true)
	f("12.5", unitMS, 12500000, true)
	f("250", unitUS, 250000, true)
	f("1.0000000001", unitS, 1000000000, true)
	f("3", unitNS, 3, true)
	// not numbers
	f("", unitAuto, 0, false)
	f("+1", unitAuto, 0, false)
	f("1.", unitAuto, 0, false)
	f("abc", unitAuto, 0, false)
	f("2024-01-01", unitAuto, 0, false)
}

func TestRFC3339(t *testing.T) {
	f := func(in string, want tstatus) {
		t.Helper()
		got, st := parseRFC3339([]byte(in))
		if st != want {
			t.Fatalf("parseRFC3339(%q) status = %d, want %d", in, st, want)
		}
		if st != tOK {
			return
		}
		ref, err := time.Parse(time.RFC3339Nano, in)
		if err != nil {
			return // a case time.Parse does not read (space, leap second): checked by value below
		}
		if want := ref.UnixNano(); got != want {
			t.Errorf("parseRFC3339(%q) = %d, want %d", in, got, want)
		}
	}
	f("2024-05-14T09:21:07Z", tOK)
	f("2024-05-14T09:21:07.123456789Z", tOK)
	f("2024-05-14T09:21:07.1Z", tOK)
	f("2024-05-14T09:21:07.5+02:00", tOK)
	f("2024-05-14T09:21:07.5-07:30", tOK)
	f("2024-05-14t09:21:07z", tOK)
	f("1970-01-01T00:00:00Z", tOK)
	f("1969-12-31T23:59:59.999999999Z", tOK)
	f("2000-02-29T12:00:00Z", tOK)
	f("1900-01-01T00:00:00Z", tOK)
	f("2262-04-11T23:47:16Z", tOK)
	f("2262-04-11T23:47:17Z", tRange) // past int64 nanoseconds: a time, out of range
	f("9999-12-31T23:59:59.999999999Z", tRange)
	f("0001-01-01T00:00:00Z", tRange) // Go's zero time.Time
	f("0000-03-01T00:00:00+23:59", tRange)
	f("1677-09-21T00:12:44Z", tOK)
	f("1600-01-01T00:00:00Z", tRange)
	f("0001-02-29T00:00:00Z", tBad) // not a leap year
	f("9999-13-01T00:00:00Z", tBad)
	f("2023-02-29T00:00:00Z", tBad)
	f("1900-02-29T00:00:00Z", tBad)
	f("2024-13-01T00:00:00Z", tBad)
	f("2024-00-01T00:00:00Z", tBad)
	f("2024-01-32T00:00:00Z", tBad)
	f("2024-01-01T24:00:00Z", tBad)
	f("2024-01-01T00:60:00Z", tBad)
	f("2024-01-01T00:00:61Z", tBad)
	f("2024-01-01T00:00:00", tBad)
	f("2024-01-01T00:00:00.Z", tBad)
	f("2024-01-01T00:00:00+0200", tBad)
	f("2024-01-01T00:00:00+24:00", tBad)
	f("2024-01-01T00:00:00Zjunk", tBad)
	f("2024-01-01X00:00:00Z", tBad)
	f("2024-1-01T00:00:00Z", tBad)

	g := func(in string, want int64) {
		t.Helper()
		got, st := parseRFC3339([]byte(in))
		if st != tOK || got != want {
			t.Errorf("parseRFC3339(%q) = %d, %d; want %d", in, got, st, want)
		}
	}
	g("2024-05-14 09:21:07Z", 1715678467000000000)
	g("2024-05-14T09:21:07.1234567891234Z", 1715678467123456789)
	g("2016-12-31T23:59:60Z", 1483228800000000000) // leap second rolls over
}

func TestGoDuration(t *testing.T) {
	f := func(in string, want int64, wantOK bool) {
		t.Helper()
		got, ok := parseGoDuration([]byte(in))
		if ok != wantOK || (ok && got != want) {
			t.Errorf("parseGoDuration(%q) = %d, %v; want %d, %v", in, got, ok, want, wantOK)
		}
		if ref, err := time.ParseDuration(in); (err == nil) != wantOK || (err == nil && int64(ref) != want) {
			t.Errorf("test case %q disagrees with time.ParseDuration: %v %v", in, ref, err)
		}
	}
	f("0", 0, true)
	f("12.5ms", 12500000, true)
	f("1h2m3.5s", 3723500000000, true)
	f("300us", 300000, true)
	f("300µs", 300000, true)
	f("1.000000001s", 1000000001, true)
	f(".5s", 500000000, true)
	f("1.s", 1000000000, true)
	f("-1s", -1000000000, true)
	f("2562047h47m16.854775807s", math.MaxInt64, true)
	f("2562047h47m16.854775808s", 0, false)
	f("", 0, false)
	f("1", 0, false)
	f("s", 0, false)
	f(".s", 0, false)
	f("1d", 0, false)
	f("1.5.5s", 0, false)
}

func TestIDs(t *testing.T) {
	f := func(in string, trace bool, want string, wantOK bool) {
		t.Helper()
		// Without a view, and with one: a lowercase id is returned as its
		// view, anything else as a copy.
		for _, withView := range []bool{false, true} {
			b := &pipeline.Batch{}
			s := []byte(in)
			var view []byte
			if withView {
				view = s
			}
			got, ok := copyID(b, s, view, trace)
			if ok != wantOK || string(got) != want {
				t.Errorf("copyID(%q, %v, view %v) = %q, %v; want %q, %v", in, trace, withView, got, ok, want, wantOK)
			}
			isView := len(got) > 0 && &got[0] == &s[0]
			if lower := want == in; isView != (withView && lower && want != "") {
				t.Errorf("copyID(%q, %v, view %v): returned the view: %v", in, trace, withView, isView)
			}
		}
	}
	f("4BF92F3577B34DA6A3CE929D0E0E4736", true, "4bf92f3577b34da6a3ce929d0e0e4736", true)
	f("4bf92f3577b34da6a3ce929d0e0e4736", true, "4bf92f3577b34da6a3ce929d0e0e4736", true)
	f("a3ce929d0e0e4736", true, "a3ce929d0e0e4736", true)
	f("00F067AA0BA902B7", false, "00f067aa0ba902b7", true)
	f("", true, "", true)
	f("00000000000000000000000000000000", true, "", true)
	f("0000000000000000", false, "", true)
	f("4bf92f3577b34da6a3ce929d0e0e473", true, "", false)
	f("4bf92f3577b34da6a3ce929d0e0e4736", false, "", false)
	f("4bf92f3577b34da6a3ce929d0e0e473g", true, "", false)
	f("0x0000000000000a", false, "", false)
	f("a3ce929d0e0e473", false, "", false)
}

func TestJSONLTimeField(t *testing.T) {
	f := func(unit, value string, want int64, wantCode string) {
		t.Helper()
		opts := DefaultOptions()
		opts.TimeUnit = unit
		if err := opts.Prepare(); err != nil {
			t.Fatal(err)
		}
		line := `{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","time":` + value + `}`
		b := decodeUnit(t, &opts, []byte(line), pipeline.FormatJSONL)
		r := &b.Records[0]
		if r.Failure.Code != wantCode || (wantCode == "" && r.Time != want) {
			t.Errorf("%s %s: time %d code %q, want %d %q", unit, value, r.Time, r.Failure.Code, want, wantCode)
		}
	}
	f("auto", `1715678467`, 1715678467000000000, "")
	f("auto", `"1715678467"`, 1715678467000000000, "")
	f("auto", `1715678467.25`, 1715678467250000000, "")
	f("auto", `"1715678467123"`, 1715678467123000000, "")
	f("auto", `1715678467123456`, 1715678467123456000, "")
	f("auto", `"1715678467123456789"`, 1715678467123456789, "")
	f("auto", `"2024-05-14T09:21:07.25+00:00"`, 1715678467250000000, "")
	f("s", `1715678467`, 1715678467000000000, "")
	f("ms", `1715678467000`, 1715678467000000000, "")
	f("us", `1715678467000000`, 1715678467000000000, "")
	f("ns", `1715678467000000000`, 1715678467000000000, "")
	f("ns", `"1715678467000000000"`, 1715678467000000000, "")
	f("ms", `1715678467`, 1715678467000000, "")
	f("auto", `"yesterday"`, 0, codeBadTimestamp)
	f("auto", `"1715678467x"`, 0, codeBadTimestamp)
	f("auto", `"+1715678467"`, 0, codeBadTimestamp)
	f("auto", `true`, 0, codeWrongType)
	f("auto", `[1]`, 0, codeWrongType)
	f("auto", `null`, 0, "")
	f("s", `99999999999999999999`, 0, codeTimeOutOfRange)
	f("auto", `1.7e9`, 1700000000000000000, "")
	f("auto", strconv.Quote("1715678467.123456789"), 1715678467123456789, "")
}

func TestOptionsPrepare(t *testing.T) {
	f := func(mod func(*Options), wantErr string) {
		t.Helper()
		o := DefaultOptions()
		mod(&o)
		err := o.Prepare()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if (wantErr == "") != (got == "") || (wantErr != "" && !contains(got, wantErr)) {
			t.Errorf("Prepare: %q, want an error naming %q", got, wantErr)
		}
	}
	f(func(o *Options) {}, "")
	f(func(o *Options) { *o = Options{} }, "")
	f(func(o *Options) { o.InvalidUTF8 = "drop" }, "InvalidUTF8")
	f(func(o *Options) { o.MissingTraceID = "ignore" }, "MissingTraceID")
	f(func(o *Options) { o.TimeUnit = "min" }, "TimeUnit")
	f(func(o *Options) { o.JSONL.TraceID = []string{"a..b"} }, "JSONL.TraceID[0]")
	f(func(o *Options) { o.JSONL.Name = []string{"ok", ""} }, "JSONL.Name[1]")
	f(func(o *Options) { o.JSONL.Duration = []DurationField{{Path: "d", Unit: "h"}} }, "JSONL.Duration[0]")
	f(func(o *Options) { o.JSONL.Time = []string{"a.b.c.d.e.f.g.h.i"} }, "JSONL.Time[0]")
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestJSONLPaths(t *testing.T) {
	f := func(paths []string, line, want string) {
		t.Helper()
		opts := DefaultOptions()
		opts.JSONL.Service = paths
		opts.MissingTraceID = "keep"
		if err := opts.Prepare(); err != nil {
			t.Fatal(err)
		}
		b := decodeUnit(t, &opts, []byte(line), pipeline.FormatJSONL)
		if got := string(b.Records[0].Service); got != want {
			t.Errorf("%v on %s: service %q, want %q", paths, line, got, want)
		}
	}
	p := []string{"a.b.c", "svc"}
	f(p, `{"a.b.c":"literal","a":{"b":{"c":"nested"}}}`, "literal")
	f(p, `{"a":{"b":{"c":"nested"}},"a.b.c":"literal"}`, "literal")
	f(p, `{"a":{"b":{"c":"nested"}}}`, "nested")
	f(p, `{"a":{"b.c":"mixed"}}`, "mixed")
	f(p, `{"a.b":{"c":"mixed2"}}`, "mixed2")
	f(p, `{"svc":"second","a":{"b":{}}}`, "second")
	f(p, `{"svc":"second","a.b.c":null}`, "second")
	f(p, `{"svc":"second","a.b.c":{"x":1}}`, "second")
	f(p, `{"a":"not an object","svc":"second"}`, "second")
	f(p, `{"svc":"first","svc":"dup"}`, "first")
	f([]string{}, `{"service":"x"}`, "")
}

// TestHexWordExhaustive checks hexWord on every byte value in every position.
func TestHexWordExhaustive(t *testing.T) {
	isHex := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
	lower := func(c byte) byte {
		if c >= 'A' && c <= 'F' {
			return c + 'a' - 'A'
		}
		return c
	}
	for c := 0; c < 256; c++ { // the same byte everywhere
		w := uint64(c) * ones
		got, ok := hexWord(w)
		if ok != isHex(byte(c)) || (ok && got != uint64(lower(byte(c)))*ones) {
			t.Fatalf("8 x byte %#x: %#x %v", c, got, ok)
		}
	}
	for pos := 0; pos < 8; pos++ {
		for c := 0; c < 256; c++ {
			for _, fill := range []byte{'0', '9', 'a', 'F', 0x10, 0x19, 0xc6, 0x7f} {
				var w, want uint64
				for i := 0; i < 8; i++ {
					b := fill
					if i == pos {
						b = byte(c)
					}
					w |= uint64(b) << (8 * i)
					want |= uint64(lower(b)) << (8 * i)
				}
				got, ok := hexWord(w)
				if wantOK := isHex(byte(c)) && isHex(fill); ok != wantOK || (ok && got != want) {
					t.Fatalf("byte %#x at %d in %q: %#x %v", c, pos, fill, got, ok)
				}
			}
		}
	}
}

// TestEventTimeRange: a time outside [MinEventTime, MaxEventTime) is an
// invalid record, code time_out_of_range, in every format and on both
// jsonl paths (the single pass and the tree); RFC 3339 years 0001 and 9999
// are read as times (not bad_timestamp) and judged by the range.
func TestEventTimeRange(t *testing.T) {
	const trace = `"4bf92f3577b34da6a3ce929d0e0e4736"`
	const span = `"00f067aa0ba902b7"`
	type tc struct {
		value string // as written in the JSON
		want  int64  // when in range
		code  string
	}
	jsonl := []tc{
		{`"2026-03-01T10:00:00Z"`, time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano(), ""},
		{`"1970-01-01T00:00:00Z"`, 0, ""}, // the bound itself: no event time
		{`"2261-12-31T23:59:59.999999999Z"`, MaxEventTime - 1, ""},
		{`"2262-01-01T00:00:00Z"`, 0, codeTimeOutOfRange},
		{`"1969-12-31T23:59:59Z"`, 0, codeTimeOutOfRange},
		{`"0001-01-01T00:00:00Z"`, 0, codeTimeOutOfRange},
		{`"9999-12-31T23:59:59Z"`, 0, codeTimeOutOfRange},
		{`"9999-12-31T23:59:60Z"`, 0, codeTimeOutOfRange},
		{`9223372036854775807`, 0, codeTimeOutOfRange}, // int64 max ns: a window row in 1677 before
		{`"9223372036854775807"`, 0, codeTimeOutOfRange},
		{`9214646400000000000`, 0, codeTimeOutOfRange}, // MaxEventTime, in ns
		{`9214646399999999999`, MaxEventTime - 1, ""},
		{`1e300`, 0, codeTimeOutOfRange},
		{`-1`, 0, codeTimeOutOfRange},
		{`-1715678467`, 0, codeTimeOutOfRange},
		{`"9999-99-99T00:00:00Z"`, 0, codeBadTimestamp},
	}
	check := func(name string, b *pipeline.Batch, c tc) {
		t.Helper()
		if len(b.Records) != 1 {
			t.Fatalf("%s %s: %d records", name, c.value, len(b.Records))
		}
		r := &b.Records[0]
		switch {
		case r.Failure.Code != c.code:
			t.Errorf("%s %s: code %q (%s), want %q", name, c.value, r.Failure.Code, r.Failure.Message, c.code)
		case c.code == "" && r.Time != c.want:
			t.Errorf("%s %s: time %d, want %d", name, c.value, r.Time, c.want)
		case c.code != "" && (r.Failure.Class != pipeline.ClassInvalid || r.Time != 0):
			t.Errorf("%s %s: class %q time %d, want invalid and no time kept", name, c.value, r.Failure.Class, r.Time)
		case c.code == codeTimeOutOfRange && !strings.Contains(r.Failure.Message, "1970-01-01T00:00:00Z to 2262-01-01T00:00:00Z"):
			t.Errorf("%s %s: message %q does not say the range", name, c.value, r.Failure.Message)
		}
	}
	opts := DefaultOptions()
	if err := opts.Prepare(); err != nil {
		t.Fatal(err)
	}
	for _, single := range []bool{true, false} {
		saved := singlePass
		singlePass = single
		for _, c := range jsonl {
			line := `{"trace_id":` + trace + `,"span_id":` + span + `,"time":` + c.value + `}`
			check(fmt.Sprintf("jsonl (single pass %v)", single), decodeUnit(t, &opts, []byte(line), pipeline.FormatJSONL), c)
		}
		singlePass = saved
	}
	// OTLP: decimal strings of Unix ns, for both spans and logs.
	for _, c := range []tc{
		{`"1772359200000000000"`, 1772359200000000000, ""},
		{`"9223372036854775807"`, 0, codeTimeOutOfRange},
		{`"9214646400000000000"`, 0, codeTimeOutOfRange},
		{`"99999999999999999999"`, 0, codeTimeOutOfRange},
		{`"-5"`, 0, codeTimeOutOfRange},
	} {
		span := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":` + trace + `,"spanId":` + span +
			`,"name":"n","startTimeUnixNano":` + c.value + `,"endTimeUnixNano":` + c.value + `}]}]}]}`
		check("otlp span", decodeUnit(t, &opts, []byte(span), pipeline.FormatOTLP), c)
		log := `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":` + trace + `,"timeUnixNano":` + c.value + `,"body":{"stringValue":"x"}}]}]}]}`
		check("otlp log", decodeUnit(t, &opts, []byte(log), pipeline.FormatOTLP), c)
	}
	// Zipkin: Unix microseconds.
	for _, c := range []tc{
		{`1772359200000000`, 1772359200000000000, ""},
		{`9223372036854775`, 0, codeTimeOutOfRange},  // int64 max ns, in us
		{`92233720368547758`, 0, codeTimeOutOfRange}, // past int64 ns
		{`-1`, 0, codeTimeOutOfRange},
	} {
		z := `[{"traceId":` + trace + `,"id":` + span + `,"name":"n","timestamp":` + c.value + `,"duration":5}]`
		check("zipkin", decodeUnit(t, &opts, []byte(z), pipeline.FormatZipkin), c)
	}
}
