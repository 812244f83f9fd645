package file

import (
	"bufio"
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/tracepipe/tracepipe/pipeline"
)

// spanLines returns about size bytes of ~600-byte JSON span lines.
func spanLines(size int) []byte {
	var buf bytes.Buffer
	buf.Grow(size + 1024)
	for i := 0; buf.Len() < size; i++ {
		fmt.Fprintf(&buf, `{"traceId":"%032x","spanId":"%016x","parentSpanId":"%016x","name":"GET /api/v1/orders/{id}",`+
			`"kind":"SPAN_KIND_SERVER","startTimeUnixNano":"%d","endTimeUnixNano":"%d","service":"checkout-%d",`+
			`"attributes":{"http.method":"GET","http.route":"/api/v1/orders/{id}","http.status_code":200,`+
			`"net.peer.ip":"10.0.%d.%d","user.id":"user-%06d","region":"eu-west-1","pad":"%s"},`+
			`"status":{"code":"STATUS_CODE_OK"}}`+"\n",
			i*7919, i*104729, i*1299709, 1700000000000000000+int64(i)*1000, 1700000000000500000+int64(i)*1000,
			i%17, i%256, i%251, i%100000, strings.Repeat("x", 60+i%40))
	}
	return buf.Bytes()
}

// benchRead reads path with one reader goroutine and drains the batches.
func benchRead(b *testing.B, path string, decoded int64) {
	opts := DefaultOptions()
	opts.Format = pipeline.FormatJSONL
	opts.Concurrency = 1
	r, err := NewReader(opts)
	if err != nil {
		b.Fatal(err)
	}
	files := []File{{Path: path}}
	b.SetBytes(decoded)
	b.ReportAllocs()
	var units int
	for b.Loop() {
		out := make(chan *pipeline.Batch, 8)
		done := make(chan int)
		go func() {
			n := 0
			for bt := range out {
				n += len(bt.Units)
				pipeline.PutBatch(bt)
			}
			done <- n
		}()
		r.Run(context.Background(), files, out, func(fe FileError) { b.Error(fe) })
		close(out)
		units = <-done
	}
	b.ReportMetric(float64(units), "units/op")
}

func writeBenchFile(b *testing.B, name string, data []byte) string {
	p := filepath.Join(b.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

const benchSize = 64 << 20

// BenchmarkReadNDJSON reads a 64 MiB file of ~600-byte lines.
func BenchmarkReadNDJSON(b *testing.B) {
	data := spanLines(benchSize)
	benchRead(b, writeBenchFile(b, "spans.ndjson", data), int64(len(data)))
}

// BenchmarkReadNDJSONScanner is the standard library baseline: bufio.Scanner
// with a 1 MiB buffer, lines copied into batches of the same shape.
func BenchmarkReadNDJSONScanner(b *testing.B) {
	data := spanLines(benchSize)
	path := writeBenchFile(b, "spans.ndjson", data)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		bt := pipeline.GetBatch()
		var off, line int64
		for sc.Scan() {
			line++
			p := sc.Bytes()
			bt.AddUnit(p, off, line, int64(len(p)), 0)
			off += int64(len(p)) + 1
			if len(bt.Units) >= DefaultBatchUnits || len(bt.Buf) >= DefaultBatchBytes {
				pipeline.PutBatch(bt)
				bt = pipeline.GetBatch()
			}
		}
		pipeline.PutBatch(bt)
		f.Close()
	}
}

// BenchmarkReadGzip reads the same lines gzip-compressed.
func BenchmarkReadGzip(b *testing.B) {
	data := spanLines(benchSize)
	benchRead(b, writeBenchFile(b, "spans.ndjson.gz", gzipBytes(data)), int64(len(data)))
}

// BenchmarkReadZstd reads the same lines zstd-compressed.
func BenchmarkReadZstd(b *testing.B) {
	data := spanLines(benchSize)
	benchRead(b, writeBenchFile(b, "spans.ndjson.zst", zstdBytes(data)), int64(len(data)))
}

// BenchmarkGunzip compares the two gzip decoders on the same stream
// (decompression only), the figure behind the choice of klauspost's.
func BenchmarkGunzip(b *testing.B) {
	data := spanLines(benchSize)
	gz := gzipBytes(data)
	b.Run("klauspost", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		zr := new(gzip.Reader)
		for b.Loop() {
			zr.Reset(bufio.NewReaderSize(bytes.NewReader(gz), 256<<10))
			if _, err := io.Copy(io.Discard, zr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		zr := new(stdgzip.Reader)
		for b.Loop() {
			zr.Reset(bufio.NewReaderSize(bytes.NewReader(gz), 256<<10))
			if _, err := io.Copy(io.Discard, zr); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// prettyArrays returns about size bytes of pretty-printed JSON arrays of
// 2,000 spans each, one after another.
func prettyArrays(size int) []byte {
	lines := bytes.Split(bytes.TrimSpace(spanLines(size*9/10)), []byte{'\n'})
	var buf bytes.Buffer
	for i, l := range lines {
		switch {
		case i%2000 == 0:
			buf.WriteString("[\n  ")
		default:
			buf.WriteString(",\n  ")
		}
		// Indent like a pretty printer would: one field per line.
		buf.Write(bytes.ReplaceAll(l, []byte(`","`), []byte("\",\n    \"")))
		if i%2000 == 1999 || i == len(lines)-1 {
			buf.WriteString("\n]\n")
		}
	}
	return buf.Bytes()
}

// BenchmarkReadDocuments reads 64 MiB of pretty-printed JSON arrays of 2,000
// spans each, one after another (document framing, the bracket scanner).
func BenchmarkReadDocuments(b *testing.B) {
	data := prettyArrays(benchSize)
	benchRead(b, writeBenchFile(b, "spans.json", data), int64(len(data)))
}

// BenchmarkSplitNDJSON is the splitter alone on an in-memory stream, units
// not copied anywhere.
func BenchmarkSplitNDJSON(b *testing.B) {
	data := spanLines(benchSize)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var s splitter
	lim := splitterLimits{maxLine: DefaultMaxLineBytes, maxDoc: DefaultMaxDocumentBytes, keep: DefaultKeepBytes, readSize: DefaultReadBufferBytes}
	for b.Loop() {
		s.reset(bytes.NewReader(data), lim)
		for {
			if _, ok := s.next(); !ok {
				break
			}
		}
	}
}

// BenchmarkSplitDocuments is the splitter alone on pretty-printed span
// arrays (document framing, the bracket scanner), units not copied.
func BenchmarkSplitDocuments(b *testing.B) {
	data := prettyArrays(benchSize)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var s splitter
	var br bytes.Reader
	lim := splitterLimits{maxLine: DefaultMaxLineBytes, maxDoc: DefaultMaxDocumentBytes, keep: DefaultKeepBytes, readSize: DefaultReadBufferBytes}
	units := 0
	for b.Loop() {
		br.Reset(data)
		s.reset(&br, lim)
		units = 0
		for {
			if _, ok := s.next(); !ok {
				break
			}
			units++
		}
	}
	b.ReportMetric(float64(units), "units/op")
}
