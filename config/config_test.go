package config

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestShippedConfigIsTheEmbeddedDefault(t *testing.T) {
	shipped, err := os.ReadFile("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shipped, Default) {
		t.Fatal("config.yaml and config/default.yaml differ: edit one, copy it to the other")
	}
	cfg, err := Load("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Input.MaxLineBytes != 1<<20 || cfg.DLQ.File.Dir != "out/dlq" || cfg.Sinks[0].File.Dir != "out/records" {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if cfg.Pipeline.Workers <= 0 || cfg.Pipeline.Queue != cfg.Pipeline.Workers {
		t.Fatalf("workers %d queue %d", cfg.Pipeline.Workers, cfg.Pipeline.Queue)
	}
	if cfg.DLQ.File.SyncEvery != time.Second || cfg.DLQ.KeepBytes != 64<<10 {
		t.Fatalf("dlq %+v", cfg.DLQ)
	}
}

func TestEmptyConfigNeedsASink(t *testing.T) {
	_, err := Decode(nil, "x.yaml", env(nil))
	if err == nil || !strings.Contains(err.Error(), "sinks: at least one sink") {
		t.Fatalf("err = %v", err)
	}
}

func TestErrors(t *testing.T) {
	f := func(yaml string, vars map[string]string, want ...string) {
		t.Helper()
		_, err := Decode([]byte(yaml), "c.yaml", env(vars))
		if err == nil {
			t.Fatalf("no error for:\n%s", yaml)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("error %q does not contain %q", err, w)
			}
		}
	}
	const sink = "sinks: [{type: discard}]\n"
	f(sink+"input:\n  max_line_byte: 10\n", nil, `c.yaml:3: unknown key "max_line_byte" in input (did you mean "max_line_bytes"?)`)
	f(sink+"inptu: {}\n", nil, `c.yaml:2: unknown key "inptu" in the top level (did you mean "input"?)`)
	f("sinks:\n  - type: file\n    file: {dir: x, rotat: 1}\n", nil, `c.yaml:3: unknown key "rotat" in sinks[0].file`)
	f(sink+"input: {format: xml}\n", nil, `c.yaml: input.format: "xml" is not one of auto, jsonl, otlp, zipkin`)
	f(sink+"input: {max_line_bytes: 12 parsecs}\n", nil, `c.yaml:2: "12 parsecs" is not a size`)
	f(sink+"pipeline: {workers: -1}\n", nil, "pipeline.workers: must be positive")
	f("sinks: [{type: file}]\n", nil, "sinks[0].file.dir: must be set")
	f("sinks: [{type: discard}, {type: discard}]\n", nil, `sinks[1].name: "discard" is used twice`)
	f(sink+"dlq: {file: {overflow: shrug}}\n", nil, `dlq.file.overflow: "shrug" is not one of fail, drop_oldest`)
	f(sink+"dlq:\n  file:\n    dir: ${DLQ_DIR}\n", nil, "c.yaml:4: environment variable DLQ_DIR is not set")
	// Problems come sorted by line, each with the file name.
	f(sink+"dlq:\n  file:\n    dir: ${NOPE}\npipeline:\n  wrokers: 3\n", nil,
		"c.yaml:4: environment variable NOPE is not set (write ${NOPE:-default} for a default)\nc.yaml:6: unknown key \"wrokers\" in pipeline (did you mean \"workers\"?)")
	f("sinks: [\n", nil, "c.yaml:1: did not find expected node content")
	// Two problems at once are both reported.
	f(sink+"input: {format: xml}\nparse: {invalid_utf8: maybe}\n", nil, "input.format", "parse.invalid_utf8")
}

func TestExpansion(t *testing.T) {
	yaml := "sinks:\n  - type: file\n    file:\n      dir: ${OUT:-out}/records\n      rotate_bytes: ${ROT}\n" +
		"dlq:\n  file:\n    dir: \"$${literal}\"\n"
	cfg, err := Decode([]byte(yaml), "c.yaml", env(map[string]string{"ROT": "2MiB"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Sinks[0].File.Dir; got != "out/records" {
		t.Fatalf("dir = %q", got)
	}
	if cfg.Sinks[0].File.RotateBytes != 2<<20 {
		t.Fatalf("rotate = %d", cfg.Sinks[0].File.RotateBytes)
	}
	if cfg.DLQ.File.Dir != "${literal}" {
		t.Fatalf("escaped = %q", cfg.DLQ.File.Dir)
	}
	// Expanded numbers resolve to numbers.
	cfg, err = Decode([]byte("sinks: [{type: discard}]\ninput:\n  concurrency: ${C}\n"), "c.yaml", env(map[string]string{"C": "7"}))
	if err != nil || cfg.Input.Concurrency != 7 {
		t.Fatalf("cfg %v err %v", cfg, err)
	}
}

func TestExpandedValuesNeverAppearInErrors(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	for _, yaml := range []string{
		"sinks: [{type: discard}]\ninput:\n  concurrency: ${SECRET}\n",
		"sinks: [{type: discard}]\ninput:\n  max_line_bytes: ${SECRET}\n",
	} {
		_, err := Decode([]byte(yaml), "c.yaml", env(map[string]string{"SECRET": secret}))
		if err == nil {
			t.Fatalf("no error for %q", yaml)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("secret leaked: %v", err)
		}
	}
}

func TestByteSize(t *testing.T) {
	f := func(in string, want ByteSize) {
		t.Helper()
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Fatalf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	f("0", 0)
	f("4096", 4096)
	f("512KiB", 512<<10)
	f("1MiB", 1<<20)
	f("2 GiB", 2<<30)
	f("10MB", 10e6)
	f("7B", 7)
	for _, bad := range []string{"", "-1", "1.5MiB", "MiB", "1PiB", "99999999999TiB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Fatalf("ParseByteSize(%q) accepted", bad)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Fatalf("String = %q", s)
	}
}

// FuzzDecode: any bytes give a config or an error, never a panic, and a
// config that decodes is one that validates.
func FuzzDecode(f *testing.F) {
	f.Add(Default)
	f.Add([]byte("sinks: [{type: discard}]\ninput: {max_line_bytes: ${X:-1MiB}}\n"))
	f.Add([]byte("sinks:\n  - type: file\n    file: {dir: x, rotate_bytes: 1GiB}\n"))
	f.Add([]byte("a: [b, {c: d}]\n&x y: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Decode(data, "fuzz.yaml", env(map[string]string{"X": "2MiB"}))
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("decoded config does not validate: %v", verr)
			}
		}
	})
}
