package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dedupe"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
)

// markFile marks, in store, the records of a file sink's file (a .part a
// dead process left) as taken by that sink. Records without both a trace
// id and a span id cannot be marked this way (their key is their input's
// hash) and may repeat.
func markFile(ctx context.Context, store dedupe.Store, sink, path string) (int, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 64<<20)
	var ids [][2]string
	n := 0
	flush := func() error {
		err := dedupe.MarkTaken(ctx, store, sink, ids)
		ids = ids[:0]
		return err
	}
	for sc.Scan() {
		var rec struct {
			TraceID string `json:"trace_id"`
			SpanID  string `json:"span_id"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue // recovery keeps whole records only; not ours to judge
		}
		ids = append(ids, [2]string{rec.TraceID, rec.SpanID})
		n++
		if len(ids) == 4096 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	return n, flush()
}

// markDLQRecovered marks, in the DLQ's dedupe, the entries of the newest
// segments of the file DLQ in dir: a process that died may have written
// them after its last sync, before marking them. Entries of a DLQ replay
// (source kind "dlq") are never deduplicated and are left out.
func markDLQRecovered(ctx context.Context, d *dedupe.DeadLetters, dir string) error {
	seen := map[string]int{} // input and offset -> entries so far: the ordinal
	var keys [][]byte
	err := dlq.ScanNewest(dir, 2, func(e *dlq.Entry) error {
		s := &e.Source
		switch {
		case s.Kind == "dlq" || s.Kind == "window_row":
		case e.Error.Class == string(pipeline.ClassFile):
			keys = append(keys, dedupe.DLQSourceKey(pipeline.SourceFailure{Kind: s.Kind, Path: s.Path, Code: e.Error.Code}))
		default:
			input := s.Key
			if input == "" {
				input = s.Path
			}
			at := input + "\x00" + strconv.FormatInt(s.Offset, 10)
			keys = append(keys, dedupe.DLQKey(input, s.Offset, seen[at]))
			seen[at]++
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dedupe: read the newest DLQ segments: %w", err)
	}
	return d.MarkStored(ctx, keys)
}
