package dlq

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestFileStoreGetDeleteAndLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dlq")
	ctx := context.Background()
	f, err := OpenFile(FileOptions{Dir: dir, SegmentBytes: 2048, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// A second writer, or a purge, is refused while the first runs.
	if _, err := OpenFile(FileOptions{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer on one directory: %v, want ErrLocked", err)
	}
	st, err := OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 40 {
		e := &Entry{ID: NewID(timeAt(i)), Stage: "parse", Source: Source{Kind: "file", Path: "a.jsonl"}, Error: Error{Class: "malformed", Code: "json_syntax", Message: "x"}}
		e.SetPayload(fmt.Appendf(nil, `{"n":%d}`, i), 0, 0)
		ids = append(ids, e.ID)
		if err := f.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Delete(ctx, ids[:1]); !errors.Is(err, ErrLocked) {
		t.Fatalf("delete under a live writer: %v, want ErrLocked", err)
	}
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e, err := st.Get(ctx, ids[7])
	if err != nil || string(e.Payload) != `{"n":7}` {
		t.Fatalf("get: %v %+v", err, e)
	}
	if _, err := st.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	// Delete every other entry, across segments.
	var del []string
	for i := 0; i < len(ids); i += 2 {
		del = append(del, ids[i])
	}
	n, err := st.Delete(ctx, del)
	if err != nil || n != len(del) {
		t.Fatalf("deleted %d (%v), want %d", n, err, len(del))
	}
	var left []string
	if err := st.Scan(ctx, func(e *Entry) error { left = append(left, e.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(left) != len(ids)-len(del) {
		t.Fatalf("%d entries left, want %d", len(left), len(ids)-len(del))
	}
	for i, id := range left {
		if id != ids[2*i+1] {
			t.Fatalf("entry %d is %s, want %s (order kept)", i, id, ids[2*i+1])
		}
	}
	// Deleting the rest leaves no segment; a new writer can open the dir.
	if n, err := st.Delete(ctx, left); err != nil || n != len(left) {
		t.Fatalf("deleted %d (%v)", n, err)
	}
	if names, _ := segmentNames(dir); len(names) != 0 {
		t.Fatalf("segments left: %v", names)
	}
	f2, err := OpenFile(FileOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_ = f2.Close(ctx)
}

func timeAt(i int) time.Time { return time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC) }
