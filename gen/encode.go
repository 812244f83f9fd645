package gen

import "strconv"

// The encoders append one unit to b without the newline. They use only what
// the trace generator drew (no randomness), and every string they copy is
// already JSON-escaped.

var (
	kindNames   = [...]string{kindInternal: "internal", kindServer: "server", kindClient: "client"}
	statusNames = [...]string{statusUnset: "unset", statusOK: "ok", statusError: "error"}
)

func appendUint(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) }

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

// Per-span details drawn from span.bits.
func (sp *span) peerPort() uint64   { return 32768 + sp.bits&0x7fff%28000 }
func (sp *span) threadID() uint64   { return 1 + sp.bits>>16&0xff }
func (sp *span) cpuMicros() uint64  { return 20 + sp.bits>>24&0xfffff%(uint64(sp.dur)/1000+1) }
func (sp *span) hasFlags() bool     { return sp.bits>>44%100 < 15 }
func (sp *span) flagSet() int       { return int(sp.bits >> 52 % uint64(len(featureFlags))) }
func (sp *span) count() uint64      { return sp.bits >> 56 % 40 }
func (sp *span) bodyBytes() uint64  { return 64 + sp.bits>>20&0x3fff }
func (sp *span) cacheHit() bool     { return sp.bits&(1<<62) != 0 }
func (sp *span) emptyTraceID() bool { return sp.bits&(1<<63) != 0 }

func (g *generator) route(sp *span) *route {
	if sp.kind == kindClient {
		return &g.w.svcs[sp.peer].routes[sp.route]
	}
	return &g.w.svcs[sp.svc].routes[sp.route]
}

func (g *generator) spanName(sp *span) string {
	s := &g.w.svcs[sp.svc]
	switch {
	case sp.db:
		return s.db.stmts[sp.op].op
	case sp.kind == kindInternal:
		return s.ops[sp.op]
	}
	return g.route(sp).name
}

// appendTarget appends the request path, the route with {id} filled in.
func appendTarget(b []byte, rt *route, obj uint32) []byte {
	b = append(b, rt.prefix...)
	if rt.hasID {
		b = appendUint(b, uint64(obj))
		b = append(b, rt.suffix...)
	}
	return b
}

// appendURL appends the URL a client span called.
func (g *generator) appendURL(b []byte, sp *span) []byte {
	callee := &g.w.svcs[sp.peer]
	b = append(b, "http://"...)
	b = append(b, callee.name...)
	b = append(b, ':')
	b = appendUint(b, uint64(callee.port))
	return appendTarget(b, g.route(sp), sp.obj)
}

func appendUserID(b []byte, u uint64) []byte {
	b = append(b, "user-"...)
	return appendUint(b, u)
}

