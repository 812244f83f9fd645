package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/config"
)

// TestReplayLineLimitFollowsFormat: under the default limits, read with
// format auto, a 3 MiB OTLP request on one line (as the Collector's file
// exporter writes big batches) is decoded, and a 3 MiB jsonl line is one
// too_large DLQ entry.
func TestReplayLineLimitFollowsFormat(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	big := strings.Repeat("x", 3<<20)
	otlp := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",` +
		`"name":"big","startTimeUnixNano":"1718000000000000000","attributes":[{"key":"blob","value":{"stringValue":"` + big + `"}}]}]}]}]}` + "\n"
	jsonl := `{"trace_id":"5b8efff798038103d269b633813fc60c","msg":"` + big + `"}` + "\n" +
		`{"trace_id":"5b8efff798038103d269b633813fc60c","msg":"small"}` + "\n"
	for name, data := range map[string]string{"export.jsonl": otlp, "app.jsonl": jsonl} {
		if err := os.WriteFile(filepath.Join(in, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Decode([]byte(fmt.Sprintf(`
pipeline: {workers: 2}
sinks: [{name: records, type: file, file: {dir: %s/records}}]
dlq: {file: {dir: %s/dlq}}
`, out, out)), "test.yaml", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), cfg, Options{Paths: []string{in}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RecordsIn != 3 || rep.RecordsOut != 2 || rep.DLQ["total"] != 1 || !rep.Reconciled {
		t.Fatalf("report %+v", rep)
	}
	e := readDLQ(t, filepath.Join(out, "dlq"))
	if len(e) != 1 || e[0].Error.Code != "too_large" || !strings.HasSuffix(e[0].Source.Path, "app.jsonl") {
		t.Fatalf("DLQ %+v", e)
	}
	// The span went out whole: its 3 MiB attribute is in the output.
	files, _ := filepath.Glob(filepath.Join(out, "records", "*.jsonl"))
	var sawBig bool
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sawBig = sawBig || strings.Contains(string(data), `"blob":"`+big+`"`)
	}
	if !sawBig {
		t.Fatal("the 3 MiB OTLP span is not in the output whole")
	}
}
