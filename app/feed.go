package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
)

// fed is what feeding a job found.
type fed struct {
	// DLQFull: input stopped because the DLQ took no more entries.
	DLQFull bool
	// Err joins the sources' own errors and failed commits.
	Err error
}

// feed runs srcs into the job's runner until every source has returned
// (a bounded source at its end; any source once ctx is cancelled, which
// stops reading only: batches already read are handled to the end) and
// the runner has handled, delivered and made durable every batch (its
// final barrier acks them). It commits the sources' acked positions every
// commitEvery (0: never on a timer) while it runs; the caller commits once
// more after closing the job (windows emitted), with commit.
//
// A DLQ that reaches its cap (or fails) stops the input, as with the
// file DLQ alone: entries in flight are still handled. A cap reached only
// while the last entries are flushed does not count as stopping early.
func (j *job) feed(ctx, runCtx context.Context, srcs []pipeline.Source, commitEvery time.Duration) fed {
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var res fed
	finished := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Go(func() {
		select {
		case <-j.backend.Full():
			res.DLQFull = true
			j.log.Error("DLQ takes no more entries (full, or failing): stopping input; entries in flight are still handled")
			stopReading()
		case <-finished:
		}
	})

	batches := make(chan *pipeline.Batch, j.cfg.Pipeline.Queue)
	srcErrs := make([]error, len(srcs))
	var readers sync.WaitGroup
	for i, s := range srcs {
		readers.Go(func() {
			err := s.Run(readCtx, batches)
			if err != nil {
				srcErrs[i] = fmt.Errorf("source %s: %w", s.Name(), err)
				j.log.Error("source stopped", "source", s.Name(), "err", err)
			}
			j.sourceStopped(i, err)
		})
	}
	go func() {
		readers.Wait()
		close(batches)
	}()

	stopCommits := make(chan struct{})
	var committer sync.WaitGroup
	if commitEvery > 0 {
		committer.Go(func() {
			t := time.NewTicker(commitEvery)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					// A failed commit is logged and retried at the next
					// tick; the caller's final commit reports its error.
					_ = j.commit(context.WithoutCancel(ctx), srcs)
				case <-stopCommits:
					return
				}
			}
		})
	}

	j.runner.Run(runCtx, batches)
	close(finished)
	watcher.Wait()
	close(stopCommits)
	committer.Wait()
	res.Err = errors.Join(srcErrs...)
	return res
}

// commit commits every source's acked positions, logging and returning
// the failures (a source whose commit fails keeps its previous checkpoint:
// it re-reads, never skips).
func (j *job) commit(ctx context.Context, srcs []pipeline.Source) error {
	var errs []error
	for _, s := range srcs {
		if err := s.Commit(ctx); err != nil {
			j.log.Error("commit failed; the source resumes from its previous checkpoint if the process stops now", "source", s.Name(), "err", err)
			errs = append(errs, fmt.Errorf("source %s: commit: %w", s.Name(), err))
		}
	}
	if len(errs) == 0 {
		j.lastCommit.Store(time.Now().UnixNano())
	}
	return errors.Join(errs...)
}
