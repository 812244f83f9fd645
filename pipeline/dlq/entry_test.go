package dlq

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// resetIDState gives a test a fresh NewID state and leaves a fresh one.
func resetIDState(t *testing.T) {
	t.Helper()
	reset := func() {
		idState.Lock()
		idState.started, idState.lastMS, idState.seq = false, 0, 0
		idState.Unlock()
	}
	reset()
	t.Cleanup(reset)
}

// idMillis decodes the time part of an id (its first 10 characters).
func idMillis(t *testing.T, id string) int64 {
	t.Helper()
	var ms int64
	for i := 0; i < 10; i++ {
		v := strings.IndexByte(crockford, id[i])
		if v < 0 {
			t.Fatalf("id %q: bad character %q", id, id[i])
		}
		ms = ms<<5 | int64(v)
	}
	return ms
}

func TestNewIDMonotonicWithinOneMillisecond(t *testing.T) {
	resetIDState(t)
	at := time.Date(2030, 1, 2, 3, 4, 5, 6e6, time.UTC)
	const n = 100_000
	prev := ""
	for i := range n {
		id := NewID(at)
		if len(id) != 26 || !validID(id) {
			t.Fatalf("call %d: id %q is not a 26-character ULID", i, id)
		}
		if id <= prev {
			t.Fatalf("call %d: id %q does not sort after %q", i, id, prev)
		}
		if got := idMillis(t, id); got != at.UnixMilli() {
			t.Fatalf("call %d: id %q carries %d ms, want %d", i, id, got, at.UnixMilli())
		}
		prev = id
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	resetIDState(t)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var ids []string
	for _, d := range []time.Duration{0, time.Millisecond, 2 * time.Millisecond, time.Second, time.Hour, 24 * 365 * time.Hour} {
		id := NewID(t0.Add(d))
		if got, want := idMillis(t, id), t0.Add(d).UnixMilli(); got != want {
			t.Fatalf("id %q carries %d ms, want %d", id, got, want)
		}
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("ids out of time order: %q then %q", ids[i-1], ids[i])
		}
	}
}

func TestNewIDClockStepsBack(t *testing.T) {
	resetIDState(t)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	a := NewID(t0)
	b := NewID(t0.Add(-time.Second))
	if b <= a || idMillis(t, b) != t0.UnixMilli() {
		t.Fatalf("after a step back: %q then %q; want the second later, at the first's millisecond", a, b)
	}
}

func TestNewIDCarriesIntoUpperRandomBits(t *testing.T) {
	resetIDState(t)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	NewID(t0)
	idState.Lock()
	idState.seq = 1<<40 - 2
	idState.Unlock()
	a, b, c := NewID(t0), NewID(t0), NewID(t0)
	if !(a < b && b < c) {
		t.Fatalf("ids around the 40-bit counter overflow do not increase: %q %q %q", a, b, c)
	}
}

func TestNewIDTimeBefore1970DoesNotStickToTheFuture(t *testing.T) {
	resetIDState(t)
	zero := NewID(time.Time{})
	if idMillis(t, zero) != 0 {
		t.Fatalf("id for the zero time %q carries %d ms, want 0", zero, idMillis(t, zero))
	}
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if id := NewID(t0); idMillis(t, id) != t0.UnixMilli() {
		t.Fatalf("id after a zero time carries %d ms, want %d", idMillis(t, id), t0.UnixMilli())
	}
	// Two processes' first ids in the same millisecond differ in their
	// random part, even for the zero time.
	resetIDState(t)
	a := NewID(time.Time{})
	resetIDState(t)
	b := NewID(time.Time{})
	if a == b {
		t.Fatalf("two fresh states gave the same id %q", a)
	}
}

