package config

import (
	"net"
	"strconv"
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
}

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
}
