package telemetry

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/metric"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T) *Server {
	t.Helper()
	s, err := Start(Options{Listen: "127.0.0.1:0", Version: "v-test", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// A busy port fails Start at once, with the address and the knob in the
// message, and leaves the holder alone.
func TestBusyPortIsAClearError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Start(Options{Listen: ln.Addr().String(), Logger: quiet()})
	if err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	for _, want := range []string{ln.Addr().String(), "telemetry.listen", "address already in use", "set telemetry.listen to a free address"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// /metrics is the Prometheus text format, with the build info and the
// instruments registered on Meter, read at each scrape.
func TestMetricsScrape(t *testing.T) {
	s := start(t)
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Fatalf("addr %s", s.Addr())
	}
	var n atomic.Int64
	if _, err := s.Meter().Int64ObservableCounter("tracepipe.test.things", metric.WithUnit("{thing}"),
		metric.WithDescription("Things."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(n.Load())
			return nil
		})); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int64{0, 41} {
		n.Store(want)
		mf := scrape(t, s)
		got := mf["tracepipe_test_things_total"]
		if got == nil || got.GetMetric()[0].GetCounter().GetValue() != float64(want) {
			t.Fatalf("tracepipe_test_things_total = %v, want %d", got, want)
		}
		if got.GetHelp() != "Things." {
			t.Fatalf("help %q", got.GetHelp())
		}
	}
	bi := scrape(t, s)["tracepipe_build_info"]
	if bi == nil {
		t.Fatal("no tracepipe_build_info")
	}
	labels := map[string]string{}
	for _, l := range bi.GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != "v-test" || !strings.HasPrefix(labels["go_version"], "go") {
		t.Fatalf("build info labels %v", labels)
	}
}

// /healthz is 200 with a JSON body; /readyz follows its checks: 503 until
// one is set and while any says not ready.
func TestHealthAndReadiness(t *testing.T) {
	s := start(t)
	base := "http://" + s.Addr()
	code, body := get(t, base+"/healthz")
	var h health
	if err := json.Unmarshal(body, &h); err != nil || code != 200 || h.Status != "alive" || !h.Healthy {
		t.Fatalf("/healthz %d %s (%v)", code, body, err)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(string(body), `"starting"`) {
		t.Fatalf("/readyz before any check: %d %s", code, body)
	}
	var up atomic.Bool
	s.SetCheck("dlq", func(context.Context) Status {
		if up.Load() {
			return Status{Ready: true, State: "writable"}
		}
		return Status{State: "unreachable", Error: "connection refused"}
	})
	s.SetCheck("sink/out", func(context.Context) Status { return Status{Ready: true, State: "closed"} })
	code, body = get(t, base+"/readyz")
	if err := json.Unmarshal(body, &h); err != nil || code != 503 || h.Status != "not_ready" ||
		h.Components["dlq"].Error != "connection refused" || !h.Components["sink/out"].Ready {
		t.Fatalf("/readyz with the DLQ down: %d %s (%v)", code, body, err)
	}
	up.Store(true)
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.Contains(string(body), `"status": "ready"`) {
		t.Fatalf("/readyz with everything up: %d %s", code, body)
	}
	// A check that hangs answers within CheckTimeout, not ready.
	s.SetCheck("slow", func(ctx context.Context) Status {
		<-ctx.Done()
		return Status{State: "timeout", Error: ctx.Err().Error()}
	})
	t0 := time.Now()
	if code, _ := get(t, base+"/readyz"); code != 503 || time.Since(t0) > CheckTimeout+time.Second {
		t.Fatalf("/readyz with a hanging check: %d after %s", code, time.Since(t0))
	}
}

func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, "http://"+s.Addr()+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return mf
}
