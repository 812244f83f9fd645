package config

import (
	"os"
	"strings"
	"testing"
)

// TestPerFormatAndPerSignalForms: the per-format sizes and the per-signal
// missing trace id policy take a mapping or, as before, one value for all;
// the defaults follow the format and the signal; bad keys are refused by
// line.
func TestPerFormatAndPerSignalForms(t *testing.T) {
	load := func(y string) (*Config, error) {
		return Decode([]byte("sinks: [{type: discard}]\n"+y), "t.yaml", os.LookupEnv)
	}
	cfg, err := load("")
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Input.MaxLineBytes; l.JSONL != 1<<20 || l.OTLP != 64<<20 || l.Zipkin != 64<<20 || l.For("auto") != 64<<20 || l.For("jsonl") != 1<<20 {
		t.Errorf("default line limits %+v", l)
	}
	if m := cfg.Parse.MissingTraceID; m.Spans != "invalid" || m.Logs != "keep" {
		t.Errorf("default missing_trace_id %+v", m)
	}
	cfg, err = load("input: {max_line_bytes: 2MiB, max_document_bytes: {otlp: 8MiB}}\nparse: {missing_trace_id: filter}\n")
	if err != nil {
		t.Fatal(err)
	}
	if l, d := cfg.Input.MaxLineBytes, cfg.Input.MaxDocumentBytes; l.JSONL != 2<<20 || l.OTLP != 2<<20 || d.OTLP != 8<<20 || d.JSONL != 16<<20 {
		t.Errorf("scalar / partial mapping: %+v %+v", l, d)
	}
	if m := cfg.Parse.MissingTraceID; m.Spans != "filter" || m.Logs != "filter" {
		t.Errorf("scalar missing_trace_id %+v", m)
	}
	cfg, err = load("parse:\n  missing_trace_id: {logs: invalid}\n")
	if err != nil {
		t.Fatal(err)
	}
	if m := cfg.Parse.MissingTraceID; m.Spans != "invalid" || m.Logs != "invalid" {
		t.Errorf("mapping missing_trace_id %+v", m)
	}
	for y, want := range map[string]string{
		"input: {max_line_bytes: {json: 1MiB}}\n":    `t.yaml:2: unknown format "json"`,
		"parse:\n  missing_trace_id: {span: keep}\n": `t.yaml:3: unknown signal "span"`,
		"parse:\n  missing_trace_id: {logs: drop}\n": `parse.missing_trace_id.logs: "drop" is not one of`,
		"parse:\n  missing_trace_id: ignore\n":       `parse.missing_trace_id: "ignore" is not one of`,
		"input: {max_line_bytes: {otlp: 512MiB}}\n":  `input.max_line_bytes.otlp: 512MiB is above the limit`,
		"input: {max_document_bytes: 2GiB}\n":        `input.max_document_bytes: 2GiB is above the limit`,
	} {
		if _, err := load(y); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", y, err, want)
		}
	}
}
