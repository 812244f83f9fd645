package dlq

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// stdJSON is what encoding/json writes for e, HTML escaping off.
func stdJSON(t testing.TB, e *Entry) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'})
}

// fill sets every field of v (a struct, recursively) from the values given,
// so that a field added to Entry is encoded and compared without this test
// changing. A field of a kind it does not know fails the test: teach
// appendEntry and fill about it.
func fill(t testing.TB, v reflect.Value, s string, n int64, b []byte, tm time.Time) {
	t.Helper()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch {
		case f.Type() == reflect.TypeFor[time.Time]():
			f.Set(reflect.ValueOf(tm))
		case f.Type() == reflect.TypeFor[*time.Time]():
			tt := tm.Add(-time.Duration(i) * time.Millisecond)
			f.Set(reflect.ValueOf(&tt))
		case f.Kind() == reflect.String:
			f.SetString(s + name)
		case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
			f.SetInt(n + int64(i))
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Type() == reflect.TypeFor[[]byte]():
			f.SetBytes(b)
		case f.Type() == reflect.TypeFor[[]string]():
			f.Set(reflect.ValueOf([]string{s + name, "b"}))
		case f.Kind() == reflect.Struct:
			fill(t, f, s, n, b, tm)
		default:
			t.Fatalf("field %s of kind %s: teach appendEntry and this test about it", name, f.Kind())
		}
	}
}

func TestAppendEntryMatchesJSON(t *testing.T) {
	check := func(name string, e *Entry) {
		t.Helper()
		got, ok := appendEntry(nil, e)
		if !ok {
			t.Fatalf("%s: appendEntry refused", name)
		}
		if want := stdJSON(t, e); !bytes.Equal(got, want) {
			t.Fatalf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	check("zero", &Entry{})
	check("test entry", testEntry(7, "malformed"))

	zones := []*time.Location{time.UTC, time.FixedZone("x", -(9*3600 + 30*60)), time.FixedZone("y", 14*3600)}
	for _, s := range []string{"", "a", `"\<>&'`, "tab\tnl\ncr\r\b\f\x00\x1f\x7f", "é€😀", "bad\xff\xfe", "\u2028\u2029", strings.Repeat("z", 300)} {
		for i, tm := range []time.Time{
			time.Date(2030, 1, 2, 3, 4, 5, 0, zones[0]),
			time.Date(1, 1, 1, 0, 0, 0, 1, zones[1]),
			time.Date(9999, 12, 31, 23, 59, 59, 999999999, zones[2]),
			time.Now(),
		} {
			var e Entry
			fill(t, reflect.ValueOf(&e).Elem(), s, int64(i*1000-1), []byte(s+"\x00\xff"), tm)
			check("filled "+s, &e)
		}
	}
}

func TestAppendEntryRefusesWhatJSONRefuses(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2030, 1, 1, 0, 0, 0, 0, time.FixedZone("z", 24*3600)),
	} {
		e := testEntry(1, "late")
		e.EventTime = &tm
		if _, ok := appendEntry(nil, e); ok {
			t.Errorf("appendEntry took %v", tm)
		}
		if _, err := json.Marshal(e); err == nil {
			t.Errorf("encoding/json took %v: appendEntry is stricter than it", tm)
		}
		if _, err := encodeItem(e); err == nil || !strings.Contains(err.Error(), e.ID) {
			t.Errorf("encodeItem(%v): %v, want encoding/json's error naming the entry", tm, err)
		}
	}
}

func FuzzAppendEntry(f *testing.F) {
	f.Add("x", "é\xff\u2028\"\\\x01", []byte{0, 1, 2}, int64(5), int64(1700000000123456789), 3600)
	f.Add("", "", []byte(nil), int64(0), int64(0), 0)
	f.Fuzz(func(t *testing.T, a, b string, p []byte, n, nanos int64, zone int) {
		tm := time.Unix(0, nanos).In(time.FixedZone("f", zone%(24*3600)))
		e := Entry{ID: a, Payload: b, PayloadBase64: p, PayloadSize: n, Stage: a + b, Time: tm, EventTime: &tm}
		e.Source.Path, e.Source.Partition, e.Error.Message, e.TraceID = b, int(n), a, b
		got, ok := appendEntry(nil, &e)
		var b2 bytes.Buffer
		enc := json.NewEncoder(&b2)
		enc.SetEscapeHTML(false)
		err := enc.Encode(&e)
		if !ok {
			if err == nil {
				t.Fatalf("appendEntry refused what encoding/json takes: %s", b2.Bytes())
			}
			return
		}
		if err != nil {
			t.Fatalf("appendEntry took what encoding/json refuses: %v", err)
		}
		if want := bytes.TrimSuffix(b2.Bytes(), []byte{'\n'}); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

// BenchmarkEncodeEntry compares appendEntry with encoding/json.
func BenchmarkEncodeEntry(b *testing.B) {
	e := benchEntry()
	b.Run("appendEntry", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = appendEntry(buf[:0], e)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for b.Loop() {
			buf.Reset()
			enc.Encode(e)
		}
		b.SetBytes(int64(buf.Len()))
	})
}
