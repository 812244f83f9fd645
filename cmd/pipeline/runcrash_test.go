package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// crashConfig is runConfig plus a window metric into dir/windows and, when
// dedupe is on, the embedded dedupe store in dir/dedupe.
func crashConfig(t *testing.T, dir string, dedupe bool) string {
	extra := fmt.Sprintf(`windows:
  metrics: [{name: traces_per_service, count: trace_id, group_by: [service]}]
  sink: {type: file, file: {dir: %q}}
`, filepath.Join(dir, "windows"))
	if dedupe {
		extra += fmt.Sprintf("dedupe: {enabled: true, path: %q}\n", filepath.Join(dir, "dedupe", "keys"))
	}
	if os.Getenv("TRACEPIPE_DEBUG_KILLS") != "" {
		extra += "log: {level: debug}\n"
	}
	return runConfig(t, dir, extra)
}

// dlqPayloads returns the payloads of the file DLQ in dir, sorted.
func dlqPayloads(t *testing.T, dir string) []string {
	t.Helper()
	s, err := dlq.OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []string
	if err := s.Scan(context.Background(), func(e *dlq.Entry) error {
		out = append(out, e.Payload)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// queryAnswer runs `pipeline query` for the metric by service.
func queryAnswer(t *testing.T, bin, cfg string) string {
	t.Helper()
	out, err := exec.Command(bin, "query", "-c", cfg, "--metric", "traces_per_service", "--by", "service",
		"--from", "2000-01-01", "--to", "2100-01-01", "--json").Output()
	if err != nil {
		t.Fatalf("query: %v\n%s", err, out)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("query output: %v\n%s", err, out)
	}
	// Rows merged differ between the two (revisions, lives), and so do
	// the instances (run names itself after its state_dir's id, replay
	// after the host); the answer must not.
	if m, ok := v.(map[string]any); ok {
		delete(m, "rows")
		delete(m, "rows_merged")
		delete(m, "sources")
		for _, k := range []string{"groups", "results"} {
			if groups, ok := m[k].([]any); ok {
				for _, g := range groups {
					if gm, ok := g.(map[string]any); ok {
						delete(gm, "rows")
						delete(gm, "records")
						delete(gm, "instances")
					}
				}
			}
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestRunKill9WhileFollowing: a writer appends a generated corpus, with
// malformed lines, to a followed file and rotates it by rename midway,
// while `pipeline run` is killed with SIGKILL at random points and
// restarted each time. At the end (a clean SIGTERM):
//   - with dedupe on, the output holds every good record exactly once and
//     the DLQ every bad line exactly once;
//   - without, nothing is lost (duplicates only from the uncommitted tail);
//   - either way, the window counts equal one replay of the whole corpus.
func TestRunKill9WhileFollowing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dedupe bool
		kills  int
	}{{"dedupe", true, 10}, {"no_dedupe", false, 4}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testKill9WhileFollowing(t, tc.dedupe, tc.kills)
		})
	}
}

func testKill9WhileFollowing(t *testing.T, dedupe bool, kills int) {
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	dir := t.TempDir()
	cfg := crashConfig(t, dir, dedupe)
	corpus, _ := genLines(t, 24000, 11, 0.02)
	lines := bytes.SplitAfter(corpus, []byte("\n"))

	// The truth: one replay of the whole corpus.
	ref := t.TempDir()
	refIn := filepath.Join(ref, "all.jsonl")
	if err := os.WriteFile(refIn, corpus, 0o644); err != nil {
		t.Fatal(err)
	}
	refCfg := crashConfig(t, ref, false)
	if out, err := exec.Command(bin, "replay", "-c", refCfg, "--no-progress", refIn).CombinedOutput(); err != nil {
		t.Fatalf("reference replay: %v\n%s", err, out)
	}
	wantSpans, _ := outputSpans(t, filepath.Join(ref, "records"))
	wantDLQ := dlqPayloads(t, filepath.Join(ref, "dlq"))
	wantQuery := queryAnswer(t, bin, refCfg)
	if len(wantDLQ) == 0 || len(wantSpans) < 20000 {
		t.Fatalf("reference: %d spans, %d DLQ entries", len(wantSpans), len(wantDLQ))
	}

	// The writer: 100 lines every 15ms; rotation by rename halfway.
	live := filepath.Join(dir, "logs", "app.jsonl")
	var writer sync.WaitGroup
	writer.Go(func() {
		for i := 0; i < len(lines); i += 100 {
			if i == len(lines)/2/100*100 {
				if err := os.Rename(live, filepath.Join(dir, "logs", "app-1.jsonl")); err != nil {
					t.Error(err)
					return
				}
			}
			f, err := os.OpenFile(live, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				t.Error(err)
				return
			}
			_, err = f.Write(bytes.Join(lines[i:min(i+100, len(lines))], nil))
			f.Close()
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(15 * time.Millisecond)
		}
	})

	var commits []map[uint64]int64 // after each kill: inode -> delivered offset committed
	for k := range kills {
		p := startRun(t, bin, cfg)
		time.Sleep(time.Duration(150+rng.IntN(550)) * time.Millisecond)
		if p.cmd.ProcessState != nil {
			t.Fatalf("life %d exited by itself: %v\n%s", k, p.cmd.ProcessState, p.stderr)
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		commits = append(commits, committedOffsets(t, bin, cfg))
		if os.Getenv("TRACEPIPE_DEBUG_KILLS") != "" {
			st, _ := exec.Command(bin, "state", "ls", "--json", "-c", cfg).Output()
			var compact bytes.Buffer
			_ = json.Compact(&compact, st)
			t.Logf("after life %d: %s\nstderr: %s", k, compact.String(), p.stderr)
		}
	}
	writer.Wait()
	behind := windowedBehind(t, bin, cfg)
	if os.Getenv("TRACEPIPE_DEBUG_KILLS") != "" {
		st, _ := exec.Command(bin, "state", "ls", "--json", "-c", cfg).Output()
		var compact bytes.Buffer
		_ = json.Compact(&compact, st)
		ents, _ := os.ReadDir(filepath.Join(dir, "logs"))
		for _, e := range ents {
			fi, _ := e.Info()
			t.Logf("%s: %d bytes", e.Name(), fi.Size())
		}
		t.Logf("before the final life: %s", compact.String())
	}
	final := startRun(t, bin, cfg)
	ids := make([]string, 0, len(wantSpans))
	for id := range wantSpans {
		ids = append(ids, id)
	}
	waitSpans(t, filepath.Join(dir, "records"), ids, final.cmd, final.stderr)
	// The DLQ entries of the last lines are synced with the barrier that
	// acked them; wait until the checkpoint's delivered position covers
	// the whole file (its windowed one stays behind the windows still
	// open until the drain).
	waitCommitted(t, bin, cfg, int64(len(corpus)-len(bytes.Join(lines[:len(lines)/2/100*100], nil))), final)
	// And until it has read again, for the windows, what the last killed
	// life had delivered but not yet counted in durable rows (a drain stops
	// reading: stopped before, the windows would be rebuilt only at the
	// next start).
	waitRebuilt(t, final, behind)
	if code := final.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("final exit %d\n%s", code, final.stderr)
	}

	got, parts := outputSpans(t, filepath.Join(dir, "records"))
	if len(parts) != 0 {
		t.Errorf(".part files after the final drain: %v", parts)
	}
	dups := 0
	for id := range wantSpans {
		switch n := got[id]; {
		case n == 0:
			t.Errorf("span %s lost", id)
		case n > 1:
			dups += n - 1
		}
	}
	for id := range got {
		if wantSpans[id] == 0 {
			t.Errorf("span %s written but not in the input", id)
		}
	}
	gotDLQ := dlqPayloads(t, filepath.Join(dir, "dlq"))
	t.Logf("%d kills: %d spans, %d duplicates; DLQ %d entries (reference %d)", kills, len(got), dups, len(gotDLQ), len(wantDLQ))
	if dedupe {
		if dups > 0 {
			t.Errorf("%d duplicate records with dedupe on", dups)
		}
		if !slices.Equal(gotDLQ, wantDLQ) {
			t.Errorf("DLQ: %d entries, want each of the %d bad lines once", len(gotDLQ), len(wantDLQ))
		}
	} else {
		// A record is delivered again only by the life after a kill whose
		// checkpoint did not cover it: never more often than that.
		firstIno, secondIno := inodeOf(t, filepath.Join(dir, "logs", "app-1.jsonl")), inodeOf(t, live)
		half := int64(len(bytes.Join(lines[:len(lines)/2/100*100], nil)))
		var off int64
		for _, l := range lines {
			if m := spanIDRe.FindSubmatch(l); m != nil && got[string(m[1])] > 1 {
				ino, at := firstIno, off
				if off >= half {
					ino, at = secondIno, off-half
				}
				uncovered := 0
				for _, c := range commits {
					if c[ino] <= at {
						uncovered++
					}
				}
				if got[string(m[1])]-1 > uncovered {
					t.Errorf("span %s (offset %d) written %d times, but only %d kills had not committed past it", m[1], at, got[string(m[1])], uncovered)
				}
			}
			off += int64(len(l))
		}
		missing := 0
		for _, p := range wantDLQ {
			if _, ok := slices.BinarySearch(gotDLQ, p); !ok {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%d bad lines missing from the DLQ", missing)
		}
	}
	if q := queryAnswer(t, bin, cfg); q != wantQuery {
		ents, _ := os.ReadDir(filepath.Join(dir, "windows"))
		var names []string
		for _, e := range ents {
			fi, _ := e.Info()
			names = append(names, fmt.Sprintf("%s (%d bytes)", e.Name(), fi.Size()))
		}
		t.Errorf("window counts after %d kills differ from one replay:\n got  %s\n want %s\nwindows files: %v\nlast summary:\n%s\nlast stderr:\n%s",
			kills, q, wantQuery, names, final.stdout, final.stderr)
	}
}

// windowedBehind counts the files whose checkpoint has a windowed
// position behind the delivered one.
func windowedBehind(t *testing.T, bin, cfg string) int {
	t.Helper()
	out, err := exec.Command(bin, "state", "ls", "--json", "-c", cfg).Output()
	if err != nil {
		t.Fatalf("state ls: %v", err)
	}
	var cps []struct {
		Positions struct {
			Files []struct {
				Windowed *json.RawMessage `json:"windowed"`
			} `json:"files"`
		} `json:"positions"`
	}
	if err := json.Unmarshal(out, &cps); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, cp := range cps {
		for _, f := range cp.Positions.Files {
			if f.Windowed != nil {
				n++
			}
		}
	}
	return n
}

// waitRebuilt waits until p has read n files again up to their delivered
// position (to rebuild the windows open when the last life died).
func waitRebuilt(t *testing.T, p *runProc, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		errs := p.stderr.String()
		if strings.Count(errs, "read again up to the delivered position") >= n {
			return
		}
		if time.Now().After(deadline) {
			_ = p.cmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump, to see where it stands
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
			}
			t.Fatalf("the windows were never rebuilt (%d files to rebuild):\n%s", n, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// committedOffsets returns, per inode, the delivered offset the source's
// checkpoint holds (0 for a file not in it).
func committedOffsets(t *testing.T, bin, cfg string) map[uint64]int64 {
	t.Helper()
	out, _ := exec.Command(bin, "state", "ls", "--json", "-c", cfg).Output()
	var cps []struct {
		Positions struct {
			Files []struct {
				Ino    uint64 `json:"ino"`
				Offset int64  `json:"offset"`
			} `json:"files"`
		} `json:"positions"`
	}
	_ = json.Unmarshal(out, &cps)
	m := map[uint64]int64{}
	for _, cp := range cps {
		for _, f := range cp.Positions.Files {
			m[f.Ino] = max(m[f.Ino], f.Offset)
		}
	}
	return m
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// waitCommitted waits until the source's checkpoint has a file whose
// delivered position is at least off (the live file, read to its end).
func waitCommitted(t *testing.T, bin, cfg string, off int64, p *runProc) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command(bin, "state", "ls", "--json", "-c", cfg).Output()
		if err == nil && committedPast(out, off) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint never reached offset %d:\n%s\nstderr:\n%s", off, out, p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func committedPast(stateJSON []byte, off int64) bool {
	var cps []struct {
		Positions struct {
			Files []struct {
				Offset int64 `json:"offset"`
			} `json:"files"`
		} `json:"positions"`
	}
	if json.Unmarshal(stateJSON, &cps) != nil {
		return false
	}
	for _, cp := range cps {
		for _, f := range cp.Positions.Files {
			if f.Offset >= off {
				return true
			}
		}
	}
	return false
}
