package supapool

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	supabase "github.com/supabase-community/supabase-go"
)

// The defaults used by DefaultConfig and for zero fields of Config; each
// field's doc states its own.
const (
	defaultMaxConnections        = 10
	defaultMinConnections        = 2
	defaultIdleTimeout           = 30 * time.Second
	defaultAcquireTimeout        = 5 * time.Second
	defaultMaxRetries            = 3
	defaultRetryDelay            = 100 * time.Millisecond
	defaultMaxRetryDelay         = 5 * time.Second
	defaultResponseHeaderTimeout = 30 * time.Second
	defaultHealthCheckTimeout    = 2 * time.Second
	defaultBreakerFailures       = 5
	defaultBreakerOpenTimeout    = 5 * time.Second
	defaultBreakerHalfOpen       = 1
)

// Config configures a Pool. Start from DefaultConfig or one of the presets
// (DevelopmentConfig, ProductionConfig, HighLoadConfig) and change what you
// need; every field documents what its zero value means, so a Config{} is
// valid too. Negative values are rejected by Validate.
type Config struct {
	// MaxConnections is the most clients, and so the most concurrent
	// requests and TCP connections, the pool allows at once.
	// Zero means 10.
	MaxConnections int

	// MinConnections is how many clients the pool creates in New and keeps
	// even when they are idle. Zero means none: the pool starts empty and
	// may shrink to nothing (DefaultConfig uses 2). Must not exceed
	// MaxConnections.
	MinConnections int

	// IdleTimeout is how long a client must have been surplus (idle above
	// MinConnections for the whole period) before the reaper closes it. It
	// is also the idle timeout of the pool's TCP connections.
	// Zero means 30s.
	IdleTimeout time.Duration

	// AcquireTimeout bounds how long Acquire waits for a client when all
	// MaxConnections are in use; Acquire then fails with ErrAcquireTimeout.
	// The ctx passed to Acquire may end the wait sooner.
	// Zero means 5s.
	AcquireTimeout time.Duration

	// AdaptiveLimit, if set, makes the pool find how many requests the
	// server takes at once before they queue there, and let only that many
	// clients be checked out (Stats.Limit): the limit moves between
	// max(MinConnections, 1) and MaxConnections, growing while latency
	// stays at its baseline, shrinking when it rises, and halving on
	// overload answers (429, 504 PGRST003, 503 with a class 53 code).
	// Acquire waits, in the same queue and with the same AcquireTimeout,
	// when the limit is reached, even if fewer than MaxConnections clients
	// exist. See limit.go for the algorithm. False means the limit is
	// MaxConnections.
	AdaptiveLimit bool

	// MaxWaiting, if positive, bounds how many Acquire calls may wait for a
	// client at once: when that many wait, the next Acquire fails at once
	// with ErrPoolExhausted instead of waiting up to AcquireTimeout, so an
	// API can shed load in microseconds (answer 503 with Retry-After).
	// Zero means no bound.
	MaxWaiting int

	// MaxLifetime, if positive, retires a client once it is older than
	// MaxLifetime plus a random jitter in [0, MaxLifetimeJitter). An
	// expired client is never handed out: Acquire replaces it with a fresh
	// one when it takes it. An idle expired client is also closed at the
	// reaper's next pass (the reaper wakes at least every MaxLifetime/4),
	// and a client in use is closed when it is released. Zero means clients
	// live until they are reaped as idle.
	MaxLifetime time.Duration

	// MaxLifetimeJitter spreads client expiry so that clients created
	// together are not all replaced together. Zero means no jitter.
	MaxLifetimeJitter time.Duration

	// MaxRetries is how many times WithRetry retries after the first
	// attempt. Zero means no retries (DefaultConfig uses 3).
	MaxRetries int

	// RetryDelay is the base of WithRetry's exponential backoff.
	// Zero means 100ms.
	RetryDelay time.Duration

	// MaxRetryDelay caps one backoff wait of WithRetry, including a
	// server's Retry-After. Zero means 5s.
	MaxRetryDelay time.Duration

	// ResponseHeaderTimeout bounds the wait for a response's headers on the
	// pool's own transport. Zero means 30s.
	// It is not used when Transport is set.
	ResponseHeaderTimeout time.Duration

	// HealthCheckTimeout bounds HealthCheck's test request when the ctx
	// passed to it has no earlier deadline.
	// Zero means 2s.
	HealthCheckTimeout time.Duration

	// HealthCheckTable, if set, makes HealthCheck read one row of this
	// table (GET /rest/v1/TABLE?select=*&limit=1) instead of PostgREST's
	// root (GET /rest/v1/). Zero means the root.
	HealthCheckTable string

	// ClientOptions is passed to supabase.NewClient for every client
	// (schema, extra headers). Nil means supabase-go's defaults.
	ClientOptions *supabase.ClientOptions

	// Transport, if set, carries every request of the pool's clients
	// instead of the pool's own *http.Transport. The pool does not size or
	// close it. Nil means the pool creates and owns a transport whose
	// connection limits equal MaxConnections.
	Transport http.RoundTripper

	// WrapTransport, if set, is called once by New with the transport that
	// carries the requests (the pool's own, or Transport) and returns the
	// RoundTripper to use in its place, e.g. otelhttp.NewTransport for
	// client tracing. What it returns must send through the transport it
	// was given, so that MaxConnections still bounds the connections.
	// Nil means no wrapping.
	WrapTransport func(http.RoundTripper) http.RoundTripper

	// LeakThreshold, if positive, turns on leak detection: a client checked
	// out for longer than LeakThreshold is logged once, at Warn, with how
	// long it has been out and the stack of the goroutine that acquired it,
	// and counted in Stats.Leaks; when it comes back, an Info line says so.
	// A leak is found within LeakThreshold/2 after the threshold passes.
	// Acquire then records its caller's stack (about a microsecond). Set it
	// well above your longest legitimate use of a client. Zero means off.
	LeakThreshold time.Duration

	// Breaker configures the circuit breaker in front of the upstream
	// (breaker.go). The zero value means no breaker (DefaultConfig and
	// DevelopmentConfig keep it off; ProductionConfig and HighLoadConfig
	// turn it on).
	Breaker BreakerConfig

	// TLSClientConfig, if set, is the TLS configuration of the pool's own
	// transport (a private CA in RootCAs, client certificates), so that a
	// TLS setup keeps the sized transport. The pool uses a copy. Over TLS
	// the transport negotiates HTTP/2 where the server offers it. Nil means
	// Go's defaults. It is not used when Transport is set.
	TLSClientConfig *tls.Config

	// ReadReplicas are the API URLs of read replicas (or of a load
	// balancer that serves reads), in the same form as New's url: the
	// clients' paths (/rest/v1/...) are kept, and only the scheme, host and
	// path prefix change. GET and HEAD requests for the REST API go to a
	// healthy replica, the one with the fewest requests in flight; every
	// other request goes to New's url, the primary. Once a checkout has
	// sent a write, its later reads go to the primary (read-your-writes);
	// OnPrimary sends every request of a ctx there. A read that a replica
	// could not serve is sent at once to another endpoint. See router.go
	// and the README. Nil means every request goes to the primary.
	ReadReplicas []string

	// ReplicaCoolDown is how long a replica that failed (a transport
	// error, or a 502, 503 or 504 answer) is skipped before one read tries
	// it again. Only used with ReadReplicas. Zero means 5s.
	ReplicaCoolDown time.Duration

	// Logger receives the pool's warnings (a client that could not be bound
	// to the pool's transport, an Instance call with a different Config, a
	// leak, the circuit breaker's state changes, which it must not answer
	// by sending requests through the pool), and at Debug level its events:
	// clients created and closed (with the reason) and acquire timeouts.
	// Debug lines are written synchronously, some with the pool's lock
	// held; enable them to diagnose, not in steady production. It never
	// receives keys or tokens. Nil means slog.Default().
	Logger *slog.Logger
}

