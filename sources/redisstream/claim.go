package redisstream

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/internal/redisconn"
)

// maxClaimPages bounds the pages of the pending list one claim round
// looks at (count entries each), so that a huge backlog of a dead consumer
// is taken over a round at a time while new entries keep being read.
const maxClaimPages = 16

// claimRound takes over entries pending longer than claim_idle in other
// consumers and processes them (or sends them to the DLQ when delivered
// too often), then takes over the windows markers of gone consumers. It
// also refreshes LastLag.
func (s *Source) claimRound(ctx context.Context) error {
	defer s.rounds.Add(1)
	if _, err := s.Lag(ctx); err != nil {
		return err
	}
	start := "-"
	for range maxClaimPages {
		pe, err := s.cl.XPendingExt(ctx, &goredis.XPendingExtArgs{
			Stream: s.cfg.Stream, Group: s.cfg.Group, Idle: s.cfg.ClaimIdle, Start: start, End: "+", Count: int64(s.cfg.Count),
		}).Result()
		if err != nil {
			return s.errorf("xpending: %w", redisconn.Classify(err))
		}
		if len(pe) == 0 {
			break
		}
		var ids []string
		counts := map[string]int64{}
		for _, p := range pe {
			if p.Consumer == s.consumer {
				continue // in flight here (own pending was read at start)
			}
			ids = append(ids, p.ID)
			counts[p.ID] = p.RetryCount + 1 // XCLAIM counts a delivery
		}
		if len(ids) > 0 {
			// The idle floor again: of two claimers, only the first wins
			// an entry (claiming resets its idle time).
			msgs, err := s.cl.XClaim(ctx, &goredis.XClaimArgs{
				Stream: s.cfg.Stream, Group: s.cfg.Group, Consumer: s.consumer, MinIdle: s.cfg.ClaimIdle, Messages: ids,
			}).Result()
			if err != nil {
				return s.errorf("xclaim %d entries: %w", len(ids), redisconn.Classify(err))
			}
			if len(msgs) > 0 {
				s.claimed.Add(int64(len(msgs)))
				s.log.Info("redis stream source: took over entries another consumer left pending", "entries", len(msgs))
				if s.o.Poison == nil {
					counts = nil
				}
				if err := s.pendingBatch(ctx, msgs, counts); err != nil {
					return err
				}
			}
		}
		if len(pe) < s.cfg.Count {
			break
		}
		start = "(" + pe[len(pe)-1].ID
	}
	return s.takeOverMarkers(ctx)
}

// takeOverMarkers re-reads, for the windows, the marker ranges of
// consumers that are gone (not in the group, or idle longer than
// claim_idle). HDEL decides who does it: only the caller that removed the
// field.
func (s *Source) takeOverMarkers(ctx context.Context) error {
	all, err := s.cl.HGetAll(ctx, s.markers).Result()
	if err != nil {
		return s.errorf("read windows markers: %w", redisconn.Classify(err))
	}
	if len(all) == 0 || (len(all) == 1 && all[s.consumer] != "") {
		return nil
	}
	cs, err := s.cl.XInfoConsumers(ctx, s.cfg.Stream, s.cfg.Group).Result()
	if err != nil {
		return s.errorf("xinfo consumers: %w", redisconn.Classify(err))
	}
	alive := map[string]bool{}
	for _, c := range cs {
		alive[c.Name] = c.Idle <= s.cfg.ClaimIdle
	}
	for name, v := range all {
		if name == s.consumer || alive[name] {
			continue
		}
		n, err := s.cl.HDel(ctx, s.markers, name).Result()
		if err != nil {
			return s.errorf("take over the windows marker of %s: %w", name, redisconn.Classify(err))
		}
		if n == 0 {
			continue // another consumer took it
		}
		w, d, err := parseMarker(v)
		if err != nil {
			s.log.Warn("redis stream source: windows marker of a gone consumer unreadable: dropped", "of", name, "err", err)
			continue
		}
		if !w.less(d) {
			continue
		}
		s.log.Info("redis stream source: re-reading for the windows what a gone consumer delivered but had not windowed",
			"of", name, "from", w.String(), "to", d.String())
		if err := s.rewind(ctx, &w, d, true); err != nil {
			if errors.Is(err, errStopped) {
				return err
			}
			// The field is gone: this range is lost to the windows
			// (see the package doc).
			s.log.Error("redis stream source: re-reading a gone consumer's range for the windows failed; its open windows are not rebuilt",
				"of", name, "err", err)
		}
	}
	return nil
}
