// Package telemetry serves the process's own metrics and health: an
// OpenTelemetry MeterProvider whose readings the OpenTelemetry Prometheus
// exporter turns into the Prometheus text format on /metrics, beside
// /healthz (the process is alive) and /readyz (its components can do their
// work), each with a JSON body of component states in the manner of the
// OpenTelemetry Collector's health check.
//
// Every instrument is meant to be observable: its callback reads counters
// the pipeline keeps anyway, once per scrape, so the endpoint adds no work
// per record or per batch. The package knows nothing of the pipeline; the
// composition root (app) registers the instruments and the checks.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of every tracepipe instrument.
const ScopeName = "github.com/tracepipe/tracepipe"

// Options configure Start.
type Options struct {
	// Listen is the host:port to bind (telemetry.listen); port 0 takes a
	// free one, see Server.Addr. "" serves nothing (an OTLP push only).
	Listen string
	// Knob names the setting Listen came from, for the error a busy port
	// gives (default "telemetry.listen").
	Knob string
	// Version is the build's version, in tracepipe.build.info.
	Version string
	Logger  *slog.Logger
	// OTLP, when set, pushes the metrics to a collector and exports the
	// pipeline's spans there (see otlp.go).
	OTLP *OTLP
}

// Server is the endpoint and the MeterProvider behind it.
type Server struct {
	provider *sdkmetric.MeterProvider
	meter    metric.Meter
	tracer   trace.Tracer // nil: no span is made (no OTLP endpoint)
	traces   *sdktrace.TracerProvider
	ln       net.Listener
	srv      *http.Server
	served   chan struct{}
	start    time.Time
	version  string
	log      *slog.Logger

	mu     sync.Mutex
	checks map[string]Check
}

// Check reports one component's state for /readyz. It is called for each
// request, with a context bounded by CheckTimeout, possibly at the same
// time as other checks; it must be safe for concurrent use.
type Check func(ctx context.Context) Status

// CheckTimeout bounds every readiness check of one request: a check that
// asks a server (a DLQ ping) answers not ready rather than hang the probe.
const CheckTimeout = 2 * time.Second

// Status is one component's state.
type Status struct {
	// Ready is false when the component keeps the process from doing its
	// work; one such component makes /readyz answer 503.
	Ready bool `json:"ready"`
	// State is a word for dashboards: running, closed, open, full...
	State string `json:"state"`
	// Error says why the component is not ready (never a secret).
	Error string `json:"error,omitempty"`
	// Detail holds what else explains the state (how long a breaker has
	// been open, say).
	Detail map[string]any `json:"detail,omitempty"`
}

// Start binds o.Listen and serves /metrics, /healthz and /readyz there
// until Close, and starts the OTLP push when o.OTLP is set. A busy or
// unusable address is an error naming it and the knob it came from,
// before anything else starts.
func Start(o Options) (*Server, error) {
	if o.Knob == "" {
		o.Knob = "telemetry.listen"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Listen == "" {
		return startPushOnly(o)
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		hint := ""
		if errors.Is(err, syscall.EADDRINUSE) {
			hint = " (another process holds it: set " + o.Knob + " to a free address, or port 0 for any free port)"
		}
		return nil, fmt.Errorf("telemetry: cannot listen on %s (%s): %w%s", o.Listen, o.Knob, err, hint)
	}
	// The exporter gets a registry of its own: the Go client's default one
	// would add process and runtime collectors nobody asked for, and a
	// second Server in one process (tests) would clash on it.
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	s, err := newServer(o, exp)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	s.ln = ln
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slogErrorLog{o.Logger},
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("telemetry: the endpoint stopped serving", "addr", s.Addr(), "err", err)
		}
	}()
	s.log.Info("telemetry: serving /metrics, /healthz and /readyz", "addr", s.Addr())
	return s, nil
}

// newServer makes the providers: the meter provider read by the
// Prometheus exporter (pull, when set) and by the OTLP push (when
// configured), and the tracer provider of the OTLP spans.
func newServer(o Options, pull sdkmetric.Reader) (*Server, error) {
	res := resource.NewSchemaless(
		attribute.String("service.name", "tracepipe"),
		attribute.String("service.version", o.Version),
	)
	var readers []sdkmetric.Option
	if pull != nil {
		readers = append(readers, sdkmetric.WithReader(pull))
	}
	s := &Server{
		served:  make(chan struct{}),
		start:   time.Now(),
		version: o.Version,
		log:     o.Logger,
		checks:  map[string]Check{},
	}
	if o.OTLP != nil {
		push, tp, err := o.OTLP.start(res, o.Logger)
		if err != nil {
			return nil, err
		}
		readers = append(readers, sdkmetric.WithReader(push))
		s.traces = tp
		if tp != nil {
			s.tracer = tp.Tracer(ScopeName)
		}
	}
	s.provider = sdkmetric.NewMeterProvider(append(readers, sdkmetric.WithResource(res))...)
	s.meter = s.provider.Meter(ScopeName)
	if err := s.buildInfo(); err != nil {
		_ = s.provider.Shutdown(context.Background())
		return nil, err
	}
	return s, nil
}