// BreakerConfig configures the pool's circuit breaker. While the upstream
// is unwell, the breaker stops sending it requests: after
// ConsecutiveFailures transient failures in a row (see IsTransient; a 4xx,
// any other answer and a request whose own ctx ended do not count) it
// opens, and every request fails at once, before it leaves, with an error
// matching ErrCircuitOpen. After OpenTimeout it lets HalfOpenRequests
// probes through (half-open): if they all succeed it closes, and the
// first that fails opens it again.
type BreakerConfig struct {
	// Enabled turns the breaker on. Zero (false) means no breaker: every
	// request is sent, and Stats.Breaker is "".
	Enabled bool

	// ConsecutiveFailures is how many transient failures in a row open
	// the breaker. Zero means 5.
	ConsecutiveFailures uint32

	// OpenTimeout is how long the breaker stays open, refusing every
	// request, before it lets probes through. Zero means 5s.
	OpenTimeout time.Duration

	// HalfOpenRequests is how many probes the breaker lets through once
	// OpenTimeout has passed, and how many of them must succeed to close
	// it; other requests meanwhile fail with ErrCircuitOpen. Zero means 1.
	HalfOpenRequests uint32
}

// DefaultConfig returns the defaults: MaxConnections 10, MinConnections 2,
// IdleTimeout 30s, AcquireTimeout 5s, MaxRetries 3, RetryDelay 100ms.
func DefaultConfig() Config {
	return Config{
		MaxConnections: defaultMaxConnections,
		MinConnections: defaultMinConnections,
		IdleTimeout:    defaultIdleTimeout,
		AcquireTimeout: defaultAcquireTimeout,
		MaxRetries:     defaultMaxRetries,
		RetryDelay:     defaultRetryDelay,
	}
}

