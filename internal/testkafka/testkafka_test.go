package testkafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
)

func writer(c *Cluster, topic string) *kafkago.Writer {
	return &kafkago.Writer{
		Addr: kafkago.TCP(c.Addrs()...), Topic: topic, Transport: c.Transport(),
		Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll,
		BatchTimeout: time.Millisecond, MaxAttempts: 1,
	}
}

func write(t *testing.T, w *kafkago.Writer, from, n int) error {
	t.Helper()
	msgs := make([]kafkago.Message, n)
	for i := range msgs {
		msgs[i] = kafkago.Message{
			Key:     fmt.Appendf(nil, "k%d", from+i),
			Value:   fmt.Appendf(nil, "v%d", from+i),
			Headers: []kafkago.Header{{Key: "h", Value: []byte("x")}},
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.WriteMessages(ctx, msgs...)
}

func TestRoundTrip(t *testing.T) {
	c := Start(t, "a", "b")
	if len(c.Addrs()) != 1 {
		t.Fatalf("addrs %v", c.Addrs())
	}
	w := writer(c, "a")
	defer w.Close()
	if err := write(t, w, 0, 50); err != nil {
		t.Fatal(err)
	}
	msgs := c.Messages("a")
	if len(msgs) != 50 || c.Count("a") != 50 {
		t.Fatalf("read %d messages, count %d", len(msgs), c.Count("a"))
	}
	seen := map[string]string{}
	parts := map[int]bool{}
	for _, m := range msgs {
		seen[string(m.Key)] = string(m.Value)
		parts[m.Partition] = true
		if len(m.Headers) != 1 || string(m.Headers[0].Value) != "x" {
			t.Fatalf("headers %v", m.Headers)
		}
	}
	for i := range 50 {
		if seen[fmt.Sprintf("k%d", i)] != fmt.Sprintf("v%d", i) {
			t.Fatalf("message %d missing", i)
		}
	}
	if len(parts) != DefaultPartitions {
		t.Fatalf("messages on partitions %v, want all %d", parts, DefaultPartitions)
	}
	if n := len(c.Messages("b")); n != 0 {
		t.Fatalf("b has %d messages", n)
	}
}

func TestFailProduce(t *testing.T) {
	c := Start(t, "a")
	w := writer(c, "a")
	defer w.Close()
	if err := write(t, w, 0, 1); err != nil { // warm metadata
		t.Fatal(err)
	}
	h := c.FailProduce(2, kerr.NotEnoughReplicas.Code)
	for i := range 2 {
		err := write(t, w, 1, 1)
		var we kafkago.WriteErrors
		if !errors.As(err, &we) || !errors.Is(we[0], kafkago.NotEnoughReplicas) {
			t.Fatalf("attempt %d: %v, want NotEnoughReplicas", i, err)
		}
	}
	if h.Hits() != 2 {
		t.Fatalf("hits %d", h.Hits())
	}
	if err := write(t, w, 1, 1); err != nil {
		t.Fatalf("after the faults: %v", err)
	}
	if n := c.Count("a"); n != 2 {
		t.Fatalf("count %d, want 2", n)
	}
}

func TestStopRestartPersist(t *testing.T) {
	c := StartWith(t, Options{Topics: []string{"a"}, Persist: true})
	addrs := c.Addrs()
	w := writer(c, "a")
	defer w.Close()
	if err := write(t, w, 0, 10); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	if err := write(t, w, 10, 1); err == nil {
		t.Fatal("write to a stopped broker succeeded")
	}
	c.Restart()
	if fmt.Sprint(c.Addrs()) != fmt.Sprint(addrs) {
		t.Fatalf("addrs changed: %v -> %v", addrs, c.Addrs())
	}
	if n := len(c.Messages("a")); n != 10 {
		t.Fatalf("after restart %d messages, want 10", n)
	}
	// The writer reconnects on its own.
	var err error
	for range 50 {
		if err = write(t, w, 10, 1); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("write after restart: %v", err)
	}
	if n := c.Count("a"); n != 11 {
		t.Fatalf("count %d, want 11", n)
	}
}

func TestRestartWithoutPersistIsEmpty(t *testing.T) {
	c := Start(t, "a")
	w := writer(c, "a")
	if err := write(t, w, 0, 3); err != nil {
		t.Fatal(err)
	}
	w.Close()
	c.Restart()
	if n := c.Count("a"); n != 0 {
		t.Fatalf("count %d after restart without persistence", n)
	}
}

// TestProcess: a broker process takes messages and gives them back, its
// CPU time reads from /proc, and Stop ends it.
func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the broker command")
	}
	p := StartProcess(t, Options{Topics: []string{"a"}, Partitions: 2})
	w := &kafkago.Writer{Addr: kafkago.TCP(p.Addrs()...), Topic: "a", Transport: p.Transport(),
		Balancer: &kafkago.RoundRobin{}, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	msgs := make([]kafkago.Message, 40)
	for i := range msgs {
		msgs[i] = kafkago.Message{Value: fmt.Appendf(nil, "v%d", i)}
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAll(context.Background(), p.Addrs(), p.Transport(), "a")
	if err != nil || len(got) != len(msgs) {
		t.Fatalf("read %d messages, err %v", len(got), err)
	}
	if runtime.GOOS == "linux" {
		if cpu, err := p.CPU(); err != nil || cpu < 0 {
			t.Fatalf("cpu %v, err %v", cpu, err)
		}
	}
	pid := p.PID()
	p.Stop()
	if runtime.GOOS == "linux" {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Fatalf("broker process %d still there after Stop", pid)
		}
	}
}
