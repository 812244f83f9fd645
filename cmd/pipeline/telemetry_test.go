package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tracepipe/tracepipe/app"
	"github.com/tracepipe/tracepipe/pipeline"
)

// telemetryAddr finds the address in the start-up line, logged as JSON
// (log.format auto, stderr not a terminal) or as text.
var telemetryAddr = regexp.MustCompile(`"msg":"telemetry: serving[^"]*","addr":"([^"]+)"|msg="telemetry: serving[^"]*" addr=(\S+)`)

// waitTelemetryAddr returns the address a process logged its endpoint on.
func waitTelemetryAddr(t *testing.T, stderr fmt.Stringer, exited func() bool) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := telemetryAddr.FindStringSubmatch(stderr.String()); m != nil {
			return m[1] + m[2]
		}
		if exited() || time.Now().After(deadline) {
			t.Fatalf("no telemetry address logged:\n%s", stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scrapeMetrics gets /metrics and parses it with the Prometheus text
// parser; nil when the endpoint is gone (the process ended).
func scrapeMetrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mf
}

// sample is the sum of name's samples with the given label (all of them
// with label ""), or -1 when there is none: a counter split by more
// attributes than the label (records by source and format, DLQ entries by
// class, code, stage and sink) sums to its total.
func sample(mf map[string]*dto.MetricFamily, name, label, value string) float64 {
	return sampleWith(mf, name, label, value)
}

// sampleWith is sample with any number of label=value pairs.
func sampleWith(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	sum, found := 0.0, false
next:
	for _, m := range mf[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if labels[i] != "" && have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		found = true
		if m.Counter != nil {
			sum += m.GetCounter().GetValue()
		} else {
			sum += m.GetGauge().GetValue()
		}
	}
	if !found {
		return -1
	}
	return sum
}

// TestRunServesMetricsMatchingItsReport: a real `pipeline run` follows a
// file with malformed lines; once it has taken every line, /metrics
// (scraped over loopback, parsed by the Prometheus text parser) says what
// its report says after SIGTERM, record for record; /healthz and /readyz
// answer with JSON; the checkpoint age is reported.
func TestRunServesMetricsMatchingItsReport(t *testing.T) {
	t.Parallel()
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := runConfig(t, dir, "")
	lines, _ := genLines(t, 3000, 5, 0.03)
	appendFile(t, filepath.Join(dir, "logs", "a.jsonl"), lines)
	report := filepath.Join(dir, "report.json")
	p := startRun(t, bin, cfg, "--report", report)
	addr := waitTelemetryAddr(t, p.stderr, func() bool { return p.cmd.ProcessState != nil })
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("listening on %s, want loopback", addr)
	}

	// Every line taken, and its DLQ entries synced: nothing moves after.
	var mf map[string]*dto.MetricFamily
	deadline := time.Now().Add(60 * time.Second)
	for {
		mf = scrapeMetrics(t, addr)
		var dlq float64
		for _, c := range pipeline.Classes {
			dlq += max(0, sample(mf, "tracepipe_dlq_entries_total", "class", string(c)))
		}
		in := sample(mf, "tracepipe_records_in_total", "", "")
		if in == 3000 && in == sample(mf, "tracepipe_records_out_total", "", "")+dlq+sample(mf, "tracepipe_records_filtered_total", "", "") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the metrics never showed 3000 records in and reconciled (in %v, dlq %v)\n%s", in, dlq, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if age := sample(mf, "tracepipe_checkpoint_age_seconds", "", ""); age < 0 || age > 30 {
		t.Errorf("checkpoint age %v s with commits every 50ms", age)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %s %v %v", path, resp.Status, body, err)
		}
	}

	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep app.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.DLQ["total"] == 0 {
		t.Fatalf("no DLQ entries from malformed lines: %+v", rep)
	}
	eq := func(name string, want int64, label, value string) {
		t.Helper()
		if got := sample(mf, name, label, value); got != float64(want) {
			t.Errorf("%s{%s=%q} = %v, the report says %d", name, label, value, got, want)
		}
	}
	eq("tracepipe_records_in_total", rep.RecordsIn, "", "")
	eq("tracepipe_records_out_total", rep.RecordsOut, "", "")
	eq("tracepipe_records_filtered_total", rep.RecordsFiltered, "", "")
	// By source and format: the one config source, "logs", whose followed
	// files are JSON lines, holds every record.
	for _, c := range []struct {
		name string
		want int64
	}{{"tracepipe_records_in_total", rep.RecordsIn}, {"tracepipe_records_out_total", rep.RecordsOut}, {"tracepipe_records_filtered_total", rep.RecordsFiltered}} {
		if got := sampleWith(mf, c.name, "source", "logs", "format", "jsonl"); got != float64(c.want) {
			t.Errorf("%s{source=logs,format=jsonl} = %v, the report says %d", c.name, got, c.want)
		}
	}
	eq("tracepipe_bytes_read_total", rep.BytesRead, "", "")
	eq("tracepipe_dlq_lost_total", rep.DLQLost, "", "")
	for _, c := range pipeline.Classes {
		eq("tracepipe_dlq_entries_total", rep.DLQ[string(c)], "class", string(c))
	}
	// The malformed lines' entries carry their code and stage (parse), and
	// no sink: the series with a code sum to the class.
	if got := sampleWith(mf, "tracepipe_dlq_entries_total", "class", "malformed", "stage", "parse", "sink", ""); got != float64(rep.DLQ["malformed"]) {
		t.Errorf("malformed entries of stage parse: %v, the report says %d", got, rep.DLQ["malformed"])
	}
	for _, m := range mf["tracepipe_dlq_entries_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "code" && l.GetValue() == "" && m.GetCounter().GetValue() != 0 {
				t.Errorf("a non-zero DLQ series without a code: %v", m)
			}
		}
	}
	eq("tracepipe_sink_records_total", rep.Sinks[0].Records, "sink", "records")
}

