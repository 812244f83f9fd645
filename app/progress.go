package app

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/tracepipe/tracepipe/pipeline"
	"github.com/tracepipe/tracepipe/sources/file"
)

// progress redraws one line in place: bytes done of total (on disk), rate,
// ETA, records and DLQ entries so far. A nil writer makes it a no-op.
type progress struct {
	w      io.Writer
	total  int64
	reader *file.Reader
	acct   *pipeline.Accounting
	begin  time.Time
	stopc  chan struct{}
	wg     sync.WaitGroup
}

func newProgress(w io.Writer, total int64, r *file.Reader, a *pipeline.Accounting) *progress {
	return &progress{w: w, total: total, reader: r, acct: a, stopc: make(chan struct{})}
}

func (p *progress) start() {
	if p.w == nil {
		return
	}
	p.begin = time.Now()
	p.wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw()
			case <-p.stopc:
				// Clear the line so the summary starts clean.
				fmt.Fprint(p.w, "\r\033[K")
				return
			}
		}
	})
}

func (p *progress) stop() {
	if p.w == nil {
		return
	}
	close(p.stopc)
	p.wg.Wait()
}

func (p *progress) draw() {
	done := p.reader.BytesRead()
	elapsed := time.Since(p.begin).Seconds()
	frac := 0.0
	if p.total > 0 {
		frac = min(float64(done)/float64(p.total), 1)
	}
	const width = 30
	fill := int(frac * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed
	}
	eta := "--:--"
	if rate > 0 && p.total > done {
		s := int(float64(p.total-done) / rate)
		eta = fmt.Sprintf("%02d:%02d", s/60, s%60)
	}
	fmt.Fprintf(p.w, "\r[%s] %5.1f%% %s/%s %s/s ETA %s  records %d  dlq %d\033[K",
		bar, frac*100, HumanBytes(done), HumanBytes(p.total), HumanBytes(int64(rate)), eta,
		p.acct.RecordsIn.Load(), p.acct.DLQSentTotal())
}
