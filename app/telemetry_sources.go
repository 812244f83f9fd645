package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sources/kafka"
	"github.com/tracepipe/tracepipe/sources/redisstream"
	"github.com/tracepipe/tracepipe/sources/tail"
)

// observeSources registers the source lag instruments: how far each
// source is behind its input. Each reads what the source keeps anyway (a
// followed file's size less what was sent, as of the last poll; a Kafka
// partition's high watermark less the next offset, as of its last fetch;
// a Redis group's lag and pending entries, as of the last claim round), so
// a scrape asks no server and takes no source's lock for long. An
// instrument is registered only when a source of its kind runs.
func observeSources(m metric.Meter, srcs []pipeline.Source) error {
	var files []*tail.Source
	var kafkas []*kafka.Source
	var rediss []*redisstream.Source
	for _, s := range srcs {
		switch s := s.(type) {
		case *tail.Source:
			files = append(files, s)
		case *kafka.Source:
			kafkas = append(kafkas, s)
		case *redisstream.Source:
			rediss = append(rediss, s)
		}
	}
	source := func(name string) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("source", name)))
	}
	var errs []error
	var insts []metric.Observable
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		insts = append(insts, g)
		return g
	}
	var fileLag, kafkaLag, redisLag, redisPending metric.Int64ObservableGauge
	if len(files) > 0 {
		fileLag = gauge("tracepipe.source.file.lag", "By", "Bytes on disk not read yet, summed over the source's followed files (as of its last poll).")
	}
	if len(kafkas) > 0 {
		kafkaLag = gauge("tracepipe.source.kafka.lag", "{message}", "Messages in the partition not fetched yet: its high watermark less the next offset to read (as of the last fetch), for the partitions this process owns.")
	}
	if len(rediss) > 0 {
		redisLag = gauge("tracepipe.source.redis.lag", "{entry}", "Stream entries not delivered to the consumer group yet (XINFO GROUPS lag, as of the last claim round); absent while Redis cannot tell.")
		redisPending = gauge("tracepipe.source.redis.pending", "{entry}", "Entries delivered to the group's consumers and not acknowledged yet (as of the last claim round).")
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(insts) == 0 {
		return nil
	}
	fileAttrs := make([]metric.MeasurementOption, len(files))
	for i, s := range files {
		fileAttrs[i] = source(s.Name())
	}
	redisAttrs := make([]metric.MeasurementOption, len(rediss))
	for i, s := range rediss {
		redisAttrs[i] = source(s.Name())
	}
	parts := &partitionAttrs{sets: map[partitionKey]metric.MeasurementOption{}}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, s := range files {
			o.ObserveInt64(fileLag, s.LagBytes(), fileAttrs[i])
		}
		for _, s := range kafkas {
			for tp, lag := range s.Lag() {
				if at, ok := parts.get(s.Name(), tp); ok {
					o.ObserveInt64(kafkaLag, lag, at)
				}
			}
		}
		for i, s := range rediss {
			l := s.LastLag()
			if l.Entries >= 0 {
				o.ObserveInt64(redisLag, l.Entries, redisAttrs[i])
			}
			o.ObserveInt64(redisPending, l.Pending, redisAttrs[i])
		}
		return nil
	}, insts...)
	if err != nil {
		return fmt.Errorf("source lag: %w", err)
	}
	return nil
}

// partitionAttrs keeps the attribute set of each Kafka partition seen, so
// that a scrape builds one only for a partition newly assigned. Two
// readers (the Prometheus endpoint and an OTLP push) may scrape at once.
type partitionAttrs struct {
	mu   sync.Mutex
	sets map[partitionKey]metric.MeasurementOption
}

type partitionKey struct{ source, tp string }

// get returns the attributes of tp ("topic:partition", as Lag names it)
// of source; false when tp is not of that form.
func (p *partitionAttrs) get(source, tp string) (metric.MeasurementOption, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := partitionKey{source, tp}
	if at, ok := p.sets[k]; ok {
		return at, true
	}
	// A topic name has no colon (Kafka allows [A-Za-z0-9._-] only).
	i := strings.LastIndexByte(tp, ':')
	n, err := strconv.Atoi(tp[i+1:])
	if i < 0 || err != nil {
		return nil, false
	}
	at := metric.WithAttributeSet(attribute.NewSet(
		attribute.String("source", source), attribute.String("topic", tp[:i]), attribute.Int("partition", n)))
	p.sets[k] = at
	return at, true
}
