package gen

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// The world is the fixed cast a run draws from: services, their pods, routes,
// databases and who calls whom. It is built once per Generate from the seed,
// and every string in it is already escaped for a JSON string body.

type service struct {
	name    string
	version string
	port    int
	pods    []pod
	routes  []route
	// routePick holds route indices, repeated by weight; one uniform draw
	// picks a route.
	routePick []uint8
	calls     []int32 // downstream services (higher indices only: no cycles)
	db        *database
	ops       []string // internal operation names
	language  string
	// otlpPrefix is, per pod, the start of an OTLP request line up to the
	// opening bracket of the first scope's spans.
	otlpPrefix []string
	otlpScope  string // the service's scope entry, the tail of each otlpPrefix
	// otlpDBScope opens a second scopeSpans entry for database spans.
	otlpDBScope string
}

type pod struct {
	host string
	ip   string
}

type route struct {
	method   string
	template string // http.route, "/api/v1/carts/{id}"
	prefix   string // template up to "{id}" (the whole template when !hasID)
	suffix   string // template after "{id}"
	hasID    bool
	name     string // span name, "GET /api/v1/carts/{id}"
	zname    string // Zipkin span name, lowercased
	okCode   int    // status code on success
	bodySize bool   // carries a request body
}

type database struct {
	system string
	name   string
	peer   string
	port   int
	stmts  []dbStatement
}

type dbStatement struct {
	op   string // span name, "SELECT carts"
	text string // db.statement, JSON-escaped
}

type world struct {
	svcs []service
}

var baseServices = [...]struct{ name, plural string }{
	{"frontend", "pages"}, {"api-gateway", "requests"}, {"checkout", "checkouts"},
	{"cart", "carts"}, {"payments", "payments"}, {"catalog", "products"},
	{"inventory", "stock"}, {"shipping", "shipments"}, {"users", "users"},
	{"auth", "sessions"}, {"search", "queries"}, {"recommendations", "recommendations"},
	{"orders", "orders"}, {"pricing", "prices"}, {"notifications", "notifications"},
	{"reviews", "reviews"}, {"currency", "rates"}, {"fraud", "checks"},
	{"ads", "ads"}, {"email", "messages"},
}

var routeShapes = [...]struct {
	method, suffix string
	id             bool
	weight         int
}{
	{"GET", "/{id}", true, 40},
	{"GET", "", false, 20},
	{"POST", "", false, 14},
	{"PUT", "/{id}", true, 8},
	{"DELETE", "/{id}", true, 4},
	{"GET", "/{id}/history", true, 10},
	{"PATCH", "/{id}/status", true, 3},
	{"GET", "/healthz", false, 1}, // special-cased: no /api prefix
}

var languages = [...]string{"go", "java", "python", "nodejs", "dotnet", "rust"}

var dbSystems = [...]struct {
	system string
	port   int
	weight int
}{
	{"postgresql", 5432, 50}, {"redis", 6379, 25}, {"mysql", 3306, 15}, {"mongodb", 27017, 10},
}

