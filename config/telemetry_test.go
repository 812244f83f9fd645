package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTelemetryDefaults(t *testing.T) {
	cfg, err := Decode([]byte("sinks: [{type: discard}]\n"), "c.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	tm := cfg.Telemetry
	if !tm.On() || tm.Listen != "127.0.0.1:9464" || tm.ReadyGrace != 30*time.Second {
		t.Fatalf("defaults: %+v (enabled %v)", tm, tm.On())
	}
	cfg, err = Decode([]byte("sinks: [{type: discard}]\ntelemetry: {enabled: false, listen: \"[::1]:0\", ready_grace: 1s}\n"), "c.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Telemetry.On() || cfg.Telemetry.Listen != "[::1]:0" || cfg.Telemetry.ReadyGrace != time.Second {
		t.Fatalf("set: %+v", cfg.Telemetry)
	}
}

func TestTelemetryErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{`listen: "9464"`, `telemetry.listen: "9464" is not host:port`},
		{`listen: "127.0.0.1:http"`, `telemetry.listen: port "http" is not a number`},
		{`listen: "127.0.0.1:70000"`, `telemetry.listen: port "70000" is not a number in 0..65535`},
		{`listen: "metrics.example.com:9464"`, `telemetry.listen: host "metrics.example.com" is not an IP address`},
		{`ready_grace: -1s`, `telemetry.ready_grace: -1s is outside 0..24h0m0s`},
		{`ready_grace: 48h`, `telemetry.ready_grace: 48h0m0s is outside`},
		{`listn: x`, `unknown key "listn" in telemetry (did you mean "listen"?)`},
	} {
		_, err := Decode([]byte("sinks: [{type: discard}]\ntelemetry: {"+c.yaml+"}\n"), "c.yaml", env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.yaml, err, c.want)
		}
	}
	// A value from the environment is named, never shown.
	_, err := Decode([]byte("sinks: [{type: discard}]\ntelemetry: {listen: \"${ADDR}\"}\n"), "c.yaml", env(map[string]string{"ADDR": "hunter2"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "${ADDR}") {
		t.Fatalf("err = %v", err)
	}
}

func TestTelemetryOTLP(t *testing.T) {
	cfg, err := Decode([]byte("sinks: [{type: discard}]\n"), "c.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Telemetry.OTLP
	if o.Endpoint != "" || o.Protocol != "http" || o.Interval != 10*time.Second || cfg.Telemetry.Traces.Ratio() != 0.01 {
		t.Fatalf("defaults: %+v, ratio %v", o, cfg.Telemetry.Traces.Ratio())
	}
	y := "sinks: [{type: discard}]\ntelemetry: {otlp: {endpoint: \"https://c.example.com:4318/otlp/\", interval: 1s, headers: {x-api-key: \"${KEY}\"}}, traces: {sample_ratio: 1}}\n"
	cfg, err = Decode([]byte(y), "c.yaml", env(map[string]string{"KEY": "hunter2"}))
	if err != nil {
		t.Fatal(err)
	}
	o = cfg.Telemetry.OTLP
	tg, ok := o.Target()
	if !ok || tg != (OTLPTarget{HostPort: "c.example.com:4318", Path: "/otlp"}) || o.Headers["x-api-key"].Reveal() != "hunter2" || cfg.Telemetry.Traces.Ratio() != 1 {
		t.Fatalf("set: %+v %+v %v", o, tg, ok)
	}
	// The header's value never prints.
	if s := fmt.Sprintf("%v %+v", o, o.Headers); strings.Contains(s, "hunter2") {
		t.Fatalf("the secret printed: %s", s)
	}
	if tg, ok := (OTLP{Endpoint: "127.0.0.1:4317", Insecure: true}).Target(); !ok || tg != (OTLPTarget{HostPort: "127.0.0.1:4317", Insecure: true}) {
		t.Fatalf("host:port: %+v %v", tg, ok)
	}
	if tg, ok := (OTLP{Endpoint: "http://collector"}).Target(); !ok || tg != (OTLPTarget{HostPort: "collector:80", Insecure: true}) {
		t.Fatalf("http URL: %+v %v", tg, ok)
	}
}

func TestTelemetryOTLPErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{`otlp: {endpoint: "collector"}`, `telemetry.otlp.endpoint: "collector" is neither host:port nor an http(s):// URL`},
		{`otlp: {endpoint: "ftp://c:21"}`, `telemetry.otlp.endpoint: "ftp://c:21" is neither`},
		{`otlp: {endpoint: "c:4317", protocol: grpcs}`, `telemetry.otlp.protocol: "grpcs" is not one of http, grpc`},
		{`otlp: {endpoint: "http://c:4317/x", protocol: grpc}`, `gRPC takes no URL path`},
		{`otlp: {endpoint: "https://c:4318", insecure: true}`, `telemetry.otlp.insecure: true contradicts the https:// endpoint`},
		{`otlp: {interval: 5ms}`, `telemetry.otlp.interval: 5ms is outside 100ms..1h0m0s`},
		{`otlp: {headers: {"bad header": x}}`, `telemetry.otlp.headers: "bad header" is not a header name`},
		{`otlp: {headers: {k: [a, b]}}`, `must be a single value`},
		{`otlp: {endpont: x}`, `unknown key "endpont" in telemetry.otlp (did you mean "endpoint"?)`},
		{`traces: {sample_ratio: 1.5}`, `telemetry.traces.sample_ratio: 1.5 is outside 0..1`},
		{`traces: {sample_ratio: -0.1}`, `telemetry.traces.sample_ratio: -0.1 is outside 0..1`},
	} {
		_, err := Decode([]byte("sinks: [{type: discard}]\ntelemetry: {"+c.yaml+"}\n"), "c.yaml", env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.yaml, err, c.want)
		}
	}
	// An endpoint from the environment is named, never shown.
	_, err := Decode([]byte("sinks: [{type: discard}]\ntelemetry: {otlp: {endpoint: \"${EP}\"}}\n"), "c.yaml", env(map[string]string{"EP": "secret-host"}))
	if err == nil || strings.Contains(err.Error(), "secret-host") || !strings.Contains(err.Error(), "${EP}") {
		t.Fatalf("err = %v", err)
	}
}
