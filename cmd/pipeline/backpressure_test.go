//go:build !race

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/internal/testredis"
)

// Backpressure from a slow sink, for both stream sources: the sink is the
// Kafka sink writing to a topic of a real (kfake) broker that answers every
// produce request to that topic only after a delay. While input arrives
// faster than the sink takes it, the consumer lag grows (the source reads
// only as fast as the sink takes), the `pipeline run` process's peak
// resident memory stays far below the backlog (it buffers batches in
// flight, not the input), and in the end every record is in the output
// topic: nothing dropped. (Without -race: the detector makes the broker in
// this process ten times slower and the figures meaningless; make test
// runs Memory tests in a pass of their own without it.)
const (
	bpRecords  = 240000 // ~630 bytes each: a backlog of ~150 MB
	bpMaxRSSMB = 128    // peak RSS allowed (measured: ~62 MiB Redis, ~88 MiB Kafka, the same at half the backlog)
	bpDelay    = 25 * time.Millisecond
)

func TestMemoryBackpressureKafkaSource(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 150 MB through a throttled sink")
	}
	kc, lines := slowSinkBroker(t, "in")
	dir := t.TempDir()
	cfg := backpressureConfig(t, dir, kc, fmt.Sprintf(`  - name: in
    type: kafka
    kafka: {brokers: [%s], topics: [in], group: bp, session_timeout: 6s, heartbeat_interval: 500ms, rebalance_timeout: 10s, max_wait: 100ms}
`, strings.Join(kc.Addrs(), ", ")))
	p := startNamed(t, cfg, "p1")
	client := &kafkago.Client{Addr: kafkago.TCP(kc.Addrs()...), Transport: kc.Transport()}
	lag := func() int64 { return kafkaGroupLag(t, client, "bp", "in", 6) }

	w := &kafkago.Writer{Addr: kafkago.TCP(kc.Addrs()...), Topic: "in", Balancer: &kafkago.RoundRobin{},
		Transport: kc.Transport(), BatchSize: 1000, BatchTimeout: time.Millisecond}
	defer w.Close()
	maxLag := produceWatching(t, lines, lag, func(chunk [][]byte) error {
		msgs := make([]kafkago.Message, len(chunk))
		for i, l := range chunk {
			msgs[i].Value = l
		}
		return w.WriteMessages(context.Background(), msgs...)
	})
	// A rebalance while the sink is slow: a second process joins the
	// group; the first gives up half its partitions with batches in flight.
	p2 := startNamed(t, cfg, "p2")
	peaks := drained(t, kc, lag, p, p2)
	checkBackpressure(t, kc, peaks[0], maxLag, true)
	t.Logf("p2 peak RSS %d MiB", peaks[1])
	if !strings.Contains(p.stderr.String(), "partitions given up") || !strings.Contains(p2.stderr.String(), "partitions assigned") {
		t.Errorf("no rebalance seen:\np1\n%s\np2\n%s", p.stderr.String(), p2.stderr.String())
	}
}

func TestMemoryBackpressureRedisStreamSource(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 150 MB through a throttled sink")
	}
	kc, lines := slowSinkBroker(t)
	srv := testredis.Start(t)
	dir := t.TempDir()
	cfg := backpressureConfig(t, dir, kc, fmt.Sprintf(`  - name: in
    type: redis_stream
    redis_stream: {addr: "%s", stream: in, group: bp, block: 100ms}
`, srv.Addr()))
	p := startNamed(t, cfg, "p1")
	rc := srv.Client(t)
	lag := func() int64 {
		gs, err := rc.XInfoGroups(context.Background(), "in").Result()
		if err != nil || len(gs) == 0 {
			return 0 // the group is made by the source when it starts
		}
		pending, err := rc.XPending(context.Background(), "in", "bp").Result()
		if err != nil {
			t.Fatal(err)
		}
		return gs[0].Lag + pending.Count
	}
	maxLag := produceWatching(t, lines, lag, func(chunk [][]byte) error {
		pipe := rc.Pipeline()
		for _, l := range chunk {
			pipe.XAdd(context.Background(), &goredis.XAddArgs{Stream: "in", Values: []any{"record", l}})
		}
		_, err := pipe.Exec(context.Background())
		return err
	})
	peaks := drained(t, kc, lag, p)
	checkBackpressure(t, kc, peaks[0], maxLag, false)
}

// slowSinkBroker starts a broker with an "out" topic (and the given input
// topics), 6 partitions each, whose produce requests to "out" are answered
// bpDelay late, and returns it with the corpus's lines.
func slowSinkBroker(t *testing.T, topics ...string) (*testkafka.Cluster, [][]byte) {
	t.Helper()
	kc := testkafka.StartWith(t, testkafka.Options{Topics: append(topics, "out"), Partitions: 6})
	kf := kc.Kfake()
	kf.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			if tp.Topic == "out" {
				kf.SleepControl(func() { time.Sleep(bpDelay) })
				break
			}
		}
		return nil, nil, false // then handled as usual
	})
	var corpus bytes.Buffer
	if _, err := gen.Generate(&corpus, gen.Options{Format: "jsonl", Records: bpRecords, Seed: 77}); err != nil {
		t.Fatal(err)
	}
	return kc, bytes.Split(bytes.TrimSuffix(corpus.Bytes(), []byte("\n")), []byte("\n"))
}

