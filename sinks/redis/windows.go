// Package redis holds the Redis sinks. Windows is the windows store: it
// writes window rows (pipeline/windows.Row) as upserts and reads them back
// for query.
//
// # Data model
//
// With P the configured key_prefix (default "tracepipe:"):
//
//   - One hash per metric and window: P + "w:" + metric + ":" + the window
//     start in Unix seconds, e.g. "tracepipe:w:traces_per_service:1767225600".
//   - One field in it per group and instance: the instance name, a tab, and
//     the group as JSON (Row.GroupJSON), e.g. "host-a\t{"service":"api"}".
//     The value is the row as one JSON line without its newline
//     (Row.AppendJSON; windows.ParseRow reads it): metric, window bounds,
//     group, estimate, records, revision, instance, precision and the
//     sketch (base64 of the HyperLogLog encoding).
//   - One index per metric, a sorted set: P + "wi:" + metric, whose members
//     are the metric's window hash keys, scored by window start (Unix
//     seconds). Reads find the windows of a time range there without
//     knowing the window size.
//
// Writes are upserts that never lose what is stored: before a field is
// written, the value already there is read and its sketch merged into the
// new row's (the union of both; revision the larger, records the new
// row's). Replaying the same input therefore leaves every row as it was,
// and a second run of the same instance over other files of a window adds
// its values to the window. Rows of different precisions are never merged:
// such a write fails and names both. A batch is written in chunks of up to
// 500 rows, each one read round trip (HMGET per window, pipelined) and one
// write round trip (HSET, ZADD, EXPIRE in a MULTI/EXEC transaction); if a
// write fails half-way, the chunks before it are stored, and writing the
// whole batch again is safe.
//
// Processes sharing a store must use distinct instance names: each owns
// its fields, so they never overwrite each other, but two writers of the
// same instance could both read a field, merge and write, and the second
// write would drop the first one's values.
//
// # Expiry
//
// With ttl > 0, each window hash gets EXPIRE ttl after every write to it,
// so a window lives ttl past its last write; the index gets the same
// EXPIRE on every write, so it outlives every window it lists. Index
// members whose window has expired are removed as they are found: by
// reads, and on writes by a pass over the members older than now - ttl,
// at most once per ttl and metric. A member is removed only after its key
// was checked to be gone, in the same server-side step, so a window that
// was written recently, whatever its start (a replay of old logs), stays
// listed. With ttl 0 windows are kept until deleted by hand.
package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/internal/redisconn"
	"github.com/tracepipe/tracepipe/pipeline/windows"
)

const (
	// writeChunk is the most rows one read and write round trip carries.
	writeChunk = 500
	// indexPage is how many index members one ZRANGE returns.
	indexPage = 512
	// readKeys is how many window hashes one read round trip scans, and
	// scanCount the COUNT of each HSCAN: together they bound the memory a
	// read holds (32 x ~128 values; a dense sketch is ~22 KB of base64).
	readKeys  = 32
	scanCount = 128
)

// Windows is the Redis windows store. It implements windows.RowWriter and
// windows.RowReader. WriteRows must not be called concurrently with
// itself; ReadRows may run alongside anything.
type Windows struct {
	client *goredis.Client
	log    *slog.Logger
	rl     *ratelog.Logger
	prefix string
	ttl    time.Duration

	skipped atomic.Int64

	mu       sync.Mutex
	lastTrim map[string]time.Time // per metric, the last write-side index pass
}

var (
	_ windows.RowWriter = (*Windows)(nil)
	_ windows.RowReader = (*Windows)(nil)
)

// NewWindows connects to the store: it checks that the server answers
// (within cfg.Timeout) and runs Redis 6.2 or later (ZRANGE BYSCORE).
func NewWindows(cfg config.WindowsRedis, log *slog.Logger) (*Windows, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := goredis.NewClient(redisconn.Options(cfg.Redis))
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := checkServer(ctx, c); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis windows store %s: %w", cfg.Addr, err)
	}
	return &Windows{
		client:   c,
		log:      log,
		rl:       ratelog.New(log, 10*time.Second),
		prefix:   cfg.KeyPrefix,
		ttl:      cfg.TTL,
		lastTrim: map[string]time.Time{},
	}, nil
}

