package dlq

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDeleteKeysAfterATornTombstone: a process killed while appending to
// deleted.ids leaves a torn id with no newline; the next delete must not
// glue its first id to it (that entry would never count as deleted).
func TestDeleteKeysAfterATornTombstone(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	a, b, c := NewID(now), NewID(now), NewID(now)
	torn := c[:len(c)/2] // what the dead process got out of its last id
	if err := os.WriteFile(filepath.Join(dir, tombName), []byte(a+"\n"+torn), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKeys(context.Background(), []string{b, c}); err != nil {
		t.Fatal(err)
	}
	dead, err := readTombstones(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a, b, c} {
		if !dead[id] {
			t.Fatalf("%s is not deleted; tombstones: %v", id, dead)
		}
	}
}
