package parsers_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/parsers"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/windows"
)

type discardRows struct{}

func (discardRows) Name() string                                   { return "discard" }
func (discardRows) WriteRows(context.Context, []windows.Row) error { return nil }
func (discardRows) Flush(context.Context) error                    { return nil }
func (discardRows) Close() error                                   { return nil }

// Spellings of the two attributes the shipped metrics count, in a line.
var (
	hasUser  = regexp.MustCompile(`"(?:attributes\.|labels\.)?user\.id"|"user":\{"id"`)
	hasRoute = regexp.MustCompile(`"(?:attributes\.|labels\.)?http\.route"|"http":\{"route"`)
)

// TestShippedMetricsCountLayouts runs the shipped config's window stage
// (traces, users and routes per service) over every layout sample line
// that holds a trace id, a user id and a route, in whatever layout: each
// must be counted by all three metrics, with no missing_value. One stage
// per line, so that no line is late for another's window.
func TestShippedMetricsCountLayouts(t *testing.T) {
	cfg, err := config.Decode(config.Default, "default", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Windows.Metrics) != 3 {
		t.Fatalf("the shipped config has %d metrics, this test expects 3", len(cfg.Windows.Metrics))
	}
	opts := parsers.DefaultOptions()
	opts.MissingTraceID = "keep"
	if err := opts.Prepare(); err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join("..", "testdata", "parsers", "layouts", "*.jsonl"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no layout samples: %v", err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		tested := 0
		for n, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			if !hasUser.Match(line) || !hasRoute.Match(line) {
				continue
			}
			w, err := windows.New(windows.Options{Config: cfg.Windows, Workers: 1, Sink: discardRows{},
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			b := pipeline.GetBatch()
			b.Origin = &pipeline.Origin{Kind: "file", Path: p, Format: pipeline.FormatJSONL}
			b.AddUnit(line, 0, int64(n+1), int64(len(line)), 0)
			parsers.NewStage(&opts).Process(context.Background(), b)
			if len(b.Records) != 1 || b.Records[0].Failed() || len(b.Records[0].TraceID) == 0 {
				t.Fatalf("%s line %d: not one record with a trace id: %+v", p, n+1, b.Records)
			}
			w.Process(context.Background(), b)
			missing, counted := w.Stats.MissingValue.Load(), w.Stats.Counted.Load()
			if missing != 0 || counted != 1 {
				t.Errorf("%s line %d: missing_value %d, counted %d (want 0, 1); attributes %q", p, n+1, missing, counted, attrKeys(&b.Records[0]))
			}
			pipeline.PutBatch(b)
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			tested++
		}
		if tested == 0 {
			t.Errorf("%s: no line with a user id and a route", p)
		}
		t.Logf("%s: %d lines counted by all three metrics", filepath.Base(p), tested)
	}
}

func attrKeys(r *pipeline.Record) []string {
	var ks []string
	for _, a := range r.Attrs {
		ks = append(ks, string(a.Key))
	}
	return ks
}
