package supapool

import (
	"context"
	"log/slog"
	"slices"
	"time"
)

// An Event is something that happened to a pool, as reported to the
// functions attached with Pool.Observe. Only the fields that the Kind's
// documentation names are set.
type Event struct {
	Kind EventKind
	// Duration: how long Acquire waited (EventAcquire, EventTimeout,
	// EventCancel; 0 when it did not wait), how long the client was held
	// (EventRelease, EventLeak), how long building the client took
	// (EventCreate), or how long the request took until its response's
	// headers or its error (EventRequest).
	Duration time.Duration
	Reason   CloseReason // EventDestroy: why the client went away
	Method   string      // EventRequest: the HTTP method
	Status   int         // EventRequest: the HTTP status; 0 when Err is set
	Err      error       // EventRequest: the transport's error, when no response came
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventCreate: a client was created (Duration).
	EventCreate EventKind = iota + 1
	// EventAcquire: Acquire returned a client (Duration: the wait).
	EventAcquire
	// EventRelease: a client came back by Release or Discard (Duration:
	// how long it was out). Not reported for a client that was checked
	// out before anything was attached.
	EventRelease
	// EventDestroy: a client went away (Reason).
	EventDestroy
	// EventTimeout: an Acquire gave up after Config.AcquireTimeout
	// (Duration).
	EventTimeout
	// EventCancel: an Acquire's ctx ended while it waited (Duration).
	EventCancel
	// EventLeak: a client has been out longer than Config.LeakThreshold
	// (Duration); reported once per checkout.
	EventLeak
	// EventRequest: the pool's transport carried a request (Method,
	// Status or Err, Duration).
	EventRequest
	// EventClose: Close was called. It is the last event but for the
	// releases and destroys of the clients still out.
	EventClose
)

var eventKindNames = [...]string{"", "create", "acquire", "release", "destroy", "timeout", "cancel", "leak", "request", "close"}

// String returns the kind's lower-case name, e.g. "acquire".
func (k EventKind) String() string {
	if int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return "unknown"
}

// CloseReason says why a client was destroyed; its values serve as metric
// labels.
type CloseReason string

const (
	CloseIdle      CloseReason = "idle"      // surplus: closed by the reaper after IdleTimeout
	CloseLifetime  CloseReason = "lifetime"  // past MaxLifetime
	CloseDiscarded CloseReason = "discarded" // Discard, a transport failure in WithClient, or changed auth state (Stats.Discarded)
	ClosePool      CloseReason = "closed"    // the pool was closed
	CloseReset     CloseReason = "reset"     // retired by Reset (Stats.ResetClosed)
	CloseResize    CloseReason = "resize"    // above the maximum after SetMaxConnections shrank it (Stats.ResizeClosed)
)

// observers is what Pool.Observe attached: an immutable list, replaced
// whole on every change, so that emitting takes no lock.
type observers struct {
	list []*observer
}

type observer struct{ fn func(Event) }

func (os *observers) emit(e Event) {
	for _, o := range os.list {
		o.fn(e)
	}
}

// Observe attaches fn to the pool: from now on, fn is called with every
// Event until the returned detach func is called. It may be called at any
// time after New, any number of times; observers are called in the order
// they were attached. On a closed pool, fn is called once with EventClose
// and not attached.
//
// fn runs synchronously on the goroutine where the event happened, and for
// some events (create, destroy, timeout, cancel, leak) while the pool's
// lock is held: it must be quick, must not block, and must not call the
// Pool's methods. Recording into a metric is the intended use. With
// nothing attached, an event costs one atomic load; attached functions
// cost the pool two monotonic clock readings per Acquire and Release and
// one call each per event, and no allocation.
func (p *Pool) Observe(fn func(Event)) (detach func()) {
	o := &observer{fn: fn}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		fn(Event{Kind: EventClose})
		return func() {}
	}
	p.setObserversLocked(append(p.observersLocked(), o))
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.setObserversLocked(slices.DeleteFunc(p.observersLocked(), func(x *observer) bool { return x == o }))
	}
}

// observersLocked returns a copy of the attached list, to change.
func (p *Pool) observersLocked() []*observer {
	if os := p.obs.Load(); os != nil {
		return slices.Clone(os.list)
	}
	return nil
}

func (p *Pool) setObserversLocked(list []*observer) {
	if len(list) == 0 {
		p.obs.Store(nil)
		return
	}
	p.obs.Store(&observers{list: list})
}

