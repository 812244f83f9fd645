package kafka

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/pipeline"
)

// byPartition groups batches by partition, in seq order.
func byPartition(bs []got) map[int][]got {
	m := map[int][]got{}
	for _, b := range bs {
		m[b.partition] = append(m[b.partition], b)
	}
	for _, l := range m {
		sort.Slice(l, func(i, j int) bool { return l[i].seq < l[j].seq })
	}
	return m
}

func end(b got) int64 { return b.offsets[len(b.offsets)-1] + 1 }

// checkUnits checks every unit against the topic's messages: its offset
// is the Kafka offset of a message of that partition whose key is the
// unit's source key and whose value is the unit's bytes.
func checkUnits(t *testing.T, c *testkafka.Cluster, bs []got) {
	t.Helper()
	type at struct {
		p   int
		off int64
	}
	msgs := map[at]kafkago.Message{}
	for _, m := range c.Messages(testTopic) {
		msgs[at{m.Partition, m.Offset}] = m
	}
	for _, b := range bs {
		for i, off := range b.offsets {
			m, ok := msgs[at{b.partition, off}]
			if !ok {
				t.Fatalf("partition %d: no message at offset %d", b.partition, off)
			}
			if b.keys[i] != string(m.Key) || b.values[i] != string(m.Value) {
				t.Fatalf("partition %d offset %d: unit key %q value %q, message key %q value %q", b.partition, off, b.keys[i], b.values[i], m.Key, m.Value)
			}
		}
	}
}

// TestCommitNeverPastGap: 600 records over 6 partitions, batches of 10;
// per partition batch 3 is left unacked and only batch 1 window-acked.
// The commit is the end of batch 2 (never past the gap) with the end of
// batch 1 as windowed metadata; once batch 3 is acked the commit moves to
// the partition's end while the windowed offset stays. Every unit's source
// key is its message key and its Offset the message's Kafka offset (what
// the DLQ records).
func TestCommitNeverPastGap(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 6)
	produce(t, c, 0, 600, 0)
	s := newSource(t, testConfig(c, "g-gap"), Options{BatchUnits: 10})
	h := start(t, s, false)
	waitFor(t, 30*time.Second, "600 records", func() bool { return h.count() >= 600 })
	if n := h.count(); n != 600 {
		t.Fatalf("%d records, want 600", n)
	}
	bs := h.snapshot()
	checkUnits(t, c, bs)
	parts := byPartition(bs)
	if len(parts) != 6 {
		t.Fatalf("batches from %d partitions, want 6", len(parts))
	}
	// Ack out of order: last first, batch 3 held back.
	for _, l := range parts {
		if len(l) < 4 {
			t.Fatalf("partition %d: %d batches, want >= 4", l[0].partition, len(l))
		}
		for i := len(l) - 1; i >= 0; i-- {
			if l[i].seq != 3 {
				l[i].acker.Ack(l[i].seq)
			}
		}
		l[0].acker.(pipeline.WindowAcker).WindowAck(l[0].seq)
	}
	if err := s.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	com := committed(t, c, "g-gap", 6)
	for p, l := range parts {
		want := fmt.Sprintf("%s%d", metaPrefix, end(l[0]))
		if com[p].CommittedOffset != end(l[1]) || com[p].Metadata != want {
			t.Fatalf("partition %d: committed %d %q, want %d %q (batch 3 unacked)", p, com[p].CommittedOffset, com[p].Metadata, end(l[1]), want)
		}
	}
	for _, l := range parts {
		l[2].acker.Ack(l[2].seq)
	}
	if err := s.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	com = committed(t, c, "g-gap", 6)
	for p, l := range parts {
		want := fmt.Sprintf("%s%d", metaPrefix, end(l[0]))
		if com[p].CommittedOffset != end(l[len(l)-1]) || com[p].CommittedOffset != 100 || com[p].Metadata != want {
			t.Fatalf("partition %d: committed %d %q, want 100 %q", p, com[p].CommittedOffset, com[p].Metadata, want)
		}
	}
}