func newWorld(o Options) *world {
	r := rand.New(rand.NewPCG(o.Seed, 0x5eed_c0de_0f_5e7))
	n := o.Services
	w := &world{svcs: make([]service, n)}
	for i := range w.svcs {
		s := &w.svcs[i]
		base := baseServices[i%len(baseServices)]
		gen := i / len(baseServices)
		s.name = base.name
		if gen > 0 {
			s.name += "-" + strconv.Itoa(gen+1)
		}
		s.version = strconv.Itoa(1+r.IntN(3)) + "." + strconv.Itoa(r.IntN(20)) + "." + strconv.Itoa(r.IntN(10))
		s.port = 8080 + r.IntN(4)*1000
		s.language = languages[r.IntN(len(languages))]
		for p := 0; p < 3; p++ {
			s.pods = append(s.pods, pod{
				host: s.name + "-" + randToken(r, "0123456789abcdef", 9) + "-" + randToken(r, "bcdfghjklmnpqrstvwxz2456789", 5),
				ip:   "10." + strconv.Itoa(r.IntN(256)) + "." + strconv.Itoa(r.IntN(256)) + "." + strconv.Itoa(1+r.IntN(254)),
			})
		}
		api := "/api/v" + strconv.Itoa(gen+1) + "/" + base.plural
		for k, sh := range routeShapes {
			rt := route{method: sh.method, hasID: sh.id}
			switch {
			case sh.suffix == "/healthz":
				rt.template = "/healthz"
				rt.prefix = rt.template
			case sh.id:
				rt.template = api + sh.suffix
				j := strings.Index(rt.template, "{id}")
				rt.prefix, rt.suffix = rt.template[:j], rt.template[j+len("{id}"):]
			default:
				rt.template = api + sh.suffix
				rt.prefix = rt.template
			}
			rt.name = rt.method + " " + rt.template
			rt.zname = strings.ToLower(rt.name)
			switch rt.method {
			case "POST":
				rt.okCode = 201
			case "DELETE":
				rt.okCode = 204
			default:
				rt.okCode = 200
			}
			rt.bodySize = rt.method == "POST" || rt.method == "PUT" || rt.method == "PATCH"
			s.routes = append(s.routes, rt)
			for range sh.weight {
				s.routePick = append(s.routePick, uint8(k))
			}
		}
		s.ops = []string{s.name + ".validate", s.name + ".serialize", "cache.lookup", s.name + ".compute", "auth.verify_token"}
		if r.IntN(4) != 0 {
			s.db = newDatabase(r, s.name, base.plural)
		}
	}
	// Calls go to higher indices only, so traces cannot loop.
	for i := range w.svcs {
		rest := n - i - 1
		if rest == 0 {
			continue
		}
		k := 1 + r.IntN(min(3, rest))
		for len(w.svcs[i].calls) < k {
			j := int32(i + 1 + r.IntN(rest))
			dup := false
			for _, c := range w.svcs[i].calls {
				dup = dup || c == j
			}
			if !dup {
				w.svcs[i].calls = append(w.svcs[i].calls, j)
			}
		}
	}
	for i := range w.svcs {
		w.svcs[i].buildOTLP()
	}
	return w
}

func newDatabase(r *rand.Rand, svc, plural string) *database {
	pick := r.IntN(100)
	k := 0
	for acc := dbSystems[0].weight; pick >= acc; acc += dbSystems[k].weight {
		k++
	}
	d := &database{system: dbSystems[k].system, port: dbSystems[k].port}
	table := strings.ReplaceAll(plural, "-", "_")
	d.name = strings.ReplaceAll(svc, "-", "_")
	d.peer = svc + "-" + d.system
	add := func(op, text string) {
		d.stmts = append(d.stmts, dbStatement{op: op, text: jsonEscape(text)})
	}
	switch d.system {
	case "redis":
		add("GET", "GET "+table+":{id}")
		add("HGETALL", "HGETALL "+table+":session")
		add("SETEX", "SETEX "+table+":{id} 300 ?")
	case "mongodb":
		add("find "+table, `{"find":"`+table+`","filter":{"_id":"?"},"limit":1}`)
		add("update "+table, `{"update":"`+table+`","updates":[{"q":{"_id":"?"},"u":{"$set":{"status":"?"}}}]}`)
	default:
		add("SELECT "+table, "SELECT id, status, updated_at FROM "+table+" WHERE id = $1")
		add("SELECT "+table, `SELECT "id", "total" FROM "`+table+`" WHERE "user_id" = $1 ORDER BY created_at DESC LIMIT 50`)
		add("UPDATE "+table, "UPDATE "+table+" SET status = $1, updated_at = now() WHERE id = $2")
		add("INSERT "+table+"_events", "INSERT INTO "+table+"_events (id, kind, payload) VALUES ($1, $2, $3)")
	}
	return d
}

func (s *service) buildOTLP() {
	for _, p := range s.pods {
		var b strings.Builder
		b.WriteString(`{"resourceSpans":[{"resource":{"attributes":[`)
		kv := func(k, v string, last bool) {
			b.WriteString(`{"key":"` + k + `","value":{"stringValue":"` + v + `"}}`)
			if !last {
				b.WriteByte(',')
			}
		}
		kv("service.name", s.name, false)
		kv("service.version", s.version, false)
		kv("host.name", p.host, false)
		kv("deployment.environment", "production", false)
		kv("telemetry.sdk.language", s.language, true)
		s.otlpScope = `{"scope":{"name":"shop/` + s.name + `/otel","version":"0.9.1"},"spans":[`
		b.WriteString(`]},"scopeSpans":[` + s.otlpScope)
		s.otlpPrefix = append(s.otlpPrefix, b.String())
	}
	if s.db != nil {
		s.otlpDBScope = `{"scope":{"name":"shop/db/otel","version":"0.4.0","attributes":[{"key":"db.driver","value":{"stringValue":"` + s.db.system + `"}}]},"spans":[`
	}
}

