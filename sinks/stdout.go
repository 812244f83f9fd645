package sinks

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Stdout writes records as JSON lines, encoded as the File sink encodes
// them, to a stream: standard output, so that `pipeline replay - | jq`
// works. Records are buffered and the buffer is written out at each Flush
// (the durability barrier) and at Close; so what is acknowledged has been
// handed to the stream, and a reader sees whole lines only. A write error
// (EPIPE when the reader went away) is permanent: the records go to the
// DLQ rather than being retried into a closed pipe.
type Stdout struct {
	name string

	mu     sync.Mutex
	w      *bufio.Writer
	err    error // sticky: the stream failed
	closed bool
}

// NewStdout returns a sink writing to w (standard output in the pipeline).
func NewStdout(name string, w io.Writer) *Stdout {
	if name == "" {
		name = "stdout"
	}
	return &Stdout{name: name, w: bufio.NewWriterSize(w, 256<<10)}
}

// Name implements pipeline.Sink.
func (s *Stdout) Name() string { return s.name }

// Write implements pipeline.Sink. The bufio.Writer writes through to the
// stream when its buffer fills: a record is never split across two calls
// of Write into the buffer, so a failure leaves whole lines behind it,
// except for the one the stream cut, which no reader of a broken pipe sees.
func (s *Stdout) Write(_ context.Context, b *pipeline.Batch, recs []int32) error {
	if len(recs) == 0 {
		return nil
	}
	buf := GetScratch()
	defer PutScratch(buf)
	for _, i := range recs {
		*buf = AppendRecord(*buf, &b.Records[i], b.Buf)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return pipeline.Permanent(fmt.Errorf("stdout sink %s: write after Close", s.name))
	}
	if s.err != nil {
		return pipeline.Permanent(s.err)
	}
	if _, err := s.w.Write(*buf); err != nil {
		s.err = fmt.Errorf("stdout sink %s: %w", s.name, err)
		return pipeline.Permanent(s.err)
	}
	return nil
}

// Flush implements pipeline.Sink: the buffered records are written to the
// stream.
func (s *Stdout) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flush()
}

func (s *Stdout) flush() error {
	if s.err != nil {
		return s.err
	}
	if err := s.w.Flush(); err != nil {
		s.err = fmt.Errorf("stdout sink %s: %w", s.name, err)
	}
	return s.err
}

// Close implements pipeline.Sink: it flushes; the stream is not closed
// (it belongs to the process).
func (s *Stdout) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.err
	}
	s.closed = true
	return s.flush()
}
