package dedupe_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dedupe"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// badBatch is a batch of a followed file with three malformed lines, two
// of them identical (at different offsets).
func badBatch(kind string) *pipeline.Batch {
	b := pipeline.GetBatch()
	b.Origin = &pipeline.Origin{Kind: kind, Path: "logs/app.jsonl", Key: "fp-1", Format: pipeline.FormatJSONL}
	for i, line := range []string{"[WARN backlog", `{"torn":`, "[WARN backlog"} {
		u := b.AddUnit([]byte(line), int64(100*i), int64(i+1), int64(len(line)), 0)
		b.NewRecord(u).Fail("parse", pipeline.ClassMalformed, "bad_json", "not JSON")
	}
	return b
}

// entriesOnDisk counts the entries the file DLQ in dir holds.
func entriesOnDisk(t *testing.T, dir string) int {
	t.Helper()
	s, err := dlq.OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	if err := s.Scan(context.Background(), func(*dlq.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDLQDedupeAcrossRestarts: a process dead-letters three bad lines and
// syncs; the next process (same persisted store) reads the same lines
// again after its restart: no second entry, ErrAlreadyInDLQ for each. Two
// identical bad lines at different offsets are two entries.
func TestDLQDedupeAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dlqDir, marks := filepath.Join(dir, "dlq"), filepath.Join(dir, "marks")
	life := func() (errs []error) {
		store, err := dedupe.NewMemory(marks, time.Hour, 1000)
		if err != nil {
			t.Fatal(err)
		}
		backend, err := dlq.OpenFile(dlq.FileOptions{Dir: dlqDir})
		if err != nil {
			t.Fatal(err)
		}
		d := dedupe.WrapDLQ(dlq.NewRecorder(backend, dlq.RecorderOptions{}), store)
		b := badBatch("file")
		for i := range b.Records {
			errs = append(errs, d.PutRecord(ctx, b, i, nil))
		}
		pipeline.PutBatch(b)
		if err := d.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := backend.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
		return errs
	}
	for i, err := range life() {
		if err != nil {
			t.Fatalf("first life, record %d: %v", i, err)
		}
	}
	if n := entriesOnDisk(t, dlqDir); n != 3 {
		t.Fatalf("%d entries after the first life, want 3 (identical lines at two offsets are two)", n)
	}
	for i, err := range life() {
		if !errors.Is(err, pipeline.ErrAlreadyInDLQ) {
			t.Fatalf("second life, record %d: %v, want ErrAlreadyInDLQ", i, err)
		}
	}
	if n := entriesOnDisk(t, dlqDir); n != 3 {
		t.Fatalf("%d entries after the second life, want still 3", n)
	}
}

// TestDLQDedupeLeavesReplaysAlone: a record of a DLQ replay that fails
// again makes a new entry every time.
func TestDLQDedupeLeavesReplaysAlone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := dedupe.NewMemory("", time.Hour, 1000)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := dlq.OpenFile(dlq.FileOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d := dedupe.WrapDLQ(dlq.NewRecorder(backend, dlq.RecorderOptions{}), store)
	for range 2 {
		b := badBatch("dlq")
		if err := d.PutRecord(ctx, b, 0, nil); err != nil {
			t.Fatal(err)
		}
		pipeline.PutBatch(b)
		if err := d.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := backend.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := entriesOnDisk(t, dir); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
}
