package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/tracepipe/tracepipe/pipeline"
)

// Codes for errors that are not Kafka protocol errors. A Kafka error's code
// is its name in snake case (kafka-go's Title: "message_size_too_large",
// "leader_not_available", "not_enough_replicas", ...), or "kafka_error_N"
// for a code kafka-go has no name for.
const (
	CodeTimeout           = "timeout"            // a deadline passed (dial, request, ctx)
	CodeCanceled          = "canceled"           // the caller's ctx was canceled
	CodeBrokerUnavailable = "broker_unavailable" // connection refused
	CodeNetwork           = "network"            // reset, EOF, other network failures
	CodeTLS               = "tls"                // handshake or certificate failure
	CodeClosed            = "closed"             // the writer was closed
	CodeUnknown           = "kafka"              // anything else
)

// permanentErrors are Kafka errors that retrying the same records cannot
// fix: the records, the topic or the producer's settings are refused.
var permanentErrors = map[kafkago.Error]bool{
	kafkago.InvalidMessage:              true, // CORRUPT_MESSAGE: our encoding is deterministic
	kafkago.InvalidMessageSize:          true,
	kafkago.MessageSizeTooLarge:         true,
	kafkago.InvalidTopic:                true,
	kafkago.RecordListTooLarge:          true,
	kafkago.InvalidRequiredAcks:         true,
	kafkago.TopicAuthorizationFailed:    true,
	kafkago.ClusterAuthorizationFailed:  true,
	kafkago.InvalidTimestamp:            true,
	kafkago.UnsupportedForMessageFormat: true,
	kafkago.PolicyViolation:             true,
	kafkago.UnsupportedCompressionType:  true,
	kafkago.InvalidRecord:               true,
}

// Code returns err's stable code and whether retrying cannot fix it. Kafka
// errors are looked for first (through wrapping); then closed writer,
// context, TLS and network failures. Transient by default: leader or
// broker not available, not enough replicas, request timed out, unknown
// topic (it may be being created), SASL failures (credentials get fixed
// and the breaker should see them) and every network error.
func Code(err error) (code string, permanent bool) {
	var ke kafkago.Error
	if errors.As(err, &ke) {
		return kafkaCode(ke), permanentErrors[ke]
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var alert tls.AlertError
	var recHdr tls.RecordHeaderError
	var netErr net.Error
	switch {
	case errors.Is(err, io.ErrClosedPipe):
		return CodeClosed, true
	case errors.Is(err, context.Canceled):
		return CodeCanceled, false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return CodeTimeout, false
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr),
		errors.As(err, &alert), errors.As(err, &recHdr):
		return CodeTLS, false
	case errors.Is(err, syscall.ECONNREFUSED):
		return CodeBrokerUnavailable, false
	case errors.As(err, &netErr) && netErr.Timeout():
		return CodeTimeout, false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed), errors.As(err, &netErr):
		return CodeNetwork, false
	}
	return CodeUnknown, false
}

// kafkaCode is the snake-case name of a Kafka error.
func kafkaCode(e kafkago.Error) string {
	if e == kafkago.NetworkException {
		return "network_exception" // kafka-go has no title for it
	}
	t := e.Title()
	if t == "" || strings.ContainsAny(t, ":") || strings.HasPrefix(t, "an ") {
		return "kafka_error_" + strconv.Itoa(int(e))
	}
	return strings.ReplaceAll(strings.ToLower(t), " ", "_")
}

// Classify wraps err with its code (pipeline.WithCode) and, when retrying cannot
// fix it, with pipeline.Permanent. nil stays nil.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	code, permanent := Code(err)
	err = pipeline.WithCode(code, err)
	if permanent {
		err = pipeline.Permanent(err)
	}
	return err
}
