package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestOncePerIntervalWithCounts: 10,000 occurrences of one failure over
// 25 s give the first line, one line per 10 s interval with the count
// since the previous line, and a last one at Flush; every occurrence is
// counted once.
func TestOncePerIntervalWithCounts(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), 10*time.Second)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return clock }
	for i := range 10000 {
		clock = clock.Add(2500 * time.Microsecond) // 25 s in all
		l.Error("dlq_refused", "DLQ refused an entry", "n", i)
		if i%100 == 0 {
			l.Warn("other", "another failure")
		}
	}
	l.Flush()
	l.Flush() // nothing left: no line
	var refused []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if strings.Contains(line, "DLQ refused") {
			refused = append(refused, line)
		}
	}
	// first, at 10 s, at 20 s, Flush.
	if len(refused) != 4 || strings.Contains(refused[0], "repeated") {
		t.Fatalf("%d lines:\n%s", len(refused), strings.Join(refused, "\n"))
	}
	if !strings.Contains(refused[3], "total=10000") || !strings.Contains(refused[3], "n=9999") {
		t.Fatalf("the last line does not count every occurrence: %s", refused[3])
	}
	var sum int
	for _, line := range refused[1:] {
		var n int
		i := strings.Index(line, "repeated=")
		if i < 0 {
			t.Fatalf("no count: %s", line)
		}
		if _, err := fmt.Sscan(line[i+len("repeated="):], &n); err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	if sum != 9999 {
		t.Fatalf("repeated counts add up to %d, want 9999 (all but the first)", sum)
	}
	if c := strings.Count(buf.String(), "another failure"); c != 4 {
		t.Fatalf("the other key logged %d times, want 4 (keys are apart)", c)
	}
}
