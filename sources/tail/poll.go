package tail

import (
	"os"
)

// poll looks at every followed file: growth of the open ones (fstat; for
// a file in a watched folder, only every scan_interval),
// files waiting to be fingerprinted, partial lines and rotated files whose
// time is up, idle files, files to close for inactivity. A scan a
// notification asked for runs here, so a burst of them costs one.
func (s *Source) poll() {
	now := s.o.Now()
	var lag int64
	for _, f := range s.live {
		if f.released {
			continue
		}
		switch f.state {
		case stateWaiting:
			var size int64 = -1
			if fi, err := os.Stat(f.path); err == nil {
				if k, _ := identOf(fi); k == f.key {
					size = fi.Size()
				}
			}
			if size < 0 {
				if f.seen != s.scanGen || f.gone {
					s.release(f, "vanished before it was read")
				}
				continue
			}
			if size != f.size {
				f.size, f.sizeSince = size, now
			}
			s.identify(f, now)
			continue
		case stateArchive:
			if f.gone && f.fh == nil {
				s.release(f, "archive gone")
			}
			continue
		}
		// A file whose folder is watched is told to grow by notifications:
		// it is looked at only every scan_interval, in case one was lost.
		// Not a file renamed away or deleted: notifications name it by a
		// path no longer followed, and whether it is at its end decides
		// its release.
		if f.fh != nil && (f.gone || !f.watched || now.Sub(f.statAt) >= s.cfg.ScanInterval) {
			f.statAt = now
			if size, nlink, err := fstat(f.fh, &s.statBuf); err == nil {
				if nlink == 0 && !f.gone {
					f.gone = true
					s.log.Debug("file deleted: reading it to its end", "path", f.path)
				}
				f.size = size
				if f.size != f.end {
					s.enqueue(f)
				}
			}
		}
		lag += max(f.size-f.sent.Off, 0)
		switch {
		case f.held > 0 && now.Sub(f.lastGrowth) >= s.cfg.PartialLineTimeout:
			s.enqueue(f) // its partial line is taken as it is
		case f.gone && f.fh == nil:
			s.release(f, "rotated or deleted while closed")
			continue
		case f.gone && !f.queued && f.size <= f.end && f.held == 0 && now.Sub(f.lastGrowth) >= s.cfg.PartialLineTimeout:
			s.release(f, "rotated or deleted, read to its end")
			continue
		}
		if f.atEnd && !f.idleSent && f.batches > 0 && f.held == 0 && now.Sub(f.atEndSince) >= s.cfg.IdleTimeout && f.tracker.InFlight() == 0 {
			f.idleSent = true
			if s.o.Events.Idle != nil {
				s.o.Events.Idle(f.origin.ID, f.batches)
			}
		}
		if f.fh != nil && !f.gone && !f.queued && f.held == 0 && now.Sub(f.lastGrowth) >= s.cfg.CloseInactive {
			s.closeFile(f)
		}
	}
	s.lag.Store(lag)
	if s.scanDue {
		s.scanDue = false
		s.scan()
	}
	s.polls.Add(1)
}
