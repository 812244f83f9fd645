package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStdinToStdout runs the real binary as a user pipes it:
//
//	pipeline gen --format otlp ... | pipeline replay - -c cfg | reader
//
// with a stdout sink: every generated record comes out on standard output
// as one JSON line (the format of standard input detected, and its
// compression: the zipkin case feeds gen's gzipped file), and nothing else
// does; the summary and logs are on standard error.
func TestStdinToStdout(t *testing.T) {
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("sinks: [{type: stdout}]\ndlq: {file: {dir: "+filepath.Join(dir, "dlq")+"}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const records = 3000
	for _, format := range []string{"otlp", "jsonl", "zipkin"} {
		t.Run(format, func(t *testing.T) {
			args := []string{"gen", "--format", format, "--records", "3000", "--malformed", "0", "--seed", "7"}
			replay := exec.Command(bin, "replay", "-", "-c", cfg, "--no-progress")
			var gen *exec.Cmd
			if format == "zipkin" {
				gz := filepath.Join(dir, format+".gz")
				if out, err := exec.Command(bin, append(args, "-o", gz)...).CombinedOutput(); err != nil {
					t.Fatalf("gen: %v: %s", err, out)
				}
				in, err := os.Open(gz)
				if err != nil {
					t.Fatal(err)
				}
				defer in.Close()
				replay.Stdin = in
			} else {
				gen = exec.Command(bin, args...)
				if replay.Stdin, err = gen.StdoutPipe(); err != nil {
					t.Fatal(err)
				}
				if err := gen.Start(); err != nil {
					t.Fatal(err)
				}
			}
			var stderr bytes.Buffer
			replay.Stderr = &stderr
			stdout, err := replay.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := replay.Start(); err != nil {
				t.Fatal(err)
			}
			// The reader: every line a record, counted while the
			// replay writes them.
			n, signals := 0, map[string]int{}
			sc := bufio.NewScanner(stdout)
			sc.Buffer(nil, 4<<20)
			for sc.Scan() {
				var r struct {
					Signal  string `json:"signal"`
					TraceID string `json:"trace_id"`
				}
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("stdout line %d is not a record: %v: %q", n+1, err, sc.Text())
				}
				n++
				signals[r.Signal]++
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if err := replay.Wait(); err != nil {
				t.Fatalf("replay: %v\n%s", err, stderr.String())
			}
			if gen != nil {
				if err := gen.Wait(); err != nil {
					t.Fatalf("gen: %v", err)
				}
			}
			if n != records || !strings.Contains(stderr.String(), "records: 3000 in = 3000 out + 0 dlq + 0 filtered") {
				t.Fatalf("%d records on stdout %v, want %d; stderr:\n%s", n, signals, records, stderr.String())
			}
		})
	}
}

// TestReportToStdout: --report - puts the report, and only it, on
// standard output; with a stdout sink it is refused before anything runs.
func TestReportToStdout(t *testing.T) {
	bin, err := buildPipeline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(input, []byte(`{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","msg":"a"}`+"\n"+`{"msg":"no trace"}`+"\nnot json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("sinks: [{type: discard}]\ndlq: {file: {dir: "+filepath.Join(dir, "dlq")+"}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "replay", input, "-c", cfg, "--report", "-")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	var rep struct {
		RecordsIn  int64            `json:"records_in"`
		RecordsOut int64            `json:"records_out"`
		DLQ        map[string]int64 `json:"dlq"`
	}
	dec := json.NewDecoder(&stdout)
	if err := dec.Decode(&rep); err != nil || dec.More() {
		t.Fatalf("stdout is not one report (%v): %q", err, stdout.String())
	}
	if rep.RecordsIn != 3 || rep.RecordsOut != 2 || rep.DLQ["total"] != 1 || !strings.Contains(stderr.String(), "records: 3 in") {
		t.Fatalf("report %+v; stderr:\n%s", rep, stderr.String())
	}

	if err := os.WriteFile(cfg, []byte("sinks: [{type: stdout}]\ndlq: {file: {dir: "+filepath.Join(dir, "dlq")+"}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(bin, "replay", input, "-c", cfg, "--report", "-")
	stdout.Reset()
	stderr.Reset()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUsage || stdout.Len() != 0 ||
		!strings.Contains(stderr.String(), "--report - and a stdout sink would both write to standard output") {
		t.Fatalf("err %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
	}
}