func checkServer(ctx context.Context, c *goredis.Client) error {
	if err := c.Ping(ctx).Err(); err != nil {
		return err
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		// INFO may be renamed away on managed servers: not fatal.
		return nil
	}
	for line := range strings.Lines(info) {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		var major, minor int
		if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err == nil && (major < 6 || major == 6 && minor < 2) {
			return fmt.Errorf("server is Redis %s; the windows store needs 6.2 or later", v)
		}
	}
	return nil
}

// Name names the sink in logs and reports.
func (w *Windows) Name() string { return "redis" }

// Close closes the connections.
func (w *Windows) Close() error {
	w.rl.Flush() // the count of rows skipped since the last line
	return w.client.Close()
}

// Flush implements windows.RowWriter. Nothing is left to do: WriteRows
// returns once Redis has replied to every write, the store's durability
// point (as for the Redis sinks: what the server's persistence settings
// make of it is the server's).
func (w *Windows) Flush(context.Context) error { return nil }

// Skipped is how many stored values could not be read as rows (and were
// skipped by ReadRows, or replaced by WriteRows), since the store opened.
func (w *Windows) Skipped() int64 { return w.skipped.Load() }

func (w *Windows) windowKey(metric string, start int64) string {
	return w.prefix + "w:" + metric + ":" + strconv.FormatInt(start, 10)
}

func (w *Windows) indexKey(metric string) string { return w.prefix + "wi:" + metric }

// fieldOf names a row's field in its window hash.
func fieldOf(r *windows.Row) string { return r.Instance + "\t" + r.GroupJSON() }

// pending is one field to write: the row as it will be stored.
type pending struct {
	field string
	row   windows.Row
}

// window gathers the fields of one window hash in a chunk.
type window struct {
	key, index string
	start      int64
	fields     []*pending
	stored     *goredis.SliceCmd
}

// WriteRows stores rows as upserts, merging each into what is stored under
// the same metric, window, group and instance (see the package comment).
func (w *Windows) WriteRows(ctx context.Context, rows []windows.Row) error {
	// Check every row before writing any.
	for i := range rows {
		r := &rows[i]
		if r.Metric == "" {
			return errors.New("redis windows: row without a metric")
		}
		if r.Start.Nanosecond() != 0 {
			return fmt.Errorf("redis windows: %s: window start %s is not a whole second", r.Metric, r.Start.UTC().Format(time.RFC3339Nano))
		}
	}
	metrics := map[string]bool{}
	for len(rows) > 0 {
		n := min(len(rows), writeChunk)
		if err := w.writeChunk(ctx, rows[:n], metrics); err != nil {
			return err
		}
		rows = rows[n:]
	}
	if w.ttl > 0 {
		for m := range metrics {
			w.maybeTrim(ctx, m)
		}
	}
	return nil
}

