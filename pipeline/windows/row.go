package windows

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fastjson"

	"github.com/tracepipe/tracepipe/internal/jsonstr"
)

// OverflowGroup is the value of every group field in the row that counts
// the records past windows.max_groups.
const OverflowGroup = "__overflow__"

// Row is one (metric, group, window) result: the distinct estimate, the
// records counted, and the serialized sketch that query merges. Rows are
// upserts keyed by (Metric, Group, Start, Instance): a later Revision of the
// same key replaces an earlier one, and every revision's sketch holds all
// the values of the earlier ones, so merging any set of rows never counts a
// value twice.
type Row struct {
	Metric string
	Start  time.Time // UTC, inclusive
	End    time.Time // UTC, exclusive
	// GroupKeys are the metric's group_by fields, in config order, and
	// GroupValues their values in this group ("" when a record lacks one).
	GroupKeys   []string
	GroupValues []string
	Estimate    uint64
	// Records is how many records this instance counted into the row
	// (records lacking the counted field are not counted).
	Records int64
	// Revision starts at 1 and grows each time late records correct a
	// closed window (late_policy: update).
	Revision  int
	Instance  string
	Precision int
	// Sketch is the axiomhq/hyperloglog MarshalBinary encoding.
	Sketch []byte
}

// GroupJSON returns the group as a JSON object, keys in config order; it
// names the group in store keys and output.
func (r *Row) GroupJSON() string {
	return string(appendGroup(nil, r.GroupKeys, r.GroupValues))
}

func appendGroup(dst []byte, keys, values []string) []byte {
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonstr.AppendString(dst, k)
		dst = append(dst, ':')
		dst = jsonstr.AppendString(dst, values[i])
	}
	return append(dst, '}')
}

// AppendJSON appends the row as one line of JSON, with its newline. Keys,
// in order: metric, window_start, window_end, group, estimate, records,
// revision, instance, precision, sketch (base64, standard alphabet).
func (r *Row) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"metric":`...)
	dst = jsonstr.AppendString(dst, r.Metric)
	dst = append(dst, `,"window_start":"`...)
	dst = r.Start.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","window_end":"`...)
	dst = r.End.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","group":`...)
	dst = appendGroup(dst, r.GroupKeys, r.GroupValues)
	dst = append(dst, `,"estimate":`...)
	dst = strconv.AppendUint(dst, r.Estimate, 10)
	dst = append(dst, `,"records":`...)
	dst = strconv.AppendInt(dst, r.Records, 10)
	dst = append(dst, `,"revision":`...)
	dst = strconv.AppendInt(dst, int64(r.Revision), 10)
	dst = append(dst, `,"instance":`...)
	dst = jsonstr.AppendString(dst, r.Instance)
	dst = append(dst, `,"precision":`...)
	dst = strconv.AppendInt(dst, int64(r.Precision), 10)
	dst = append(dst, `,"sketch":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, r.Sketch)
	return append(dst, "\"}\n"...)
}

// ParseRow decodes one line written by AppendJSON. The group keeps its key
// order.
func ParseRow(line []byte) (*Row, error) {
	var p fastjson.Parser
	v, err := p.ParseBytes(line)
	if err != nil {
		return nil, fmt.Errorf("window row: %w", err)
	}
	o, err := v.Object()
	if err != nil {
		return nil, fmt.Errorf("window row: %w", err)
	}
	r := &Row{}
	str := func(k string) (string, error) {
		x := o.Get(k)
		if x == nil {
			return "", fmt.Errorf("window row: no %q", k)
		}
		b, err := x.StringBytes()
		if err != nil {
			return "", fmt.Errorf("window row: %s: %w", k, err)
		}
		return string(b), nil
	}
	num := func(k string) (int64, error) {
		x := o.Get(k)
		if x == nil {
			return 0, fmt.Errorf("window row: no %q", k)
		}
		n, err := x.Int64()
		if err != nil {
			return 0, fmt.Errorf("window row: %s: %w", k, err)
		}
		return n, nil
	}
	tm := func(k string) (time.Time, error) {
		s, err := str(k)
		if err != nil {
			return time.Time{}, err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("window row: %s: %w", k, err)
		}
		return t.UTC(), nil
	}
	var errs [9]error
	r.Metric, errs[0] = str("metric")
	r.Start, errs[1] = tm("window_start")
	r.End, errs[2] = tm("window_end")
	var est, rev, prec int64
	est, errs[3] = num("estimate")
	r.Records, errs[4] = num("records")
	rev, errs[5] = num("revision")
	r.Instance, errs[6] = str("instance")
	prec, errs[7] = num("precision")
	var sk string
	sk, errs[8] = str("sketch")
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	r.Estimate, r.Revision, r.Precision = uint64(est), int(rev), int(prec)
	if r.Sketch, err = base64.StdEncoding.DecodeString(sk); err != nil {
		return nil, fmt.Errorf("window row: sketch: %w", err)
	}
	g := o.Get("group")
	if g == nil {
		return nil, fmt.Errorf("window row: no \"group\"")
	}
	obj, err := g.Object()
	if err != nil {
		return nil, fmt.Errorf("window row: group: %w", err)
	}
	obj.Visit(func(k []byte, v *fastjson.Value) {
		b, e := v.StringBytes()
		if e != nil && err == nil {
			err = fmt.Errorf("window row: group %s: %w", k, e)
		}
		r.GroupKeys = append(r.GroupKeys, string(k))
		r.GroupValues = append(r.GroupValues, string(b))
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// RowWriter is a windows sink: it stores rows as upserts keyed by (metric,
// group, window start, instance). WriteRows and Flush are called by one
// goroutine at a time; rows hold their own memory.
//
// Flush returns once every row WriteRows took before it is durable (the
// file store: fsynced; the Redis store: replied to, which WriteRows
// already waits for). The window stage flushes after writing a cycle's
// rows and only then window-acks the batches those rows cover (see
// pipeline.WindowAcker): a source may then move its windowed position past
// them.
type RowWriter interface {
	Name() string
	WriteRows(ctx context.Context, rows []Row) error
	Flush(ctx context.Context) error
	Close() error
}

// RowReader is a windows store as query sees it.
type RowReader interface {
	// ReadRows calls fn with every stored row of metric whose window
	// starts in [from, to). Rows come in no particular order and may
	// include several revisions, runs and instances of one window: merging
	// all their sketches is always correct. fn must not keep r.
	ReadRows(ctx context.Context, metric string, from, to time.Time, fn func(r *Row) error) error
	Close() error
}