// TestReplayMetricsFlag: `pipeline replay --metrics` serves the endpoint
// while it runs (scraped during the run), and only with the flag.
func TestReplayMetricsFlag(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for range 20000 {
		b.WriteString(goodLine + "\n")
	}
	write(t, filepath.Join(dir, "in.jsonl"), b.String())
	write(t, filepath.Join(dir, "c.yaml"), "sinks: [{type: discard}]\ndlq: {file: {dir: dlq}}\ntelemetry: {listen: \"127.0.0.1:0\"}\n")
	t.Chdir(dir)
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"replay", "-c", "c.yaml", "--metrics", "--report", "r.json", "in.jsonl"}, &out, &errb)
	}()
	exited := false
	addr := waitTelemetryAddr(t, &errb, func() bool {
		select {
		case code := <-done:
			done <- code
			exited = true
		default:
		}
		return exited
	})
	// The endpoint serves until the replay ends; a scrape that finds it
	// is one during the run.
	scraped := false
	for {
		if mf := scrapeMetrics(t, addr); mf != nil {
			if sample(mf, "tracepipe_build_info", "", "") != 1 {
				t.Fatalf("no build info in a scrape during the replay")
			}
			scraped = true
		}
		select {
		case code := <-done:
			if code != exitOK {
				t.Fatalf("exit %d\n%s", code, errb.String())
			}
			if !scraped {
				t.Log("the replay ended before a scrape got through")
			}
			data, err := os.ReadFile("r.json")
			if err != nil {
				t.Fatal(err)
			}
			var rep app.Report
			if err := json.Unmarshal(data, &rep); err != nil || rep.RecordsIn != 20000 {
				t.Fatalf("report: %v %+v", err, rep)
			}
			// Closed with the replay.
			if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
				t.Fatal("the endpoint still serves after the replay")
			}
			// Without the flag nothing listens.
			errb = syncBuffer{}
			if code := run([]string{"replay", "-c", "c.yaml", "in.jsonl"}, &out, &errb); code != exitOK || strings.Contains(errb.String(), "telemetry: serving") {
				t.Fatalf("replay without --metrics: exit %d\n%s", code, errb.String())
			}
			return
		default:
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestTelemetryBusyPort: a busy telemetry.listen fails `pipeline run` and
// `pipeline replay --metrics` at start, naming the address and the knob.
func TestTelemetryBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "in.jsonl"), goodLine+"\n")
	write(t, filepath.Join(dir, "c.yaml"), fmt.Sprintf(`sinks: [{type: discard}]
dlq: {file: {dir: dlq}}
run: {state_dir: state}
sources: [{name: logs, type: file, file: {include: ["*.jsonl"]}}]
telemetry: {listen: %q}
`, ln.Addr()))
	for _, args := range [][]string{{"run", "-c", "c.yaml"}, {"replay", "-c", "c.yaml", "--metrics", "in.jsonl"}} {
		code, _, stderr := runIn(t, dir, args...)
		if code != exitFailed || !strings.Contains(stderr, ln.Addr().String()) || !strings.Contains(stderr, "telemetry.listen") ||
			!strings.Contains(stderr, "address already in use") {
			t.Fatalf("%v: exit %d, stderr:\n%s", args, code, stderr)
		}
		// It failed before opening anything: no DLQ, no state.
		if _, err := os.Stat(filepath.Join(dir, "dlq")); err == nil {
			t.Fatalf("%v: the DLQ was opened before the endpoint failed", args)
		}
	}
}