// emit reports e to the attached observers, if any.
func (p *Pool) emit(e Event) {
	if os := p.obs.Load(); os != nil {
		os.emit(e)
	}
}

// stamp is the time of a checkout or a checkin: time.Since(p.epoch) when
// someone will read it (an observer or the leak checker), or -1, which
// costs no clock reading. The hot paths read it before taking the lock.
func (p *Pool) stamp() time.Duration {
	if !p.timed() {
		return -1
	}
	return p.since()
}

// clockOutside is stamp for Acquire and Release, which call it before
// taking mu: it also reads the clock when callers are waiting, since the
// wait's bookkeeping will need the time (enqueueLocked, handOffLocked),
// and a reading under mu would hold up every other caller. Without
// waiters or anything timed, it returns -1, which costs no clock reading.
func (p *Pool) clockOutside() time.Duration {
	if !p.timed() && !p.waitHint.Load() {
		return -1
	}
	return p.since()
}

// timed reports whether checkouts are timed: an observer is attached, or
// LeakThreshold is set. Small enough to inline into the hot path.
func (p *Pool) timed() bool { return p.obs.Load() != nil || p.cfg.LeakThreshold > 0 }

// since is the pool's monotonic clock, time.Since(p.epoch).
func (p *Pool) since() time.Duration { return time.Since(p.epoch) }

// acquired ends every successful Acquire, on the acquiring goroutine: it
// reports the acquire (which waited for waited) and, with LeakThreshold,
// records the acquirer's stack. It passes c through.
func (p *Pool) acquired(c *conn, waited time.Duration) *conn {
	if p.timed() {
		p.reportAcquire(c, waited)
	}
	return c
}

// reportAcquire is acquired's work when checkouts are timed.
func (p *Pool) reportAcquire(c *conn, waited time.Duration) {
	if os := p.obs.Load(); os != nil {
		os.emit(Event{Kind: EventAcquire, Duration: waited})
	}
	if p.cfg.LeakThreshold > 0 {
		p.recordAcquirer(c)
	}
}

// checkin is what put learns under the lock about a client coming back,
// for returned to report after unlocking.
type checkin struct {
	held   time.Duration // how long it was out; -1: unknown
	leaked string        // the leak report's acquirer, when it was reported as leaked
}

// checkinLocked reads c's checkout record as it comes back at now (a
// stamp).
func (p *Pool) checkinLocked(c *conn, now time.Duration) checkin {
	ci := checkin{held: -1}
	// Checkouts are stamped with the time also when a wait needed it
	// (clockOutside); report them only to someone who asked.
	if c.outAt >= 0 && now >= 0 && p.timed() {
		ci.held = now - c.outAt
	}
	if c.leak.reported {
		ci.leaked = c.leak.acquirer
		c.leak = leakRecord{}
	}
	return ci
}

// returned reports a client that came back by Release or Discard.
func (p *Pool) returned(ci checkin) {
	if ci.held >= 0 || ci.leaked != "" {
		p.reportRelease(ci)
	}
}

// reportRelease is returned's work for a timed or leaked checkout.
func (p *Pool) reportRelease(ci checkin) {
	if ci.held >= 0 {
		p.emit(Event{Kind: EventRelease, Duration: ci.held})
	}
	if ci.leaked != "" {
		p.log.Info("supapool: a client reported as leaked was returned", "held", ci.held, "acquiredBy", ci.leaked)
	}
}

// created reports a client that was built in took. It runs with or
// without the lock.
func (p *Pool) created(took time.Duration) {
	p.emit(Event{Kind: EventCreate, Duration: took})
	p.debug("supapool: client created", "tookNs", took.Nanoseconds())
}

// destroyedLocked reports a client that went away for reason.
func (p *Pool) destroyedLocked(reason CloseReason) {
	p.emit(Event{Kind: EventDestroy, Reason: reason})
	p.debug("supapool: client closed", "reason", string(reason), "total", p.total, "active", p.active)
}

// timedOutLocked reports an Acquire that gave up after waiting waited.
func (p *Pool) timedOutLocked(waited time.Duration) {
	p.emit(Event{Kind: EventTimeout, Duration: waited})
	p.debug("supapool: acquire timed out", "waited", waited, "active", p.active, "max", p.max, "waiting", p.waiting)
}

// debug logs a pool event at Debug level, if that level is enabled.
func (p *Pool) debug(msg string, args ...any) {
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug(msg, args...)
	}
}
