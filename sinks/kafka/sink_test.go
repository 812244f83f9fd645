package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/internal/kafkaconn"
	"github.com/tracepipe/tracepipe/internal/testkafka"
	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sinks"
	kafkasink "github.com/tracepipe/tracepipe/sinks/kafka"
)

func newSink(t testing.TB, cfg config.KafkaSink, opts ...kafkasink.Option) *kafkasink.Sink {
	t.Helper()
	s, err := kafkasink.New("k", cfg, quiet(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func code(err error) string {
	var c pipeline.Coded
	if errors.As(err, &c) {
		return c.Code()
	}
	return ""
}

// expected returns what the sink should have produced for b: value -> key,
// and how many records.
func expected(b *pipeline.Batch) (map[string]string, int) {
	want := map[string]string{}
	n := 0
	for i := range b.Records {
		r := &b.Records[i]
		if r.Failed() || r.Filtered {
			continue
		}
		v := sinks.AppendRecord(nil, r, b.Buf)
		want[string(v[:len(v)-1])] = string(r.TraceID)
		n++
	}
	return want, n
}

func TestRoundTripEveryCodec(t *testing.T) {
	lines := genLines(t, 120, 15) // several records per trace
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			c := testkafka.Start(t, "records")
			cfg := sinkConfig(c.Addrs(), "records")
			cfg.Compression = codec
			s := newSink(t, cfg)
			if err := s.Check(context.Background()); err != nil {
				t.Fatal(err)
			}

			b := parsedBatch(t, lines)
			defer pipeline.PutBatch(b)
			b.Records[3].Filtered = true
			b.Records[7].Fail("parse", pipeline.ClassInvalid, "bad_id", "test")
			b.Records[11].TraceID = nil // no key
			want, n := expected(b)

			if err := s.Write(context.Background(), b, pipeline.DeliverableRecords(b)); err != nil {
				t.Fatal(err)
			}
			msgs := c.Messages("records")
			if len(msgs) != n {
				t.Fatalf("%d messages, want %d", len(msgs), n)
			}
			partOf := map[string]int{}
			for _, m := range msgs {
				key, ok := want[string(m.Value)]
				if !ok {
					t.Fatalf("unexpected message value %.200s", m.Value)
				}
				delete(want, string(m.Value))
				if key == "" {
					if m.Key != nil {
						t.Fatalf("record without trace id has key %q", m.Key)
					}
					continue
				}
				if string(m.Key) != key {
					t.Fatalf("key %q, want trace id %q", m.Key, key)
				}
				if p, seen := partOf[key]; seen && p != m.Partition {
					t.Fatalf("trace %s on partitions %d and %d", key, p, m.Partition)
				}
				partOf[key] = m.Partition
				if bytes.HasSuffix(m.Value, []byte("\n")) {
					t.Fatal("value ends with a newline")
				}
				if d := time.Since(m.Time); d < 0 || d > time.Minute {
					t.Fatalf("message time %s is not the produce time", m.Time)
				}
			}
			if len(want) != 0 {
				t.Fatalf("%d records not found in the topic", len(want))
			}
			if len(partOf) < 2 {
				t.Fatalf("all traces on one partition: %v", partOf)
			}
			st := s.Stats()
			if st.Messages != int64(n) || st.Writes != 1 || st.Errors != 0 || st.Bytes <= 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestWriteNothingToSend(t *testing.T) {
	c := testkafka.Start(t, "records")
	s := newSink(t, sinkConfig(c.Addrs(), "records"))
	b := parsedBatch(t, genLines(t, 5, 0))
	defer pipeline.PutBatch(b)
	for i := range b.Records {
		b.Records[i].Filtered = true
	}
	if err := s.Write(context.Background(), b, pipeline.DeliverableRecords(b)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Writes != 0 || c.Count("records") != 0 {
		t.Fatalf("stats %+v, count %d", st, c.Count("records"))
	}
}

func TestConcurrentWrites(t *testing.T) {
	c := testkafka.Start(t, "records")
	s := newSink(t, sinkConfig(c.Addrs(), "records"))
	lines := genLines(t, 400, 0)
	const workers = 4
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		part := lines[w*100 : (w+1)*100]
		wg.Go(func() {
			for range 3 {
				b := parsedBatch(t, part)
				err := s.Write(context.Background(), b, pipeline.DeliverableRecords(b))
				pipeline.PutBatch(b)
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := c.Count("records"); n != workers*3*100 {
		t.Fatalf("count %d", n)
	}
	if st := s.Stats(); st.Messages != workers*3*100 || st.Writes != workers*3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOversizedRecordIsPermanent(t *testing.T) {
	lines := genLines(t, 3, 0)
	t.Run("over batch_bytes", func(t *testing.T) {
		c := testkafka.Start(t, "records")
		cfg := sinkConfig(c.Addrs(), "records")
		cfg.BatchBytes = 200 // every generated record is larger
		s := newSink(t, cfg)
		b := parsedBatch(t, lines)
		defer pipeline.PutBatch(b)
		err := s.Write(context.Background(), b, pipeline.DeliverableRecords(b))
		if !errors.Is(err, pipeline.ErrPermanent) || code(err) != "message_size_too_large" {
			t.Fatalf("err %v (code %q), want permanent message_size_too_large", err, code(err))
		}
		if !errors.Is(err, kafkago.MessageSizeTooLarge) || !strings.Contains(err.Error(), "batch_bytes 200") {
			t.Fatalf("err %v", err)
		}
		if c.Count("records") != 0 || s.Stats().Errors != 1 {
			t.Fatalf("count %d, stats %+v", c.Count("records"), s.Stats())
		}
	})
	t.Run("over the broker's message.max.bytes", func(t *testing.T) {
		c := testkafka.StartWith(t, testkafka.Options{
			Topics:        []string{"records"},
			BrokerConfigs: map[string]string{"message.max.bytes": "1024"},
		})
		cfg := sinkConfig(c.Addrs(), "records")
		cfg.Compression = "none"
		s := newSink(t, cfg)
		b := parsedBatch(t, lines)
		defer pipeline.PutBatch(b)
		// One record with a 4 KiB attribute.
		r := &b.Records[0]
		r.Attrs = append(r.Attrs[:len(r.Attrs):len(r.Attrs)], pipeline.Attr{
			Key: []byte("big"), Value: bytes.Repeat([]byte("x"), 4096), Type: pipeline.AttrString,
		})
		err := s.Write(context.Background(), b, pipeline.DeliverableRecords(b))
		if !errors.Is(err, pipeline.ErrPermanent) || code(err) != "message_size_too_large" {
			t.Fatalf("err %v (code %q), want permanent message_size_too_large", err, code(err))
		}
		if !strings.Contains(err.Error(), "messages failed") {
			t.Fatalf("err %v", err)
		}
	})
}

func TestTransientErrors(t *testing.T) {
	c := testkafka.Start(t, "records")
	s := newSink(t, sinkConfig(c.Addrs(), "records"))
	lines := genLines(t, 30, 0)
	write := func() error {
		b := parsedBatch(t, lines)
		defer pipeline.PutBatch(b)
		return s.Write(context.Background(), b, pipeline.DeliverableRecords(b))
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code int16
		want string
	}{
		{kerr.NotEnoughReplicas.Code, "not_enough_replicas"},
		{kerr.LeaderNotAvailable.Code, "leader_not_available"},
		{kerr.RequestTimedOut.Code, "request_timed_out"},
	} {
		h := c.FailProduce(-1, tc.code)
		err := write()
		h.Remove()
		if err == nil || errors.Is(err, pipeline.ErrPermanent) || code(err) != tc.want {
			t.Fatalf("err %v (code %q), want transient %s", err, code(err), tc.want)
		}
		if len(err.Error()) > 400 {
			t.Fatalf("error text is not summarized: %d bytes", len(err.Error()))
		}
	}
	// A permanent broker answer.
	h := c.FailProduce(-1, kerr.TopicAuthorizationFailed.Code)
	err := write()
	h.Remove()
	if !errors.Is(err, pipeline.ErrPermanent) || code(err) != "topic_authorization_failed" {
		t.Fatalf("err %v (code %q)", err, code(err))
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	// kfake applies a produce it answers with REQUEST_TIMED_OUT, as a
	// real broker may: that "failed" write is in the topic too (the runner
	// would write it again: the dedupe layer's case).
	if n := c.Count("records"); n != 90 {
		t.Fatalf("count %d, want 90", n)
	}

	// Broker gone: transient, network class.
	c.Stop()
	err = write()
	if err == nil || errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("err %v, want transient", err)
	}
	if cd := code(err); cd != kafkaconn.CodeBrokerUnavailable && cd != kafkaconn.CodeNetwork {
		t.Fatalf("code %q for %v", cd, err)
	}

	// After Close: permanent "closed".
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = write()
	if !errors.Is(err, pipeline.ErrPermanent) || code(err) != kafkaconn.CodeClosed {
		t.Fatalf("after Close: %v (code %q)", err, code(err))
	}
}

func TestUnknownTopic(t *testing.T) {
	c := testkafka.Start(t, "records")
	s := newSink(t, sinkConfig(c.Addrs(), "nope"))
	err := s.Check(context.Background())
	if code(err) != "unknown_topic_or_partition" || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Check: %v (code %q)", err, code(err))
	}
	b := parsedBatch(t, genLines(t, 3, 0))
	defer pipeline.PutBatch(b)
	err = s.Write(context.Background(), b, pipeline.DeliverableRecords(b))
	if code(err) != "unknown_topic_or_partition" || errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("Write: %v (code %q)", err, code(err))
	}
}

func TestSASL(t *testing.T) {
	const secret = "s3cr3t-Passw0rd-do-not-print"
	const wrong = "wr0ng-Passw0rd-do-not-print"
	c := testkafka.StartWith(t, testkafka.Options{
		Topics: []string{"records"},
		Users: []testkafka.User{
			{Mechanism: "PLAIN", Name: "alice", Password: secret},
			{Mechanism: "SCRAM-SHA-256", Name: "bob", Password: secret},
			{Mechanism: "SCRAM-SHA-512", Name: "carol,=x", Password: secret},
		},
	})
	lines := genLines(t, 10, 0)
	users := map[string]string{"plain": "alice", "scram-sha-256": "bob", "scram-sha-512": "carol,=x"}
	total := 0
	for mech, user := range users {
		t.Run(mech, func(t *testing.T) {
			var logs logBuffer
			for _, pass := range []string{secret, wrong} {
				cfg := sinkConfig(c.Addrs(), "records")
				cfg.SASL = &config.SASL{Mechanism: mech, Username: user, Password: config.NewSecret(pass)}
				cfg.Timeout = 3 * time.Second
				s, err := kafkasink.New("k", cfg, logs.logger())
				if err != nil {
					t.Fatal(err)
				}
				b := parsedBatch(t, lines)
				err = s.Write(context.Background(), b, pipeline.DeliverableRecords(b))
				pipeline.PutBatch(b)
				if pass == secret {
					if err != nil {
						t.Fatalf("right password: %v", err)
					}
					total += len(lines)
				} else {
					if err == nil {
						t.Fatal("wrong password accepted")
					}
					for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
						if strings.Contains(text, wrong) || strings.Contains(text, secret) {
							t.Fatalf("error shows the password: %s", text)
						}
					}
					t.Logf("wrong password: %v (code %q)", err, code(err))
				}
				if err := s.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if l := logs.String(); strings.Contains(l, secret) || strings.Contains(l, wrong) {
				t.Fatalf("logs show the password:\n%s", l)
			} else if !strings.Contains(l, "kafka sink ready") {
				t.Fatalf("logs:\n%s", l)
			}
		})
	}
	if n := c.Count("records"); n != int64(total) {
		t.Fatalf("count %d, want %d", n, total)
	}
	// A wrong mechanism name is a config error, without the password.
	_, err := kafkasink.New("k", config.KafkaSink{
		Kafka: config.Kafka{Brokers: c.Addrs(), SASL: &config.SASL{Mechanism: "md5", Username: "u", Password: config.NewSecret(secret)}},
		Topic: "records",
	}, quiet())
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("bad mechanism: %v", err)
	}
}

func TestTLS(t *testing.T) {
	server, client := testkafka.SelfSigned(t)
	c := testkafka.StartWith(t, testkafka.Options{Topics: []string{"records"}, TLS: server, ClientTLS: client})
	lines := genLines(t, 10, 0)

	cfg := sinkConfig(c.Addrs(), "records")
	cfg.TLS = true
	s := newSink(t, cfg, kafkasink.WithTLSConfig(client))
	b := parsedBatch(t, lines)
	defer pipeline.PutBatch(b)
	if err := s.Write(context.Background(), b, pipeline.DeliverableRecords(b)); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Messages("records")); n != len(lines) {
		t.Fatalf("%d messages", n)
	}

	// The system roots do not trust the test CA.
	cfg.Timeout = 3 * time.Second
	untrusting := newSink(t, cfg)
	err := untrusting.Write(context.Background(), b, pipeline.DeliverableRecords(b))
	if code(err) != kafkaconn.CodeTLS || errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("untrusted certificate: %v (code %q)", err, code(err))
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := sinkConfig([]string{"127.0.0.1:1"}, "t")
	for name, mut := range map[string]func(*config.KafkaSink){
		"no brokers":  func(c *config.KafkaSink) { c.Brokers = nil },
		"no topic":    func(c *config.KafkaSink) { c.Topic = "" },
		"compression": func(c *config.KafkaSink) { c.Compression = "brotli" },
		"acks":        func(c *config.KafkaSink) { c.RequiredAcks = "two" },
		"negative":    func(c *config.KafkaSink) { c.Linger = -1 },
	} {
		cfg := good
		mut(&cfg)
		if _, err := kafkasink.New("k", cfg, quiet()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRecoversWhenTheBrokerComesBack: a sink whose first Writes found no
// broker writes again as soon as it is back (kafka-go would otherwise
// serve its cached failure for up to 6s).
func TestRecoversWhenTheBrokerComesBack(t *testing.T) {
	c := testkafka.Start(t, "records")
	c.Stop()
	cfg := sinkConfig(c.Addrs(), "records")
	cfg.Timeout = time.Second
	s := newSink(t, cfg)
	b := parsedBatch(t, genLines(t, 10, 0))
	defer pipeline.PutBatch(b)
	if err := s.Write(context.Background(), b, pipeline.DeliverableRecords(b)); err == nil {
		t.Fatal("write without a broker succeeded")
	}
	c.Restart()
	start := time.Now()
	var err error
	for time.Since(start) < 10*time.Second {
		if err = s.Write(context.Background(), b, pipeline.DeliverableRecords(b)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s to write again", d)
	}
}
