package supapool

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	functions "github.com/supabase-community/functions-go"
	"github.com/supabase-community/gotrue-go"
	storage "github.com/supabase-community/storage-go"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool/internal/clientpatch"
)

// Pool is a pool of supabase-go clients with a minimum and a maximum size.
// All of its clients send their PostgREST requests through one transport
// that the pool owns (or Config.Transport), so MaxConnections also bounds
// the TCP connections to the server. A Pool is safe for concurrent use. It
// must be created with New or Instance and closed with Close.
//
// Besides the callers of Acquire and Release, one goroutine works on a
// pool: the reaper (reaper.go), started by New and stopped by Close. It
// shares the bookkeeping under mu, in particular lowIdle (lowered here
// whenever a client is checked out or destroyed, read and reset by the
// reaper at the end of each window) and conn.expired (set by the reaper,
// acted on here when a client is taken or comes back). With
// Config.LeakThreshold, New also starts the leak checker (leak.go).
type Pool struct {
	url   string
	creds *credentials // behind a pointer so that printing a Pool shows no key
	cfg   Config       // with defaults applied; read-only after New
	log   *slog.Logger
	rt    http.RoundTripper // the shared chain below every client's own transport (see checkout.go)
	own   *ownTransport     // the pool's own transport; nil with Config.Transport
	// router sends each request to the primary or a read replica
	// (router.go); nil without Config.ReadReplicas. Part of rt.
	router *router

	breaker *breaker // the upstream's circuit breaker, a layer of rt (breaker.go); nil when disabled

	lim        *limiter      // AdaptiveLimit's (limit.go); nil without it. Read-only after New.
	done       chan struct{} // closed by Close: the reaper stops
	reaperDone chan struct{} // closed when the reaper has returned
	leakDone   chan struct{} // closed when the leak checker has returned; nil without LeakThreshold
	drained    chan struct{} // closed when the pool is closed and no client is left
	waiterPool sync.Pool     // *waiter, so that waiting allocates nothing
	// epoch is when the pool was made; read-only after New. The wait path
	// measures time as time.Since(epoch), which reads only the monotonic
	// clock: half the cost of time.Now.
	epoch time.Time
	obs   atomic.Pointer[observers] // what Observe attached; nil: nothing (observer.go)

	// The fields above are read on every Acquire and Release and written
	// (almost) never; mu and the fields it guards are written all the
	// time. Keep them on different cache lines, so that reading the first
	// does not wait for the cores that take mu.
	_ [64]byte

	mu sync.Mutex
	// Guarded by mu.
	max   int                        // the MaxConnections in force (SetMaxConnections changes it)
	gen   int64                      // Reset's generation: a client of an older one is retired
	conns map[*supabase.Client]*conn // every client that exists
	// idle holds the idle clients (idle.go); Acquire takes the one most
	// recently returned. Clients go there only while no one waits: a
	// client that comes back while Acquires wait goes to the longest
	// waiter instead (see waiter). So idle is empty whenever anyone
	// waits, and taking from it cannot overtake a waiter. With
	// AdaptiveLimit, a client also goes to idle while callers wait if the
	// limit holds them back (active >= limit), and Acquire takes from
	// idle only when no one waits.
	idle         idleList
	total        int         // len(conns) plus clients being created
	active       int         // clients checked out
	waiting      int         // Acquire calls blocked in wait: the waiters in the queue
	waitHint     atomic.Bool // waiting > 0, written under mu and read without it (see clockOutside)
	waitHead     *waiter     // the queue of waiters, oldest first (a doubly linked list)
	waitTail     *waiter     // the newest waiter
	waitTimer    *time.Timer // runs expireWaiters; nil until first set
	timerArmed   bool        // waitTimer is set, or firing
	lowIdle      int         // fewest idle clients since the reaper's window began (see reaper)
	closed       bool
	drainedShut  bool              // drained has been closed
	retired      []*http.Transport // own transports replaced by Reset or SetMaxConnections, still in use (resize.go)
	retiredSeq   int64             // counts.acquired when the last one was replaced
	pendingOld   int               // clients checked out before that, not yet back
	counts       counters
	waitDuration time.Duration

	useAfterRelease atomic.Int64 // requests refused by a client that was not checked out; counted without mu
}