func backpressureConfig(t *testing.T, dir string, kc *testkafka.Cluster, source string) string {
	t.Helper()
	y := fmt.Sprintf(`pipeline: {flush_every: 100ms}
telemetry: {listen: "127.0.0.1:0"}
sinks:
  - name: out
    type: kafka
    kafka: {brokers: [%[2]s], topic: out, batch_size: 500}
dlq: {file: {dir: "%[1]s/${TRACEPIPE_INSTANCE}/dlq"}}
windows: {metrics: []}
run: {state_dir: "%[1]s/${TRACEPIPE_INSTANCE}/state", checkpoint_every: 200ms}
sources:
%[3]s`, dir, strings.Join(kc.Addrs(), ", "), source)
	path := filepath.Join(dir, "bp.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNamed starts `pipeline run -c cfg` as instance name.
func startNamed(t *testing.T, cfg, name string) *runProc {
	t.Helper()
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRACEPIPE_INSTANCE", name)
	return startRun(t, bin, cfg)
}

// produceWatching sends lines in chunks as fast as send goes, sampling lag
// after each chunk, and returns the highest lag seen.
func produceWatching(t *testing.T, lines [][]byte, lag func() int64, send func([][]byte) error) int64 {
	t.Helper()
	var maxLag int64
	for i := 0; i < len(lines); i += 2000 {
		if err := send(lines[i:min(i+2000, len(lines))]); err != nil {
			t.Fatal(err)
		}
		maxLag = max(maxLag, lag())
	}
	return maxLag
}

// drained waits until the lag is 0 and the output topic holds every
// record, then stops the processes (SIGTERM: drain, exit 0). It returns
// each process's peak resident set (VmHWM, MiB) read just before: the
// rusage of a child counts the test process's pages it was forked with.
func drained(t *testing.T, kc *testkafka.Cluster, lag func() int64, procs ...*runProc) []int64 {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for lag() > 0 || kc.Count("out") < bpRecords {
		if time.Now().After(deadline) {
			t.Fatalf("lag %d, %d of %d records out after 120 s\n%s", lag(), kc.Count("out"), bpRecords, procs[0].stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var peaks []int64
	for _, p := range procs {
		peaks = append(peaks, vmHWMMiB(t, p.cmd.Process.Pid))
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("exit: %v\n%s", err, p.stderr.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatal("no drain within 60 s")
		}
	}
	return peaks
}

// checkBackpressure checks what a slow sink must leave: lag that grew to a
// good part of the input while it came in, a peak RSS far below the
// backlog, and every record in the output topic (repeats allowed only
// with a rebalance: they are counted by the source; none lost).
func checkBackpressure(t *testing.T, kc *testkafka.Cluster, rss, maxLag int64, repeatsAllowed bool) {
	t.Helper()
	if maxLag < bpRecords/4 {
		t.Errorf("the lag peaked at %d of %d records: the source did not wait for the slow sink", maxLag, bpRecords)
	}
	if rss > bpMaxRSSMB {
		t.Errorf("peak RSS %d MiB over %d MiB with a ~150 MB backlog: input buffered", rss, bpMaxRSSMB)
	} else {
		t.Logf("lag peaked at %d records; peak RSS %d MiB", maxLag, rss)
	}
	seen := map[string]int{}
	for _, m := range kc.Messages("out") {
		seen[string(m.Key)+"/"+string(m.Value)]++
	}
	total := kc.Count("out")
	if len(seen) != bpRecords || (!repeatsAllowed && total != bpRecords) {
		t.Errorf("out: %d messages, %d distinct, want the %d records", total, len(seen), bpRecords)
	}
}

// vmHWMMiB is the peak resident set of process pid so far.
func vmHWMMiB(t *testing.T, pid int) int64 {
	t.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// kafkaGroupLag is the group's consumer lag on topic: per partition the
// high watermark minus the committed offset (the whole partition when
// nothing is committed).
func kafkaGroupLag(t *testing.T, c *kafkago.Client, group, topic string, partitions int) int64 {
	t.Helper()
	ps := make([]int, partitions)
	reqs := make([]kafkago.OffsetRequest, partitions)
	for i := range ps {
		ps[i], reqs[i] = i, kafkago.LastOffsetOf(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	of, err := c.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		t.Fatal(err)
	}
	lo, err := c.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	committed := map[int]int64{}
	for _, p := range of.Topics[topic] {
		committed[p.Partition] = max(p.CommittedOffset, 0)
	}
	var lag int64
	for _, p := range lo.Topics[topic] {
		lag += p.LastOffset - committed[p.Partition]
	}
	return lag
}
