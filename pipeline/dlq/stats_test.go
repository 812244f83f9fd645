package dlq

import (
	"context"
	"fmt"
	"testing"
)

// TestStatsByKeyFollowsWrittenAndIsBounded: a real file DLQ counts what it
// synced by class, code, stage and sink; the keys sum to Written class by
// class, even when more distinct codes than MaxEntryKeys arrive (their
// entries go to the class's overflow key, and the map stops growing).
func TestStatsByKeyFollowsWrittenAndIsBounded(t *testing.T) {
	f := openTest(t, FileOptions{}, fileHooks{})
	ctx := context.Background()
	n := MaxEntryKeys + 50
	for i := range n {
		e := testEntry(i, testClasses[i%len(testClasses)])
		e.Error.Code = fmt.Sprintf("code_%d", i)
		if i%3 == 0 {
			e.Sinks = []string{"out", "kafka"}
		}
		if err := f.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st := f.Stats()
	if st.Total != int64(n) {
		t.Fatalf("total %d, want %d", st.Total, n)
	}
	if len(st.ByKey) > MaxEntryKeys+len(testClasses) {
		t.Fatalf("%d keys, want at most %d plus one overflow key per class", len(st.ByKey), MaxEntryKeys)
	}
	byClass := map[string]int64{}
	var overflow int64
	for k, c := range st.ByKey {
		byClass[k.Class] += c
		if k.Code == OverflowCode {
			overflow += c
		}
	}
	for class, w := range st.Written {
		if byClass[class] != w {
			t.Errorf("class %s: keys sum to %d, written %d", class, byClass[class], w)
		}
	}
	if overflow == 0 {
		t.Errorf("no entry counted under code %q with %d distinct codes", OverflowCode, n)
	}
	if got := st.ByKey[EntryKey{Class: testClasses[0], Code: "code_0", Stage: "parse", Sink: "out,kafka"}]; got != 1 {
		t.Errorf("entry 0's key counts %d, want 1 (its sinks joined)", got)
	}
}