type credentials struct{ key string }

// counters are Stats' cumulative numbers. Guarded by Pool.mu.
type counters struct {
	acquired, released, created, destroyed int64
	waits, timeouts, canceled, discarded   int64
	idleClosed, lifetimeClosed, leaks      int64
	rejected, resets, resetClosed          int64
	resizeClosed                           int64
}

// conn is one pooled client and its bookkeeping. Guarded by Pool.mu, except
// client, rt, auth, storage and functions, which do not change, and bound,
// which is atomic (see checkout.go).
type conn struct {
	client    *supabase.Client
	rt        *clientTransport         // the client's own transport: applies bound to every request
	auth      gotrue.Client            // client.Auth as created (a *poolAuth): a change means auth state was changed
	storage   *storage.Client          // client.Storage as created: likewise
	functions *functions.Client        // client.Functions as created: likewise
	bound     atomic.Pointer[checkout] // the current checkout; nil while the client is not checked out
	plain     checkout                 // the binding of a checkout with the pool's key outside a closure
	expiresAt time.Duration            // end of life as time.Since(Pool.epoch); 0: no MaxLifetime
	active    bool                     // checked out
	expired   bool                     // past expiresAt (set by the reaper or on take/release): destroyed instead of reused
	gen       int64                    // Pool.gen when created: older clients are retired (Reset)
	seq       int64                    // counts.acquired at its latest checkout
	outAt     time.Duration            // checked out at, as time.Since(Pool.epoch); -1: not stamped (see stamp)
	leak      leakRecord               // the checkout as the leak checker sees it (leak.go)
}

// expiredLocked reports whether c is past its MaxLifetime, and marks it so.
// It reads the clock only when MaxLifetime is set.
func (p *Pool) expiredLocked(c *conn) bool {
	if !c.expired && c.expiresAt != 0 && p.since() >= c.expiresAt {
		c.expired = true
	}
	return c.expired
}

// New validates url, key and cfg, creates cfg.MinConnections clients (which
// does no I/O) and starts the pool's reaper goroutine. url is the project
// URL (supabase-go appends /rest/v1); key is the API key, typically the
// service-role key, which never appears in the pool's errors, logs or Stats.
func New(url, key string, cfg Config) (*Pool, error) {
	if err := validateEndpoint(url, key); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Pool{
		epoch:      time.Now(),
		url:        url,
		creds:      &credentials{key: key},
		cfg:        cfg,
		log:        cfg.Logger,
		max:        cfg.MaxConnections,
		done:       make(chan struct{}),
		reaperDone: make(chan struct{}),
		drained:    make(chan struct{}),
		conns:      make(map[*supabase.Client]*conn, cfg.MaxConnections),
	}
	if cfg.AdaptiveLimit {
		p.lim = newLimiter(cfg.MinConnections, cfg.MaxConnections, p.limitRaised)
	}
	p.idle = newIdleList(cfg.MaxConnections)
	base := cfg.Transport
	if base == nil {
		p.own = newOwnTransport(cfg)
		base = p.own
	}
	base, err := wrapTransport(cfg, base)
	if err != nil {
		return nil, err
	}
	switch {
	case len(cfg.ReadReplicas) > 0:
		// One breaker per endpoint, below the router (router.go).
		p.router = newRouter(url, cfg, base, p.epoch, p.log)
		p.breaker = p.router.primary.breaker
		base = p.router
	case cfg.Breaker.Enabled:
		p.breaker = newBreaker(url, base, cfg.Breaker, p.log)
		base = p.breaker
	}
	base = &observeTransport{p: p, base: base}
	p.rt = base
	if err := clientpatch.Check(); err != nil {
		p.log.Warn("supapool: cannot bind clients to the pool's transport; they will use http.DefaultTransport and MaxConnections will not bound TCP connections",
			"error", err.Error())
	}
	p.mu.Lock()
	for p.total < cfg.MinConnections {
		p.idle.push(p.newConnLocked())
	}
	p.lowIdle = p.total
	p.mu.Unlock()
	// The reaper (reaper.go) shrinks the pool to MinConnections and marks
	// expired clients; it shares mu's bookkeeping and exits when Close
	// closes p.done.
	go p.reaper()
	if cfg.LeakThreshold > 0 {
		// The leak checker (leak.go) reads the checkout records under mu
		// and exits, like the reaper, when Close closes p.done.
		p.leakDone = make(chan struct{})
		go p.leakChecker()
	}
	return p, nil
}

