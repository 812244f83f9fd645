package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/kafkaconn"
	"github.com/tracepipe/tracepipe/internal/testkafka"
)

// TestSASLAndTLS: the source connects as the Kafka sink does (the
// connection block is the same config): over TLS with a CA the client is
// given, authenticated with SCRAM-SHA-512, for the fetches and for the
// group's coordinator alike; it reads every record and commits. Without
// the password's user it reads nothing and commits nothing.
func TestSASLAndTLS(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-source-Passw0rd"
	server, client := testkafka.SelfSigned(t)
	c := testkafka.StartWith(t, testkafka.Options{
		Topics: []string{testTopic}, Partitions: 3, TLS: server, ClientTLS: client,
		Users: []testkafka.User{{Mechanism: "PLAIN", Name: "admin", Password: "admin-pw"}, {Mechanism: "SCRAM-SHA-512", Name: "reader", Password: secret}},
	})
	produce(t, c, 0, 90, 0)

	cfg := testConfig(c, "g-sasl")
	cfg.TLS = true
	cfg.SASL = &config.SASL{Mechanism: "scram-sha-512", Username: "reader", Password: config.NewSecret(secret)}
	s := newSource(t, cfg, Options{Conn: kafkaconn.Options{TLSConfig: client}})
	h := start(t, s, true)
	waitFor(t, 30*time.Second, "90 records", func() bool { return h.count() == 90 })
	if err := s.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.stop()
	var sum int64
	for _, p := range committed(t, c, "g-sasl", 3) {
		sum += p.CommittedOffset
	}
	if sum != 90 {
		t.Fatalf("committed offsets sum to %d, want 90", sum)
	}

	wrong := cfg
	wrong.Group = "g-wrong"
	wrong.SASL = &config.SASL{Mechanism: "scram-sha-512", Username: "reader", Password: config.NewSecret("not-it")}
	ws := newSource(t, wrong, Options{Conn: kafkaconn.Options{TLSConfig: client}})
	wh := start(t, ws, true)
	time.Sleep(2 * time.Second)
	wh.stop()
	if n := wh.count(); n != 0 {
		t.Fatalf("a wrong password read %d records", n)
	}
}

// TestTopicRegex: topic_regex consumes the matching topics and no other,
// and picks up a matching topic created later (within metadata_refresh).
func TestTopicRegex(t *testing.T) {
	t.Parallel()
	c := testkafka.StartWith(t, testkafka.Options{Topics: []string{"app.a", "app.b", "other"}, Partitions: 2})
	write := func(topic string, n int) {
		t.Helper()
		w := &kafkago.Writer{Addr: kafkago.TCP(c.Addrs()...), Topic: topic, Transport: c.Transport(), BatchTimeout: time.Millisecond, RequiredAcks: kafkago.RequireAll}
		defer w.Close()
		for i := range n {
			if err := w.WriteMessages(context.Background(), kafkago.Message{Value: fmt.Appendf(nil, `{"topic":%q,"i":%d}`, topic, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("app.a", 10)
	write("app.b", 10)
	write("other", 10)
	cfg := testConfig(c, "g-regex")
	cfg.Topics, cfg.TopicRegex = nil, `^app\.`
	cfg.MetadataRefresh = 200 * time.Millisecond
	s := newSource(t, cfg, Options{})
	seen := map[string]int{}
	h := startTopics(t, s, seen)
	waitFor(t, 30*time.Second, "app.a and app.b", func() bool { return h.count() == 20 })
	c.CreateTopic("app.c", 2)
	write("app.c", 5)
	waitFor(t, 30*time.Second, "app.c", func() bool { return h.count() == 25 })
	h.stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	if seen["app.a"] != 10 || seen["app.b"] != 10 || seen["app.c"] != 5 || seen["other"] != 0 {
		t.Fatalf("records per topic: %v", seen)
	}
}
