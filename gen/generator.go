package gen

import (
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"time"
)

const (
	flushSize = 1 << 20 // bytes buffered between writes
	maxSpans  = 32      // spans per trace, before the Records limit
	maxDepth  = 3       // service hops below the root
)

// Span kinds, numbered as OTLP numbers them.
const (
	kindInternal uint8 = 1
	kindServer   uint8 = 2
	kindClient   uint8 = 3
)

// Span statuses, numbered as OTLP numbers them.
const (
	statusUnset uint8 = 0
	statusOK    uint8 = 1
	statusError uint8 = 2
)

// span is one generated span. Every random choice the encoders need is drawn
// here, so the trace stream is the same whatever the format.
type span struct {
	id     uint64
	bits   uint64 // random bits for per-span details (ports, counts, flags)
	start  int64  // unix ns
	dur    int64  // ns
	parent int32  // index in trace.spans, -1 for the root
	svc    int32
	peer   int32 // server: calling service or -1; client: called service
	obj    uint32
	route  uint8 // server and HTTP client spans: route of the server
	op     uint8 // db statement or internal op index
	kind   uint8
	status uint8
	db     bool // a database client span
	pod    uint8
	code   int16 // HTTP status code (server and HTTP client spans)
	exc    int8  // exception index for error spans, -1 if none
}

type trace struct {
	hi, lo   uint64
	user     uint64 // user number, already permuted
	ua       uint8
	city     uint8
	clientIP uint32
	spans    []span
}

type generator struct {
	o      Options
	w      *world
	r      *rand.Rand // traces
	rd     *rand.Rand // defects, separate so good spans do not depend on Malformed
	out    io.Writer
	onUnit func(Defect, []byte)

	buf     []byte
	written int64 // bytes handed to out
	st      Stats
	clock   int64 // unix ns of the next trace
	tr      trace
	groups  []int32 // otlp: span indices grouped by service
	traceK  uint64  // seed mix for pooled trace ids
	userMul uint64  // user number permutation: rank*userMul+userAdd mod Users
	userAdd uint64

	secCache int64
	secText  []byte
}

func newGenerator(w io.Writer, o Options) *generator {
	g := &generator{
		o:        o,
		w:        newWorld(o),
		r:        rand.New(rand.NewPCG(o.Seed, 0x7ace_5eed)),
		rd:       rand.New(rand.NewPCG(o.Seed, 0xbad_1e55)),
		out:      w,
		buf:      make([]byte, 0, flushSize+64<<10),
		clock:    o.Start.UnixNano(),
		secCache: math.MinInt64,
		traceK:   mix64(o.Seed ^ 0x9e3779b97f4a7c15),
	}
	// rank*userMul+userAdd mod Users is a permutation when userMul is
	// coprime with Users; near 0.618 Users it scatters neighbouring ranks.
	users := uint64(o.Users)
	g.userMul = users * 618 / 1000
	for gcd(g.userMul, users) != 1 {
		g.userMul++
	}
	g.userAdd = mix64(o.Seed) % users
	return g
}

func (g *generator) run() error {
	for !g.done() {
		limit := maxSpans
		if g.o.Records > 0 {
			limit = int(min(int64(maxSpans), g.o.Records-g.st.Records))
		}
		g.newTrace(limit)
		switch g.o.Format {
		case FormatJSONL:
			for i := range g.tr.spans {
				if i > 0 && g.done() {
					break
				}
				g.unit(int32(i), 1)
				if err := g.maybeFlush(); err != nil {
					return err
				}
			}
		case FormatOTLP:
			g.groupByService()
			for i := 0; i < len(g.groups); {
				if i > 0 && g.done() {
					break
				}
				j := i + 1
				for j < len(g.groups) && g.tr.spans[g.groups[j]].svc == g.tr.spans[g.groups[i]].svc {
					j++
				}
				g.unit(int32(i), int32(j-i))
				if err := g.maybeFlush(); err != nil {
					return err
				}
				i = j
			}
		case FormatZipkin:
			g.unit(0, int32(len(g.tr.spans)))
			if err := g.maybeFlush(); err != nil {
				return err
			}
		}
	}
	return g.flush()
}