func validateEndpoint(rawURL, key string) error {
	if rawURL == "" {
		return fmt.Errorf("%w: url is empty; pass your project URL, e.g. https://<project>.supabase.co", ErrInvalidConfig)
	}
	if key == "" {
		return fmt.Errorf("%w: key is empty; pass your project's API key (service-role or anon)", ErrInvalidConfig)
	}
	// The key goes out in the apikey and Authorization headers. Never
	// quote it here: only say what is wrong with it.
	if !validFieldValue(key) || strings.Trim(key, " \t") != key {
		return fmt.Errorf("%w: key cannot be sent in an HTTP header: it has a control character (a trailing newline from an env file?) "+
			"or leading or trailing spaces; pass the key exactly", ErrInvalidConfig)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: url does not parse; pass an absolute http(s) URL", ErrInvalidConfig)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: url %q is not an absolute http(s) URL; pass e.g. https://<project>.supabase.co", ErrInvalidConfig, u.Redacted())
	}
	if !validHost(u.Host) {
		return fmt.Errorf("%w: url %q has a host that cannot be sent in a Host header; use letters, digits, '-' and '.' "+
			"(the xn-- form for international names)", ErrInvalidConfig, u.Redacted())
	}
	if !validBasePath(rawURL, u) {
		return fmt.Errorf("%w: url %q has a query, a fragment, or an escaped or control character in its path; "+
			"pass the project URL alone, e.g. https://<project>.supabase.co (a path prefix such as /supabase is fine)",
			ErrInvalidConfig, u.Redacted())
	}
	return nil
}

// validBasePath reports whether the clients can build their request URLs
// on u. supabase-go appends "/rest/v1" (and the others) to the URL as a
// string, so a query or fragment would swallow them; postgrest-go then
// joins the decoded path with the table and parses it again, so an escape
// in the path would be decoded twice (%00 becomes a NUL that no request
// can carry, %3F a query, %2F another segment).
func validBasePath(rawURL string, u *url.URL) bool {
	if strings.ContainsAny(rawURL, "?#") || u.RawPath != "" {
		return false
	}
	for i := 0; i < len(u.Path); i++ {
		if c := u.Path[i]; c < 0x20 || c == 0x7f || c == '%' || c == '?' || c == '#' {
			return false
		}
	}
	return true
}

// isClosed reports whether Close has been called.
func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// String describes the pool without its key.
func (p *Pool) String() string {
	u := p.url
	if pu, err := url.Parse(p.url); err == nil {
		u = pu.Redacted()
	}
	p.mu.Lock()
	n := p.max
	p.mu.Unlock()
	return fmt.Sprintf("supapool.Pool(%s, max %d)", u, n)
}

// newConnLocked creates a client and counts it as idle. It allocates but
// does no I/O. The caller holds mu and puts the conn where it belongs.
func (p *Pool) newConnLocked() *conn {
	p.total++
	p.counts.created++
	c := p.newConn()
	c.gen = p.gen
	p.conns[c.client] = c
	return c
}