func (w *Windows) writeChunk(ctx context.Context, rows []windows.Row, metrics map[string]bool) error {
	var order []*window
	byKey := map[string]*window{}
	byField := map[[2]string]*pending{}
	for i := range rows {
		r := &rows[i]
		start := r.Start.Unix()
		key := w.windowKey(r.Metric, start)
		win := byKey[key]
		if win == nil {
			win = &window{key: key, index: w.indexKey(r.Metric), start: start}
			byKey[key] = win
			order = append(order, win)
			metrics[r.Metric] = true
		}
		field := fieldOf(r)
		if p := byField[[2]string{key, field}]; p != nil {
			// The same row twice in one batch: the later is newer.
			next := *r
			if err := mergeRows(&p.row, &next); err != nil {
				return fmt.Errorf("redis windows: %s field %q, twice in one batch: %w", key, field, err)
			}
			p.row = next
			continue
		}
		p := &pending{field: field, row: *r}
		byField[[2]string{key, field}] = p
		win.fields = append(win.fields, p)
	}

	// One round trip reads every stored field the chunk writes.
	pipe := w.client.Pipeline()
	for _, win := range order {
		names := make([]string, len(win.fields))
		for i, p := range win.fields {
			names[i] = p.field
		}
		win.stored = pipe.HMGet(ctx, win.key, names...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis windows: read stored rows: %w", err)
	}
	for _, win := range order {
		for i, v := range win.stored.Val() {
			s, ok := v.(string)
			if !ok {
				continue // not stored yet
			}
			p := win.fields[i]
			old, err := windows.ParseRow([]byte(s))
			if err != nil {
				w.skip("replacing a stored value that is not a row", win.key, p.field, err)
				continue
			}
			if err := mergeRows(old, &p.row); err != nil {
				if errors.Is(err, errCorrupt) {
					w.skip("replacing a stored row whose sketch does not decode", win.key, p.field, err)
					continue
				}
				return fmt.Errorf("redis windows: %s field %q: %w", win.key, p.field, err)
			}
		}
	}

	// One transaction writes them, lists the windows and sets expiries.
	tx := w.client.TxPipeline()
	var buf []byte
	for _, win := range order {
		args := make([]any, 0, 2*len(win.fields))
		for _, p := range win.fields {
			buf = p.row.AppendJSON(buf[:0])
			args = append(args, p.field, string(bytes.TrimSuffix(buf, []byte("\n"))))
		}
		tx.HSet(ctx, win.key, args...)
		tx.ZAdd(ctx, win.index, goredis.Z{Score: float64(win.start), Member: win.key})
		if w.ttl > 0 {
			tx.PExpire(ctx, win.key, w.ttl)
		}
	}
	if w.ttl > 0 {
		indexes := map[string]bool{}
		for _, win := range order {
			if !indexes[win.index] {
				indexes[win.index] = true
				tx.PExpire(ctx, win.index, w.ttl)
			}
		}
	}
	if _, err := tx.Exec(ctx); err != nil {
		return fmt.Errorf("redis windows: write %d rows: %w", len(rows), err)
	}
	return nil
}

// errCorrupt marks a stored sketch that does not decode.
var errCorrupt = errors.New("stored sketch does not decode")

// mergeRows makes next the upsert of next over old: next's fields, with
// the union of both sketches, its estimate, and the larger revision.
// next's sketch is replaced, never modified.
func mergeRows(old, next *windows.Row) error {
	if old.Precision != next.Precision {
		return fmt.Errorf("stored row has precision %d, the new row precision %d: sketches of different precisions cannot be merged (use another key_prefix, or delete the stored windows)", old.Precision, next.Precision)
	}
	if bytes.Equal(old.Sketch, next.Sketch) {
		next.Revision = max(next.Revision, old.Revision)
		return nil
	}
	stored, err := windows.Decode(old.Sketch)
	if err != nil {
		return fmt.Errorf("%w: %v", errCorrupt, err)
	}
	sk, err := windows.Decode(next.Sketch)
	if err != nil {
		return fmt.Errorf("new row: %w", err)
	}
	if err := sk.Merge(stored); err != nil {
		return err
	}
	est, b, err := windows.Encode(sk)
	if err != nil {
		return err
	}
	next.Estimate, next.Sketch = est, b
	next.Revision = max(next.Revision, old.Revision)
	return nil
}

func (w *Windows) skip(msg, key, field string, err error) {
	w.skipped.Add(1)
	// Rate-limited: a failure that hits one row hits the next ones too.
	w.rl.Warn("skip: "+msg, "redis windows: "+msg, "key", key, "field", field, "err", err)
}

// dropMissing removes from the index (KEYS[1]) each window key (KEYS[2:])
// that no longer exists, checking and removing in one atomic step so that
// a window written meanwhile stays listed.
var dropMissing = goredis.NewScript(`
local n = 0
for i = 2, #KEYS do
	if redis.call('EXISTS', KEYS[i]) == 0 then
		n = n + redis.call('ZREM', KEYS[1], KEYS[i])
	end
end
return n
`)

func (w *Windows) dropMissing(ctx context.Context, index string, keys []string) error {
	return dropMissing.Run(ctx, w.client, append([]string{index}, keys...)).Err()
}

// maybeTrim removes the metric's expired windows from its index, at most
// once per ttl. Only members scored before now - ttl can have expired (a
// window is written no earlier than it starts, unless clocks disagree;
// reads clean up after those). A failure is logged, not returned: the rows
// are stored.
func (w *Windows) maybeTrim(ctx context.Context, metric string) {
	now := time.Now()
	w.mu.Lock()
	due := now.Sub(w.lastTrim[metric]) >= w.ttl
	if due {
		w.lastTrim[metric] = now
	}
	w.mu.Unlock()
	if !due {
		return
	}
	index := w.indexKey(metric)
	lo, hi := "-inf", "("+strconv.FormatInt(now.Add(-w.ttl).Unix(), 10)
	for {
		zs, err := w.client.ZRangeArgsWithScores(ctx, goredis.ZRangeArgs{
			Key: index, Start: lo, Stop: hi, ByScore: true, Count: indexPage,
		}).Result()
		if err == nil && len(zs) > 0 {
			err = w.dropMissing(ctx, index, members(zs))
		}
		if err != nil {
			w.log.Warn("redis windows: trimming the index", "key", index, "err", err)
			return
		}
		if len(zs) < indexPage {
			return
		}
		lo = "(" + strconv.FormatInt(int64(zs[len(zs)-1].Score), 10)
	}
}

func members(zs []goredis.Z) []string {
	keys := make([]string, len(zs))
	for i, z := range zs {
		keys[i], _ = z.Member.(string)
	}
	return keys
}

// ceilUnix is the first whole second at or after t.
func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() != 0 {
		s++
	}
	return s
}

