package config

import (
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Telemetry configures the process's own metrics and health endpoint:
// OpenTelemetry metrics exported in the Prometheus text format on
// Listen's /metrics, with /healthz and /readyz beside them. `pipeline run`
// serves it when Enabled; `pipeline replay` only with --metrics.
type Telemetry struct {
	// Enabled serves the endpoint for `pipeline run` (default true).
	Enabled *bool `yaml:"enabled"`
	// Listen is the endpoint's host:port; the loopback address unless
	// configured otherwise, so nothing is exposed by default. Port 0 takes
	// a free port (logged at start).
	Listen string `yaml:"listen"`
	// ReadyGrace is how long a sink's breaker may stay open before
	// /readyz says the process is not ready: a short outage the retries
	// ride out is not worth taking the instance out of rotation.
	ReadyGrace time.Duration `yaml:"ready_grace"`
	// OTLP pushes the same metrics, and the pipeline's own spans, to an
	// OpenTelemetry collector when Endpoint is set, whatever Enabled says
	// (Enabled is the pull endpoint).
	OTLP OTLP `yaml:"otlp"`
	// Traces: one span per batch, sampled; exported by OTLP only.
	Traces Traces `yaml:"traces"`
}

// OTLP is a push of the process's telemetry to a collector.
type OTLP struct {
	// Endpoint is the collector's host:port, or a base URL
	// (http://host:4318, https://host/prefix): metrics go to
	// <base>/v1/metrics and spans to <base>/v1/traces over HTTP; gRPC
	// takes the host:port only. "" pushes nothing.
	Endpoint string `yaml:"endpoint"`
	// Protocol is http (OTLP/HTTP, protobuf) or grpc.
	Protocol string `yaml:"protocol"`
	// Interval is how often the metrics are pushed (and once more at
	// exit, with the final values).
	Interval time.Duration `yaml:"interval"`
	// Headers are sent with every push (an API key: use ${VAR}); their
	// values never appear in a log or an error.
	Headers map[string]Secret `yaml:"headers"`
	// Insecure pushes in clear text (no TLS) to a host:port endpoint; a
	// URL's scheme says it instead.
	Insecure bool `yaml:"insecure"`
}

// Traces configures the pipeline's own spans.
type Traces struct {
	// SampleRatio is the share of batches traced (0..1, default 0.01),
	// decided by trace id (TraceIDRatioBased).
	SampleRatio *float64 `yaml:"sample_ratio"`
}

// Ratio returns the sample ratio, its default when left out.
func (t Traces) Ratio() float64 {
	if t.SampleRatio == nil {
		return 0.01
	}
	return *t.SampleRatio
}

// OTLPTarget is where an OTLP push goes, resolved from Endpoint.
type OTLPTarget struct {
	// HostPort is the collector's address; Path the URL path metrics and
	// spans are posted under (HTTP), "" or a prefix without a trailing
	// slash.
	HostPort, Path string
	// Insecure: no TLS.
	Insecure bool
}

// Target resolves Endpoint; ok is false when it is neither a host:port
// nor an http(s) URL with a host.
func (o OTLP) Target() (t OTLPTarget, ok bool) {
	if strings.Contains(o.Endpoint, "://") {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
			return t, false
		}
		hp := u.Host
		if u.Port() == "" {
			hp = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
		}
		return OTLPTarget{HostPort: hp, Path: strings.TrimSuffix(u.Path, "/"), Insecure: u.Scheme == "http"}, true
	}
	if _, _, err := net.SplitHostPort(o.Endpoint); err != nil {
		return t, false
	}
	return OTLPTarget{HostPort: o.Endpoint, Insecure: o.Insecure}, true
}

// On reports whether telemetry is enabled (true when left out).
func (t Telemetry) On() bool { return t.Enabled == nil || *t.Enabled }

func (t *Telemetry) applyDefaults() {
	if t.Enabled == nil {
		on := true
		t.Enabled = &on
	}
	setStr(&t.Listen, "127.0.0.1:9464")
	if t.ReadyGrace == 0 {
		t.ReadyGrace = 30 * time.Second
	}
	setStr(&t.OTLP.Protocol, "http")
	if t.OTLP.Interval == 0 {
		t.OTLP.Interval = 10 * time.Second
	}
	if t.Traces.SampleRatio == nil {
		r := 0.01
		t.Traces.SampleRatio = &r
	}
}

// headerName is an HTTP header name (a token); gRPC metadata keys are
// lower-cased by the client.
var headerName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

// maxReadyGrace bounds telemetry.ready_grace: past a day an open breaker
// is not "a short outage" any more, and the value is more likely a typo.
const maxReadyGrace = 24 * time.Hour

func (t *Telemetry) validate(v *check) {
	host, port, err := net.SplitHostPort(t.Listen)
	switch {
	case err != nil:
		v.bad("telemetry.listen: %q is not host:port (e.g. 127.0.0.1:9464)", v.val("telemetry.listen", t.Listen))
	case host != "" && host != "localhost" && net.ParseIP(host) == nil:
		// A name other than localhost may resolve to several addresses, or
		// to a public one: the endpoint binds one address, given as an IP.
		v.bad("telemetry.listen: host %q is not an IP address (or localhost, or empty for every interface)", v.val("telemetry.listen", host))
	default:
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			v.bad("telemetry.listen: port %q is not a number in 0..65535", v.val("telemetry.listen", port))
		}
	}
	if t.ReadyGrace < 0 || t.ReadyGrace > maxReadyGrace {
		v.bad("telemetry.ready_grace: %s is outside 0..%s", v.val("telemetry.ready_grace", t.ReadyGrace), maxReadyGrace)
	}
	o := &t.OTLP
	v.oneOf("telemetry.otlp.protocol", o.Protocol, "http", "grpc")
	durIn(v, "telemetry.otlp.interval", o.Interval, 100*time.Millisecond, time.Hour)
	for k := range o.Headers {
		if !headerName.MatchString(k) {
			v.bad("telemetry.otlp.headers: %q is not a header name", k)
		}
	}
	if o.Endpoint != "" {
		tg, ok := o.Target()
		switch {
		case !ok:
			v.bad("telemetry.otlp.endpoint: %q is neither host:port nor an http(s):// URL (e.g. 127.0.0.1:4318, https://collector.example.com:4318)", v.val("telemetry.otlp.endpoint", o.Endpoint))
		case o.Protocol == "grpc" && tg.Path != "":
			v.bad("telemetry.otlp.endpoint: gRPC takes no URL path (%q)", v.val("telemetry.otlp.endpoint", tg.Path))
		case o.Insecure && strings.HasPrefix(o.Endpoint, "https://"):
			v.bad("telemetry.otlp.insecure: true contradicts the https:// endpoint")
		}
	}
	if r := t.Traces.Ratio(); !(r >= 0 && r <= 1) {
		v.bad("telemetry.traces.sample_ratio: %v is outside 0..1", v.val("telemetry.traces.sample_ratio", r))
	}
}
