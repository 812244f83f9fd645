package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/gen"
)

func cmdGen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o gen.Options
	fs.StringVar(&o.Format, "format", "jsonl", "jsonl | otlp | zipkin")
	size := fs.String("size", "", "stop after this much output, e.g. 64MiB, 1GiB")
	fs.Int64Var(&o.Records, "records", 0, "stop after this many records (spans)")
	fs.Uint64Var(&o.Seed, "seed", 1, "random seed: the same flags give byte-identical output")
	fs.Float64Var(&o.Malformed, "malformed", 0, "fraction of lines that are bad, 0..1")
	fs.IntVar(&o.Services, "services", 0, "number of services (default 12)")
	fs.IntVar(&o.Users, "users", 0, "number of distinct users (default 50000)")
	fs.IntVar(&o.Traces, "traces", 0, "distinct trace ids to draw from (default: every trace new)")
	outPath := fs.String("o", "-", "output file, - for stdout; gzip when it ends in .gz")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return usageError(stderr, err)
	}
	if *size != "" {
		n, err := config.ParseByteSize(*size)
		if err != nil {
			return usageError(stderr, fmt.Errorf("gen --size: %w", err))
		}
		o.Size = int64(n)
	}
	if o.Size == 0 && o.Records == 0 {
		return usageError(stderr, errors.New("gen: give --size or --records"))
	}
	if err := o.Validate(); err != nil {
		return usageError(stderr, err)
	}
	st, err := writeGen(*outPath, o, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: gen: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stderr, "gen: %d records in %d lines (%d malformed), %d bytes\n", st.Records, st.Units, st.Malformed, st.Bytes)
	return exitOK
}

// writeGen writes the generated logs to path (stdout for "-"), gzipped when
// the name ends in .gz; the file is complete only once this returns nil.
func writeGen(path string, o gen.Options, stdout io.Writer) (gen.Stats, error) {
	if path == "-" {
		return gen.Generate(stdout, o) // Generate buffers its own writes
	}
	f, err := os.Create(path)
	if err != nil {
		return gen.Stats{}, err
	}
	var w io.Writer = f
	var zw *gzip.Writer
	if strings.HasSuffix(path, ".gz") {
		zw, _ = gzip.NewWriterLevel(f, gzip.BestSpeed)
		w = zw
	}
	st, err := gen.Generate(w, o)
	if zw != nil {
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
	}
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return st, err
}
