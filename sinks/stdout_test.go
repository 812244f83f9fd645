package sinks

import (
	"bytes"
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

// failWriter fails every write as a pipe whose reader went away does.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestStdoutSink: records are held until the barrier's Flush, then written
// as the file sink encodes them; a broken stream is a permanent failure.
func TestStdoutSink(t *testing.T) {
	ctx := context.Background()
	b := &pipeline.Batch{}
	sampleRecord(b)
	var out bytes.Buffer
	s := NewStdout("", &out)
	if err := s.Write(ctx, b, []int32{0, 0}); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("written before the barrier: %q", out.String())
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	line := AppendRecord(nil, &b.Records[0], b.Buf)
	if want := string(line) + string(line); out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
	if err := s.Close(ctx); err != nil || s.Name() != "stdout" {
		t.Fatal(err, s.Name())
	}

	s = NewStdout("out", failWriter{})
	_ = s.Write(ctx, b, []int32{0})
	if err := s.Flush(ctx); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("flush: %v", err)
	}
	if err := s.Write(ctx, b, []int32{0}); !errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("write after a broken stream: %v, want permanent", err)
	}
}
