package supapool

import (
	"fmt"
	"net/http"
)

// Reset retires every client and connection and keeps the pool serving,
// for after a failover or a key rotation on the server: idle clients are
// closed now, clients in use when they come back (an idle client taken
// meanwhile is replaced before it is handed out), and the pool's own
// transport is replaced by a fresh one, so no TCP connection made before
// Reset carries a request made after it; the old transport's connections
// are closed as the clients that use them come back. The pool then refills
// to MinConnections. Waiters keep waiting and are served by the clients
// that follow. Stats counts the call in Resets and the clients it closed in
// ResetClosed. Reset does nothing on a closed pool.
func (p *Pool) Reset() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.counts.resets++
	p.gen++
	for c := p.idle.pop(); c != nil; c = p.idle.pop() {
		p.counts.resetClosed++
		p.destroyLocked(c, CloseReset)
	}
	closeNow := p.replaceTransportLocked(p.max)
	p.refillLocked()
	p.mu.Unlock()
	for _, t := range closeNow {
		t.CloseIdleConnections()
	}
}

// SetMaxConnections changes MaxConnections while the pool runs. n must be
// at least 1 and at least MinConnections; otherwise it returns an error
// matching ErrInvalidConfig and changes nothing.
//
// Growing serves waiting callers at once (with AdaptiveLimit, as many as
// the limit allows; the new maximum caps the limit, and lets it grow).
// Shrinking closes idle clients above n at once and destroys clients in
// use as they come back until at most n exist (Stats.ResizeClosed counts them); from then on the pool
// holds at most n clients. The pool's own transport is replaced by one
// sized for n (its limits cannot change while it is in use), so at most n
// TCP connections are made from then on, and those of the old transport
// are closed as the clients that use them come back. A Config.Transport
// is not resized. Stats.MaxConnections shows the value in force. On a
// closed pool, SetMaxConnections returns ErrPoolClosed.
func (p *Pool) SetMaxConnections(n int) error {
	if n < 1 || n < p.cfg.MinConnections {
		return fmt.Errorf("%w: SetMaxConnections(%d): the maximum must be at least 1 and at least MinConnections (%d)",
			ErrInvalidConfig, n, p.cfg.MinConnections)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrPoolClosed
	}
	if n == p.max {
		p.mu.Unlock()
		return nil
	}
	p.max = n
	p.lim.setMax(n)
	p.idle.grow(n) // idle must have room for every client
	for p.total > n {
		c := p.idle.popOldest() // the least recently used first
		if c == nil {
			break // the rest is in use: destroyed as it comes back
		}
		p.counts.resizeClosed++
		p.destroyLocked(c, CloseResize)
	}
	p.serveLocked() // growing: serve the waiters with new clients
	closeNow := p.replaceTransportLocked(n)
	p.mu.Unlock()
	for _, t := range closeNow {
		t.CloseIdleConnections()
	}
	return nil
}

// refillLocked creates clients up to MinConnections, handing them to
// waiters first.
func (p *Pool) refillLocked() {
	for p.total < p.cfg.MinConnections {
		c := p.newConnLocked()
		if w := p.handOffLocked(c, -1); w != nil {
			w.ready <- c // rare enough to wake the waiter with mu held
		}
	}
}

// replaceTransportLocked puts a fresh own transport for maxConns in place.
// The old one stays in p.retired until every client checked out now has
// come back (see returnedLocked). It returns the transports whose idle
// connections the caller must close after unlocking: all retired ones when
// no client is out.
func (p *Pool) replaceTransportLocked(maxConns int) []*http.Transport {
	if p.own == nil {
		return nil
	}
	p.retired = append(p.retired, p.own.swap(maxConns))
	p.retiredSeq, p.pendingOld = p.counts.acquired, p.active
	if p.pendingOld == 0 {
		done := p.retired
		p.retired = nil
		return done
	}
	return p.retired
}

// returnedLocked notes that c came back while old transports are retired.
// It returns the retired transports, whose idle connections the caller
// closes after unlocking (c's requests are done, so its connections are
// idle now), and forgets them once the last client checked out before the
// latest replacement is back.
func (p *Pool) returnedLocked(c *conn) []*http.Transport {
	retired := p.retired
	if c.seq <= p.retiredSeq {
		p.pendingOld--
		if p.pendingOld == 0 {
			p.retired = nil
		}
	}
	return retired
}