// TestRestartRewindsForWindows: a first Source reads 600 records, has all
// delivered but only each partition's first batch window-acked, commits and
// stops. 60 more are produced. A second Source in the group reads each
// partition again from the windowed offset: the batches below the
// delivered offset are WindowsOnly, none straddles it, and from there
// batches are delivered as usual; across both, every record is delivered
// exactly once and every record past the windowed offset re-read for the
// windows.
func TestRestartRewindsForWindows(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 6)
	produce(t, c, 0, 600, 0)
	a := newSource(t, testConfig(c, "g-restart"), Options{BatchUnits: 10})
	ha := start(t, a, false)
	waitFor(t, 30*time.Second, "600 records", func() bool { return ha.count() >= 600 })
	firstEnd := map[int]int64{}
	for p, l := range byPartition(ha.snapshot()) {
		for _, b := range l {
			b.acker.Ack(b.seq)
		}
		l[0].acker.(pipeline.WindowAcker).WindowAck(l[0].seq)
		firstEnd[p] = end(l[0])
	}
	if err := a.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	ha.stop()
	if err := a.Commit(context.Background()); err != nil { // the job's final commit
		t.Fatal(err)
	}
	_ = a.Close()
	produce(t, c, 600, 660, 0)

	b := newSource(t, testConfig(c, "g-restart"), Options{BatchUnits: 7})
	hb := start(t, b, true)
	// Partition p is re-read from firstEnd[p] to 100 for the windows,
	// then 10 new records each.
	want := 0
	for _, e := range firstEnd {
		want += int(100-e) + 10
	}
	waitFor(t, 30*time.Second, "the re-read and new records", func() bool { return hb.count() >= want })
	time.Sleep(100 * time.Millisecond) // nothing more should come
	if n := hb.count(); n != want {
		t.Fatalf("second source read %d units, want %d", n, want)
	}
	delivered := map[string]int{}
	for _, bt := range ha.snapshot() {
		for _, k := range bt.keys {
			delivered[k]++
		}
	}
	for p, l := range byPartition(hb.snapshot()) {
		if l[0].offsets[0] != firstEnd[p] {
			t.Fatalf("partition %d: re-read starts at %d, want the windowed offset %d", p, l[0].offsets[0], firstEnd[p])
		}
		for _, bt := range l {
			if bt.windowsOnly && end(bt) > 100 {
				t.Fatalf("partition %d: windows-only batch %v straddles the delivered offset 100", p, bt.offsets)
			}
			if !bt.windowsOnly && bt.offsets[0] < 100 {
				t.Fatalf("partition %d: batch %v below the delivered offset is not windows-only", p, bt.offsets)
			}
			if !bt.windowsOnly {
				for _, k := range bt.keys {
					delivered[k]++
				}
			}
		}
	}
	for i := range 660 {
		if n := delivered[string(keyOf(i))]; n != 1 {
			t.Fatalf("record %d delivered %d times", i, n)
		}
	}
	if err := b.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	for p, o := range committed(t, c, "g-restart", 6) {
		if o.CommittedOffset != 110 || o.Metadata != metaPrefix+"110" {
			t.Fatalf("partition %d: committed %d %q after the second source, want 110 %q", p, o.CommittedOffset, o.Metadata, metaPrefix+"110")
		}
	}
}

// TestRebalanceSplitsAndHandsOver: A owns all 6 partitions; B joins and the
// group splits them (A gives its revoked partitions up, committing, and
// rejoins); records produced meanwhile are read; then A is stopped (ctx
// cancel, final commit, Close) and B takes every partition over. Every
// record is delivered by exactly one of them.
func TestRebalanceSplitsAndHandsOver(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 6)
	produce(t, c, 0, 300, 0)
	cfg := testConfig(c, "g-split")
	var idsA, idsB pipeline.OriginIDs
	doneA := map[int]int64{}
	var evMu = make(chan struct{}, 1)
	evMu <- struct{}{}
	a := newSource(t, cfg, Options{BatchUnits: 16, IDs: &idsA, Events: pipeline.SourceEvents{OriginDone: func(id int, n int64) {
		<-evMu
		doneA[id] = n
		evMu <- struct{}{}
	}}})
	ha := start(t, a, true)
	waitFor(t, 30*time.Second, "A reads 300", func() bool { return ha.count() >= 300 })
	if got := len(a.Assigned()); got != 6 {
		t.Fatalf("A owns %d partitions, want 6", got)
	}
	b := newSource(t, cfg, Options{BatchUnits: 16, IDs: &idsB})
	hb := start(t, b, true)
	waitFor(t, 40*time.Second, "the group to split the partitions", func() bool {
		na, nb := len(a.Assigned()), len(b.Assigned())
		return na > 0 && nb > 0 && na+nb == 6
	})
	produce(t, c, 300, 600, 0)
	waitFor(t, 30*time.Second, "600 records across A and B", func() bool { return ha.count()+hb.count() >= 600 })
	// A's origins of the first generation were told done, with the
	// batches they sent.
	<-evMu
	nDone := len(doneA)
	evMu <- struct{}{}
	if nDone < 6 {
		t.Fatalf("A told %d origins done after the rebalance, want >= 6", nDone)
	}

	ha.stop()
	if err := a.Commit(context.Background()); err != nil {
		t.Fatalf("A's final commit: %v", err)
	}
	_ = a.Close()
	waitFor(t, 40*time.Second, "B to own all 6", func() bool { return len(b.Assigned()) == 6 })
	produce(t, c, 600, 900, 0)
	waitFor(t, 30*time.Second, "900 records", func() bool { return ha.count()+hb.count() >= 900 })
	time.Sleep(200 * time.Millisecond)

	seen := map[string]int{}
	for _, h := range []*harness{ha, hb} {
		for _, bt := range h.snapshot() {
			if bt.windowsOnly {
				t.Fatalf("windows-only batch with every batch window-acked: %+v", bt.offsets)
			}
			for _, k := range bt.keys {
				seen[k]++
			}
		}
	}
	repeats := a.Stats().Repeats + b.Stats().Repeats
	dup := 0
	for i := range 900 {
		switch n := seen[string(keyOf(i))]; {
		case n == 0:
			t.Fatalf("record %d never delivered", i)
		case n > 1:
			dup += n - 1
		}
	}
	if dup > 0 && repeats == 0 {
		t.Fatalf("%d records delivered twice with no repeat counted", dup)
	}
	if dup > 0 {
		t.Logf("%d records repeated (%d batches counted as repeats)", dup, repeats)
	}
	if a.Stats().Rebalances == 0 {
		t.Fatalf("A gave up no generation")
	}
}

