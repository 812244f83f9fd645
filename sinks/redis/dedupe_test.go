package redis_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/sinks/redis"
)

func newDedupe(tb testing.TB, s *testredis.Server, prefix string, ttl time.Duration) *redis.Dedupe {
	tb.Helper()
	d, err := redis.NewDedupe(config.Redis{Addr: s.Addr(), Password: config.NewSecret(s.Password()), Timeout: 5 * time.Second}, prefix, ttl)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = d.Close() })
	return d
}

func dedupeKeys(n int, tag string) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "%s-%d", tag, i)
	}
	return keys
}

func TestDedupeSeenAfterMark(t *testing.T) {
	srv := testredis.Start(t)
	ctx := t.Context()
	d := newDedupe(t, srv, "dd:", time.Hour)

	// More keys than one MGET carries; a binary key among them.
	keys := dedupeKeys(2500, "k")
	keys[7] = []byte{0, 0xff, '\n', 'x'}
	seen, err := d.Seen(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(keys) || slices.Contains(seen, true) {
		t.Fatalf("fresh keys seen: %d of %d", count(seen), len(seen))
	}

	// Mark every other key (the binary one included).
	var marked [][]byte
	for i := 1; i < len(keys); i += 2 {
		marked = append(marked, keys[i])
	}
	if err := d.Mark(ctx, marked); err != nil {
		t.Fatal(err)
	}
	seen, err = d.Seen(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range seen {
		if s != (i%2 == 1) {
			t.Fatalf("key %d (%q): seen %t", i, keys[i], s)
		}
	}
	// Marking again is harmless.
	if err := d.Mark(ctx, marked); err != nil {
		t.Fatal(err)
	}
	if s, err := d.Seen(ctx, nil); err != nil || len(s) != 0 {
		t.Fatalf("Seen(nil) = %v, %v", s, err)
	}
	if err := d.Mark(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

func count(bs []bool) (n int) {
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func TestDedupeTTL(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := t.Context()
	const ttl = time.Hour
	d := newDedupe(t, srv, "dd:", ttl)
	if err := d.Mark(ctx, [][]byte{[]byte("a")}); err != nil {
		t.Fatal(err)
	}
	left, err := c.PTTL(ctx, "dd:a").Result()
	if err != nil {
		t.Fatal(err)
	}
	if left <= 0 || left > ttl {
		t.Fatalf("PTTL %s, want in (0, %s]", left, ttl)
	}
	if v, err := c.Get(ctx, "dd:a").Result(); err != nil || v != "1" {
		t.Fatalf("stored %q, %v", v, err)
	}

	// A key marked again keeps its first expiry (SET NX): shorten it by
	// hand, mark again, and it is still short.
	if err := c.PExpire(ctx, "dd:a", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := d.Mark(ctx, [][]byte{[]byte("a")}); err != nil {
		t.Fatal(err)
	}
	if left, err := c.PTTL(ctx, "dd:a").Result(); err != nil || left > time.Minute {
		t.Fatalf("PTTL after a second Mark: %s, %v; want the first expiry kept", left, err)
	}

	// An expired key is no longer seen.
	if err := c.PExpire(ctx, "dd:a", time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	for {
		seen, err := d.Seen(ctx, [][]byte{[]byte("a")})
		if err != nil {
			t.Fatal(err)
		}
		if !seen[0] {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	// ttl 0 keeps keys.
	forever := newDedupe(t, srv, "ddf:", 0)
	if err := forever.Mark(ctx, [][]byte{[]byte("a")}); err != nil {
		t.Fatal(err)
	}
	if left, err := c.PTTL(ctx, "ddf:a").Result(); err != nil || left != -1 {
		t.Fatalf("PTTL with ttl 0: %s, %v; want no expiry", left, err)
	}
	if _, err := redis.NewDedupe(config.Redis{Addr: srv.Addr()}, "x:", -time.Second); err == nil {
		t.Fatal("NewDedupe took a negative ttl")
	}
}

func TestDedupeNamespaces(t *testing.T) {
	srv := testredis.Start(t)
	ctx := t.Context()
	a := newDedupe(t, srv, "a:", time.Hour)
	b := newDedupe(t, srv, "b:", time.Hour)
	keys := dedupeKeys(10, "k")
	if err := a.Mark(ctx, keys); err != nil {
		t.Fatal(err)
	}
	seenA, err := a.Seen(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	seenB, err := b.Seen(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if count(seenA) != len(keys) || count(seenB) != 0 {
		t.Fatalf("a sees %d, b sees %d of %d keys marked in a", count(seenA), count(seenB), len(keys))
	}
	// The stored keys are prefix+key.
	n, err := srv.Client(t).Exists(ctx, "a:k-0", "a:k-9").Result()
	if err != nil || n != 2 {
		t.Fatalf("EXISTS a:k-0 a:k-9 = %d, %v", n, err)
	}
}

func TestDedupeErrors(t *testing.T) {
	srv := testredis.Start(t)
	d := newDedupe(t, srv, "dd:", time.Hour)
	srv.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := d.Seen(ctx, dedupeKeys(3, "k")); err == nil {
		t.Fatal("Seen on a killed server succeeded")
	}
	if err := d.Mark(ctx, dedupeKeys(3, "k")); err == nil {
		t.Fatal("Mark on a killed server succeeded")
	}
}
