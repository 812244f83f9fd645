package config

import (
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
