package app

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sources/file"
)

func TestProgressLine(t *testing.T) {
	r, err := file.NewReader(file.Options{Format: pipeline.FormatJSONL})
	if err != nil {
		t.Fatal(err)
	}
	var acct pipeline.Accounting
	acct.RecordsIn.Add(1234)
	acct.DLQSent[0].Add(5)
	var buf bytes.Buffer
	p := newProgress(&buf, 3<<30, r, &acct)
	p.begin = time.Now().Add(-time.Second)
	p.draw()
	line := buf.String()
	for _, want := range []string{"\r[", "  0.0% 0 B/3.0 GiB", "ETA", "records 1234", "dlq 5", "\033[K"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
	// Without a terminal there is no bar at all.
	quiet := newProgress(nil, 1, r, &acct)
	quiet.start()
	quiet.stop()
}

func TestHumanBytes(t *testing.T) {
	f := func(n int64, want string) {
		t.Helper()
		if got := HumanBytes(n); got != want {
			t.Fatalf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	f(0, "0 B")
	f(1023, "1023 B")
	f(1024, "1.0 KiB")
	f(1536<<20, "1.5 GiB")
}
