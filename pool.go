package supapool

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

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
type Pool struct {
	url   string
	creds *credentials // behind a pointer so that printing a Pool shows no key
	cfg   Config       // with defaults applied; read-only after New
	log   *slog.Logger
	rt    http.RoundTripper // what clients send through
	own   *http.Transport   // the pool's own transport; nil with Config.Transport

	// idle holds the idle clients. Its capacity is MaxConnections, so a
	// send never blocks. Sends and non-blocking receives happen with mu
	// held; waiters receive from it without mu, and a send hands a client
	// to the longest waiter first (channels queue receivers in order).
	idle       chan *conn
	done       chan struct{} // closed by Close: waiters and the reaper stop
	reaperDone chan struct{} // closed when the reaper has returned
	drained    chan struct{} // closed when the pool is closed and no client is left
	timers     sync.Pool     // *time.Timer for waits, so waiting allocates nothing

	mu sync.Mutex
	// Guarded by mu.
	conns        map[*supabase.Client]*conn // every client that exists
	total        int                        // len(conns) plus clients being created
	active       int                        // clients checked out
	waiting      int                        // Acquire calls blocked in wait
	lowIdle      int                        // fewest idle clients since the reaper's window began
	closed       bool
	drainedShut  bool // drained has been closed
	counts       counters
	waitDuration time.Duration
}

type credentials struct{ key string }

// counters are Stats' cumulative numbers. Guarded by Pool.mu.
type counters struct {
	acquired, released, created, destroyed int64
	waits, timeouts, canceled, discarded   int64
	idleClosed, lifetimeClosed             int64
}

// conn is one pooled client and its bookkeeping. Guarded by Pool.mu, except
// client, auth and storage, which do not change.
type conn struct {
	client    *supabase.Client
	auth      gotrue.Client   // client.Auth as created: a change means auth state was changed
	storage   *storage.Client // client.Storage as created: likewise
	expiresAt time.Time       // zero: no MaxLifetime
	active    bool            // checked out
	expired   bool            // past expiresAt: destroyed instead of reused
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
		url:        url,
		creds:      &credentials{key: key},
		cfg:        cfg,
		log:        cfg.Logger,
		idle:       make(chan *conn, cfg.MaxConnections),
		done:       make(chan struct{}),
		reaperDone: make(chan struct{}),
		drained:    make(chan struct{}),
		conns:      make(map[*supabase.Client]*conn, cfg.MaxConnections),
	}
	base := cfg.Transport
	if base == nil {
		p.own = newOwnTransport(cfg)
		base = p.own
	}
	p.rt = &poolTransport{base: base}
	if err := clientpatch.Check(); err != nil {
		p.log.Warn("supapool: cannot bind clients to the pool's transport; they will use http.DefaultTransport and MaxConnections will not bound TCP connections",
			"error", err.Error())
	}
	p.mu.Lock()
	for p.total < cfg.MinConnections {
		p.idle <- p.newConnLocked()
	}
	p.lowIdle = p.total
	p.mu.Unlock()
	go p.reaper()
	return p, nil
}

func validateEndpoint(rawURL, key string) error {
	if rawURL == "" {
		return fmt.Errorf("%w: url is empty; pass your project URL, e.g. https://<project>.supabase.co", ErrInvalidConfig)
	}
	if key == "" {
		return fmt.Errorf("%w: key is empty; pass your project's API key (service-role or anon)", ErrInvalidConfig)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: url does not parse; pass an absolute http(s) URL", ErrInvalidConfig)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: url %q is not an absolute http(s) URL; pass e.g. https://<project>.supabase.co", ErrInvalidConfig, u.Redacted())
	}
	return nil
}

// String describes the pool without its key.
func (p *Pool) String() string {
	u := p.url
	if pu, err := url.Parse(p.url); err == nil {
		u = pu.Redacted()
	}
	return fmt.Sprintf("supapool.Pool(%s, max %d)", u, p.cfg.MaxConnections)
}

// newConnLocked creates a client and counts it as idle. It allocates but
// does no I/O. The caller holds mu and puts the conn where it belongs.
func (p *Pool) newConnLocked() *conn {
	p.total++
	p.counts.created++
	c := p.newConn()
	p.conns[c.client] = c
	return c
}

// newConn builds a client bound to the pool's transport. It needs no lock.
func (p *Pool) newConn() *conn {
	// NewClient fails only for an empty URL or key, which New rejects.
	client, err := supabase.NewClient(p.url, p.creds.key, p.cfg.ClientOptions)
	if err != nil {
		panic("supapool: supabase.NewClient failed after validation: " + err.Error())
	}
	// On a layout error the client keeps http.DefaultTransport; New logged it.
	_ = clientpatch.SetTransport(client, p.rt)
	client.Auth = client.Auth.WithClient(http.Client{Transport: p.rt})
	c := &conn{client: client, auth: client.Auth, storage: client.Storage}
	if p.cfg.MaxLifetime > 0 {
		life := p.cfg.MaxLifetime
		if j := p.cfg.MaxLifetimeJitter; j > 0 {
			life += rand.N(j)
		}
		c.expiresAt = time.Now().Add(life)
	}
	return c
}

