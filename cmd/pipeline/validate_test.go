package main

import (
	"path/filepath"
	"strings"
	"testing"
)

const brokenConfig = "sinks: [{type: discard}]\ninptu: {}\n"

// TestValidateChecksTheFileItIsGiven: `validate FILE` and `validate -c FILE`
// check FILE, not the embedded config; two different files are refused.
func TestValidateChecksTheFileItIsGiven(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "broken.yaml"), brokenConfig)
	write(t, filepath.Join(dir, "good.yaml"), "sinks: [{type: discard, name: only-this-one}]\n")
	for _, args := range [][]string{
		{"validate", "-q", "broken.yaml"},
		{"validate", "broken.yaml"},
		{"validate", "broken.yaml", "-q"},
		{"validate", "-c", "broken.yaml"},
		{"validate", "-q", "-c", "broken.yaml", "./broken.yaml"},
		{"validate", "--", "broken.yaml"},
	} {
		code, out, stderr := runIn(t, dir, args...)
		if code != exitUsage || !strings.Contains(stderr, `broken.yaml:2: unknown key "inptu"`) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s", args, code, out, stderr)
		}
	}
	for _, args := range [][]string{{"validate", "good.yaml"}, {"validate", "-c", "good.yaml"}, {"validate", "good.yaml", "-c", "good.yaml"}} {
		code, out, stderr := runIn(t, dir, args...)
		if code != exitOK || !strings.Contains(out, "# good.yaml is valid") || !strings.Contains(out, "name: only-this-one") {
			t.Errorf("%v: exit %d, stderr %s, stdout:\n%s", args, code, stderr, out)
		}
	}
	if code, out, _ := runIn(t, dir, "validate", "-q", "good.yaml"); code != exitOK || out != "" {
		t.Errorf("-q: exit %d, stdout %q", code, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"validate", "-c", "good.yaml", "broken.yaml"}, "validate: two configs given, -c good.yaml and broken.yaml"},
		{[]string{"validate", "good.yaml", "broken.yaml"}, `validate: unexpected argument "broken.yaml"`},
		{[]string{"validate", "-c", ""}, "validate: -c names no file"},
		{[]string{"validate", "missing.yaml"}, "missing.yaml: no such file"},
	} {
		code, out, stderr := runIn(t, dir, c.args...)
		if code != exitUsage || out != "" || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s", c.args, code, out, stderr)
		}
	}
}

// TestValidateNeverQuotesExpandedValues: a secret in an environment
// variable, put by mistake into keys where it is invalid, appears in
// nothing validate prints; the problems name the keys and the variable.
func TestValidateNeverQuotesExpandedValues(t *testing.T) {
	const secret = "hunter2..Very-S3cret!"
	t.Setenv("TP_TEST_LEAK", secret)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "c.yaml"), `input:
  format: ${TP_TEST_LEAK}
parse:
  time_unit: "${TP_TEST_LEAK}"
  jsonl:
    trace_id: [traceId, "${TP_TEST_LEAK}"]
sinks:
  - type: ${TP_TEST_LEAK}
  - type: discard
    name: "x${TP_TEST_LEAK}"
dlq:
  file: {overflow: "${TP_TEST_LEAK}"}
retry:
  codes: {timeout: "${TP_TEST_LEAK}"}
windows:
  metrics: [{name: m, count: "${TP_TEST_LEAK}"}]
  sink: {type: "${TP_TEST_LEAK}"}
`)
	write(t, filepath.Join(dir, "typed.yaml"), "sinks: [{type: discard}]\npipeline:\n  workers: ${TP_TEST_LEAK}\n")
	for _, args := range [][]string{{"validate", "c.yaml"}, {"validate", "-q", "-c", "c.yaml"}, {"validate", "typed.yaml"}, {"replay", "-c", "c.yaml", "x.jsonl"}} {
		code, out, stderr := runIn(t, dir, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d", args, code)
		}
		if strings.Contains(out+stderr, "hunter2") || strings.Contains(out+stderr, "S3cret") {
			t.Fatalf("%v printed the secret:\n%s%s", args, out, stderr)
		}
	}
	_, _, stderr := runIn(t, dir, "validate", "c.yaml")
	for _, key := range []string{"input.format", "parse.time_unit", "parse.jsonl.trace_id[1]", "sinks[0].type", "sinks[0].name", "sinks[1].name",
		"dlq.file.overflow", "retry.codes.timeout", "windows.metrics[0].count", "windows.sink.type"} {
		if !strings.Contains(stderr, "c.yaml: "+key+": ") {
			t.Errorf("no problem for %s in:\n%s", key, stderr)
		}
	}
	if n := strings.Count(stderr, "the value of ${TP_TEST_LEAK} (not shown)"); n != 10 {
		t.Errorf("%d problems name the variable, want 10:\n%s", n, stderr)
	}
	_, _, stderr = runIn(t, dir, "validate", "typed.yaml")
	if !strings.Contains(stderr, "typed.yaml:3: the value expanded from the environment has the wrong type") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

// TestValidateRefusesHostExhaustingValues: values that would take the
// host's memory are refused before anything runs.
func TestValidateRefusesHostExhaustingValues(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "c.yaml"), "pipeline: {workers: 100000000, batch_bytes: 4GiB}\nsinks: [{type: discard}]\nwindows: {max_groups: 1000000000}\n")
	code, out, stderr := runIn(t, dir, "validate", "c.yaml")
	if code != exitUsage || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	for _, want := range []string{
		"c.yaml: pipeline.workers: 100000000 is above the limit 1024",
		"c.yaml: pipeline.batch_bytes: 4GiB is above the limit 256MiB",
		"c.yaml: windows.max_groups: 1000000000 is above the limit 1048576",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("no %q in:\n%s", want, stderr)
		}
	}
}