// ReadRows calls fn with every stored row of metric whose window starts in
// [from, to). A stored value that is not a row of that window is logged
// and skipped (see Skipped). Windows listed in the index that have expired
// are removed from it.
func (w *Windows) ReadRows(ctx context.Context, metric string, from, to time.Time, fn func(r *windows.Row) error) error {
	// Window starts are whole seconds: start >= from is start >=
	// ceil(from), and start < to is start < ceil(to).
	lo, hi := ceilUnix(from), ceilUnix(to)
	if lo >= hi {
		return nil
	}
	index := w.indexKey(metric)
	first, last := strconv.FormatInt(lo, 10), "("+strconv.FormatInt(hi, 10)
	for {
		zs, err := w.client.ZRangeArgsWithScores(ctx, goredis.ZRangeArgs{
			Key: index, Start: first, Stop: last, ByScore: true, Count: indexPage,
		}).Result()
		if err != nil {
			return fmt.Errorf("redis windows: read index %s: %w", index, err)
		}
		for i := 0; i < len(zs); i += readKeys {
			if err := w.readWindows(ctx, index, metric, zs[i:min(i+readKeys, len(zs))], fn); err != nil {
				return err
			}
		}
		if len(zs) < indexPage {
			return nil
		}
		first = "(" + strconv.FormatInt(int64(zs[len(zs)-1].Score), 10)
	}
}

// scan is one window hash being read.
type scan struct {
	key    string
	start  int64
	cursor uint64
	first  bool
	// seen holds the fields returned so far when the hash takes more than
	// one HSCAN: HSCAN may return a field twice, fn must see it once.
	seen map[string]struct{}
}

// readWindows scans the hashes of zs together, one pipelined HSCAN each
// per round trip, until all are read.
func (w *Windows) readWindows(ctx context.Context, index, metric string, zs []goredis.Z, fn func(*windows.Row) error) error {
	active := make([]*scan, 0, len(zs))
	for _, z := range zs {
		key, _ := z.Member.(string)
		active = append(active, &scan{key: key, start: int64(z.Score), first: true})
	}
	var missing []string
	cmds := make([]*goredis.ScanCmd, len(active))
	for len(active) > 0 {
		pipe := w.client.Pipeline()
		for i, s := range active {
			cmds[i] = pipe.HScan(ctx, s.key, s.cursor, "", scanCount)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("redis windows: read windows of %s: %w", metric, err)
		}
		next := active[:0]
		for i, s := range active {
			kv, cursor := cmds[i].Val()
			if s.first && cursor == 0 && len(kv) == 0 {
				missing = append(missing, s.key) // expired: Redis has no empty hashes
				continue
			}
			if s.first && cursor != 0 {
				s.seen = make(map[string]struct{})
			}
			s.first = false
			for j := 0; j+1 < len(kv); j += 2 {
				field, value := kv[j], kv[j+1]
				if s.seen != nil {
					if _, dup := s.seen[field]; dup {
						continue
					}
					s.seen[field] = struct{}{}
				}
				r, err := windows.ParseRow([]byte(value))
				if err != nil {
					w.skip("skipping a stored value that is not a row", s.key, field, err)
					continue
				}
				if r.Metric != metric || r.Start.Unix() != s.start {
					w.skip("skipping a stored row of another window", s.key, field,
						fmt.Errorf("row is %s at %s", r.Metric, r.Start.Format(time.RFC3339)))
					continue
				}
				if err := fn(r); err != nil {
					return err
				}
			}
			if s.cursor = cursor; cursor != 0 {
				next = append(next, s)
			}
		}
		active = next
	}
	if len(missing) > 0 {
		if err := w.dropMissing(ctx, index, missing); err != nil {
			return fmt.Errorf("redis windows: remove expired windows from %s: %w", index, err)
		}
	}
	return nil
}
