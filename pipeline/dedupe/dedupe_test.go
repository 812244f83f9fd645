package dedupe

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func keys(lo, hi int) [][]byte {
	var ks [][]byte
	for i := lo; i < hi; i++ {
		ks = append(ks, fmt.Appendf(nil, "t:%032x:%016x", i, i))
	}
	return ks
}

func TestMemorySeenMarkTTLBoundAndRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dedupe")
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	m, err := newMemory(path, time.Hour, 100, now)
	if err != nil {
		t.Fatal(err)
	}
	seen, _ := m.Seen(ctx, keys(0, 10))
	for i, s := range seen {
		if s {
			t.Fatalf("key %d seen before any mark", i)
		}
	}
	if err := m.Mark(ctx, keys(0, 10)); err != nil {
		t.Fatal(err)
	}
	seen, _ = m.Seen(ctx, keys(5, 15))
	for i, s := range seen {
		if s != (i < 5) {
			t.Fatalf("key %d: seen %v", i+5, s)
		}
	}
	// TTL: an hour later they are forgotten.
	clock = clock.Add(time.Hour + time.Second)
	if seen, _ = m.Seen(ctx, keys(0, 1)); seen[0] {
		t.Fatal("key seen after its TTL")
	}
	// Bound: 150 new keys in a store of 100 keep the newest 100.
	if err := m.Mark(ctx, keys(1000, 1150)); err != nil {
		t.Fatal(err)
	}
	if m.Len() > 100 {
		t.Fatalf("%d keys held, bound 100", m.Len())
	}
	if m.Evicted() != 50 {
		t.Fatalf("evicted %d, want 50", m.Evicted())
	}
	seen, _ = m.Seen(ctx, keys(1049, 1051))
	if seen[0] || !seen[1] {
		t.Fatalf("after eviction: %v, want the oldest gone and the newest kept", seen)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// Restart: the marks come back from the file.
	m2, err := newMemory(path, time.Hour, 100, now)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	seen, _ = m2.Seen(ctx, keys(1050, 1150))
	for i, s := range seen {
		if !s {
			t.Fatalf("key %d forgotten across a restart", 1050+i)
		}
	}
}