func TestSetPayload(t *testing.T) {
	sum := func(p []byte) string { s := sha256.Sum256(p); return hex.EncodeToString(s[:]) }
	f := func(name string, p []byte, size int64, keep int, wantText string, wantBin []byte, wantSize int64, wantTrunc bool) {
		t.Helper()
		e := validEntry()
		e.SetPayload(p, size, keep)
		if e.Payload != wantText || string(e.PayloadBase64) != string(wantBin) || (wantBin == nil) != (e.PayloadBase64 == nil) {
			t.Errorf("%s: payload %q base64 %q, want %q and %q", name, e.Payload, e.PayloadBase64, wantText, wantBin)
		}
		if e.PayloadSize != wantSize || e.Truncated != wantTrunc {
			t.Errorf("%s: size %d truncated %t, want %d %t", name, e.PayloadSize, e.Truncated, wantSize, wantTrunc)
		}
		if e.PayloadSHA256 != sum(p) {
			t.Errorf("%s: sha256 %s, want the hash of the bytes given %s", name, e.PayloadSHA256, sum(p))
		}
		if err := e.Validate(); err != nil {
			t.Errorf("%s: payload fields do not validate: %v", name, err)
		}
		if got := e.PayloadBytes(); string(got) != wantText+string(wantBin) {
			t.Errorf("%s: PayloadBytes %q", name, got)
		}
	}
	f("empty", nil, 0, 0, "", nil, 0, false)
	f("text", []byte(`{"a":1}`), 0, 0, `{"a":1}`, nil, 7, false)
	f("size below len is raised", []byte("abc"), 1, 0, "abc", nil, 3, false)
	f("invalid utf-8", []byte("a\xffb"), 0, 0, "", []byte("a\xffb"), 3, false)
	f("keep cuts", []byte("abcdefgh"), 0, 3, "abc", nil, 8, true)
	f("keep larger than payload", []byte("abc"), 0, 10, "abc", nil, 3, false)
	f("caller already cut", []byte("abc"), 100, 0, "abc", nil, 100, true)
	// é is 2 bytes, € 3.
	f("cut inside a rune backs off", []byte("aé€b"), 0, 4, "aé", nil, 7, true)
	f("cut on a rune boundary", []byte("aé€b"), 0, 3, "aé", nil, 7, true)
	f("invalid and cut stays binary", []byte("\xff\xfeabc"), 0, 3, "", []byte("\xff\xfea"), 5, true)
	f("lone continuation bytes stay binary", []byte("a\x80\x80\x80\x80"), 0, 3, "", []byte("a\x80\x80"), 5, true)
}

func TestSetPayloadCopies(t *testing.T) {
	p := []byte("a\xffb")
	var e Entry
	e.SetPayload(p, 0, 0)
	p[0] = 'X'
	if e.PayloadBase64[0] != 'a' {
		t.Fatal("SetPayload kept the caller's slice")
	}
}

func validEntry() *Entry {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	e := &Entry{
		Version: SchemaVersion, ID: NewID(now), Time: now, Stage: "parse",
		Source: Source{Kind: "file", Path: "/x"},
		Error:  Error{Class: "malformed", Code: "json", Message: "bad"},
	}
	e.SetPayload([]byte("{"), 0, 0)
	return e
}

func TestValidate(t *testing.T) {
	if err := validEntry().Validate(); err != nil {
		t.Fatalf("valid entry: %v", err)
	}
	f := func(want string, change func(e *Entry)) {
		t.Helper()
		e := validEntry()
		change(e)
		err := e.Validate()
		if err == nil || !errors.Is(err, ErrInvalidEntry) || !strings.Contains(err.Error(), want) {
			t.Errorf("want an ErrInvalidEntry naming %q, got %v", want, err)
		}
	}
	f("missing id", func(e *Entry) { e.ID = "" })
	f("not a 26-character ULID", func(e *Entry) { e.ID = "abc" })
	f("not a 26-character ULID", func(e *Entry) { e.ID = "8ZZZZZZZZZZZZZZZZZZZZZZZZZ" })
	f("missing time", func(e *Entry) { e.Time = time.Time{} })
	f("missing source.kind", func(e *Entry) { e.Source.Kind = "" })
	f("missing stage", func(e *Entry) { e.Stage = "" })
	f("missing error.class", func(e *Entry) { e.Error.Class = "" })
	f("version 3", func(e *Entry) { e.Version = SchemaVersion + 1 })
	f("both payload", func(e *Entry) { e.PayloadBase64 = []byte{0xff} })
	f("payload_size 0 is less", func(e *Entry) { e.PayloadSize = 0 })
	f("truncated is true", func(e *Entry) { e.Truncated = true })
	f("truncated is false", func(e *Entry) { e.PayloadSize = 10 })
	f("payload_sha256", func(e *Entry) { e.PayloadSHA256 = "XYZ" })
	f("attempts -1", func(e *Entry) { e.Attempts = -1 })
	f("replay_count -1", func(e *Entry) { e.ReplayCount = -1 })
	// Every problem is listed.
	f("missing stage; missing error.class", func(e *Entry) { e.Stage, e.Error.Class = "", "" })

	e := validEntry()
	e.Version = 0
	if err := e.Validate(); err != nil {
		t.Errorf("version 0 (set by the backend) should validate: %v", err)
	}
}
