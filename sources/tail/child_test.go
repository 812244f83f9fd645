package tail

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestChildWriter: a separate process writes lines to app.log and rotates it
// by rename every 500 lines (app.log -> app.log.K, still matched by the
// glob), writing 50 more lines to the renamed file before reopening, the
// way a logger does. Every line is delivered exactly once.
func TestChildWriter(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, watch string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "app.log")
		const n = 5000
		cfg := testCfg(filepath.Join(dir, "app.log*"))
		cfg.Watch = watch
		c := newCollector(t)
		r := start(t, cfg, c, nil, nil)
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$")
		cmd.Env = append(os.Environ(), "TAIL_TEST_WRITER="+path, "TAIL_TEST_LINES="+strconv.Itoa(n))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("writer: %v\n%s", err, out)
		}
		want := lines("child", 0, n)
		c.waitLines(t, want)
		settle(r)
		c.exactlyOnce(t, want)
	})
}

// TestHelperWriter is the writer process of TestChildWriter; it does
// nothing in a normal test run.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv("TAIL_TEST_WRITER")
	if path == "" {
		t.Skip("the writer process of TestChildWriter")
	}
	n, _ := strconv.Atoi(os.Getenv("TAIL_TEST_LINES"))
	ls := lines("child", 0, n)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	rotated, gen := -1, 0
	for i, l := range ls {
		if _, err := fmt.Fprintln(f, l); err != nil {
			t.Fatal(err)
		}
		switch {
		case i%500 == 499:
			gen++
			if err := os.Rename(path, fmt.Sprintf("%s.%d", path, gen)); err != nil {
				t.Fatal(err)
			}
			rotated = i
		case rotated >= 0 && i-rotated == 50:
			f.Close()
			if f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
				t.Fatal(err)
			}
			rotated = -1
		}
	}
	f.Close()
}
