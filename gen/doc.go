// Package gen writes deterministic, realistic trace logs for tests and
// benchmarks: JSON lines, OTLP/JSON requests as the OpenTelemetry Collector's
// file exporter writes them, and Zipkin v2 span arrays, with a chosen fraction
// of malformed lines. The same Options give byte-identical output on every
// platform (the trace model uses integer arithmetic only), and Options that
// differ only in Format give the same spans (ids, services, names, times).
//
// # Traces
//
// A trace is a root server span in an entry service, with child spans:
// client calls to downstream services (each followed by that service's server
// span and its own children), database client spans and internal spans, up to
// 32 spans and 3 service hops; about 6.8 spans per trace on average. Ids come
// from the seeded generator: 32 lowercase hex digits for trace ids, 16 for
// span ids. Root durations are log-normal (median 15 ms, 1% over 100 ms,
// capped at 2 s) and children fit inside their parents. Server spans answer
// 2xx mostly, about 3% 4xx and 2% 5xx (5xx mostly when a downstream call
// failed); 5xx spans have status error and an exception. user.id is drawn from
// Options.Users with a Zipf-like skew and is shared by a trace's server spans.
// Event time starts at Options.Start and advances about 1 ms per span; 1% of
// traces start up to 4 s in the past, and spans start up to 2 s after their
// trace, so readers see records out of order by up to about 6 s.
//
// # Units
//
// A unit is one output line, ending in "\n". A well-formed unit holds one span
// (jsonl), the spans of one trace in one service (otlp), or the spans of one
// trace (zipkin); parents come before their children. A malformed unit is
// broken in one of the ways named by Defect and stands for exactly one record
// that a reader must send to the dead-letter queue, so a run over the output
// reconciles against Stats: records delivered = Stats.Spans, records to the
// DLQ = Stats.Malformed.
//
// # jsonl
//
// One flat object per span, keys in this order (parent_span_id is absent on
// roots; attributes depend on the kind):
//
//	timestamp       string, RFC 3339 UTC with 9 fraction digits: the span start
//	level           "debug" | "info" | "warn" | "error"
//	service.name    string (a dotted key, not nested)
//	trace_id        32 hex
//	span_id         16 hex
//	parent_span_id  16 hex
//	name            string, e.g. "GET /api/v1/carts/{id}", "SELECT carts"
//	kind            "server" | "client" | "internal"
//	status          "ok" | "error" | "unset"
//	duration_ns     integer
//	message         string (may hold "→", \" and other escapes)
//	server:         http.method, http.route, http.target (strings),
//	                http.status_code (int), user.id ("user-N"),
//	                http.request_content_length (int, POST/PUT/PATCH),
//	                user_agent.original, geo.city (roots only, UTF-8),
//	                net: {peer: {ip | name, port (int)}} (nested),
//	                feature_flags (array of strings, on some spans)
//	http client:    http.method, http.url, http.status_code (int),
//	                net: {peer: {name, port}}
//	db client:      db.system, db.name, db.statement, db.rows_affected (int),
//	                net: {peer: {name, port}}
//	internal:       code.function, items (int), cache.hit (bool)
//	error spans:    error.type, exception.message, exception.stacktrace
//	always:         host.name, service.version, sampled (bool),
//	                thread.id (int), cpu.ms (float)
//
// # otlp
//
// One ExportTraceServiceRequest per line with one resourceSpans entry: resource
// attributes service.name, service.version, host.name, deployment.environment,
// telemetry.sdk.language; then a scopeSpans entry for the service's HTTP and
// internal spans and, when there are any, a second one (scope "shop/db/otel")
// for its database spans. Spans carry traceId, spanId, parentSpanId (absent on
// roots), name, kind (1 internal, 2 server, 3 client), startTimeUnixNano and
// endTimeUnixNano (decimal strings), attributes as the jsonl ones flattened
// (net.peer.name, net.peer.ip, net.peer.port) with stringValue, intValue (a
// decimal string), doubleValue, boolValue or arrayValue, an "exception" event
// on error spans, and status: {} (unset), {"code":1} or
// {"message":...,"code":2}.
//
// # zipkin
//
// One Zipkin v2 JSON array per trace. Spans carry traceId, parentId (absent on
// roots), id, kind ("SERVER" or "CLIENT", absent on internal spans), name
// (lowercased for HTTP spans), timestamp and duration (integer microseconds,
// duration at least 1), localEndpoint {serviceName, ipv4}, remoteEndpoint
// (client spans: {serviceName, port}; server spans: the caller, or {ipv4,
// port} on roots) and tags, all strings: the jsonl attributes by the same
// names (http.path instead of http.target), and "error" on error spans.
package gen