// startPushOnly is Start with no endpoint to serve: the OTLP push alone.
func startPushOnly(o Options) (*Server, error) {
	if o.OTLP == nil {
		return nil, errors.New("telemetry: nothing to do: no address to listen on and no OTLP endpoint")
	}
	s, err := newServer(o, nil)
	if err != nil {
		return nil, err
	}
	close(s.served)
	return s, nil
}

// Addr is the address the endpoint listens on (with the port taken, when
// Listen asked for port 0); "" when it serves nothing.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Meter is the meter every tracepipe instrument is made from.
func (s *Server) Meter() metric.Meter { return s.meter }

// Tracer is the tracer of the pipeline's own spans; nil when spans go
// nowhere, so that none is made.
func (s *Server) Tracer() trace.Tracer { return s.tracer }

// SetCheck sets (or, with nil, removes) the readiness check of component.
// Components are named kind/name: source/logs, sink/out, dlq.
func (s *Server) SetCheck(component string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == nil {
		delete(s.checks, component)
		return
	}
	s.checks[component] = c
}

// Close stops serving (requests in flight finish, within ctx) and shuts
// the providers down: an OTLP push sends the final values and the spans
// still queued, within ctx; the callbacks are not called again.
func (s *Server) Close(ctx context.Context) error {
	var err error
	if s.srv != nil {
		err = s.srv.Shutdown(ctx)
	}
	<-s.served
	err = errors.Join(err, s.provider.Shutdown(ctx))
	if s.traces != nil {
		err = errors.Join(err, s.traces.Shutdown(ctx))
	}
	return err
}

// buildInfo registers tracepipe.build.info: 1, with the version and the
// Go version as attributes, the usual way to put them on a dashboard.
func (s *Server) buildInfo() error {
	attrs := metric.WithAttributes(
		attribute.String("version", s.version),
		attribute.String("go.version", runtime.Version()),
	)
	_, err := s.meter.Int64ObservableGauge("tracepipe.build.info",
		metric.WithDescription("Always 1; the attributes say which build runs."),
		// No unit: "1" would make the Prometheus name end in _ratio.
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(1, attrs)
			return nil
		}))
	return err
}

// health is the body of /healthz and /readyz.
type health struct {
	Status     string            `json:"status"` // alive | ready | not_ready
	Healthy    bool              `json:"healthy"`
	StartTime  time.Time         `json:"start_time"`
	Uptime     float64           `json:"uptime_seconds"`
	Version    string            `json:"version,omitempty"`
	Components map[string]Status `json:"components,omitempty"`
}

// healthz answers 200 while the process serves at all: liveness says
// nothing of the components (a Redis outage is no reason to restart).
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, health{Status: "alive", Healthy: true, StartTime: s.start, Uptime: time.Since(s.start).Seconds(), Version: s.version})
}

// readyz runs every check, at once, and answers 503 when one component
// is not ready, 200 otherwise; the body lists every component's state.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	checks := make([]Check, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		checks = append(checks, s.checks[n])
	}
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.Context(), CheckTimeout)
	defer cancel()
	states := make([]Status, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { states[i] = c(ctx) })
	}
	wg.Wait()

	h := health{Status: "ready", Healthy: true, StartTime: s.start, Uptime: time.Since(s.start).Seconds(), Version: s.version, Components: map[string]Status{}}
	if len(checks) == 0 {
		// Nothing registered yet: the job is still being built.
		h.Healthy = false
		h.Components["job"] = Status{State: "starting"}
	}
	for i, n := range names {
		h.Components[n] = states[i]
		if !states[i].Ready {
			h.Healthy = false
		}
	}
	code := http.StatusOK
	if !h.Healthy {
		h.Status, code = "not_ready", http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

// slogErrorLog routes the Prometheus handler's errors to the logger.
type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) {
	l.log.Error("telemetry: /metrics: " + fmt.Sprint(v...))
}