// newConn builds a client bound to the pool's transport. It needs no lock.
func (p *Pool) newConn() *conn {
	start := time.Since(p.epoch)
	// NewClient fails only for an empty URL or key, which New rejects.
	client, err := supabase.NewClient(p.url, p.creds.key, p.cfg.ClientOptions)
	if err != nil {
		panic("supapool: supabase.NewClient failed after validation: " + err.Error())
	}
	c := &conn{client: client}
	c.rt = &clientTransport{p: p, c: c}
	// On a layout error the client keeps http.DefaultTransport; New logged it.
	_ = clientpatch.SetTransport(client, c.rt)
	client.Auth = &poolAuth{Client: client.Auth.WithClient(http.Client{Transport: c.rt}), p: p, c: c}
	c.auth, c.storage, c.functions = client.Auth, client.Storage, client.Functions
	client.Storage, client.Functions = released.storage, released.functions // until checked out
	if p.cfg.MaxLifetime > 0 {
		life := p.cfg.MaxLifetime
		if j := p.cfg.MaxLifetimeJitter; j > 0 {
			life += rand.N(j)
		}
		c.expiresAt = time.Since(p.epoch) + life
	}
	p.created(time.Since(p.epoch) - start)
	return c
}

// Acquire returns an idle client, or creates one while fewer than
// MaxConnections exist, or else waits, in arrival order, until one is
// released. The wait ends with an error that wraps ctx's (errors.Is(err,
// ctx.Err())) when ctx ends, with an error matching ErrAcquireTimeout after
// Config.AcquireTimeout, and with ErrPoolClosed when the pool is closed. A
// wait that ends without a client leaves nothing behind; if ctx ends just
// as a client is handed over, Acquire returns the client.
//
// If ctx carries a user token (WithAuthToken), the client is checked out
// to that user: every request it sends, with or without a ctx, carries the
// user's token and never the pool's key, until it is released. Acquire's
// ctx bounds only the wait: its deadline and cancellation do not carry
// over to the client's requests, so
//
//	ctx, cancel := context.WithTimeout(ctx, time.Second)
//	c, err := pool.Acquire(ctx)
//	cancel()
//
// is fine. The caller must give the client back with Release, or Discard
// it; a client used after that refuses to send (ErrClientReleased) while
// it is idle (see Release).
func (p *Pool) Acquire(ctx context.Context) (*supabase.Client, error) {
	plain := p.router == nil && authTokenFrom(ctx) == nil
	c, err := p.acquire(ctx, plain)
	if err != nil {
		return nil, err
	}
	switch {
	case !plain:
		p.bind(c, ctx, nil, nil)
	case c.bound.Load() != &c.plain: // else it was handed over bound (see put)
		bindPlain(c)
	}
	return c.client, nil
}

// acquire is Acquire without the binding: it returns the checked-out conn.
// plain says that the caller will bind it with the pool's key and no
// closure, so that a client released with that binding may come bound.
func (p *Pool) acquire(ctx context.Context, plain bool) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, acquireEnded(err)
	}
	now := p.clockOutside()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	// The fast path: an idle client. While others wait, idle is empty
	// (they came first), except with AdaptiveLimit, which admits a caller
	// only below the limit and behind no one.
	admit := p.lim == nil || p.waiting == 0 && p.active < p.limitLocked()
	if admit {
		if c := p.idle.pop(); c != nil {
			c = p.freshLocked(c)
			p.checkoutLocked(c, now)
			p.mu.Unlock()
			return p.acquired(c, 0), nil
		}
	}
	if admit && p.total < p.max {
		// Reserve the slot, build the client outside the lock.
		p.total++
		p.counts.created++
		p.active++
		p.counts.acquired++
		seq := p.counts.acquired
		p.mu.Unlock()
		c := p.newConn()
		c.active, c.seq = true, seq
		c.outAt = p.stamp()
		p.mu.Lock()
		c.gen = p.gen
		p.conns[c.client] = c
		p.mu.Unlock()
		return p.acquired(c, 0), nil
	}
	if m := p.cfg.MaxWaiting; m > 0 && p.waiting >= m {
		p.counts.rejected++
		err := &PoolExhaustedError{Stats: p.statsLocked()}
		p.mu.Unlock()
		return nil, err
	}
	w := p.getWaiter()
	w.plain = plain
	p.enqueueLocked(w, now)
	p.mu.Unlock()
	return p.wait(ctx, w)
}

// acquireEnded is Acquire's error when its ctx has ended: a supapool error
// that matches ctx's.
func acquireEnded(ctxErr error) error {
	return fmt.Errorf("supapool: acquire: %w", ctxErr)
}

