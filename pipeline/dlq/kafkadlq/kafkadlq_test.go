package kafkadlq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/pipeline/dlq"
	"github.com/tracepipe/tracepipe/pipeline/dlq/kafkadlq"
)

var classes = []string{"malformed", "invalid", "too_large", "late", "panic", "sink_exhausted"}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func dlqConfig(addrs []string, topic string) config.DLQKafka {
	return config.DLQKafka{
		Kafka: config.Kafka{Brokers: addrs, ClientID: "test", Timeout: 5 * time.Second},
		Topic: topic,
	}
}

// entry returns an entry with many fields set, varied by i. Times are
// UTC without a monotonic reading, as an entry read back has them.
func entry(i int) *dlq.Entry {
	now := time.Now().UTC().Round(0)
	class := classes[i%len(classes)]
	e := &dlq.Entry{
		Version: dlq.SchemaVersion, ID: dlq.NewID(now), Time: now, Stage: "parse", Component: "jsonl", Host: "host-1", PipelineVersion: "test",
		Source: dlq.Source{Kind: "file", Path: "/var/log/app.jsonl", Format: "jsonl", Offset: int64(i) * 100, Line: int64(i) + 1},
		Error:  dlq.Error{Class: class, Code: "code_" + class, Message: fmt.Sprintf("message %d, with \"quotes\" and ünïcode", i)},
	}
	switch i % 4 {
	case 0:
		e.SetPayload(fmt.Appendf(nil, `{"i":%d,"msg":"a <b> & c"}`, i), 0, 0)
		e.Attempts, e.FirstFailure, e.LastFailure = 3, now.Add(-time.Second), now
	case 1:
		e.SetPayload([]byte{0xff, 0xfe, byte(i), 0, '\n'}, 0, 0) // binary
		et := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
		e.EventTime, e.TraceID, e.SpanID = &et, fmt.Sprintf("%032x", i), fmt.Sprintf("%016x", i)
	case 2:
		e.SetPayload(bytes.Repeat([]byte("y"), 500), 5000, 100) // truncated
		ws, we := time.Unix(1700000000, 0).UTC(), time.Unix(1700000060, 0).UTC()
		e.WindowStart, e.WindowEnd = &ws, &we
		e.Source = dlq.Source{Kind: "kafka", Topic: "in", Partition: 2, KafkaOff: int64(i)}
		e.ReplayCount, e.ReplayedFrom = 2, "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	case 3:
		// empty payload
		e.SetPayload(nil, 0, 0)
		e.Source = dlq.Source{Kind: "redis", Stream: "s", StreamID: "1-1"}
	}
	return e
}

func clone(e *dlq.Entry) *dlq.Entry {
	c := *e
	c.PayloadBase64 = slices.Clone(e.PayloadBase64)
	return &c
}