// DevelopmentConfig returns DefaultConfig with MaxConnections 5,
// MinConnections 1 and IdleTimeout 15s.
func DevelopmentConfig() Config {
	c := DefaultConfig()
	c.MaxConnections, c.MinConnections, c.IdleTimeout = 5, 1, 15*time.Second
	return c
}

// ProductionConfig returns DefaultConfig with MaxConnections 20,
// MinConnections 5, IdleTimeout 60s, AcquireTimeout 10s and the circuit
// breaker on with its defaults (5 failures, 5s open, 1 probe).
func ProductionConfig() Config {
	c := DefaultConfig()
	c.MaxConnections, c.MinConnections = 20, 5
	c.IdleTimeout, c.AcquireTimeout = 60*time.Second, 10*time.Second
	c.Breaker = defaultBreaker()
	return c
}

// HighLoadConfig returns DefaultConfig with MaxConnections 50,
// MinConnections 10, IdleTimeout 120s, AcquireTimeout 15s and the circuit
// breaker on with its defaults (5 failures, 5s open, 1 probe).
func HighLoadConfig() Config {
	c := DefaultConfig()
	c.MaxConnections, c.MinConnections = 50, 10
	c.IdleTimeout, c.AcquireTimeout = 120*time.Second, 15*time.Second
	c.Breaker = defaultBreaker()
	return c
}

// defaultBreaker is the breaker of the presets that turn it on.
func defaultBreaker() BreakerConfig {
	return BreakerConfig{
		Enabled:             true,
		ConsecutiveFailures: defaultBreakerFailures,
		OpenTimeout:         defaultBreakerOpenTimeout,
		HalfOpenRequests:    defaultBreakerHalfOpen,
	}
}

// Validate reports every problem of c at once. Each problem names the
// field and matches errors.Is(err, ErrInvalidConfig).
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...)))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxConnections", int64(c.MaxConnections)},
		{"MinConnections", int64(c.MinConnections)},
		{"MaxWaiting", int64(c.MaxWaiting)},
		{"MaxRetries", int64(c.MaxRetries)},
		{"IdleTimeout", int64(c.IdleTimeout)},
		{"AcquireTimeout", int64(c.AcquireTimeout)},
		{"MaxLifetime", int64(c.MaxLifetime)},
		{"MaxLifetimeJitter", int64(c.MaxLifetimeJitter)},
		{"RetryDelay", int64(c.RetryDelay)},
		{"MaxRetryDelay", int64(c.MaxRetryDelay)},
		{"ResponseHeaderTimeout", int64(c.ResponseHeaderTimeout)},
		{"HealthCheckTimeout", int64(c.HealthCheckTimeout)},
		{"LeakThreshold", int64(c.LeakThreshold)},
		{"Breaker.OpenTimeout", int64(c.Breaker.OpenTimeout)},
		{"ReplicaCoolDown", int64(c.ReplicaCoolDown)},
	} {
		if f.v < 0 {
			bad(f.name, "is negative (%d); use a positive value, or zero for the default", f.v)
		}
	}
	n := c.withDefaults()
	if c.MinConnections > n.MaxConnections {
		bad("MinConnections", "(%d) exceeds MaxConnections (%d); lower MinConnections or raise MaxConnections", c.MinConnections, n.MaxConnections)
	}
	if c.MaxLifetimeJitter > 0 && c.MaxLifetime == 0 {
		bad("MaxLifetimeJitter", "is set but MaxLifetime is zero; set MaxLifetime too, or drop the jitter")
	}
	if len(c.ReadReplicas) > maxReadReplicas {
		bad("ReadReplicas", "has %d URLs; at most %d are supported", len(c.ReadReplicas), maxReadReplicas)
	}
	for i, u := range c.ReadReplicas {
		if err := checkAPIURL(u); err != nil {
			bad(fmt.Sprintf("ReadReplicas[%d]", i), "%v; pass a replica's API URL, e.g. https://<project>-rr-<region>.supabase.co", err)
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns c with every zero field that has a default filled in.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = defaultMaxConnections
	}
	def(&c.IdleTimeout, defaultIdleTimeout)
	def(&c.AcquireTimeout, defaultAcquireTimeout)
	def(&c.RetryDelay, defaultRetryDelay)
	def(&c.MaxRetryDelay, defaultMaxRetryDelay)
	def(&c.ResponseHeaderTimeout, defaultResponseHeaderTimeout)
	def(&c.HealthCheckTimeout, defaultHealthCheckTimeout)
	def(&c.Breaker.OpenTimeout, defaultBreakerOpenTimeout)
	if c.Breaker.ConsecutiveFailures == 0 {
		c.Breaker.ConsecutiveFailures = defaultBreakerFailures
	}
	if c.Breaker.HalfOpenRequests == 0 {
		c.Breaker.HalfOpenRequests = defaultBreakerHalfOpen
	}
	def(&c.ReplicaCoolDown, defaultReplicaCoolDown)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
