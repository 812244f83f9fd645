package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/state"
	"github.com/tracepipe/tracepipe/internal/testredis"
	"github.com/tracepipe/tracepipe/pipeline/windows"
	"github.com/tracepipe/tracepipe/sinks/redis"
)

// TestRunTwoProcessesOneHost: two `pipeline run` jobs on one host with the
// same config but for their state_dir (and input) and no
// windows.instance write their window rows to one Redis. Each names itself
// after the host and its state directory's id, so neither overwrites the
// other's rows (before, both were the host's name and the second HSET of
// a group's field replaced the first): the fleet's count is the union.
// The ids stay the same across restarts.
func TestRunTwoProcessesOneHost(t *testing.T) {
	srv := testredis.Start(t)
	dir := t.TempDir()
	cfgFor := func(name string) *config.Config {
		t.Helper()
		y := fmt.Sprintf(`
pipeline: {flush_every: 20ms}
sinks: [{name: discard, type: discard}]
dlq: {file: {dir: %[1]s/%[2]s/dlq}}
windows:
  metrics: [{name: traces, count: trace_id, group_by: [service]}]
  sink: {type: redis, redis: {addr: "%[3]s", key_prefix: "tp:"}}
run: {state_dir: %[1]s/%[2]s/state, checkpoint_every: 50ms}
sources:
  - {name: logs, type: file, file: {include: ["%[1]s/%[2]s/in/*.jsonl"], poll_interval: 10ms}}
`, dir, name, srv.Addr())
		cfg, err := config.Decode([]byte(y), "test.yaml", os.LookupEnv)
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.Windows.InstanceFromHost {
			t.Fatal("instance not taken from the host")
		}
		return cfg
	}
	write := func(name string, from int) {
		t.Helper()
		var b strings.Builder
		for i := range 200 {
			fmt.Fprintf(&b, `{"trace_id":"%032x","span_id":"%016x","service.name":"cart","name":"x","time":"2026-01-01T00:00:%02dZ"}`+"\n", from+i, from+i, i%60)
		}
		in := filepath.Join(dir, name, "in")
		if err := os.MkdirAll(in, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, "a.jsonl"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("p1", 1)
	write("p2", 1001) // distinct traces: the union is 400

	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		rep *Report
		err error
	}
	var dones []chan result
	for _, name := range []string{"p1", "p2"} {
		done := make(chan result, 1)
		dones = append(dones, done)
		cfg := cfgFor(name)
		go func() {
			rep, err := RunJob(ctx, cfg, RunOptions{Logger: quietLogger()})
			done <- result{rep, err}
		}()
	}
	// Both have read their file once their checkpoints hold its end.
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range []string{"p1", "p2"} {
		fi, err := os.Stat(filepath.Join(dir, name, "in", "a.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		end := regexp.MustCompile(fmt.Sprintf(`"offset": ?%d\b`, fi.Size()))
		for {
			data, _ := os.ReadFile(filepath.Join(dir, name, "state", "logs.json"))
			if end.Match(data) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not read to its end: %s", name, data)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancel() // drain: the open window is emitted
	for _, done := range dones {
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
	}

	store, err := redis.NewWindows(config.WindowsRedis{Redis: config.Redis{Addr: srv.Addr(), Timeout: 5 * time.Second}, KeyPrefix: "tp:"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	res, err := windows.Run(context.Background(), store, windows.Query{Metric: "traces", By: []string{"service"}})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if len(res) != 1 || res[0].Estimate != 400 || len(res[0].Instances) != 2 {
		t.Fatalf("query: %+v, want one group counting 400 traces from 2 instances", res)
	}
	want := []string{host + "-" + readID(t, dir, "p1"), host + "-" + readID(t, dir, "p2")}
	slices.Sort(want)
	if !slices.Equal(res[0].Instances, want) {
		t.Errorf("instances %q, want the host's name and each state_dir's id: %q", res[0].Instances, want)
	}

	// A restart keeps its name: the id is read back, not made again.
	st, err := state.Open(filepath.Join(dir, "p1", "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if id, err := st.InstanceID(); err != nil || id != readID(t, dir, "p1") {
		t.Errorf("instance id after a restart: %q, %v", id, err)
	}
}

func readID(t *testing.T, dir, name string) string {
	t.Helper()
	id, err := os.ReadFile(filepath.Join(dir, name, "state", "instance-id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(id))
}