func mustJSON(t *testing.T, e *dlq.Entry) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func scanAll(t *testing.T, s *kafkadlq.Store) []*dlq.Entry {
	t.Helper()
	var out []*dlq.Entry
	if err := s.Scan(context.Background(), func(e *dlq.Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRoundTripScanGetDelete(t *testing.T) {
	c := testkafka.Start(t) // no topics: Open creates it
	cfg := dlqConfig(c.Addrs(), "dlq")
	b, err := kafkadlq.Open(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	const n = 240
	put := make(map[string]*dlq.Entry, n)
	perClass := map[string]int64{}
	ctx := context.Background()
	for i := range n {
		e := entry(i)
		put[e.ID] = clone(e)
		perClass[e.Error.Class]++
		if err := b.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := b.Stats()
	if st.Total != n || st.Failed != 0 || !reflect.DeepEqual(st.Written, perClass) || b.FellBack() != 0 {
		t.Fatalf("stats %+v fellBack %d, want %v", st, b.FellBack(), perClass)
	}
	if got := c.Count("dlq"); got != n {
		t.Fatalf("topic holds %d", got)
	}
	if err := b.Put(ctx, entry(0)); !errors.Is(err, dlq.ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}

	s, err := kafkadlq.OpenStore(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := scanAll(t, s)
	if len(got) != n {
		t.Fatalf("scan returned %d entries, want %d", len(got), n)
	}
	for i, e := range got {
		want, ok := put[e.ID]
		if !ok {
			t.Fatalf("unknown id %s", e.ID)
		}
		if !reflect.DeepEqual(e, want) {
			t.Fatalf("entry %s differs:\n got %s\nwant %s", e.ID, mustJSON(t, e), mustJSON(t, want))
		}
		if i > 0 && got[i-1].ID >= e.ID {
			t.Fatalf("scan not in id order at %d", i)
		}
	}
	if s.Undecodable() != 0 {
		t.Fatalf("undecodable %d", s.Undecodable())
	}

	// Get.
	id := got[17].ID
	e, err := s.Get(ctx, id)
	if err != nil || !reflect.DeepEqual(e, put[id]) {
		t.Fatalf("Get %s: %v %v", id, e, err)
	}
	if _, err := s.Get(ctx, "01ARZ3NDEKTSV4RRFFQ69G5FAV"); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}

	// Delete: the ids go to <topic>.purged; Scan and Get skip them.
	del := []string{got[0].ID, got[5].ID, got[5].ID, got[n-1].ID, "01ARZ3NDEKTSV4RRFFQ69G5FAV"}
	k, err := s.Delete(ctx, del)
	if err != nil || k != 3 {
		t.Fatalf("Delete: %d %v, want 3", k, err)
	}
	if c.Count("dlq.purged") != 3 || c.Count("dlq") != n {
		t.Fatalf("purged topic %d, dlq topic %d", c.Count("dlq.purged"), c.Count("dlq"))
	}
	after := scanAll(t, s)
	if len(after) != n-3 {
		t.Fatalf("after Delete scan returned %d", len(after))
	}
	for _, e := range after {
		if slices.Contains(del, e.ID) {
			t.Fatalf("purged %s still scanned", e.ID)
		}
	}
	if _, err := s.Get(ctx, got[5].ID); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("Get purged: %v", err)
	}
	if k, err := s.Delete(ctx, del); err != nil || k != 0 {
		t.Fatalf("Delete again: %d %v", k, err)
	}
	// A store opened later sees the same.
	s2, err := kafkadlq.OpenStore(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(scanAll(t, s2)) != n-3 {
		t.Fatal("a new store does not see the purge")
	}
}

func TestMessageLayout(t *testing.T) {
	c := testkafka.Start(t, "dlq")
	b, err := kafkadlq.Open(dlqConfig(c.Addrs(), "dlq"), quiet())
	if err != nil {
		t.Fatal(err)
	}
	e := entry(1) // binary payload, event time, trace id
	want := clone(e)
	if err := b.Put(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := c.Messages("dlq")
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if string(m.Key) != want.ID || !bytes.Equal(m.Value, want.PayloadBase64) || !m.Time.Equal(want.Time.Truncate(time.Millisecond)) {
		t.Fatalf("key %q value %q time %s", m.Key, m.Value, m.Time)
	}
	h := map[string]string{}
	for _, x := range m.Headers {
		if _, dup := h[x.Key]; dup {
			t.Fatalf("header %s twice", x.Key)
		}
		h[x.Key] = string(x.Value)
	}
	for k, v := range map[string]string{
		"dlq.v": "2", "dlq.id": want.ID, "dlq.error.class": want.Error.Class, "dlq.error.code": want.Error.Code,
		"dlq.error.message": want.Error.Message, "dlq.stage": "parse", "dlq.component": "jsonl",
		"dlq.source.kind": "file", "dlq.source.path": "/var/log/app.jsonl", "dlq.source.offset": "100",
		"dlq.source.line": "2", "dlq.payload_binary": "true", "dlq.payload_size": "5",
		"dlq.event_time": "2024-05-06T07:08:09.123456789Z", "dlq.trace_id": want.TraceID,
		"dlq.payload_sha256": want.PayloadSHA256, "dlq.time": want.Time.Format(time.RFC3339Nano),
	} {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	for _, k := range []string{"dlq.truncated", "dlq.window_start", "dlq.replayed_from", "dlq.payload", "dlq.payload_base64"} {
		if _, ok := h[k]; ok {
			t.Errorf("header %s present", k)
		}
	}
}

func TestOpenCreatesOrNamesTheTopic(t *testing.T) {
	c := testkafka.Start(t)
	c.Fail(kmsg.CreateTopics, 1, kerr.TopicAuthorizationFailed.Code)
	_, err := kafkadlq.Open(dlqConfig(c.Addrs(), "my-dlq"), quiet())
	if err == nil || !strings.Contains(err.Error(), `"my-dlq"`) || !errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("Open: %v", err)
	}
	_, err = kafkadlq.OpenStore(dlqConfig(c.Addrs(), "other"), quiet())
	if !errors.Is(err, kafkadlq.ErrTopicMissing) || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("OpenStore of a missing topic: %v", err)
	}
}

func TestPutRefusesInvalid(t *testing.T) {
	c := testkafka.Start(t, "dlq")
	b, err := kafkadlq.Open(dlqConfig(c.Addrs(), "dlq"), quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if err := b.Put(context.Background(), &dlq.Entry{}); !errors.Is(err, dlq.ErrInvalidEntry) {
		t.Fatalf("Put of an empty entry: %v", err)
	}
	if err := b.Put(context.Background(), nil); err == nil {
		t.Fatal("Put(nil) accepted")
	}
}

// idsIn returns the ids of a file DLQ directory.
func idsIn(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	if err := dlq.Scan(dir, func(e *dlq.Entry, _ dlq.Position) error {
		ids[e.ID] = true
		return nil
	}, func(c dlq.Corruption) { t.Errorf("corruption: %v", c) }); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestFallbackWhenTheBrokerGoes closes the broker mid-run: every entry
// ends in Kafka or in the file DLQ, and Kafka takes entries again once it
// is back.
func TestFallbackWhenTheBrokerGoes(t *testing.T) {
	c := testkafka.StartWith(t, testkafka.Options{Topics: []string{"dlq"}, Persist: true})
	dir := filepath.Join(t.TempDir(), "fallback")
	fb, err := dlq.OpenFile(dlq.FileOptions{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	b, err := kafkadlq.Open(dlqConfig(c.Addrs(), "dlq"), slog.New(slog.NewTextHandler(&logs, nil)),
		kafkadlq.WithFallback(fb),
		kafkadlq.WithDeliveryTimeout(300*time.Millisecond),
		kafkadlq.WithRetryAfter(100*time.Millisecond),
		kafkadlq.WithQueueSize(16))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	perClass := map[string]int64{}
	putN := func(n int) {
		for range n {
			e := entry(len(ids))
			ids = append(ids, e.ID)
			perClass[e.Error.Class]++
			if err := b.Put(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitKafka := func(want int64) {
		deadline := time.Now().Add(10 * time.Second)
		for b.Stats().Total-fb.Stats().Total < want {
			if time.Now().After(deadline) {
				t.Fatalf("Kafka acked %d, want %d", b.Stats().Total-fb.Stats().Total, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	putN(60)
	waitKafka(60)
	c.Stop()
	putN(60) // while the broker is down
	deadline := time.Now().Add(10 * time.Second)
	for b.FellBack() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing fell back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Restart()
	// Kafka takes entries again once RetryAfter has passed.
	deadline = time.Now().Add(20 * time.Second)
	for kafkaAcked := func() int64 { return b.Stats().Total - fb.Stats().Total }; kafkaAcked() <= 60; {
		if time.Now().After(deadline) {
			t.Fatalf("Kafka took nothing after the restart (acked %d)", kafkaAcked())
		}
		putN(10)
		time.Sleep(50 * time.Millisecond)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}

	st := b.Stats()
	if st.Failed != 0 || st.Total < int64(len(ids)) {
		t.Fatalf("stats %+v for %d entries", st, len(ids))
	}
	inFile := idsIn(t, dir)
	inKafka := map[string]bool{}
	for _, m := range c.Messages("dlq") {
		inKafka[string(m.Key)] = true
	}
	both := 0
	for _, id := range ids {
		switch {
		case inKafka[id] && inFile[id]:
			both++
		case !inKafka[id] && !inFile[id]:
			t.Fatalf("entry %s is lost", id)
		}
	}
	if int64(len(inFile)) != b.FellBack() || b.FellBack() == 0 || b.FellBack() == int64(len(ids)) {
		t.Fatalf("fell back %d, file holds %d, of %d", b.FellBack(), len(inFile), len(ids))
	}
	if len(inKafka) <= 60 {
		t.Fatalf("Kafka holds %d: nothing delivered after the restart", len(inKafka))
	}
	// Written counts each entry once, wherever it went (an entry in both
	// places is counted twice).
	if st.Total != int64(len(ids)+both) {
		t.Fatalf("total %d, want %d (+%d in both)", st.Total, len(ids), both)
	}
	t.Logf("%d entries: %d in Kafka, %d fell back, %d in both", len(ids), len(inKafka), b.FellBack(), both)
	l := logs.String()
	if !strings.Contains(l, "entries go to the fallback") || !strings.Contains(l, "delivering to Kafka again") {
		t.Fatalf("logs:\n%s", l)
	}
}

func TestNoFallbackCountsFailed(t *testing.T) {
	c := testkafka.Start(t, "dlq")
	b, err := kafkadlq.Open(dlqConfig(c.Addrs(), "dlq"), quiet(), kafkadlq.WithDeliveryTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	c.Stop()
	for i := range 5 {
		if err := b.Put(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	err = b.Close(context.Background())
	if err == nil || b.Stats().Failed != 5 || b.Stats().Total != 0 {
		t.Fatalf("Close %v, stats %+v", err, b.Stats())
	}
	select {
	case <-b.Full():
		t.Fatal("Full closed without a fallback")
	default:
	}
}

func TestOpenWithBrokerDownAndFallback(t *testing.T) {
	c := testkafka.Start(t) // no topic: created once the broker is back
	addrs := c.Addrs()
	c.Stop()
	dir := t.TempDir()
	fb, err := dlq.OpenFile(dlq.FileOptions{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := dlqConfig(addrs, "dlq")
	cfg.Timeout = time.Second
	if _, err := kafkadlq.Open(cfg, quiet()); err == nil {
		t.Fatal("Open without a fallback succeeded with the broker down")
	}
	b, err := kafkadlq.Open(cfg, quiet(), kafkadlq.WithFallback(fb), kafkadlq.WithRetryAfter(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	put := func() {
		if err := b.Put(context.Background(), entry(n)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	for range 10 {
		put()
	}
	for b.FellBack() < 10 {
		time.Sleep(5 * time.Millisecond)
	}
	c.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for int64(n) == b.FellBack() {
		if time.Now().After(deadline) {
			t.Fatal("Kafka took nothing after the restart")
		}
		put()
		time.Sleep(20 * time.Millisecond)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	inKafka := c.Count("dlq")
	if inKafka == 0 || b.FellBack()+inKafka != int64(n) || int64(len(idsIn(t, dir))) != b.FellBack() || b.Stats().Total != int64(n) {
		t.Fatalf("%d entries: fell back %d, in Kafka %d, stats %+v", n, b.FellBack(), inKafka, b.Stats())
	}
}

func TestOversizedEntryFallsBack(t *testing.T) {
	c := testkafka.Start(t, "dlq")
	dir := t.TempDir()
	fb, err := dlq.OpenFile(dlq.FileOptions{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := kafkadlq.Open(dlqConfig(c.Addrs(), "dlq"), quiet(), kafkadlq.WithFallback(fb))
	if err != nil {
		t.Fatal(err)
	}
	big := entry(0)
	big.SetPayload(bytes.Repeat([]byte("z"), 2<<20), 0, 0)
	small := entry(1)
	for _, e := range []*dlq.Entry{big, small} {
		if err := b.Put(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ids := idsIn(t, dir); !ids[big.ID] || len(ids) != 1 || c.Count("dlq") != 1 {
		t.Fatalf("file %v, kafka %d", ids, c.Count("dlq"))
	}
}

func TestConcurrentPuts(t *testing.T) {
	c := testkafka.Start(t, "dlq")
	b, err := kafkadlq.Open(dlqConfig(c.Addrs(), "dlq"), quiet(), kafkadlq.WithQueueSize(8))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				if err := b.Put(context.Background(), entry(w*50+i)); err != nil {
					t.Error(err)
				}
				_ = b.Stats()
			}
		})
	}
	wg.Wait()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Total != 200 || c.Count("dlq") != 200 {
		t.Fatalf("stats %+v, topic %d", st, c.Count("dlq"))
	}
}

// TestBrokerClosedWhilePutting closes the broker while entries stream in
// from several goroutines: none is lost.
func TestBrokerClosedWhilePutting(t *testing.T) {
	c := testkafka.StartWith(t, testkafka.Options{Topics: []string{"dlq"}, Persist: true})
	dir := filepath.Join(t.TempDir(), "fallback")
	fb, err := dlq.OpenFile(dlq.FileOptions{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := kafkadlq.Open(dlqConfig(c.Addrs(), "dlq"), quiet(),
		kafkadlq.WithFallback(fb), kafkadlq.WithDeliveryTimeout(300*time.Millisecond), kafkadlq.WithQueueSize(4))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := range 100 {
				e := entry(w*100 + i)
				mu.Lock()
				ids = append(ids, e.ID)
				mu.Unlock()
				if err := b.Put(context.Background(), e); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	time.Sleep(40 * time.Millisecond)
	c.Stop()
	wg.Wait()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Restart() // persisted: what Kafka acknowledged is there again
	inFile := idsIn(t, dir)
	inKafka := map[string]bool{}
	for _, m := range c.Messages("dlq") {
		inKafka[string(m.Key)] = true
	}
	for _, id := range ids {
		if !inKafka[id] && !inFile[id] {
			t.Fatalf("entry %s is lost", id)
		}
	}
	if st := b.Stats(); st.Failed != 0 || st.Total < int64(len(ids)) || b.FellBack() == 0 {
		t.Fatalf("stats %+v, fell back %d", st, b.FellBack())
	}
	t.Logf("%d entries: %d in Kafka, %d fell back", len(ids), len(inKafka), b.FellBack())
}

func TestFullFollowsTheFallback(t *testing.T) {
	c := testkafka.Start(t, "dlq")
	fb, err := dlq.OpenFile(dlq.FileOptions{Dir: t.TempDir(), SegmentBytes: 1024, MaxBytes: 2048, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := kafkadlq.Open(dlqConfig(c.Addrs(), "dlq"), quiet(), kafkadlq.WithFallback(fb), kafkadlq.WithDeliveryTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	for i := range 5 { // Kafka takes these: Full stays open
		if err := b.Put(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop()
	for i := range 20 {
		if err := b.Put(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-b.Full():
	case <-time.After(10 * time.Second):
		t.Fatalf("Full not closed; fell back %d", b.FellBack())
	}
}