func (g *generator) done() bool {
	if g.o.Records > 0 {
		return g.st.Records >= g.o.Records
	}
	return g.written+int64(len(g.buf)) >= g.o.Size
}

// unit writes one line: n spans starting at index i (of tr.spans for jsonl
// and zipkin, of groups for otlp), possibly broken.
func (g *generator) unit(i, n int32) {
	start := len(g.buf)
	d := g.pickDefect()
	switch d {
	case DefectNone:
		g.buf = g.appendUnit(g.buf, i, n, false)
	case DefectMissingTraceID:
		g.buf = g.appendUnit(g.buf, i, 1, true)
	case DefectBareValue:
		g.buf = append(g.buf, bareValues[g.rd.IntN(len(bareValues))]...)
	case DefectJunk:
		g.buf = append(g.buf, junkLines[g.rd.IntN(len(junkLines))]...)
	default:
		g.buf = g.appendUnit(g.buf, i, n, false)
		g.corrupt(start, d)
	}
	if g.onUnit != nil {
		g.onUnit(d, g.buf[start:])
	}
	g.buf = append(g.buf, '\n')
	g.st.Units++
	g.st.Defects[d]++
	if d == DefectNone {
		g.st.Spans += int64(n)
		g.st.Records += int64(n)
	} else {
		g.st.Malformed++
		g.st.Records++
	}
}

func (g *generator) appendUnit(b []byte, i, n int32, noTrace bool) []byte {
	switch g.o.Format {
	case FormatJSONL:
		return g.appendJSONL(b, i, noTrace)
	case FormatOTLP:
		return g.appendOTLP(b, g.groups[i:i+n], noTrace)
	default:
		return g.appendZipkin(b, g.tr.spans[i:i+n], noTrace)
	}
}

func (g *generator) maybeFlush() error {
	if len(g.buf) < flushSize {
		return nil
	}
	return g.flush()
}

func (g *generator) flush() error {
	if len(g.buf) == 0 {
		return nil
	}
	n, err := g.out.Write(g.buf)
	g.written += int64(n)
	g.st.Bytes = g.written
	if err == nil && n < len(g.buf) {
		err = io.ErrShortWrite
	}
	g.buf = g.buf[:0]
	return err
}

// groupByService fills g.groups with span indices, grouped by service in
// order of first appearance, each group in span order.
func (g *generator) groupByService() {
	g.groups = g.groups[:0]
	spans := g.tr.spans
	for i := range spans {
		seen := false
		for _, k := range g.groups {
			if spans[k].svc == spans[i].svc {
				seen = true
				break
			}
		}
		if seen {
			continue
		}
		for j := i; j < len(spans); j++ {
			if spans[j].svc == spans[i].svc {
				g.groups = append(g.groups, int32(j))
			}
		}
	}
}

// newTrace generates the next trace into g.tr, keeping at most limit spans
// (a prefix, so parents always precede their children).
func (g *generator) newTrace(limit int) {
	r := g.r
	t := &g.tr
	t.spans = t.spans[:0]
	if g.o.Traces > 0 {
		t.hi = mix64(g.traceK + r.Uint64N(uint64(g.o.Traces)))
		t.lo = mix64(t.hi ^ 0x2545f4914f6cdd1d)
	} else {
		t.hi, t.lo = r.Uint64(), r.Uint64()
		if t.hi|t.lo == 0 {
			t.lo = 1
		}
	}
	t.user = g.pickUser()
	t.ua = uint8(r.IntN(len(userAgentsJ)))
	t.city = uint8(r.IntN(len(citiesJ)))
	t.clientIP = r.Uint32()

	start := g.clock
	if r.IntN(100) == 0 && g.st.Units > 0 { // a late trace, up to 4 s out of order
		start = max(0, start-r.Int64N(4e9))
	}
	// Capped at 2 s so that no span starts more than 2 s after its trace.
	dur := min(max(g.logNormal(), 50_000), 2e9)
	g.server(g.entryService(), -1, -1, start, dur, 0, -1)

	// About 1 ms of event time per span, jittered.
	g.clock += int64(len(t.spans)) * (500_000 + r.Int64N(1_000_001))
	if len(t.spans) > limit {
		t.spans = t.spans[:limit]
	}
}