// freshLocked returns c, an idle client the caller took from p.idle, or
// its replacement if Reset retired it or it is past its MaxLifetime.
func (p *Pool) freshLocked(c *conn) *conn {
	if c.gen == p.gen && c.expiresAt == 0 {
		return c // the common case, kept small enough to inline
	}
	return p.renewedLocked(c)
}

// renewedLocked is freshLocked for a client that may be retired.
func (p *Pool) renewedLocked(c *conn) *conn {
	switch {
	case c.gen != p.gen:
		p.counts.resetClosed++
		return p.renewLocked(c, CloseReset)
	case p.expiredLocked(c):
		p.counts.lifetimeClosed++
		return p.renewLocked(c, CloseLifetime)
	}
	return c
}

// A waiter is an Acquire blocked until a client is free. Waiters form a
// FIFO queue under Pool.mu; whoever ends a wait (a Release or Discard that
// frees a client, the wait timer, Close) takes the waiter off the queue,
// does all of the wait's bookkeeping under mu, and then sends exactly one
// value on ready: the client, already checked out to the waiter, or nil
// with err set. So a served waiter never takes mu again, and ready
// (capacity 1) never blocks its sender. A waiter whose ctx ends first takes
// itself off the queue; if it finds itself already off, its value is on
// its way and it takes that instead. Waiters are reused through
// Pool.waiterPool.
type waiter struct {
	ready chan *conn // the one value that ends the wait

	// Guarded by Pool.mu, except that the waiter reads err without it
	// after receiving from ready (it is set before the send).
	start      time.Duration // when the wait began, as time.Since(Pool.epoch)
	waited     time.Duration // how long it waited, once off the queue; read like err
	prev, next *waiter       // neighbours in the queue
	queued     bool          // in the queue
	plain      bool          // the waiter's checkout will have the pool's key and no closure (see acquire)
	err        error         // why the wait failed, with a nil value on ready
}

func (p *Pool) getWaiter() *waiter {
	if w, ok := p.waiterPool.Get().(*waiter); ok {
		return w
	}
	return &waiter{ready: make(chan *conn, 1)}
}

// enqueueLocked puts w at the tail of the queue and, if the wait timer is
// not set, sets it for w's deadline. now is when the wait began, or -1 if
// the caller did not read the clock (see clockOutside).
func (p *Pool) enqueueLocked(w *waiter, now time.Duration) {
	if now < 0 {
		now = p.since()
	}
	w.start = now
	w.queued = true
	w.prev, w.next = p.waitTail, nil
	if p.waitTail != nil {
		p.waitTail.next = w
	} else {
		p.waitHead = w
	}
	p.waitTail = w
	p.waiting++
	if p.waiting == 1 {
		p.waitHint.Store(true)
	}
	p.counts.waits++
	if !p.timerArmed {
		p.armTimerLocked(p.cfg.AcquireTimeout)
	}
}

// unqueueLocked takes w off the queue and counts its wait, which ended at
// now (a time.Since(p.epoch)). It returns how long w waited.
func (p *Pool) unqueueLocked(w *waiter, now time.Duration) time.Duration {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		p.waitHead = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		p.waitTail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	p.waiting--
	if p.waiting == 0 {
		p.waitHint.Store(false)
	}
	waited := max(now-w.start, 0) // either reading may have been taken before mu (clockOutside)
	p.waitDuration += waited
	w.waited = waited
	return waited
}

// handOffLocked makes c, a client that is not checked out and not in
// p.idle, available: it checks c out to the longest waiter and returns
// that waiter, to which the caller must then send c (w.ready <- c),
// preferably after unlocking mu, since waking a goroutine takes a while.
// With no one waiting, or the adaptive limit reached, it puts c in p.idle
// and returns nil. now is the time, or -1 if the caller did not read the
// clock (see clockOutside).
func (p *Pool) handOffLocked(c *conn, now time.Duration) *waiter {
	w := p.waitHead
	if w == nil || p.lim != nil && p.active >= p.limitLocked() {
		p.idle.push(c)
		return nil
	}
	if now < 0 {
		now = p.since()
	}
	p.unqueueLocked(w, now)
	p.checkoutLocked(c, now)
	return w
}