// TestTooLargeValue: a value over MaxLineBytes is kept to its first
// KeepBytes, flagged UnitTooLarge with its full size; the next message is
// read as usual.
func TestTooLargeValue(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	big := strings.Repeat("y", 5000)
	w := &kafkago.Writer{Addr: kafkago.TCP(c.Addrs()...), Topic: testTopic, Transport: c.Transport(), RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(context.Background(),
		kafkago.Message{Key: []byte("big"), Value: []byte(big)},
		kafkago.Message{Key: []byte("tomb")}, // a tombstone: skipped
		kafkago.Message{Key: []byte("small"), Value: []byte("{}")},
	); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	s := newSource(t, testConfig(c, "g-big"), Options{MaxLineBytes: 1000, KeepBytes: 100})
	h := start(t, s, true)
	waitFor(t, 30*time.Second, "2 units", func() bool { return h.count() >= 2 })
	var units []string
	for _, b := range h.snapshot() {
		for i := range b.offsets {
			units = append(units, fmt.Sprintf("%s@%d:%d:%d:%d", b.keys[i], b.offsets[i], len(b.values[i]), b.sizes[i], b.flags[i]))
		}
	}
	want := []string{"big@0:100:5000:" + strconv.Itoa(int(pipeline.UnitTooLarge)), "small@2:2:2:0"}
	if strings.Join(units, " ") != strings.Join(want, " ") {
		t.Fatalf("units %v, want %v", units, want)
	}
	waitFor(t, 5*time.Second, "commit", func() bool {
		if err := s.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
		return committed(t, c, "g-big", 1)[0].CommittedOffset == 3
	})
}

// TestStopIsPrompt: with a fetch waiting at the end of the partitions, a
// cancelled Run returns within a second.
func TestStopIsPrompt(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	cfg := testConfig(c, "g-stop")
	cfg.MaxWait = 5 * time.Second
	s := newSource(t, cfg, Options{})
	h := start(t, s, true)
	waitFor(t, 30*time.Second, "assignment", func() bool { return len(s.Assigned()) == 3 })
	time.Sleep(200 * time.Millisecond) // fetches now wait at the end
	t0 := time.Now()
	h.stop()
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("Run took %v to return after cancel", d)
	}
}

// TestBrokerDownThenBack: with the broker stopped Run keeps retrying (no
// error, no crash); once it is back, records produced are read.
func TestBrokerDownThenBack(t *testing.T) {
	t.Parallel()
	c := testkafka.StartWith(t, testkafka.Options{Topics: []string{testTopic}, Partitions: 2, Persist: true})
	produce(t, c, 0, 20, 0)
	s := newSource(t, testConfig(c, "g-down"), Options{})
	h := start(t, s, true)
	waitFor(t, 30*time.Second, "20 records", func() bool { return h.count() >= 20 })
	c.Stop()
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-h.done:
		t.Fatalf("Run returned with the broker down: %v", err)
	default:
	}
	c.Restart()
	produce(t, c, 20, 40, 0)
	waitFor(t, 60*time.Second, "40 records after the restart", func() bool {
		seen := map[string]bool{}
		for _, b := range h.snapshot() {
			for _, k := range b.keys {
				seen[k] = true
			}
		}
		return len(seen) == 40
	})
}

// TestIdleAndLag: a partition that sent its batches and then has nothing
// to fetch for idle_timeout is told idle once, with its batch count; its
// lag (high watermark less next offset) is then 0.
func TestIdleAndLag(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	produce(t, c, 0, 30, 0)
	cfg := testConfig(c, "g-idle")
	cfg.IdleTimeout = 200 * time.Millisecond
	idle := make(chan [2]int64, 4)
	s := newSource(t, cfg, Options{BatchUnits: 10, Events: pipeline.SourceEvents{Idle: func(id int, n int64) { idle <- [2]int64{int64(id), n} }}})
	h := start(t, s, true)
	waitFor(t, 30*time.Second, "30 records", func() bool { return h.count() >= 30 })
	select {
	case ev := <-idle:
		bs := h.snapshot()
		if ev[0] != int64(bs[0].originID) || ev[1] != int64(len(bs)) {
			t.Fatalf("idle(%d, %d), want origin %d after %d batches", ev[0], ev[1], bs[0].originID, len(bs))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no idle event")
	}
	time.Sleep(400 * time.Millisecond)
	if len(idle) != 0 {
		t.Fatalf("idle told more than once")
	}
	if lag := s.Lag(); len(lag) != 1 || lag[testTopic+":0"] != 0 {
		t.Fatalf("lag %v, want %s:0 at 0", lag, testTopic)
	}
}
