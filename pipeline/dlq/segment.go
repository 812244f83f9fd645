package dlq

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Segment file format: one entry per line, written as
//
//	<8 lowercase hex digits: CRC-32C of the JSON> <compact JSON of the Entry>\n
//
// so `cut -c10- SEGMENT | jq` reads it. Names are
// dlq-<creation time, UTC, to the second>-<sequence, 6+ digits>-<run id>.seg:
// they sort by creation for one writer (the sequence goes on from the highest
// found in the directory), and the run id keeps them unique across processes.

// MaxLineBytes bounds one stored line (checksum, JSON and newline). Put
// refuses a larger entry (cut its payload with SetPayload's keep) and Scan
// reports a longer line as a corruption without holding it in memory.
const MaxLineBytes = 64 << 20

// maxLine is MaxLineBytes, lowered by tests.
var maxLine int64 = MaxLineBytes

const (
	segmentPrefix = "dlq-"
	segmentSuffix = ".seg"
	crcLen        = 8 // hex digits
	linePrefixLen = crcLen + 1
	hexDigits     = "0123456789abcdef"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentName returns the name of the segment with sequence seq created at t
// by the run runID.
func segmentName(t time.Time, seq int, runID string) string {
	return fmt.Sprintf("%s%s-%06d-%s%s", segmentPrefix, t.UTC().Format("20060102T150405Z"), seq, runID, segmentSuffix)
}

// isSegmentName reports whether a directory entry is a segment.
func isSegmentName(name string) bool {
	return strings.HasPrefix(name, segmentPrefix) && strings.HasSuffix(name, segmentSuffix) &&
		len(name) > len(segmentPrefix)+len(segmentSuffix)
}

// segmentSeq returns the sequence number in a segment name of our form.
func segmentSeq(name string) (int, bool) {
	parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(name, segmentPrefix), segmentSuffix), "-")
	if len(parts) != 3 {
		return 0, false
	}
	n, err := strconv.Atoi(parts[1])
	return n, err == nil && n >= 0
}

// segmentNames returns the names of the segments in dir, oldest first.
func segmentNames(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("dlq: read directory %s: %w", dir, err)
	}
	var names []string
	for _, de := range des {
		if de.Type().IsRegular() && isSegmentName(de.Name()) {
			names = append(names, de.Name()) // ReadDir sorts by name
		}
	}
	return names, nil
}

// item is one encoded line on its way to the writer, or a sync barrier
// (done != nil). Items are pooled: the line is valid until putItem.
type item struct {
	line []byte
	key  EntryKey // what the entry counts under in Stats
	done chan error
}

var itemPool = sync.Pool{New: func() any { return new(item) }}

// maxPooledLine keeps unusually large buffers out of the pool.
const maxPooledLine = 1 << 20

// encodeItem encodes e as one segment line in a pooled item.
func encodeItem(e *Entry) (*item, error) {
	it := itemPool.Get().(*item)
	line := append(it.line[:0], "00000000 "...)
	line, ok := appendEntry(line, e)
	if !ok {
		// A time encoding/json refuses: let it say why.
		js, err := json.Marshal(e)
		if err != nil {
			it.line = line
			putItem(it)
			return nil, fmt.Errorf("dlq: encode entry %s: %w", e.ID, err)
		}
		line = append(line[:linePrefixLen], js...)
	}
	line = append(line, '\n')
	putCRC(line[:crcLen], crc32.Checksum(line[linePrefixLen:len(line)-1], castagnoli))
	it.line = line
	it.key = keyOf(e)
	return it, nil
}

// putItem returns it to the pool; it must not be used after.
func putItem(it *item) {
	if it.done != nil || cap(it.line) > maxPooledLine {
		return
	}
	it.line, it.key = it.line[:0], EntryKey{}
	itemPool.Put(it)
}

// putCRC writes sum as 8 lowercase hex digits into b.
func putCRC(b []byte, sum uint32) {
	for i := crcLen - 1; i >= 0; i-- {
		b[i] = hexDigits[sum&15]
		sum >>= 4
	}
}

// parseLine checks one line without its '\n' and returns its JSON, or why it
// is not a good line.
func parseLine(line []byte) (js []byte, reason string) {
	if len(line) <= linePrefixLen || line[crcLen] != ' ' {
		return nil, "not an entry line (want 8 hex digits, a space, JSON)"
	}
	var want uint32
	for _, c := range line[:crcLen] {
		v, ok := unhex(c)
		if !ok {
			return nil, "not an entry line (want 8 lowercase hex digits first)"
		}
		want = want<<4 | v
	}
	js = line[linePrefixLen:]
	if got := crc32.Checksum(js, castagnoli); got != want {
		return nil, fmt.Sprintf("checksum mismatch: line says %08x, content has %08x", want, got)
	}
	return js, ""
}
