// Package kafkaconn is the Kafka connection code shared by the Kafka sink,
// the Kafka DLQ backend and the Kafka sources to come, so that none of them
// imports another: the kafka-go transport built from a config.Kafka
// (brokers, client id, dial timeout, TLS, SASL PLAIN and SCRAM), the
// read/write timeout, and the classification of Kafka errors into stable
// codes, permanent or transient (Code, Classify).
package kafkaconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/tracepipe/tracepipe/config"
)

// DefaultTimeout bounds dialing (TLS and SASL included), reads and writes
// when config.Kafka.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Option adjusts the Options of a connection (the Kafka sink's New takes
// them).
type Option func(*Options)

// Options are what Option functions set: how NewTransport connects beyond
// what config.Kafka says.
type Options struct {
	// TLSConfig replaces the default TLS client config (system roots,
	// TLS 1.2+) when config.Kafka.TLS is set, e.g. to trust a private CA.
	// Setting it turns TLS on even if config.Kafka.TLS is false.
	TLSConfig *tls.Config
}

// WithTLSConfig sets Options.TLSConfig.
func WithTLSConfig(c *tls.Config) Option { return func(o *Options) { o.TLSConfig = c } }

// ApplyOptions folds opts into an Options value.
func ApplyOptions(opts []Option) Options {
	var o Options
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}

// NewTransport returns the kafka-go transport for a connection config:
// client id, dial timeout (config Timeout, covering TLS and SASL), TLS and
// SASL. The password goes into the SASL mechanism only; no error or log line
// of this package holds it.
func NewTransport(k config.Kafka, o Options) (*kafkago.Transport, error) {
	if len(k.Brokers) == 0 {
		return nil, errors.New("no brokers configured")
	}
	for i, b := range k.Brokers {
		if b == "" {
			return nil, fmt.Errorf("broker %d is empty", i)
		}
	}
	mech, err := Mechanism(k.SASL)
	if err != nil {
		return nil, err
	}
	tr := &kafkago.Transport{
		DialTimeout: Timeout(k),
		ClientID:    k.ClientID,
		SASL:        mech,
	}
	if tr.ClientID == "" {
		tr.ClientID = "tracepipe"
	}
	switch {
	case o.TLSConfig != nil:
		tr.TLS = o.TLSConfig.Clone()
	case k.TLS:
		tr.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return tr, nil
}

// Timeout is k.Timeout, or DefaultTimeout when that is zero: the bound of
// a dial and, for clients that set them from it, of reads and writes.
func Timeout(k config.Kafka) time.Duration {
	if k.Timeout > 0 {
		return k.Timeout
	}
	return DefaultTimeout
}

// Mechanism returns the kafka-go SASL mechanism for s (nil for no SASL):
// kafka-go's sasl/plain for PLAIN, its sasl/scram for SCRAM-SHA-256/512.
func Mechanism(s *config.SASL) (sasl.Mechanism, error) {
	if s == nil {
		return nil, nil
	}
	if s.Username == "" {
		return nil, errors.New("sasl: username is empty")
	}
	switch s.Mechanism {
	case "plain", "PLAIN":
		return plain.Mechanism{Username: s.Username, Password: s.Password.Reveal()}, nil
	case "scram-sha-256", "SCRAM-SHA-256":
		return scram.Mechanism(scram.SHA256, s.Username, s.Password.Reveal())
	case "scram-sha-512", "SCRAM-SHA-512":
		return scram.Mechanism(scram.SHA512, s.Username, s.Password.Reveal())
	}
	return nil, fmt.Errorf("sasl: mechanism %q is not one of plain, scram-sha-256, scram-sha-512", s.Mechanism)
}
