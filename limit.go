package supapool

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// With Config.AdaptiveLimit, a limiter decides how many clients the pool
// lets be checked out at once (its limit), between max(MinConnections, 1)
// and the MaxConnections in force, from what the requests meet on the
// wire. It is TCP Vegas as Netflix's concurrency-limits adapts it to
// request concurrency (VegasLimit: the queue a limit builds at the server
// is estimated as inflight * (1 - noLoadRTT/RTT), and the limit grows
// while that queue is below alpha, shrinks while it is above beta), with
// these changes:
//
//   - Tighter thresholds: alpha = 2*log10(limit) and beta =
//     4*log10(limit) (VegasLimit: 3 and 6 times), with log10(limit) taken
//     as at least minLog. Against a real PostgREST whose db-pool was the
//     bottleneck (make adaptive), Vegas's own thresholds held the limit at
//     7-12 where the best fixed size was 4-6, and the p99 at 1.2-1.35
//     times the best fixed size's.
//   - Slow start (TCP's): while the estimated queue is at most
//     log10(limit), i.e. the latency is at its baseline, the limit
//     doubles each window, until the first window that shows a queue.
//     This is how it finds the server's capacity from
//     max(MinConnections, 1) at start, and how it recovers after an
//     overload: from the floor back to a capacity of k takes log2(k)
//     windows, a few dozen round trips.
//   - A decrease proportional to the queue (Gradient2's idea: the limit
//     the server can take is inflight * noLoadRTT/RTT): above beta for a
//     second window in a row (one may be a stall of this process, not a
//     queue at the server) the limit moves halfway to the one that would
//     leave alpha queued, by at least log10(limit) and at most half of
//     itself, so a noisy window cannot collapse it.
//   - Explicit overload answers (429, 504 PGRST003: PostgREST waited too
//     long for a database connection, 503 with a PostgreSQL class 53 code:
//     insufficient resources) halve the limit at once, as a loss halves
//     TCP's window, at most once per round trip: answers to requests sent
//     before the last halving do not halve it again. Their latencies are
//     not samples. So an overload drives the limit down geometrically
//     while it lasts. It also turns slow start back on: since the baseline
//     is untouched by the overload, the limit doubles back per window as
//     soon as answers are fast again (the decay of an overload is its
//     recovery: no state of it outlives the first fast window).
//
// A window is at least windowMin successful round trips, and at least as
// many as the limit (about one round trip of the pool), at most windowMax,
// all sent after the limit in force last changed (so that it measures that
// limit, not the one before). Its RTT is their median, robust to the odd
// stall of a shared machine.
//
// The no-load RTT (baseline) is the lowest window median seen; it may only
// rise through a probe (BBR's ProbeRTT): when no window has matched it for
// probeEvery, the limit in force is halved for one window, and the median
// of the requests sent during it becomes the baseline. Without the probe a
// baseline that had become too low (the server got slower for good) would
// hold the limit at the floor. The limit grows only while it is used: a
// window whose peak of requests in flight is below half the limit does not
// raise it.
//
// Samples are taken by each client's transport (clientTransport.RoundTrip,
// checkout.go): begin counts a request in flight and end records its round
// trip. They take only the limiter's own lock, never the pool's; the pool
// reads the limit in force with one atomic load, under its own lock, when
// it decides whether an Acquire may take a client.
type limiter struct {
	inflight atomic.Int64 // requests sent and not yet answered
	current  atomic.Int64 // the limit in force, an integer in [floor, max]
	raised   func()       // called, without mu, when current rises: Pool.limitRaised

	mu       sync.Mutex
	floor    float64 // max(MinConnections, 1)
	max      float64 // the MaxConnections in force
	limit    float64
	baseline time.Duration // the no-load RTT; 0 until the first window
	seenBase time.Time     // when a window last matched the baseline (or a probe set it)
	probeAt  time.Time     // a probe began then; zero when not probing
	since    time.Time     // the limit in force changed then: requests sent before do not count
	slow     bool          // in slow start: doubling while the latency is at its baseline
	over     bool          // the last window's queue was above beta
	dropAt   time.Time     // the last halving: answers to requests sent before it do not halve again
	win      window
}

// window is what the limiter gathers between two adjustments.
type window struct {
	n    int                      // successful round trips in rtt
	rtt  [windowMax]time.Duration // their round-trip times
	peak int64                    // most requests in flight at the end of one of them
}

// The limiter's constants.
const (
	windowMin  = 16               // round trips in a window, at least
	windowMax  = 64               // and at most
	alphaLog   = 2.0              // grow while the estimated queue is below alphaLog*log10(limit)
	betaLog    = 4.0              // shrink while it is above betaLog*log10(limit)
	dropFactor = 0.5              // the limit after an overload answer, as a fraction of before
	probeEvery = 10 * time.Second // how long the baseline may go unmatched before a probe
	minLog     = 0.5              // the least log10(limit) the thresholds use
)

// newLimiter returns a limiter that starts at its floor, max(minConns, 1),
// and calls raised, without its lock, whenever the limit in force rises.
func newLimiter(minConns, maxConns int, raised func()) *limiter {
	l := &limiter{floor: float64(max(minConns, 1)), max: float64(maxConns), raised: raised, slow: true}
	l.limit = l.floor
	l.publishLocked()
	return l
}

// limitLocked returns how many clients may be checked out at once: the
// adaptive limit, or without AdaptiveLimit the MaxConnections in force.
func (p *Pool) limitLocked() int {
	if p.lim == nil {
		return p.max
	}
	return min(p.lim.get(), p.max)
}

