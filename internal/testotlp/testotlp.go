// Package testotlp is an OTLP/HTTP receiver for tests: an HTTP server on
// the loopback interface that decodes the protobuf bodies posted to
// /v1/metrics and /v1/traces, the way a collector would, and keeps them
// with the headers they came with.
package testotlp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Receiver is a running OTLP/HTTP receiver.
type Receiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	metrics []*colmetrics.ExportMetricsServiceRequest
	spans   []*tracepb.Span
	headers []http.Header
}

// Start serves a receiver for the test's life. Its paths are prefix +
// /v1/metrics and prefix + /v1/traces.
func Start(t testing.TB, prefix string) *Receiver {
	t.Helper()
	r := &Receiver{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+prefix+"/v1/metrics", func(w http.ResponseWriter, req *http.Request) {
		var m colmetrics.ExportMetricsServiceRequest
		if !r.decode(w, req, &m) {
			return
		}
		r.mu.Lock()
		r.metrics = append(r.metrics, &m)
		r.mu.Unlock()
		reply(w, &colmetrics.ExportMetricsServiceResponse{})
	})
	mux.HandleFunc("POST "+prefix+"/v1/traces", func(w http.ResponseWriter, req *http.Request) {
		var m coltrace.ExportTraceServiceRequest
		if !r.decode(w, req, &m) {
			return
		}
		r.mu.Lock()
		for _, rs := range m.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		reply(w, &coltrace.ExportTraceServiceResponse{})
	})
	r.srv = httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(r.srv.Close)
	return r
}

func (r *Receiver) decode(w http.ResponseWriter, req *http.Request, m proto.Message) bool {
	body, err := io.ReadAll(req.Body)
	if err == nil && req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "not protobuf", http.StatusUnsupportedMediaType)
		return false
	}
	if err == nil {
		err = proto.Unmarshal(body, m)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Clone())
	r.mu.Unlock()
	return true
}

func reply(w http.ResponseWriter, m proto.Message) {
	data, _ := proto.Marshal(m)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(data)
}

// HostPort is the receiver's address.
func (r *Receiver) HostPort() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// Headers returns the headers of every request decoded so far.
func (r *Receiver) Headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.headers...)
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// Pushes returns how many metric requests arrived.
func (r *Receiver) Pushes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.metrics)
}

// Point is one data point of the last push that had its metric.
type Point struct {
	Attrs map[string]string
	// Value is a sum's or a gauge's value, a histogram's count.
	Value float64
	// Sum is a histogram's sum.
	Sum float64
}

// Metric returns the points of name in the last push holding it, and the
// metric itself (nil when no push held it).
func (r *Receiver) Metric(name string) ([]Point, *metricspb.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.metrics) - 1; i >= 0; i-- {
		for _, rm := range r.metrics[i].ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if m.Name == name {
						return points(m), m
					}
				}
			}
		}
	}
	return nil, nil
}

func points(m *metricspb.Metric) []Point {
	var out []Point
	num := func(attrs []*commonpb.KeyValue, dp interface {
		GetAsDouble() float64
		GetAsInt() int64
	}, isInt bool) {
		v := dp.GetAsDouble()
		if isInt {
			v = float64(dp.GetAsInt())
		}
		out = append(out, Point{Attrs: Attrs(attrs), Value: v})
	}
	switch d := m.Data.(type) {
	case *metricspb.Metric_Sum:
		for _, dp := range d.Sum.DataPoints {
			_, isInt := dp.Value.(*metricspb.NumberDataPoint_AsInt)
			num(dp.Attributes, dp, isInt)
		}
	case *metricspb.Metric_Gauge:
		for _, dp := range d.Gauge.DataPoints {
			_, isInt := dp.Value.(*metricspb.NumberDataPoint_AsInt)
			num(dp.Attributes, dp, isInt)
		}
	case *metricspb.Metric_Histogram:
		for _, dp := range d.Histogram.DataPoints {
			out = append(out, Point{Attrs: Attrs(dp.Attributes), Value: float64(dp.Count), Sum: dp.GetSum()})
		}
	}
	return out
}

// Attrs flattens OTLP attributes to strings (ints in decimal).
func Attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		switch v := kv.Value.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			out[kv.Key] = strconvI(v.IntValue)
		case *commonpb.AnyValue_BoolValue:
			out[kv.Key] = map[bool]string{true: "true", false: "false"}[v.BoolValue]
		case *commonpb.AnyValue_DoubleValue:
			out[kv.Key] = strconvF(v.DoubleValue)
		}
	}
	return out
}

func strconvI(n int64) string   { return strconv.FormatInt(n, 10) }
func strconvF(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
