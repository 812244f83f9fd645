package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tracepipe/tracepipe/internal/ratelog"
)

// OTLP is a push of the metrics, and an export of the pipeline's spans,
// to an OpenTelemetry collector.
type OTLP struct {
	// HostPort is the collector's address.
	HostPort string
	// Path prefixes the OTLP/HTTP paths (/v1/metrics, /v1/traces): ""
	// for the usual ones.
	Path string
	// GRPC pushes over gRPC instead of OTLP/HTTP.
	GRPC bool
	// Insecure pushes in clear text.
	Insecure bool
	// Interval is the metrics' push period (default 10s).
	Interval time.Duration
	// Headers go with every request. Their values are credentials: they
	// are handed to the exporters and never logged.
	Headers map[string]string
	// SampleRatio is the share of batches traced (TraceIDRatioBased); 0
	// makes no span at all.
	SampleRatio float64
}

// start makes the metric reader that pushes every Interval (and once more
// at shutdown) and, unless SampleRatio is 0, the tracer provider whose
// spans are batched to the collector.
func (o *OTLP) start(res *resource.Resource, log *slog.Logger) (sdkmetric.Reader, *sdktrace.TracerProvider, error) {
	ctx := context.Background()
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	var mexp sdkmetric.Exporter
	var texp sdktrace.SpanExporter
	var err error
	if o.GRPC {
		mo := []otlpmetricgrpc.Option{otlpmetricgrpc.WithEndpoint(o.HostPort), otlpmetricgrpc.WithHeaders(o.Headers)}
		to := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(o.HostPort), otlptracegrpc.WithHeaders(o.Headers)}
		if o.Insecure {
			mo = append(mo, otlpmetricgrpc.WithInsecure())
			to = append(to, otlptracegrpc.WithInsecure())
		}
		if mexp, err = otlpmetricgrpc.New(ctx, mo...); err == nil && o.SampleRatio > 0 {
			texp, err = otlptracegrpc.New(ctx, to...)
		}
	} else {
		mo := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpoint(o.HostPort), otlpmetrichttp.WithHeaders(o.Headers),
			otlpmetrichttp.WithURLPath(o.Path + "/v1/metrics")}
		to := []otlptracehttp.Option{otlptracehttp.WithEndpoint(o.HostPort), otlptracehttp.WithHeaders(o.Headers),
			otlptracehttp.WithURLPath(o.Path + "/v1/traces")}
		if o.Insecure {
			mo = append(mo, otlpmetrichttp.WithInsecure())
			to = append(to, otlptracehttp.WithInsecure())
		}
		if mexp, err = otlpmetrichttp.New(ctx, mo...); err == nil && o.SampleRatio > 0 {
			texp, err = otlptracehttp.New(ctx, to...)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: OTLP exporter for %s: %w", o.HostPort, err)
	}
	setErrorHandler(log)
	reader := sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(o.Interval))
	var tp *sdktrace.TracerProvider
	if texp != nil {
		tp = sdktrace.NewTracerProvider(
			sdktrace.WithBatcher(texp),
			sdktrace.WithResource(res),
			// A batch span has no parent: the ratio decides, by trace id.
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SampleRatio))),
		)
	}
	proto := "http"
	if o.GRPC {
		proto = "grpc"
	}
	names := make([]string, 0, len(o.Headers))
	for k := range o.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	log.Info("telemetry: pushing metrics (and batch spans, sampled) by OTLP", "endpoint", o.HostPort, "path", o.Path,
		"protocol", proto, "interval", o.Interval, "sample_ratio", o.SampleRatio, "headers", strings.Join(names, ","))
	return reader, tp, nil
}

// The OpenTelemetry SDK reports a failed export to one process-wide error
// handler; it goes to the log of the last Server started, rate-limited: a
// collector that is down fails every push.
var (
	errMu  sync.Mutex
	errLog *ratelog.Logger
	errSet sync.Once
)

func setErrorHandler(log *slog.Logger) {
	errMu.Lock()
	errLog = ratelog.New(log, time.Minute)
	errMu.Unlock()
	errSet.Do(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			errMu.Lock()
			l := errLog
			errMu.Unlock()
			l.Warn("otlp_export", "telemetry: OTLP export failed; the next push retries", "err", err)
		}))
	})
}