func (g *generator) entryService() int32 {
	n := len(g.w.svcs)
	switch p := g.r.IntN(10); {
	case p < 6 || n == 1:
		return 0
	case p < 8:
		return 1
	default:
		return int32(g.r.IntN(n))
	}
}

// pickUser draws a user number with a Zipf-like skew (exponent 1): an
// octave [2^k-1, 2^(k+1)-1) of ranks is chosen uniformly, then a rank in it,
// so rank 0 alone gets as many draws as the top half of users. Ranks are
// then scattered over the user numbers by a fixed permutation.
func (g *generator) pickUser() uint64 {
	users := uint64(g.o.Users)
	k := g.r.IntN(bits.Len64(users))
	lo := uint64(1)<<k - 1
	hi := min(uint64(1)<<(k+1)-1, users)
	rank := lo + g.r.Uint64N(hi-lo)
	h, l := bits.Mul64(rank, g.userMul)
	l, c := bits.Add64(l, g.userAdd, 0)
	return bits.Rem64(h+c, l, users)
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// logNormal draws a span duration in ns, log-normal-ish with median 15 ms
// and a natural-log standard deviation of about 0.8 (1% of roots over
// 100 ms). It uses integers only: floating-point results (math.Exp, fused
// multiply-add) may differ between architectures, and output must not.
func (g *generator) logNormal() int64 {
	// A centred binomial(64, 1/2) is close to normal with sd 4.
	z := int64(bits.OnesCount64(g.r.Uint64())) - 32
	// log2(ns) in 1/256 octaves: log2(15e6) = 23.84; 0.8 = 1.154 octaves,
	// so 74/256 octave per unit of z; plus jitter within one step.
	l := 6103 + z*74 + g.r.Int64N(74) - 37
	return exp2Fixed(l)
}

// exp2Fixed returns 2^(l/256) for l in [0, 256*62), rounded down; the
// fractional power uses a quadratic fit (within 0.3%).
func exp2Fixed(l int64) int64 {
	i, f := l>>8, l&255
	m := 65536 + (f*43024+f*f*22512/256)/256 // 2^(f/256) in 1/65536
	if i >= 16 {
		return m << (i - 16)
	}
	return m >> (16 - i)
}

func (g *generator) pickRoute(svc int32) uint8 {
	s := &g.w.svcs[svc]
	return s.routePick[g.r.IntN(len(s.routePick))]
}

func (g *generator) spanID() uint64 {
	id := g.r.Uint64()
	if id == 0 {
		id = 1
	}
	return id
}

func (g *generator) newSpan(parent, svc, peer int32, kind uint8, start, dur int64) int32 {
	dur = max(dur, 1000)
	// One pod of each service serves the whole trace, so every format
	// names the same host for a span.
	pod := uint8(mix64(g.tr.lo^uint64(svc)) % 3)
	g.tr.spans = append(g.tr.spans, span{
		id: g.spanID(), bits: g.r.Uint64(), start: start, dur: dur,
		parent: parent, svc: svc, peer: peer, obj: g.r.Uint32N(1_000_000),
		kind: kind, pod: pod, exc: -1,
	})
	return int32(len(g.tr.spans) - 1)
}

// server adds a server span for svc and its subtree, and returns its index.
// route < 0 picks one.
func (g *generator) server(svc, parent, caller int32, start, dur int64, depth int, route int) int32 {
	r := g.r
	if route < 0 {
		route = int(g.pickRoute(svc))
	}
	idx := g.newSpan(parent, svc, caller, kindServer, start, dur)
	g.tr.spans[idx].route = uint8(route)
	dur = g.tr.spans[idx].dur // raised to the minimum

	var k int
	switch depth {
	case 0:
		k = 1 + r.IntN(4)
	case 1:
		k = r.IntN(3)
	case 2:
		k = r.IntN(2)
	}
	if g.w.svcs[svc].routes[route].template == "/healthz" {
		k = 0
	}
	failed := false
	if k > 0 {
		cursor := start + dur/20
		end := start + dur - dur/20
		for i := 0; i < k && len(g.tr.spans) < maxSpans; i++ {
			slot := (end - cursor) / int64(k-i)
			cd := slot * (35 + r.Int64N(61)) / 100
			cs := cursor + r.Int64N(slot-cd+1)
			cursor += slot
			if g.child(idx, svc, cs, cd, depth) {
				failed = true
			}
		}
	}

	rt := &g.w.svcs[svc].routes[route]
	code := rt.okCode
	switch p := r.IntN(1000); {
	case failed && p < 700:
		code = [...]int{500, 502, 503, 504}[r.IntN(4)]
	case p < 30:
		code = [...]int{400, 401, 403, 404, 404, 404, 409, 422, 429}[r.IntN(9)]
	case p < 42:
		code = [...]int{500, 500, 502, 503, 504}[r.IntN(5)]
	}
	sp := &g.tr.spans[idx]
	sp.code = int16(code)
	sp.status = statusOK
	if code >= 500 {
		sp.status = statusError
		sp.exc = int8(r.IntN(len(exceptionsJ)))
	}
	return idx
}

// child adds one child of the server span at parent, running in svc, and
// reports whether it failed.
func (g *generator) child(parent, svc int32, start, dur int64, depth int) bool {
	r := g.r
	s := &g.w.svcs[svc]
	p := r.IntN(100)
	switch {
	case len(s.calls) > 0 && depth < maxDepth && p < 50 && len(g.tr.spans) < maxSpans-1:
		callee := s.calls[r.IntN(len(s.calls))]
		route := g.pickRoute(callee)
		ci := g.newSpan(parent, svc, callee, kindClient, start, dur)
		g.tr.spans[ci].route = route
		lat := min(dur/10, 100_000+r.Int64N(400_000))
		si := g.server(callee, ci, svc, start+lat, dur-2*lat, depth+1, int(route))
		code := g.tr.spans[si].code
		c := &g.tr.spans[ci]
		c.code = code
		c.status = statusOK
		if code >= 400 {
			c.status = statusError
		}
		return code >= 500
	case s.db != nil && p < 85:
		i := g.newSpan(parent, svc, -1, kindClient, start, dur)
		c := &g.tr.spans[i]
		c.db = true
		c.op = uint8(r.IntN(len(s.db.stmts)))
		c.status = statusOK
		if r.IntN(200) == 0 {
			c.status = statusError
			c.exc = int8(r.IntN(len(exceptionsJ)))
			return true
		}
	default:
		i := g.newSpan(parent, svc, -1, kindInternal, start, dur)
		c := &g.tr.spans[i]
		c.op = uint8(r.IntN(len(s.ops)))
		if r.IntN(500) == 0 {
			c.status = statusError
			c.exc = int8(r.IntN(len(exceptionsJ)))
			return true
		}
	}
	return false
}

// mix64 is the splitmix64 finalizer, a bijection on uint64.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

const hexDigits = "0123456789abcdef"

func appendHex64(b []byte, v uint64) []byte {
	var a [16]byte
	for i := 15; i >= 0; i-- {
		a[i] = hexDigits[v&15]
		v >>= 4
	}
	return append(b, a[:]...)
}

func (g *generator) appendTraceID(b []byte) []byte {
	return appendHex64(appendHex64(b, g.tr.hi), g.tr.lo)
}

// appendTime appends ns (>= 0) as RFC 3339 UTC with nine fraction digits.
func (g *generator) appendTime(b []byte, ns int64) []byte {
	sec, frac := ns/1e9, ns%1e9
	if sec != g.secCache {
		g.secCache = sec
		g.secText = time.Unix(sec, 0).UTC().AppendFormat(g.secText[:0], "2006-01-02T15:04:05")
	}
	b = append(b, g.secText...)
	var d [10]byte
	d[0] = '.'
	for i := 9; i >= 1; i-- {
		d[i] = byte('0' + frac%10)
		frac /= 10
	}
	b = append(b, d[:]...)
	return append(b, 'Z')
}

// appendIPv4 appends v as a dotted quad in 10.0.0.0/8.
func appendIPv4(b []byte, v uint32) []byte {
	b = append(b, "10."...)
	b = appendUint(b, uint64(v>>16&0xff))
	b = append(b, '.')
	b = appendUint(b, uint64(v>>8&0xff))
	b = append(b, '.')
	return appendUint(b, uint64(v&0xff))
}
