package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testredis"
)

// TestIdempotentDelivery: with dedupe on, replaying the same input again
// (as after a crash, or a DLQ replay of records a sink had taken) writes
// nothing new; the records count as delivered. For the embedded store,
// persisted across runs, and the Redis one.
func TestIdempotentDelivery(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.jsonl")
			generate(t, in, "jsonl", 3000, false)
			extra := fmt.Sprintf("  path: %s/dedupe/keys\n", dir)
			if store == "redis" {
				srv := testredis.Start(t)
				extra = fmt.Sprintf("  store: redis\n  redis: {addr: %q}\n", srv.Addr())
			}
			y := fmt.Sprintf(`
sinks:
  - name: records
    type: file
    file: {dir: %[1]s/records}
dlq: {file: {dir: %[1]s/dlq}}
windows: {metrics: []}
dedupe:
  enabled: true
%[2]s`, dir, extra)
			cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
			if err != nil {
				t.Fatal(err)
			}
			for run := 1; run <= 2; run++ {
				rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger()})
				if err != nil || !rep.Reconciled {
					t.Fatalf("run %d: %v %+v", run, err, rep)
				}
				if rep.RecordsOut != 3000 {
					t.Fatalf("run %d: %d out, want 3000 (duplicates count as delivered)", run, rep.RecordsOut)
				}
			}
			if n := len(readOutput(t, filepath.Join(dir, "records"))); n != 3000 {
				t.Fatalf("%d records written over two runs of the same input, want 3000", n)
			}
		})
	}
}