// wait blocks until w is served or ctx ends. The caller has queued w.
func (p *Pool) wait(ctx context.Context, w *waiter) (*conn, error) {
	var c *conn
	if done := ctx.Done(); done == nil {
		c = <-w.ready // a plain receive is cheaper than a select
	} else {
		select {
		case c = <-w.ready:
		case <-done:
			p.mu.Lock()
			if w.queued {
				waited := p.unqueueLocked(w, time.Since(p.epoch))
				p.counts.canceled++
				p.emit(Event{Kind: EventCancel, Duration: waited})
				p.mu.Unlock()
				p.waiterPool.Put(w)
				return nil, acquireEnded(ctx.Err())
			}
			p.mu.Unlock()
			// Served just before ctx ended: what it got is on its
			// way. A client was checked out to this Acquire (and
			// counted), so it returns it rather than lose it, as if
			// the client had come first.
			c = <-w.ready
		}
	}
	err, waited := w.err, w.waited
	w.err = nil
	p.waiterPool.Put(w)
	if c == nil {
		return nil, err
	}
	return p.acquired(c, waited), nil
}

// armTimerLocked sets the wait timer to run expireWaiters after d.
func (p *Pool) armTimerLocked(d time.Duration) {
	p.timerArmed = true
	if p.waitTimer == nil {
		p.waitTimer = time.AfterFunc(d, p.expireWaiters)
		return
	}
	p.waitTimer.Reset(d)
}

// expireWaiters fails the waiters that have waited AcquireTimeout. Since
// every waiter has the same timeout and the queue is in arrival order, the
// deadlines are in queue order too: one timer, set for the oldest waiter's
// deadline, serves them all. When that waiter is served before its
// deadline, the timer is left alone; it then fires early and is set again
// for the new oldest waiter, so waiting costs no timer operations.
func (p *Pool) expireWaiters() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timerArmed = false
	if p.closed {
		return
	}
	now := time.Since(p.epoch)
	for w := p.waitHead; w != nil; w = p.waitHead {
		if left := w.start + p.cfg.AcquireTimeout - now; left > 0 {
			p.armTimerLocked(left)
			return
		}
		waited := p.unqueueLocked(w, now)
		p.counts.timeouts++
		p.timedOutLocked(waited)
		w.err = &AcquireTimeoutError{Waited: waited, Stats: p.statsLocked()}
		w.ready <- nil
	}
}

// checkoutLocked marks c as checked out at now (see stamp).
func (p *Pool) checkoutLocked(c *conn, now time.Duration) {
	c.active = true
	c.outAt = now
	p.active++
	p.counts.acquired++
	c.seq = p.counts.acquired
	if idle := p.total - p.active; idle < p.lowIdle {
		p.lowIdle = idle
	}
}

// renewLocked replaces c, a client retired for reason that is neither checked out
// nor in p.idle, with a fresh one in the same slot. (Not destroyLocked:
// with waiters queued meanwhile it would give them the freed slot, and the
// fresh client would be one too many.)
func (p *Pool) renewLocked(c *conn, reason CloseReason) *conn {
	p.counts.destroyed++
	delete(p.conns, c.client)
	p.total--
	p.destroyedLocked(reason)
	return p.newConnLocked()
}

// destroyLocked forgets c, which is not checked out and not in p.idle, for
// reason. If callers are waiting, it creates a replacement for them.
func (p *Pool) destroyLocked(c *conn, reason CloseReason) {
	delete(p.conns, c.client)
	p.total--
	p.counts.destroyed++
	p.destroyedLocked(reason)
	if idle := p.total - p.active; idle < p.lowIdle {
		p.lowIdle = idle
	}
	if p.closed {
		p.signalDrainedLocked()
		return
	}
	p.serveLocked()
}