func randToken(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// jsonEscape returns s escaped for use inside a JSON string (without quotes).
// It runs at setup only.
func jsonEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Vocabulary shared by all services, JSON-escaped by init.

var userAgents = []string{
	"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
	"okhttp/4.12.0",
	"shop-ios/7.3.1 (iPhone15,2; iOS 18.1)",
	"curl/8.11.0",
}

var cities = []string{
	"São Paulo", "Zürich", "東京", "München", "Kraków", "Reykjavík", "Montréal",
	"İstanbul", "Paris", "Berlin", "New York", "Lagos", "Mumbai", "Sydney",
}

var featureFlags = [][]string{
	{"new-checkout"}, {"one-click-pay", "dark-mode"}, {"fast-search", "recs-v2", "new-checkout"},
	{"beta-shipping-rates"},
}

// Error vocabulary: type and a multi-line message with quotes, so readers
// must unescape \n, \t and \".
var exceptions = []struct{ typ, msg, stack string }{
	{"java.net.SocketTimeoutException", `Read timed out after 5000 ms calling "payments"`,
		"java.net.SocketTimeoutException: Read timed out\n\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)\n\tat shop.http.Client.send(Client.java:142)\n\tat shop.checkout.PlaceOrder.run(PlaceOrder.java:77)"},
	{"*net.OpError", `dial tcp 10.0.3.17:5432: connect: connection refused`,
		"goroutine 4127 [running]:\nshop/internal/store.(*DB).Query(0xc000192000, {0x1a2b3c, 0x2f})\n\t/src/internal/store/db.go:118 +0x1c5\nshop/internal/api.(*Handler).Get(...)\n\t/src/internal/api/handler.go:64 +0x9e"},
	{"ValueError", `invalid literal for int() with base 10: 'abc'`,
		"Traceback (most recent call last):\n  File \"/app/handlers.py\", line 41, in get_item\n    item_id = int(request.args[\"id\"])\nValueError: invalid literal for int() with base 10: 'abc'"},
	{"TypeError", `Cannot read properties of undefined (reading "total")`,
		"TypeError: Cannot read properties of undefined (reading 'total')\n    at computeTotals (/app/src/cart.js:88:19)\n    at async handler (/app/src/routes.js:23:5)"},
}

var (
	userAgentsJ  []string
	citiesJ      []string
	flagsJSONL   []string // JSON array text
	flagsOTLP    []string // OTLP arrayValue object text
	flagsZipkin  []string // comma-joined, for a string tag
	exceptionsJ  []struct{ typ, msg, stack string }
	junkLines    []string
	bareValues   = []string{"42", "-1.5e3", `"ok"`, "null", "true", "false", `"2026-01-01T00:00:00Z"`, "0"}
	badUTF8      = []string{"\xff", "\xc3\x28", "\xed\xa0\x80", "\xe2\x82", "\xc0\xaf", "\xf8\x88\x80\x80\x80"}
	controlChars = []string{"\x00", "\x01", "\x08", "\t", "\x1b", "\x1f", "\x0c"}
)

func init() {
	for _, s := range userAgents {
		userAgentsJ = append(userAgentsJ, jsonEscape(s))
	}
	for _, s := range cities {
		citiesJ = append(citiesJ, jsonEscape(s))
	}
	for _, f := range featureFlags {
		var j, o strings.Builder
		j.WriteByte('[')
		o.WriteString(`{"arrayValue":{"values":[`)
		for i, v := range f {
			if i > 0 {
				j.WriteByte(',')
				o.WriteByte(',')
			}
			j.WriteString(`"` + v + `"`)
			o.WriteString(`{"stringValue":"` + v + `"}`)
		}
		j.WriteByte(']')
		o.WriteString(`]}}`)
		flagsJSONL = append(flagsJSONL, j.String())
		flagsOTLP = append(flagsOTLP, o.String())
		flagsZipkin = append(flagsZipkin, strings.Join(f, ","))
	}
	for _, e := range exceptions {
		exceptionsJ = append(exceptionsJ, struct{ typ, msg, stack string }{jsonEscape(e.typ), jsonEscape(e.msg), jsonEscape(e.stack)})
	}
	junkLines = []string{
		"Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
		"\tat shop.cart.CartService.load(CartService.java:88)",
		"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>",
		"2026/01/01 00:00:00 [error] 31#31: *1 connect() failed (111: Connection refused) while connecting to upstream",
		"panic: runtime error: index out of range [3] with length 3",
		"--- log rotated ---",
		"INFO  [main] o.s.b.w.embedded.tomcat.TomcatWebServer : Tomcat started on port(s): 8080 (http)",
		"undefined",
		"{{ .TraceID }} {{ .Message }}",
		"trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 msg=\"request done\"",
	}
}
