package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/internal/testredis"
)

// A short outage costs a pause, not the data: the sink's server goes away
// for 3 s mid-run and comes back. The workers wait for it (the retry queue
// and the breaker's probe), nothing goes to the DLQ, and every input
// record ends up in the sink. At least once: a write cut by the outage may
// have landed without its reply, so a few records may be there twice.

// outagePolicy retries for longer than the outage, with a breaker that
// probes often.
const outagePolicy = `
retry:
  initial: 20ms
  max_interval: 200ms
  max_attempts: 1000
  max_elapsed: 30s
  breaker: {failures: 3, open_for: 200ms}
`

const outageRecords = 30000

// runWithOutage runs a replay of outageRecords records with cfg, calls
// down once count() reaches a tenth of the input, waits 3 s, calls up, and
// returns the report once the run ends.
func runWithOutage(t *testing.T, cfg *config.Config, input string, count func() int64, down, up func()) *Report {
	t.Helper()
	done := make(chan struct{})
	var rep *Report
	var runErr error
	go func() {
		defer close(done)
		rep, runErr = Run(context.Background(), cfg, Options{Paths: []string{input}, Logger: quietLogger()})
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for count() < outageRecords/10 {
		select {
		case <-done:
			t.Fatalf("the run ended before the outage (%v): make the input larger", runErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the sink never got a tenth of the input")
		}
		time.Sleep(time.Millisecond)
	}
	down()
	time.Sleep(3 * time.Second)
	select {
	case <-done:
		t.Fatalf("the run ended during the outage: %+v (%v)", rep, runErr)
	default:
	}
	up()
	<-done
	if runErr != nil || rep == nil {
		t.Fatalf("run: %v", runErr)
	}
	return rep
}

// checkNoneLost asserts the report and what is really in the sink and the
// DLQ directory: every input span in the sink, nothing dead-lettered.
func checkNoneLost(t *testing.T, rep *Report, input, dlqDir string, inSink map[string]int) {
	t.Helper()
	data, err := os.ReadFile(input)
	if err != nil {
		t.Fatal(err)
	}
	missing, twice := 0, 0
	for _, m := range spanIDRe.FindAllSubmatch(data, -1) {
		switch inSink[string(m[1])] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	entries := readDLQ(t, dlqDir)
	t.Logf("in %d, out %d, dlq %d; in the sink: %d distinct, %d twice; sinks %+v",
		rep.RecordsIn, rep.RecordsOut, rep.DLQ["total"], len(inSink), twice, rep.Sinks)
	if missing > 0 || len(entries) > 0 || rep.DLQ["total"] != 0 || rep.RecordsOut != outageRecords || !rep.Reconciled {
		t.Fatalf("a 3 s outage cost data: %d records missing from the sink, %d DLQ entries on disk, report %+v",
			missing, len(entries), rep)
	}
	if rep.Sinks[0].Retry.Retries == 0 {
		t.Fatalf("no retry during the outage: the test tests nothing: %+v", rep.Sinks)
	}
}

// outageSetup writes the input and returns a config with the one sink
// given (a YAML flow mapping), a file DLQ and outagePolicy.
func outageSetup(t *testing.T, sink string) (cfg *config.Config, dir, input string) {
	t.Helper()
	dir = t.TempDir()
	input = filepath.Join(dir, "in.jsonl")
	generate(t, input, "jsonl", outageRecords, false)
	cfg, err := config.Decode(fmt.Appendf(nil, `
input: {concurrency: 1}
pipeline: {workers: 2, batch_units: 128}
sinks: [%s]
dlq:
  file: {dir: "%s/dlq"}
%s`, sink, dir, outagePolicy), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, dir, input
}

func TestRedisSinkOutage(t *testing.T) {
	t.Parallel()
	srv := testredis.StartWith(t, testredis.Options{AOF: true})
	cfg, dir, input := outageSetup(t, fmt.Sprintf(`{name: stream, type: redis_stream, redis_stream: {addr: %q, stream: "records", timeout: 500ms}}`, srv.Addr()))
	client := srv.Client(t)
	count := func() int64 {
		n, _ := client.XLen(context.Background(), "records").Result()
		return n
	}
	rep := runWithOutage(t, cfg, input, count, srv.Kill, srv.Restart)

	inSink := map[string]int{}
	msgs, err := client.XRange(context.Background(), "records", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		for _, v := range m.Values {
			if s, ok := v.(string); ok {
				if id := spanIDRe.FindStringSubmatch(s); id != nil {
					inSink[id[1]]++
				}
			}
		}
	}
	checkNoneLost(t, rep, input, filepath.Join(dir, "dlq"), inSink)
}

func TestKafkaSinkOutage(t *testing.T) {
	t.Parallel()
	c := testkafka.StartWith(t, testkafka.Options{Topics: []string{"records"}, Persist: true})
	cfg, dir, input := outageSetup(t, fmt.Sprintf(`{name: topic, type: kafka, kafka: {brokers: [%q], topic: "records", timeout: 1s}}`, c.Addrs()[0]))
	count := func() int64 { return c.Count("records") }
	rep := runWithOutage(t, cfg, input, count, c.Stop, c.Restart)

	inSink := map[string]int{}
	for _, m := range c.Messages("records") {
		if id := spanIDRe.FindSubmatch(m.Value); id != nil {
			inSink[string(id[1])]++
		}
	}
	checkNoneLost(t, rep, input, filepath.Join(dir, "dlq"), inSink)
}