// serveLocked serves waiters, oldest first, while the limit in force lets
// another client be checked out: with idle clients (which the adaptive
// limit may have held back), else with new ones while fewer than
// MaxConnections exist. Without AdaptiveLimit no client is idle while
// anyone waits, so this serves waiters only when a client was destroyed
// or the maximum raised. It wakes them with mu held: that is rare enough.
func (p *Pool) serveLocked() {
	for p.waitHead != nil && p.active < p.limitLocked() && p.total <= p.max {
		c := p.idle.pop()
		switch {
		case c != nil:
			c = p.freshLocked(c)
		case p.total == p.max:
			return
		default:
			c = p.newConnLocked()
		}
		w := p.handOffLocked(c, -1)
		if w == nil {
			return // the adaptive limit fell meanwhile: c went to idle
		}
		w.ready <- c
	}
}

func (p *Pool) signalDrainedLocked() {
	if p.total == 0 && !p.drainedShut {
		p.drainedShut = true
		close(p.drained)
	}
}

// Release gives back a client that Acquire returned. The client is reused,
// unless the pool is closed, the client is past its MaxLifetime, or its
// auth state was changed (UpdateAuthSession, SignIn*, or by assigning its
// Auth, Storage or Functions): then it is destroyed (the last case counts
// in Stats.Discarded). From Release on, the client refuses to send until
// it is checked out again: a caller that kept it gets ErrClientReleased
// from every request while the client is idle, and speaks for its next
// holder after that (keep clients inside closures). Release
// returns ErrUnknownClient, and changes nothing, for a client that is not
// checked out from this pool (nil, foreign, or released already).
func (p *Pool) Release(c *supabase.Client) error { return p.put(c, false) }

// Discard destroys a checked-out client that must not be reused, for
// example after a request on it failed at the transport. It counts as a
// release and a destroy; like Release, it ends the client's checkout.
// Discard returns ErrUnknownClient, and changes nothing, for a client that
// is not checked out from this pool.
func (p *Pool) Discard(c *supabase.Client) error { return p.put(c, true) }

func (p *Pool) put(client *supabase.Client, discard bool) error {
	// The clock first: reading it waits for every load before it to
	// complete, and the loads below are a chain through the client's memory.
	// Read before them, it waits for nothing (a hand-off measured 2-3%
	// faster than with the reading after checkedOut).
	now := p.clockOutside()
	// Find the client's conn and checkout outside the lock, as is the
	// clock. The common case is written out here, where it costs no call:
	// client.Auth is c's own poolAuth (no other leads to c), and the
	// checkout has the pool's key, so only Storage and Functions can have
	// changed. checkedOut handles every case.
	var c *conn
	var b *checkout
	var changed bool
	if a, ok := poolAuthOf(client); ok && a.p == p && a.c.client == client {
		c = a.c
		if b = c.bound.Load(); b == &c.plain {
			changed = client.Storage != c.storage || client.Functions != c.functions
		} else {
			c = nil
		}
	}
	if c == nil {
		if c, b, changed = p.checkedOut(client); c == nil {
			return ErrUnknownClient
		}
	}
	// A checkout with the pool's key may pass straight to a waiter that
	// speaks for the pool's key too, binding and all (see Acquire): then
	// only the bookkeeping changes hands, and the client's memory stays
	// where it is. Whether it does is known only under the lock; unless it
	// is likely (someone waits), end the checkout now, outside the lock.
	keep := b == &c.plain && !discard && !changed && p.waitHint.Load()
	if !keep && !unbind(c) {
		return ErrUnknownClient // another Release or Discard came first
	}
	p.mu.Lock()
	if !c.active { // only with keep: another Release or Discard came first
		p.mu.Unlock()
		return ErrUnknownClient
	}
	c.active = false
	p.active--
	p.counts.released++
	ci := p.checkinLocked(c, now)
	var w *waiter // to be handed handed
	handed := c
	switch {
	case discard || changed:
		p.counts.discarded++
		p.destroyLocked(c, CloseDiscarded)
	case p.closed:
		p.destroyLocked(c, ClosePool)
	case c.gen != p.gen:
		p.counts.resetClosed++
		if p.total > p.cfg.MinConnections {
			p.destroyLocked(c, CloseReset)
		} else {
			handed = p.renewLocked(c, CloseReset) // the pool keeps MinConnections
			w = p.handOffLocked(handed, now)
		}
	case p.total > p.max:
		p.counts.resizeClosed++
		p.destroyLocked(c, CloseResize)
	case p.expiredLocked(c):
		p.counts.lifetimeClosed++
		p.destroyLocked(c, CloseLifetime)
	default:
		w = p.handOffLocked(handed, now)
	}
	if keep && (w == nil || handed != c || !w.plain) {
		unbind(c) // it goes idle or away, or to a waiter that binds it: before anyone can take it
	}
	var retired []*http.Transport
	if p.retired != nil {
		retired = p.returnedLocked(c)
	}
	p.mu.Unlock()
	if w != nil {
		w.ready <- handed
	}
	for _, t := range retired {
		t.CloseIdleConnections()
	}
	p.returned(ci)
	return nil
}

