// Package parsers owns decoding: it turns one input unit (a JSON line or a
// whole JSON document) in jsonl, OTLP/JSON or Zipkin v2 JSON into canonical
// pipeline.Record values appended to the unit's batch, and detects a file's
// format from its first units.
//
// Decoding is strict, allocation-free in steady state, and linear in time
// and memory on any input. A record is accepted only when its unit is valid
// JSON per RFC 8259 and valid UTF-8: fastjson's Parser (fast, depth-bounded,
// lenient) does the parsing, and a byte scan plus a number-grammar check
// reject what it lets through. Lone surrogate escapes are accepted and read
// as U+FFFD, as encoding/json does; nesting deeper than fastjson.MaxDepth
// (300) is malformed, code "too_deep".
//
// jsonl lines take a faster road first: a single forward walk over the
// line's bytes that validates, extracts the record fields and flattens the
// attributes at once, without fastjson (singlepass.go). It handles the
// common line (a valid object, in valid UTF-8, whose record succeeds) and
// hands every other line to the fastjson path, which decides failures as
// before; a differential fuzz target holds the two paths to the same
// records.
//
// A unit that fails becomes exactly one failed record (class malformed,
// invalid or too_large); a document holding many spans or log records
// yields one record each, and a failing one carries its own JSON as payload.
//
// Views: every []byte in a decoded record points into the batch's Buf (text
// taken verbatim from the unit: strings without escapes, number literals,
// ids already lowercase, top-level keys) or its Arena (text unescaped,
// lowercased, built, re-encoded, or with invalid UTF-8 replaced), and is
// valid until the batch is Reset or put back in its pool. fastjson values,
// which decoding reads from, are valid only until the next unit is decoded;
// nothing here keeps them longer. A view into Buf is found from the address
// of fastjson's copy of the unit (Decoder.unitView, on the fast view only).
//
// Use one Decoder per worker per batch: GetDecoder, Decode each unit,
// PutDecoder.
package parsers
