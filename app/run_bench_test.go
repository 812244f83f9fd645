package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/internal/state"
	"github.com/tracepipe/tracepipe/sources/tail"
)

// BenchmarkCatchUp feeds one generated 256 MiB jsonl file through the
// job, discard sink, as a replay and as `pipeline run` catching up (from
// the start to the file read and every batch through the runner),
// alternating in one process: the MB/s of each, with nothing of a
// process's start-up or of an outside poll in the figure.
func BenchmarkCatchUp(b *testing.B) {
	dir := b.TempDir()
	in := filepath.Join(dir, "in", "big.jsonl")
	if err := os.MkdirAll(filepath.Dir(in), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(in)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := gen.Generate(f, gen.Options{Format: "jsonl", Size: 256 << 20, Seed: 3}); err != nil {
		b.Fatal(err)
	}
	f.Close()
	fi, _ := os.Stat(in)
	size := fi.Size()
	cfgOf := func(sub string) *config.Config {
		y := fmt.Sprintf("sinks: [{name: d, type: discard}]\ndlq: {file: {dir: %[1]s/dlq}}\nwindows: {metrics: []}\nrun: {state_dir: %[1]s/state}\nsources: [{name: b, type: file, file: {include: [%[2]q]}}]\n",
			filepath.Join(dir, sub), in)
		cfg, err := config.Decode([]byte(y), "b.yaml", os.LookupEnv)
		if err != nil {
			b.Fatal(err)
		}
		return cfg
	}
	b.Run("replay", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			rep, err := Run(context.Background(), cfgOf(fmt.Sprint("r", i)), Options{Paths: []string{in}, Logger: quietLogger()})
			if err != nil || rep.RecordsIn == 0 {
				b.Fatal(err)
			}
		}
	})
	b.Run("run", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			cfg := cfgOf(fmt.Sprint("u", i))
			st, err := state.Open(cfg.Run.StateDir)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			j, err := newJob(ctx, cfg, quietLogger(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			srcs, err := openSources(ctx, cfg, j, st, quietLogger())
			if err != nil {
				b.Fatal(err)
			}
			tl := srcs[0].(*tail.Source)
			go func() { // stop reading once the file is read: what is in flight is still handled
				for tl.BytesRead() < size {
					time.Sleep(time.Millisecond)
				}
				cancel()
			}()
			j.feed(ctx, context.WithoutCancel(ctx), srcs, cfg.Run.CheckpointEvery)
			if err := j.close(context.Background()); err != nil {
				b.Fatal(err)
			}
			if n := j.runner.Accounting().RecordsIn.Load(); n == 0 {
				b.Fatal("nothing read")
			}
			st.Close()
		}
	})
}
