package kafkaconn

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/tracepipe/tracepipe/config"
)

func TestNewTransport(t *testing.T) {
	tr, err := NewTransport(config.Kafka{Brokers: []string{"b:9092"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.ClientID != "tracepipe" || tr.DialTimeout != DefaultTimeout || tr.TLS != nil || tr.SASL != nil {
		t.Fatalf("defaults: client id %q, dial timeout %v, TLS %v, SASL %v", tr.ClientID, tr.DialTimeout, tr.TLS, tr.SASL)
	}

	tr, err = NewTransport(config.Kafka{Brokers: []string{"b:9092"}, ClientID: "c", TLS: true, Timeout: 3 * time.Second,
		SASL: &config.SASL{Mechanism: "plain", Username: "u", Password: config.NewSecret("p")}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.ClientID != "c" || tr.DialTimeout != 3*time.Second || tr.TLS == nil || tr.TLS.MinVersion != tls.VersionTLS12 {
		t.Fatalf("configured: client id %q, dial timeout %v, TLS %+v", tr.ClientID, tr.DialTimeout, tr.TLS)
	}
	if m, ok := tr.SASL.(plain.Mechanism); !ok || m.Username != "u" || m.Password != "p" {
		t.Fatalf("SASL %#v", tr.SASL)
	}

	// WithTLSConfig turns TLS on and is copied, not shared.
	own := &tls.Config{ServerName: "private"}
	tr, err = NewTransport(config.Kafka{Brokers: []string{"b:9092"}}, ApplyOptions([]Option{nil, WithTLSConfig(own)}))
	if err != nil {
		t.Fatal(err)
	}
	if tr.TLS == nil || tr.TLS == own || tr.TLS.ServerName != "private" {
		t.Fatalf("TLS %+v", tr.TLS)
	}
}

func TestNewTransportRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		k    config.Kafka
		want string
	}{
		"no brokers":   {config.Kafka{}, "no brokers"},
		"empty broker": {config.Kafka{Brokers: []string{"b:9092", ""}}, "broker 1 is empty"},
		"no user": {config.Kafka{Brokers: []string{"b:9092"},
			SASL: &config.SASL{Mechanism: "plain", Password: config.NewSecret("pw-4711")}}, "username is empty"},
		"mechanism": {config.Kafka{Brokers: []string{"b:9092"},
			SASL: &config.SASL{Mechanism: "md5", Username: "u", Password: config.NewSecret("pw-4711")}}, `"md5"`},
	} {
		_, err := NewTransport(tc.k, Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw-4711") {
			t.Errorf("%s: the password is in the error: %v", name, err)
		}
	}
}

func TestMechanisms(t *testing.T) {
	for _, m := range []string{"plain", "PLAIN", "scram-sha-256", "SCRAM-SHA-256", "scram-sha-512", "SCRAM-SHA-512"} {
		mech, err := Mechanism(&config.SASL{Mechanism: m, Username: "u", Password: config.NewSecret("p")})
		if err != nil || mech == nil || !strings.EqualFold(mech.Name(), m) {
			t.Errorf("%s: %v, %v", m, mech, err)
		}
	}
	if mech, err := Mechanism(nil); mech != nil || err != nil {
		t.Errorf("no SASL: %v, %v", mech, err)
	}
}

func TestTimeout(t *testing.T) {
	if got := Timeout(config.Kafka{}); got != DefaultTimeout {
		t.Errorf("zero: %v", got)
	}
	if got := Timeout(config.Kafka{Timeout: time.Second}); got != time.Second {
		t.Errorf("1s: %v", got)
	}
}
