package kafkaconn

import (
	"context"
	"errors"
	"fmt"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/pipeline"
)

func code(err error) string {
	var c pipeline.Coded
	if errors.As(err, &c) {
		return c.Code()
	}
	return ""
}

func TestCodes(t *testing.T) {
	for _, tc := range []struct {
		err       error
		code      string
		permanent bool
	}{
		{kafkago.MessageSizeTooLarge, "message_size_too_large", true},
		{fmt.Errorf("x: %w", kafkago.InvalidTopic), "invalid_topic", true},
		{kafkago.InvalidRecord, "invalid_record", true},
		{kafkago.UnsupportedCompressionType, "unsupported_compression_type", true},
		{kafkago.InvalidMessage, "invalid_message", true},
		{kafkago.LeaderNotAvailable, "leader_not_available", false},
		{kafkago.NotEnoughReplicas, "not_enough_replicas", false},
		{kafkago.NotEnoughReplicasAfterAppend, "not_enough_replicas_after_append", false},
		{kafkago.BrokerNotAvailable, "broker_not_available", false},
		{kafkago.RequestTimedOut, "request_timed_out", false},
		{kafkago.NetworkException, "network_exception", false},
		{kafkago.Error(9999), "kafka_error_9999", false},
		{context.DeadlineExceeded, "timeout", false},
		{errors.New("?"), "kafka", false},
	} {
		c, p := Code(tc.err)
		if c != tc.code || p != tc.permanent {
			t.Errorf("%v: code %q permanent %t, want %q %t", tc.err, c, p, tc.code, tc.permanent)
		}
		err := Classify(tc.err)
		if code(err) != tc.code || errors.Is(err, pipeline.ErrPermanent) != tc.permanent || !errors.Is(err, tc.err) {
			t.Errorf("Classify(%v) = %v", tc.err, err)
		}
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
}
