package supapool

import "time"

// The reaper shrinks the pool back towards MinConnections and retires
// clients past MaxLifetime.
//
// It cannot judge idleness by each client's last use: idle clients sit in
// a channel and are handed out in turn, so under light steady load (one
// request at a time) every client is touched within any IdleTimeout and
// none would ever look idle. Instead the pool tracks the low-water mark of
// its idle count (lowIdle) over a window of IdleTimeout: if at least k
// clients were idle at every moment of the window, k clients were surplus
// for the whole of it, whichever clients that was. At the end of a window
// the reaper closes that many (but never below MinConnections), taking the
// ones idle longest (the head of the channel), and a new window begins. A
// surplus is thus closed between one and two IdleTimeouts after it appears.

// reapInterval is how often the reaper wakes: every IdleTimeout, or more
// often when MaxLifetime asks for finer expiry.
func (p *Pool) reapInterval() time.Duration {
	d := p.cfg.IdleTimeout
	if l := p.cfg.MaxLifetime / 4; l > 0 && l < d {
		d = max(l, time.Millisecond)
	}
	return d
}

func (p *Pool) reaper() {
	defer close(p.reaperDone)
	t := time.NewTicker(p.reapInterval())
	defer t.Stop()
	windowStart := time.Now()
	for {
		select {
		case <-p.done:
			return
		case now := <-t.C:
			endWindow := now.Sub(windowStart) >= p.cfg.IdleTimeout
			if endWindow {
				windowStart = now
			}
			p.reap(now, endWindow)
		}
	}
}

// reap marks expired clients, closes idle ones that are expired or (at the
// end of a window) surplus, and refills to MinConnections. It holds mu
// throughout; it does no I/O, and only non-blocking channel operations.
func (p *Pool) reap(now time.Time, endWindow bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.cfg.MaxLifetime > 0 {
		for _, c := range p.conns {
			if !c.expired && !now.Before(c.expiresAt) {
				c.expired = true
			}
		}
	}
	surplus := 0
	if endWindow {
		surplus = p.lowIdle
	}
	// One pass over the idle clients, oldest first; keepers go back in
	// the same order.
	for n := len(p.idle); n > 0; n-- {
		var c *conn
		select {
		case c = <-p.idle:
		default:
		}
		if c == nil {
			break
		}
		switch {
		case c.expired:
			p.counts.lifetimeClosed++
			p.destroyLocked(c)
		case surplus > 0 && p.total > p.cfg.MinConnections:
			surplus--
			p.counts.idleClosed++
			p.destroyLocked(c)
		default:
			p.idle <- c
		}
	}
	for p.total < p.cfg.MinConnections {
		c := p.newConnLocked()
		if w := p.handOffLocked(c); w != nil {
			w.ready <- c // not expected: waiters imply MaxConnections clients
		}
	}
	if endWindow {
		p.lowIdle = p.total - p.active
	}
}