// appendMillis appends ns as milliseconds with three decimals.
func appendMillis(b []byte, ns int64) []byte {
	us := ns / 1000
	b = appendInt(b, us/1000)
	f := us % 1000
	return append(b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
}

func levelOf(sp *span) string {
	switch {
	case sp.status == statusError:
		return "error"
	case sp.code >= 400:
		return "warn"
	case sp.kind == kindInternal:
		return "debug"
	}
	return "info"
}

// appendJSONL appends tr.spans[i] as one flat JSON object.
func (g *generator) appendJSONL(b []byte, i int32, noTrace bool) []byte {
	t := &g.tr
	sp := &t.spans[i]
	s := &g.w.svcs[sp.svc]
	b = append(b, `{"timestamp":"`...)
	b = g.appendTime(b, sp.start)
	b = append(b, `","level":"`...)
	b = append(b, levelOf(sp)...)
	b = append(b, `","service.name":"`...)
	b = append(b, s.name...)
	if !noTrace {
		b = append(b, `","trace_id":"`...)
		b = g.appendTraceID(b)
	} else if sp.emptyTraceID() {
		b = append(b, `","trace_id":"`...)
	}
	b = append(b, `","span_id":"`...)
	b = appendHex64(b, sp.id)
	if sp.parent >= 0 {
		b = append(b, `","parent_span_id":"`...)
		b = appendHex64(b, t.spans[sp.parent].id)
	}
	b = append(b, `","name":"`...)
	b = append(b, g.spanName(sp)...)
	b = append(b, `","kind":"`...)
	b = append(b, kindNames[sp.kind]...)
	b = append(b, `","status":"`...)
	b = append(b, statusNames[sp.status]...)
	b = append(b, `","duration_ns":`...)
	b = appendInt(b, sp.dur)
	b = append(b, `,"message":"`...)
	b = g.appendMessage(b, sp)
	b = append(b, '"')

	switch {
	case sp.kind == kindServer:
		rt := g.route(sp)
		b = append(b, `,"http.method":"`...)
		b = append(b, rt.method...)
		b = append(b, `","http.route":"`...)
		b = append(b, rt.template...)
		b = append(b, `","http.target":"`...)
		b = appendTarget(b, rt, sp.obj)
		b = append(b, `","http.status_code":`...)
		b = appendInt(b, int64(sp.code))
		b = append(b, `,"user.id":"`...)
		b = appendUserID(b, t.user)
		b = append(b, '"')
		if rt.bodySize {
			b = append(b, `,"http.request_content_length":`...)
			b = appendUint(b, sp.bodyBytes())
		}
		if sp.parent < 0 {
			b = append(b, `,"user_agent.original":"`...)
			b = append(b, userAgentsJ[t.ua]...)
			b = append(b, `","geo.city":"`...)
			b = append(b, citiesJ[t.city]...)
			b = append(b, `","net":{"peer":{"ip":"`...)
			b = appendIPv4(b, t.clientIP)
		} else {
			b = append(b, `,"net":{"peer":{"name":"`...)
			b = append(b, g.w.svcs[sp.peer].name...)
		}
		b = append(b, `","port":`...)
		b = appendUint(b, sp.peerPort())
		b = append(b, `}}`...)
		if sp.hasFlags() {
			b = append(b, `,"feature_flags":`...)
			b = append(b, flagsJSONL[sp.flagSet()]...)
		}
	case sp.db:
		d := s.db
		b = append(b, `,"db.system":"`...)
		b = append(b, d.system...)
		b = append(b, `","db.name":"`...)
		b = append(b, d.name...)
		b = append(b, `","db.statement":"`...)
		b = append(b, d.stmts[sp.op].text...)
		b = append(b, `","db.rows_affected":`...)
		b = appendUint(b, sp.count())
		b = append(b, `,"net":{"peer":{"name":"`...)
		b = append(b, d.peer...)
		b = append(b, `","port":`...)
		b = appendUint(b, uint64(d.port))
		b = append(b, `}}`...)
	case sp.kind == kindClient:
		rt := g.route(sp)
		callee := &g.w.svcs[sp.peer]
		b = append(b, `,"http.method":"`...)
		b = append(b, rt.method...)
		b = append(b, `","http.url":"`...)
		b = g.appendURL(b, sp)
		b = append(b, `","http.status_code":`...)
		b = appendInt(b, int64(sp.code))
		b = append(b, `,"net":{"peer":{"name":"`...)
		b = append(b, callee.name...)
		b = append(b, `","port":`...)
		b = appendUint(b, uint64(callee.port))
		b = append(b, `}}`...)
	default:
		b = append(b, `,"code.function":"`...)
		b = append(b, s.ops[sp.op]...)
		b = append(b, `","items":`...)
		b = appendUint(b, sp.count())
		b = append(b, `,"cache.hit":`...)
		b = strconv.AppendBool(b, sp.cacheHit())
	}
	if sp.exc >= 0 {
		e := &exceptionsJ[sp.exc]
		b = append(b, `,"error.type":"`...)
		b = append(b, e.typ...)
		b = append(b, `","exception.message":"`...)
		b = append(b, e.msg...)
		b = append(b, `","exception.stacktrace":"`...)
		b = append(b, e.stack...)
		b = append(b, '"')
	}
	b = append(b, `,"host.name":"`...)
	b = append(b, s.pods[sp.pod].host...)
	b = append(b, `","service.version":"`...)
	b = append(b, s.version...)
	b = append(b, `","sampled":true,"thread.id":`...)
	b = appendUint(b, sp.threadID())
	b = append(b, `,"cpu.ms":`...)
	b = appendMillis(b, int64(sp.cpuMicros())*1000)
	return append(b, '}')
}

// appendMessage appends a human log message for the span (JSON-escaped).
func (g *generator) appendMessage(b []byte, sp *span) []byte {
	switch {
	case sp.kind == kindServer:
		rt := g.route(sp)
		b = append(b, rt.method...)
		b = append(b, ' ')
		b = appendTarget(b, rt, sp.obj)
		b = append(b, " → "...)
		b = appendInt(b, int64(sp.code))
		b = append(b, " in "...)
		b = appendMillis(b, sp.dur)
		b = append(b, " ms"...)
	case sp.db:
		b = append(b, g.w.svcs[sp.svc].db.stmts[sp.op].op...)
		if sp.status == statusError {
			b = append(b, " failed"...)
		} else {
			b = append(b, " ok, "...)
			b = appendUint(b, sp.count())
			b = append(b, " rows"...)
		}
	case sp.kind == kindClient:
		b = append(b, "call "...)
		b = append(b, g.w.svcs[sp.peer].name...)
		b = append(b, `: `...)
		b = append(b, g.route(sp).name...)
		b = append(b, " → "...)
		b = appendInt(b, int64(sp.code))
	default:
		b = append(b, g.w.svcs[sp.svc].ops[sp.op]...)
		b = append(b, " done"...)
	}
	if sp.exc >= 0 {
		b = append(b, ": "...)
		b = append(b, exceptionsJ[sp.exc].msg...)
	}
	return b
}

// OTLP attribute writers: each appends one {"key":...,"value":{...}} and a
// trailing comma, which the caller overwrites with the closing bracket.

func otlpStr(b []byte, key, val string) []byte {
	b = append(b, `{"key":"`...)
	b = append(b, key...)
	b = append(b, `","value":{"stringValue":"`...)
	b = append(b, val...)
	return append(b, `"}},`...)
}

func otlpInt(b []byte, key string, v int64) []byte {
	b = append(b, `{"key":"`...)
	b = append(b, key...)
	b = append(b, `","value":{"intValue":"`...)
	b = appendInt(b, v)
	return append(b, `"}},`...)
}

func otlpKey(b []byte, key, kind string) []byte {
	b = append(b, `{"key":"`...)
	b = append(b, key...)
	b = append(b, `","value":{"`...)
	b = append(b, kind...)
	return append(b, `":`...)
}

// appendOTLP appends one ExportTraceServiceRequest holding the spans at the
// given indices, all of one service (and pod): HTTP and internal spans under
// the service's scope, database spans under a second scope.
func (g *generator) appendOTLP(b []byte, idx []int32, noTrace bool) []byte {
	t := &g.tr
	first := &t.spans[idx[0]]
	s := &g.w.svcs[first.svc]
	b = append(b, s.otlpPrefix[first.pod]...)
	n := 0
	for _, i := range idx {
		if !t.spans[i].db {
			b = g.appendOTLPSpan(b, &t.spans[i], noTrace)
			n++
		}
	}
	if n < len(idx) {
		if n > 0 {
			b[len(b)-1] = ']' // overwrite the comma after the last span
			b = append(b, `},`...)
		} else {
			// No non-database span: drop the empty first scope.
			b = b[:len(b)-len(s.otlpScope)]
		}
		b = append(b, s.otlpDBScope...)
		for _, i := range idx {
			if t.spans[i].db {
				b = g.appendOTLPSpan(b, &t.spans[i], noTrace)
			}
		}
	}
	if b[len(b)-1] == ',' {
		b = b[:len(b)-1]
	}
	return append(b, `]}]}]}`...)
}

// appendOTLPSpan appends one OTLP span object and a comma.
func (g *generator) appendOTLPSpan(b []byte, sp *span, noTrace bool) []byte {
	t := &g.tr
	s := &g.w.svcs[sp.svc]
	b = append(b, '{')
	if !noTrace {
		b = append(b, `"traceId":"`...)
		b = g.appendTraceID(b)
		b = append(b, `",`...)
	} else if sp.emptyTraceID() {
		b = append(b, `"traceId":"",`...)
	}
	b = append(b, `"spanId":"`...)
	b = appendHex64(b, sp.id)
	if sp.parent >= 0 {
		b = append(b, `","parentSpanId":"`...)
		b = appendHex64(b, t.spans[sp.parent].id)
	}
	b = append(b, `","name":"`...)
	b = append(b, g.spanName(sp)...)
	b = append(b, `","kind":`...)
	b = append(b, '0'+sp.kind)
	b = append(b, `,"startTimeUnixNano":"`...)
	b = appendInt(b, sp.start)
	b = append(b, `","endTimeUnixNano":"`...)
	b = appendInt(b, sp.start+sp.dur)
	b = append(b, `","attributes":[`...)

	switch {
	case sp.kind == kindServer:
		rt := g.route(sp)
		b = otlpStr(b, "http.method", rt.method)
		b = otlpStr(b, "http.route", rt.template)
		b = append(b, `{"key":"http.target","value":{"stringValue":"`...)
		b = appendTarget(b, rt, sp.obj)
		b = append(b, `"}},`...)
		b = otlpInt(b, "http.status_code", int64(sp.code))
		b = append(b, `{"key":"user.id","value":{"stringValue":"`...)
		b = appendUserID(b, t.user)
		b = append(b, `"}},`...)
		if rt.bodySize {
			b = otlpInt(b, "http.request_content_length", int64(sp.bodyBytes()))
		}
		if sp.parent < 0 {
			b = otlpStr(b, "user_agent.original", userAgentsJ[t.ua])
			b = otlpStr(b, "geo.city", citiesJ[t.city])
			b = append(b, `{"key":"net.peer.ip","value":{"stringValue":"`...)
			b = appendIPv4(b, t.clientIP)
			b = append(b, `"}},`...)
		} else {
			b = otlpStr(b, "net.peer.name", g.w.svcs[sp.peer].name)
		}
		b = otlpInt(b, "net.peer.port", int64(sp.peerPort()))
		if sp.hasFlags() {
			b = append(b, `{"key":"feature_flags","value":`...)
			b = append(b, flagsOTLP[sp.flagSet()]...)
			b = append(b, `},`...)
		}
	case sp.db:
		d := s.db
		b = otlpStr(b, "db.system", d.system)
		b = otlpStr(b, "db.name", d.name)
		b = otlpStr(b, "db.statement", d.stmts[sp.op].text)
		b = otlpInt(b, "db.rows_affected", int64(sp.count()))
		b = otlpStr(b, "net.peer.name", d.peer)
		b = otlpInt(b, "net.peer.port", int64(d.port))
	case sp.kind == kindClient:
		rt := g.route(sp)
		b = otlpStr(b, "http.method", rt.method)
		b = append(b, `{"key":"http.url","value":{"stringValue":"`...)
		b = g.appendURL(b, sp)
		b = append(b, `"}},`...)
		b = otlpInt(b, "http.status_code", int64(sp.code))
		b = otlpStr(b, "net.peer.name", g.w.svcs[sp.peer].name)
		b = otlpInt(b, "net.peer.port", int64(g.w.svcs[sp.peer].port))
	default:
		b = otlpStr(b, "code.function", s.ops[sp.op])
		b = otlpInt(b, "items", int64(sp.count()))
		b = otlpKey(b, "cache.hit", "boolValue")
		b = strconv.AppendBool(b, sp.cacheHit())
		b = append(b, `}},`...)
	}
	b = otlpKey(b, "cpu.ms", "doubleValue")
	b = appendMillis(b, int64(sp.cpuMicros())*1000)
	b = append(b, `}},`...)
	b = otlpInt(b, "thread.id", int64(sp.threadID()))
	b[len(b)-1] = ']'

	if sp.exc >= 0 {
		e := &exceptionsJ[sp.exc]
		b = append(b, `,"events":[{"timeUnixNano":"`...)
		b = appendInt(b, sp.start+sp.dur-sp.dur/50)
		b = append(b, `","name":"exception","attributes":[`...)
		b = otlpStr(b, "exception.type", e.typ)
		b = otlpStr(b, "exception.message", e.msg)
		b = otlpStr(b, "exception.stacktrace", e.stack)
		b[len(b)-1] = ']'
		b = append(b, `}]`...)
	}
	switch sp.status {
	case statusUnset:
		b = append(b, `,"status":{}},`...)
	case statusOK:
		b = append(b, `,"status":{"code":1}},`...)
	default:
		b = append(b, `,"status":{"message":"`...)
		if sp.exc >= 0 {
			b = append(b, exceptionsJ[sp.exc].typ...)
		} else {
			b = append(b, "HTTP "...)
			b = appendInt(b, int64(sp.code))
		}
		b = append(b, `","code":2}},`...)
	}
	return b
}

// Zipkin tag writers: each appends "key":"value" and a trailing comma.

func zipkinTag(b []byte, key, val string) []byte {
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `":"`...)
	b = append(b, val...)
	return append(b, `",`...)
}

