// Package supapool pools supabase-go clients for Go API services.
//
// A service that builds a supabase.Client per request, or shares one,
// bounds nothing and sees nothing: every supabase-go client sends its
// PostgREST requests through http.DefaultTransport, which keeps only two
// idle connections per host, so under concurrency most requests open a new
// TCP connection. A Pool keeps between Config.MinConnections and
// Config.MaxConnections clients, all bound to one transport that the pool
// owns and sizes, so that the pool's size is also the bound on TCP
// connections, and those connections are reused.
//
// # Using a pool
//
// Create one Pool per database at start-up (New, or Instance for a
// process-wide one), and Close it at shutdown. Run queries in closures:
//
//	pool, err := supapool.New(url, serviceKey, supapool.ProductionConfig())
//	...
//	defer pool.Close(context.Background())
//
//	err = pool.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
//		_, err := c.From("categories").Select("*", "", false).ExecuteToWithContext(ctx, &out)
//		return err
//	})
//
// While fn runs, the client is checked out to it: every request it sends,
// with or without a ctx, carries the user's token set with WithAuthToken
// (or the pool's key), is bounded by fn's ctx unless it has its own, and
// is recorded so that the pool sees what happened on the wire.
//
// Acquire and Release are there for code that cannot use a closure; every
// Acquire must be followed by exactly one Release or Discard.
//
// # Services, retries and auth
//
// PooledService is a base type to embed in your own services. Its
// WithRetry retries transient failures with exponential backoff and
// jitter, honours Retry-After, and never runs a write twice unless the
// failure proves the statement never ran or the call is declared
// Idempotent. Failed requests come back as *Error with the HTTP status and
// PostgREST's code. WithAuthToken makes the requests of one ctx run as a
// user (row-level security) without changing the pooled client.
//
// With Config.Breaker (on in ProductionConfig and HighLoadConfig), a
// circuit breaker stops sending requests to an upstream that keeps
// failing: they fail at once with ErrCircuitOpen, unsent, until a probe
// gets a good answer.
//
// # Read replicas
//
// With Config.ReadReplicas, reads (GET and HEAD to the REST API) go to a
// healthy replica and everything else to the primary; a checkout's reads
// after its first write, and requests under OnPrimary, go to the primary.
// A read a replica cannot serve is sent on to another endpoint within the
// same request, and the replica is skipped for Config.ReplicaCoolDown.
//
// # Finding the server's capacity
//
// With Config.AdaptiveLimit the pool lets only as many clients be checked
// out at once as the server takes before requests queue inside it
// (Stats.Limit, between max(MinConnections, 1) and MaxConnections), found
// from the latency and the overload answers of the requests themselves;
// the others wait in the pool's queue. limit.go describes the algorithm.
//
// # Observability
//
// Stats returns a consistent snapshot in the spirit of database/sql's
// DBStats; it is also a slog value. HealthCheck and HealthHandler probe
// PostgREST through the pool; Middleware adds X-Pool-* headers to
// responses. Observe attaches a function to a live pool's events (acquires
// with their wait, releases with the time held, creations, closes with the
// reason, timeouts, leaks, requests): the nested modules
// github.com/supapool/supapool/prometheus and .../otel export them as
// metrics. Config.LeakThreshold reports clients held too long, with the
// stack that acquired them; Config.Logger gets the pool's events at Debug.
//
// # Lifecycle
//
// New starts the pool's reaper goroutine, which shrinks the pool back to
// MinConnections once clients have been surplus for IdleTimeout and
// retires clients past MaxLifetime, and, with LeakThreshold, the leak
// checker; Close stops them and waits for the clients in use to come
// back. While the pool serves, MaxWaiting sheds load, SetMaxConnections
// resizes it and Reset retires every client and connection. No key or
// token ever appears in the pool's errors, logs, Stats or health reports.
//
// # Where things are
//
// Read pool.go first; each other file owns one concern:
//
//	pool.go         Pool, New, Acquire, Release, Discard, Close, Stats; the waiter queue
//	idle.go         the idle clients: a ring, newest taken first, oldest reaped first
//	pool_config.go  Config, its presets, Validate and the defaults
//	pool_stats.go   Stats, the snapshot and its identities
//	reaper.go       the background goroutine: idle shrinking and MaxLifetime
//	resize.go       Reset and SetMaxConnections: changing the pool while it serves
//	observer.go     Pool.Observe, Event, the pool's hooks into it and its Debug lines
//	leak.go         LeakThreshold: the acquirer's stack and the leak checker goroutine
//	limit.go        Config.AdaptiveLimit: the limiter that moves Stats.Limit, and its samples
//	instance.go     Instance, the process-wide registry of pools
//	checkout.go     each client's own RoundTripper: the principal, wire record and ctx of its checkout
//	service.go      Pool.WithClient (one attempt) and PooledService
//	retry.go        Pool.WithRetry, its options and backoff
//	rpc.go          RPC, a function call that returns its own error
//	errors.go       Error, the sentinels, the error types, IsTransient, NeverRan
//	wire.go         classifying a round trip, and the per-attempt record of them
//	transport.go    the pool's own sized http.Transport
//	observe_transport.go  Config.WrapTransport and the layer that reports requests
//	breaker.go      the circuit breaker in front of the upstream (Config.Breaker)
//	router.go       read replicas: routing, failover, ejection, OnPrimary, per-endpoint stats
//	auth.go         WithAuthToken, request-scoped user tokens
//	health.go       HealthCheck and its result types
//	http.go         HealthHandler and the X-Pool-* middleware
//	internal/       clientpatch (binding supabase-go to a transport) and the test harnesses
//	prometheus/, otel/  the metrics modules (their own go.mod)
//
// Every request a pooled client sends passes the same layers, each in its
// own file: the client's checkout (checkout.go), the observer
// (observe_transport.go), the endpoint's circuit breaker (breaker.go) and
// the sized transport (transport.go), wrapped by Config.WrapTransport.
package supapool
