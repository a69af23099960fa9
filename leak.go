package supapool

import (
	"runtime"
	"strconv"
	"strings"
	"time"
)

// leakDepth bounds the acquirer's stack kept for a leak report.
const leakDepth = 32

// leakRecord is what the leak checker knows of one checkout. Guarded by
// Pool.mu, like the rest of conn.
type leakRecord struct {
	pcs      [leakDepth]uintptr // the acquiring goroutine's stack, from runtime.Callers
	n        int                // len of pcs in use; 0: not recorded (yet)
	reported bool               // the checker has reported this checkout
	acquirer string             // the function that acquired it, once reported
}

// recordAcquirer keeps the stack of the goroutine that has just acquired
// client, for a leak report. It runs on that goroutine, from acquired,
// only when LeakThreshold is set.
func (p *Pool) recordAcquirer(c *conn) {
	var pcs [leakDepth]uintptr
	n := runtime.Callers(3, pcs[:]) // skip Callers, recordAcquirer, acquired
	p.mu.Lock()
	if c.active {
		c.leak.pcs, c.leak.n = pcs, n
	}
	p.mu.Unlock()
}

// leakChecker is the pool's second background goroutine, started by New
// only when Config.LeakThreshold is set and stopped by Close (through
// p.done, like the reaper; it closes p.leakDone on return, and Close waits
// for that). Every LeakThreshold/2 it looks, under mu, at the checkout
// time (conn.outAt, stamped by checkoutLocked) and leakRecord of every
// client that is out, so a leak is reported within LeakThreshold/2 after
// the threshold passes. It shares nothing else with the pool.
func (p *Pool) leakChecker() {
	defer close(p.leakDone)
	t := time.NewTicker(max(p.cfg.LeakThreshold/2, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.checkLeaks()
		}
	}
}

// checkLeaks reports, once per checkout, every client held longer than
// LeakThreshold: a Warn line with how long it has been out and the
// acquirer's stack, Stats.Leaks, and EventLeak.
func (p *Pool) checkLeaks() {
	type leak struct {
		held      time.Duration
		by, stack string
	}
	var found []leak
	p.mu.Lock()
	now := time.Since(p.epoch)
	for _, c := range p.conns {
		if !c.active || c.leak.reported || c.outAt < 0 || now-c.outAt < p.cfg.LeakThreshold {
			continue
		}
		held := now - c.outAt
		c.leak.reported = true
		p.counts.leaks++
		p.emit(Event{Kind: EventLeak, Duration: held})
		by, stack := formatStack(c.leak.pcs[:c.leak.n])
		c.leak.acquirer = by
		found = append(found, leak{held: held, by: by, stack: stack})
	}
	p.mu.Unlock()
	for _, l := range found {
		p.log.Warn("supapool: a client has been checked out longer than LeakThreshold; find the code that acquired it and make sure it releases it",
			"held", l.held, "threshold", p.cfg.LeakThreshold, "acquiredBy", l.by, "stack", l.stack)
	}
}

// formatStack renders pcs as "function\n\tfile:line" lines, leaving out
// the frames of this package and of the runtime, and returns the first
// function left (the acquirer) too.
func formatStack(pcs []uintptr) (acquirer, stack string) {
	if len(pcs) == 0 {
		return "unknown", ""
	}
	var b strings.Builder
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		if f.Function != "" && !strings.HasPrefix(f.Function, "github.com/supapool/supapool.") && !strings.HasPrefix(f.Function, "runtime.") {
			if acquirer == "" {
				acquirer = f.Function
			}
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(f.Function)
			b.WriteString("\n\t")
			b.WriteString(f.File)
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(f.Line))
		}
		if !more {
			break
		}
	}
	if acquirer == "" {
		acquirer = "unknown"
	}
	return acquirer, b.String()
}