// appendZipkin appends the spans as one Zipkin v2 JSON array.
func (g *generator) appendZipkin(b []byte, spans []span, noTrace bool) []byte {
	b = append(b, '[')
	for i := range spans {
		if i > 0 {
			b = append(b, ',')
		}
		b = g.appendZipkinSpan(b, &spans[i], noTrace)
	}
	return append(b, ']')
}

func (g *generator) appendZipkinSpan(b []byte, sp *span, noTrace bool) []byte {
	t := &g.tr
	s := &g.w.svcs[sp.svc]
	p := &s.pods[sp.pod]
	b = append(b, '{')
	if !noTrace {
		b = append(b, `"traceId":"`...)
		b = g.appendTraceID(b)
		b = append(b, `",`...)
	} else if sp.emptyTraceID() {
		b = append(b, `"traceId":"",`...)
	}
	if sp.parent >= 0 {
		b = append(b, `"parentId":"`...)
		b = appendHex64(b, t.spans[sp.parent].id)
		b = append(b, `",`...)
	}
	b = append(b, `"id":"`...)
	b = appendHex64(b, sp.id)
	switch sp.kind {
	case kindServer:
		b = append(b, `","kind":"SERVER`...)
	case kindClient:
		b = append(b, `","kind":"CLIENT`...)
	}
	b = append(b, `","name":"`...)
	if sp.db || sp.kind == kindInternal {
		b = append(b, g.spanName(sp)...)
	} else {
		b = append(b, g.route(sp).zname...)
	}
	b = append(b, `","timestamp":`...)
	b = appendInt(b, sp.start/1000)
	b = append(b, `,"duration":`...)
	b = appendInt(b, max(sp.dur/1000, 1))
	b = append(b, `,"localEndpoint":{"serviceName":"`...)
	b = append(b, s.name...)
	b = append(b, `","ipv4":"`...)
	b = append(b, p.ip...)
	b = append(b, `"}`...)
	switch {
	case sp.kind == kindServer && sp.parent < 0:
		b = append(b, `,"remoteEndpoint":{"ipv4":"`...)
		b = appendIPv4(b, t.clientIP)
		b = append(b, `","port":`...)
		b = appendUint(b, sp.peerPort())
		b = append(b, '}')
	case sp.kind == kindServer:
		b = append(b, `,"remoteEndpoint":{"serviceName":"`...)
		b = append(b, g.w.svcs[sp.peer].name...)
		b = append(b, `","port":`...)
		b = appendUint(b, sp.peerPort())
		b = append(b, '}')
	case sp.db:
		b = append(b, `,"remoteEndpoint":{"serviceName":"`...)
		b = append(b, s.db.peer...)
		b = append(b, `","port":`...)
		b = appendUint(b, uint64(s.db.port))
		b = append(b, '}')
	case sp.kind == kindClient:
		b = append(b, `,"remoteEndpoint":{"serviceName":"`...)
		b = append(b, g.w.svcs[sp.peer].name...)
		b = append(b, `","port":`...)
		b = appendUint(b, uint64(g.w.svcs[sp.peer].port))
		b = append(b, '}')
	}
	b = append(b, `,"tags":{`...)
	switch {
	case sp.kind == kindServer:
		rt := g.route(sp)
		b = zipkinTag(b, "http.method", rt.method)
		b = zipkinTag(b, "http.route", rt.template)
		b = append(b, `"http.path":"`...)
		b = appendTarget(b, rt, sp.obj)
		b = append(b, `","http.status_code":"`...)
		b = appendInt(b, int64(sp.code))
		b = append(b, `","user.id":"`...)
		b = appendUserID(b, t.user)
		b = append(b, `",`...)
		if sp.parent < 0 {
			b = zipkinTag(b, "user_agent.original", userAgentsJ[t.ua])
			b = zipkinTag(b, "geo.city", citiesJ[t.city])
		}
		if sp.hasFlags() {
			b = zipkinTag(b, "feature_flags", flagsZipkin[sp.flagSet()])
		}
	case sp.db:
		b = zipkinTag(b, "db.system", s.db.system)
		b = zipkinTag(b, "db.statement", s.db.stmts[sp.op].text)
		b = append(b, `"db.rows_affected":"`...)
		b = appendUint(b, sp.count())
		b = append(b, `",`...)
	case sp.kind == kindClient:
		b = zipkinTag(b, "http.method", g.route(sp).method)
		b = append(b, `"http.url":"`...)
		b = g.appendURL(b, sp)
		b = append(b, `","http.status_code":"`...)
		b = appendInt(b, int64(sp.code))
		b = append(b, `",`...)
	default:
		b = zipkinTag(b, "code.function", s.ops[sp.op])
		b = append(b, `"items":"`...)
		b = appendUint(b, sp.count())
		b = append(b, `",`...)
	}
	if sp.status == statusError {
		if sp.exc >= 0 {
			b = zipkinTag(b, "error", exceptionsJ[sp.exc].msg)
		} else {
			b = append(b, `"error":"`...)
			b = appendInt(b, int64(sp.code))
			b = append(b, `",`...)
		}
	}
	b = zipkinTag(b, "host.name", p.host)
	b = zipkinTag(b, "service.version", s.version)
	b[len(b)-1] = '}'
	return append(b, '}')
}