// limitRaised serves the waiters that a higher adaptive limit lets in (a
// release would serve only one). The limiter calls it when the limit in
// force rises, which happens at most once per window: sampling does not
// take mu otherwise.
func (p *Pool) limitRaised() {
	p.mu.Lock()
	if !p.closed {
		p.serveLocked()
	}
	p.mu.Unlock()
}

// get returns the limit in force.
func (l *limiter) get() int { return int(l.current.Load()) }

// setMax changes the highest the limit may go (SetMaxConnections).
func (l *limiter) setMax(n int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.max = float64(n)
	l.limit = min(l.limit, l.max)
	l.publishLocked() // the caller serves the waiters a rise lets in
	l.mu.Unlock()
}

// publishLocked stores the limit in force: the estimate, or half of it
// while probing, as an integer in [floor, max]. It reports whether that
// rose.
func (l *limiter) publishLocked() (rose bool) {
	next := l.inForceLocked()
	return l.current.Swap(next) < next
}

// inForceLocked returns the limit to publish.
func (l *limiter) inForceLocked() int64 {
	n := l.limit
	if !l.probeAt.IsZero() {
		n /= 2
	}
	return int64(math.Floor(max(l.floor, min(n, l.max))))
}

// begin counts a request that is about to be sent and returns when. It
// does nothing, and returns the zero time, on a nil limiter (no
// AdaptiveLimit).
func (l *limiter) begin() time.Time {
	if l == nil {
		return time.Time{}
	}
	l.inflight.Add(1)
	return time.Now()
}

// end records the round trip of a request that begin counted at sent, and
// fail, its classification by observe (nil: a success). It does nothing
// on a nil limiter or for a zero sent (the request was not sent).
func (l *limiter) end(sent time.Time, fail *Error) {
	if l == nil || sent.IsZero() {
		return
	}
	now := time.Now()
	inflight := l.inflight.Add(-1) + 1
	// Other failures than overload answers (the request's own ctx, a
	// broken connection, an error of the request itself) say nothing about
	// the server's capacity.
	switch {
	case fail == nil:
		if l.sample(now, sent, now.Sub(sent), inflight) {
			l.raised()
		}
	case overloaded(fail):
		l.overload(now, sent)
	}
}

// overloaded reports whether fail is the server saying it has more work
// than it can take.
func overloaded(fail *Error) bool {
	switch fail.Status {
	case 429:
		return true
	case 503:
		return strings.HasPrefix(fail.Code, "53") && len(fail.Code) == 5
	case 504:
		return fail.Code == "PGRST003"
	}
	return false
}

// overload halves the limit for an overload answer to a request sent at
// sent, unless it was halved after the request was sent.
func (l *limiter) overload(now, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sent.Before(l.dropAt) {
		return
	}
	l.dropAt = now
	l.limit = max(l.floor, l.limit*dropFactor)
	l.slow = true
	l.changedLocked(now)
}

// sample adds a successful round trip of rtt, sent at sent, that ended at
// now with inflight requests in flight (itself included), and adjusts the
// limit when the window is full. It reports whether the limit in force
// rose.
func (l *limiter) sample(now, sent time.Time, rtt time.Duration, inflight int64) (rose bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sent.Before(l.since) {
		return false // sent under another limit
	}
	w := &l.win
	w.rtt[w.n] = rtt
	w.n++
	w.peak = max(w.peak, inflight)
	if w.n < min(max(windowMin, int(l.limit)), windowMax) {
		return false
	}
	rtts := w.rtt[:w.n]
	slices.Sort(rtts)
	med, peak := rtts[len(rtts)/2], float64(w.peak)
	l.win = window{}
	was := l.inForceLocked()
	l.adjustLocked(now, med, peak)
	if l.inForceLocked() == was {
		return false
	}
	return l.changedLocked(now)
}

// changedLocked publishes a new limit, which applies to the requests sent
// from now on: a window counts only those. It reports whether the limit
// in force rose.
func (l *limiter) changedLocked(now time.Time) (rose bool) {
	l.since = now
	l.win = window{}
	return l.publishLocked()
}

// adjustLocked ends a window whose median round trip was med and whose
// peak of requests in flight was peak.
func (l *limiter) adjustLocked(now time.Time, med time.Duration, peak float64) {
	switch {
	case !l.probeAt.IsZero():
		l.probeAt = time.Time{}
		l.baseline, l.seenBase = med, now
		return
	case l.baseline == 0 || med <= l.baseline:
		l.baseline, l.seenBase = med, now
	case now.Sub(l.seenBase) >= probeEvery:
		l.probeAt = now
		return
	}
	// log10 of the limit, but at least minLog: below a limit of about 3
	// the thresholds would be too close to zero to see through noise.
	lg := max(math.Log10(l.limit), minLog)
	alpha, beta := alphaLog*lg, betaLog*lg
	// The requests queued at the server: of the peak in flight, the share
	// of the round trip that was not service.
	queue := peak * (1 - float64(l.baseline)/float64(med))
	if queue > lg {
		l.slow = false
	}
	if queue <= beta {
		l.over = false
	}
	switch {
	case queue > beta && !l.over:
		l.over = true // once may be a stall of this process: wait for a second window
		return
	case queue > beta:
		// Halfway to the limit that would leave alpha queued, but at least
		// lg and at most half.
		l.limit -= min(max(lg, (queue-alpha)/2), l.limit/2)
	case peak < l.limit/2:
		// Not used: a limit nobody reaches says nothing about the server.
	case l.slow:
		l.limit *= 2
	case queue < alpha:
		l.limit += max(1, lg)
	}
	l.limit = max(l.floor, min(l.limit, l.max))
}
