package supapool

import "time"

// reapInterval is how often the reaper wakes: every IdleTimeout, or more
// often when MaxLifetime asks for finer expiry.
func (p *Pool) reapInterval() time.Duration {
	d := p.cfg.IdleTimeout
	if l := p.cfg.MaxLifetime / 4; l > 0 && l < d {
		d = max(l, time.Millisecond)
	}
	return d
}

// reaper is the pool's one background goroutine, started by New and
// stopped by Close (through p.done; it closes p.reaperDone on return). It
// shrinks the pool back towards MinConnections and retires clients past
// MaxLifetime, waking every reapInterval.
//
// It does not judge idleness by each client's last use. Instead the pool
// tracks the low-water mark of its idle count, Pool.lowIdle, over a window
// of IdleTimeout: pool.go lowers it whenever a client is checked out or
// destroyed, and the reaper resets it when a window ends. If at least k
// clients were idle at every moment of the window, k clients were surplus
// for the whole of it, whichever clients that was. At the end of a window
// the reaper closes that many (but never below MinConnections), taking the
// ones that came back longest ago (the old end of the idle list: Acquire
// takes from the new end, so under light load these are the ones no one
// has needed), and a new window begins. A surplus is thus closed between
// one and two IdleTimeouts after it appears.
//
// For MaxLifetime the reaper marks clients past their end of life
// (conn.expired) and closes the idle ones; pool.go also checks the
// deadline when a client is taken or comes back, so an expired client is
// never handed out.
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
			p.reap(endWindow)
		}
	}
}

// reap marks expired clients, closes idle ones that are expired or (at the
// end of a window) surplus, and refills to MinConnections. It holds mu
// throughout; it does no I/O and never blocks.
func (p *Pool) reap(endWindow bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.cfg.MaxLifetime > 0 {
		for _, c := range p.conns {
			p.expiredLocked(c)
		}
	}
	surplus := 0
	if endWindow {
		surplus = p.lowIdle
	}
	// One pass over the idle clients, oldest first; keepers go back in
	// the same order.
	for n := p.idle.len(); n > 0; n-- {
		c := p.idle.popOldest()
		if c == nil {
			break // a destroy below served a waiter from idle
		}
		switch {
		case c.expired:
			p.counts.lifetimeClosed++
			p.destroyLocked(c, CloseLifetime)
		case surplus > 0 && p.total > p.cfg.MinConnections:
			surplus--
			p.counts.idleClosed++
			p.destroyLocked(c, CloseIdle)
		default:
			p.idle.push(c)
		}
	}
	p.refillLocked() // resize.go
	if endWindow {
		p.lowIdle = p.total - p.active
	}
}