// Acquire returns an idle client, or creates one while fewer than
// MaxConnections exist, or else waits, in arrival order, until one is
// released. The wait ends with ctx's error (errors.Is(err, ctx.Err())) when
// ctx ends, with an error matching ErrAcquireTimeout after
// Config.AcquireTimeout, and with ErrPoolClosed when the pool is closed. A
// wait that ends without a client leaves nothing behind.
//
// The caller must give the client back with Release, or Discard it, and
// must not use it afterwards.
func (p *Pool) Acquire(ctx context.Context) (*supabase.Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	// Serve from the idle clients unless others are already waiting: they
	// came first.
	if p.waiting == 0 {
		select {
		case c := <-p.idle:
			if c.expired {
				c = p.renewLocked(c)
			}
			p.checkoutLocked(c)
			p.mu.Unlock()
			return c.client, nil
		default:
		}
	}
	if p.total < p.cfg.MaxConnections {
		// Reserve the slot, build the client outside the lock.
		p.total++
		p.counts.created++
		p.active++
		p.counts.acquired++
		p.mu.Unlock()
		c := p.newConn()
		c.active = true
		p.mu.Lock()
		p.conns[c.client] = c
		p.mu.Unlock()
		return c.client, nil
	}
	p.waiting++
	p.counts.waits++
	p.mu.Unlock()
	return p.wait(ctx)
}

// wait blocks until a client is handed over, ctx ends, AcquireTimeout
// passes or the pool closes. The caller has counted it in p.waiting.
func (p *Pool) wait(ctx context.Context) (*supabase.Client, error) {
	start := time.Now()
	t := p.startTimer(p.cfg.AcquireTimeout)
	var c *conn
	var err error
	timedOut := false
	select {
	case c = <-p.idle:
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		timedOut = true
	case <-p.done:
		err = ErrPoolClosed
	}
	p.stopTimer(t)
	waited := time.Since(start)

	p.mu.Lock()
	p.waiting--
	p.waitDuration += waited
	switch {
	case c != nil && p.closed:
		p.destroyLocked(c)
		err = ErrPoolClosed
	case c != nil:
		if c.expired {
			c = p.renewLocked(c)
		}
		p.checkoutLocked(c)
		p.mu.Unlock()
		return c.client, nil
	case timedOut:
		p.counts.timeouts++
		err = &AcquireTimeoutError{Waited: waited, Stats: p.statsLocked()}
	case err != ErrPoolClosed:
		p.counts.canceled++
	}
	p.mu.Unlock()
	return nil, err
}

func (p *Pool) startTimer(d time.Duration) *time.Timer {
	if t, ok := p.timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func (p *Pool) stopTimer(t *time.Timer) {
	if !t.Stop() {
		// Before Go 1.23 (or with asynctimerchan=1) a fired timer keeps its
		// value in the channel; drain it so that the next Reset starts clean.
		select {
		case <-t.C:
		default:
		}
	}
	p.timers.Put(t)
}

// checkoutLocked marks c as checked out.
func (p *Pool) checkoutLocked(c *conn) {
	c.active = true
	p.active++
	p.counts.acquired++
	if idle := p.total - p.active; idle < p.lowIdle {
		p.lowIdle = idle
	}
}

// renewLocked replaces an expired idle client with a fresh one.
func (p *Pool) renewLocked(c *conn) *conn {
	p.counts.lifetimeClosed++
	p.destroyLocked(c)
	return p.newConnLocked()
}

// destroyLocked forgets c, which is not checked out and not in p.idle. If
// callers are waiting, it creates a replacement for them.
func (p *Pool) destroyLocked(c *conn) {
	delete(p.conns, c.client)
	p.total--
	p.counts.destroyed++
	if idle := p.total - p.active; idle < p.lowIdle {
		p.lowIdle = idle
	}
	if p.closed {
		p.signalDrainedLocked()
		return
	}
	if p.waiting > 0 && p.total < p.cfg.MaxConnections {
		p.idle <- p.newConnLocked()
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
// auth state was changed (UpdateAuthSession, SignIn*): then it is
// destroyed. Release returns ErrUnknownClient, and changes nothing, for a
// client that is not checked out from this pool (nil, foreign, or released
// already).
func (p *Pool) Release(c *supabase.Client) error { return p.put(c, false) }

// Discard destroys a checked-out client that must not be reused, for
// example after a request on it failed at the transport. It counts as a
// release and a destroy. Discard returns ErrUnknownClient, and changes
// nothing, for a client that is not checked out from this pool.
func (p *Pool) Discard(c *supabase.Client) error { return p.put(c, true) }

func (p *Pool) put(client *supabase.Client, discard bool) error {
	if client == nil {
		return ErrUnknownClient
	}
	p.mu.Lock()
	c := p.conns[client]
	if c == nil || !c.active {
		p.mu.Unlock()
		return ErrUnknownClient
	}
	c.active = false
	p.active--
	p.counts.released++
	switch {
	case p.closed:
		p.destroyLocked(c)
	case discard || client.Auth != c.auth || client.Storage != c.storage:
		p.counts.discarded++
		p.destroyLocked(c)
	case c.expired:
		p.counts.lifetimeClosed++
		p.destroyLocked(c)
	default:
		p.idle <- c
	}
	p.mu.Unlock()
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
		MaxConnections:       p.cfg.MaxConnections,
		MinConnections:       p.cfg.MinConnections,
		WaitCount:            p.counts.waits,
		WaitDuration:         p.waitDuration,
		AcquireTimeouts:      p.counts.timeouts,
		CanceledAcquires:     p.counts.canceled,
		Discarded:            p.counts.discarded,
		IdleClosed:           p.counts.idleClosed,
		LifetimeClosed:       p.counts.lifetimeClosed,
		Closed:               p.closed,
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
	if !p.closed {
		p.closed = true
		close(p.done)
	drain:
		for {
			select {
			case c := <-p.idle:
				p.destroyLocked(c)
			default:
				break drain
			}
		}
		p.signalDrainedLocked()
	}
	p.mu.Unlock()
	unregister(p)
	defer func() {
		if p.own != nil {
			p.own.CloseIdleConnections()
		}
	}()
	select {
	case <-p.reaperDone:
	case <-ctx.Done():
		return fmt.Errorf("supapool: close: reaper did not stop: %w", ctx.Err())
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
