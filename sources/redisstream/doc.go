// Package redisstream is the Redis Stream source of `pipeline run`: it
// consumes one stream in a consumer group and feeds its entries to the job
// as batches, acknowledging (XACK) only what is durable downstream, in
// order.
//
// # Entries
//
// Each stream entry is one unit. Its payload is the entry's "record" field,
// the field the Redis Stream sink (sinks/redis) writes with XADD, so that a
// stream written by one pipeline is read back by another unchanged. An
// entry without that field is one unit with no bytes, which the parse stage
// fails (class malformed, code empty) and the DLQ keeps with its stream id:
// one bad entry, never a stopped source. The unit's key is the entry id (the
// DLQ entry's stream_id, and what the DLQ dedupe keys by); its offset is the
// millisecond part of the id. All batches of a stream share one Origin
// (kind "redis", path the stream key, key "redis:<stream>").
//
// # Reading
//
// The group is created with MKSTREAM when missing, at id 0 (start_at:
// beginning) or $ (end). The consumer is config's consumer, or else a name
// unique to the process (host, pid, random suffix). A stable name lets a
// restarted process take back its own pending entries at once; a unique
// one leaves them to the claim below, after claim_idle.
//
// On start the consumer first reads its own pending entries (XREADGROUP
// with id 0, page after page until none is left): what it had read before a
// crash and never acknowledged. Then new entries (">"), COUNT count, BLOCK
// block, sent as a raw command and its reply parsed in place (resp.go):
// go-redis's own reply type costs a map and several strings per entry.
// After a connection error it reads its own pending entries again,
// skipping those it holds in flight: an XREADGROUP whose reply was lost
// left entries pending for this consumer that it never saw.
//
// # Acknowledgement
//
// Every batch carries Seq and an Acker (a pipeline.WindowAcker). Commit,
// which the job calls every checkpoint_every and at the end of the drain,
// XACKs the entries of the batches acked in order: the highest contiguous
// acked prefix, never past a gap. A batch that is never acked (a record the
// DLQ refused) holds every later batch's entries pending; a restart reads
// them again (at least once, never lost). XACK of many ids goes in one
// MULTI/EXEC with the windows marker below.
//
// # Claiming a dead consumer's work
//
// Every claim_every the consumer looks for entries pending longer than
// claim_idle in other consumers (XPENDING with IDLE, which also gives each
// entry's delivery count) and takes them over with XCLAIM (same idle floor,
// so two claimers never both win), then processes them as batches. It uses
// XPENDING and XCLAIM rather than XAUTOCLAIM for two reasons: XAUTOCLAIM
// takes this consumer's own entries too, which here are batches still in
// flight in the pipeline (claiming them would deliver them twice), and its
// reply carries no delivery counts.
//
// An entry delivered more than max_deliveries times (each time its
// consumer died or never acknowledged it) is not processed again: it goes
// to the DLQ through Options.Poison. With the Redis DLQ on the same server
// the hook moves it atomically (XADD to the DLQ stream and XACK in one Lua
// script); with any other DLQ it writes and syncs a DLQ entry, after which
// this source XACKs it: two systems, not atomic, so a crash between the two
// repeats the entry once in the DLQ (same stream id; the DLQ dedupe, when
// on, keys it by that id). Without a hook, max_deliveries is not enforced.
// Delivery counts raised by XREADGROUP with id 0 are not persisted by
// Redis across its own restart; those raised by XCLAIM are.
//
// # Windows after a crash
//
// The Acker keeps two positions: Ack (the batch is durable in the sinks and
// the DLQ: its entries may be XACKed) and WindowAck (its window rows are
// durable too). A position is the highest entry id this consumer read with
// ">" up to that batch. At each Commit the consumer writes its marker, the
// field <consumer> of the hash "<stream>:tracepipe:<group>:windows", as
// "<windowed id> <delivered id>", in the same transaction as the XACK, so a
// marker is never behind what was acknowledged. A consumer that starts with
// a marker whose windowed id is below its delivered id re-reads that range
// (XRANGE, exclusive of the windowed id) as WindowsOnly batches: the runner
// counts them into the windows (rebuilding the windows that died open with
// the process) and delivers nothing twice. The range holds other consumers'
// entries too; counting them again is harmless, HLL being idempotent.
//
// A consumer that claims work also takes over the markers of consumers that
// are gone (not in XINFO CONSUMERS, or idle longer than claim_idle): it
// deletes the field with HDEL, and only the caller whose HDEL removed it
// re-reads that range, so two claimers never both do.
//
// What this does not cover: entries read from the pending list (own
// pending at start, claimed ones) move no position, so window counts of
// those batches that were open at a crash are not rebuilt; a taken-over
// range whose WindowsOnly batches were not window-acked when the taker
// crashed is lost to the windows (the marker was deleted and the taker's
// own marker does not cover it); and entries trimmed from the stream
// (MAXLEN) before the re-read are not there to re-read.
//
// # Idle, lag, errors
//
// A stream with nothing read for idle_timeout, and no batch in flight,
// tells Options.Events.Idle once until its next batch, so a quiet stream
// does not hold the window watermark back. Lag reports the group's lag and
// pending count (XINFO GROUPS). A server that is down or refusing is
// retried with backoff, its error logged once per interval, never a crash;
// cancelling Run's context makes it return nil at once (the blocking read
// is cut by closing its connection).
package redisstream