// Stats returns a consistent snapshot of the pool's statistics.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.statsLocked()
}

func (p *Pool) statsLocked() Stats {
	return Stats{
		TotalConnections:     p.total,
		ActiveConnections:    p.active,
		IdleConnections:      p.total - p.active,
		WaitingForConnection: p.waiting,
		TotalAcquired:        p.counts.acquired,
		TotalReleased:        p.counts.released,
		TotalCreated:         p.counts.created,
		TotalDestroyed:       p.counts.destroyed,
		MaxConnections:       p.max,
		Limit:                p.limitLocked(),
		MinConnections:       p.cfg.MinConnections,
		WaitCount:            p.counts.waits,
		WaitDuration:         p.waitDuration,
		AcquireTimeouts:      p.counts.timeouts,
		CanceledAcquires:     p.counts.canceled,
		Discarded:            p.counts.discarded,
		IdleClosed:           p.counts.idleClosed,
		LifetimeClosed:       p.counts.lifetimeClosed,
		Leaks:                p.counts.leaks,
		RejectedAcquires:     p.counts.rejected,
		Resets:               p.counts.resets,
		ResetClosed:          p.counts.resetClosed,
		ResizeClosed:         p.counts.resizeClosed,
		UseAfterRelease:      p.useAfterRelease.Load(),
		Breaker:              p.breaker.state(),
		Closed:               p.closed,
		Endpoints:            p.router.stats(),
	}
}

// Close shuts the pool down. New Acquires and current waiters fail at once
// with ErrPoolClosed; idle clients are destroyed now, clients in use when
// they are released (Release returns nil). Close returns nil once every
// client is back and the reaper has exited, or, if ctx ends first, an
// error matching ctx's error that says how many clients are still out; it
// never waits past ctx. Close is idempotent: a later call waits again. The
// pool's own transport's idle connections are closed either way.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	closing := !p.closed
	if closing {
		p.closed = true
		close(p.done)
		if p.waitTimer != nil {
			p.waitTimer.Stop()
			p.timerArmed = false
		}
		// Fail the waiters now.
		now := time.Since(p.epoch)
		for w := p.waitHead; w != nil; w = p.waitHead {
			p.unqueueLocked(w, now)
			w.err = ErrPoolClosed
			w.ready <- nil
		}
		for c := p.idle.pop(); c != nil; c = p.idle.pop() {
			p.destroyLocked(c, ClosePool)
		}
		p.signalDrainedLocked()
	}
	p.mu.Unlock()
	if closing {
		p.emit(Event{Kind: EventClose})
	}
	defer func() {
		if p.own != nil {
			p.own.CloseIdleConnections()
		}
		p.mu.Lock()
		retired := p.retired
		p.mu.Unlock()
		for _, t := range retired {
			t.CloseIdleConnections()
		}
	}()
	// The reaper does no I/O and never blocks but on mu, which is free
	// now: it returns promptly, so Close waits for it whatever ctx says.
	<-p.reaperDone
	if p.leakDone != nil {
		<-p.leakDone // likewise
	}
	select {
	case <-p.drained:
		return nil // even if ctx has ended: there is nothing left to wait for
	default:
	}
	select {
	case <-p.drained:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		out := p.active
		p.mu.Unlock()
		return fmt.Errorf("supapool: close: %d client(s) still checked out; find the code that does not release them: %w", out, ctx.Err())
	}
}
