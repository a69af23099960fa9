package supapool_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

// newReplicaPool makes a pool on primary with the given read replicas, as
// newService does, closed at the test's end.
func newReplicaPool(t *testing.T, primary string, cfg supapool.Config, replicas ...string) *supapool.Pool {
	t.Helper()
	cfg.ReadReplicas = replicas
	return newService(t, primary, cfg).Pool()
}

// readFrom reads through c and returns which endpoint served the read.
func readFrom(ctx context.Context, c *supabase.Client) (string, error) {
	var out []struct{ From string }
	_, err := c.From("categories").Select("*", "", false).ExecuteToWithContext(ctx, &out)
	if err != nil {
		return "", err
	}
	if len(out) != 1 {
		return "", errors.New("no row")
	}
	return out[0].From, nil
}

// readOn runs one read in its own closure and returns who served it.
func readOn(t *testing.T, p *supapool.Pool, ctx context.Context) string {
	t.Helper()
	var from string
	require.NoError(t, p.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		var err error
		from, err = readFrom(ctx, c)
		return err
	}))
	return from
}

func TestReplicaRoutesReadsAndWrites(t *testing.T) {
	primary := newEndpointServer(t, "primary", false)
	replica := newEndpointServer(t, "replica", false)
	// The replica's URL has a path prefix: the pool keeps the path after it.
	p := newReplicaPool(t, primary.URL, supapool.Config{}, replica.URL+"/eu/")
	ctx := supapool.WithAuthToken(context.Background(), "jwt-alice")

	require.NoError(t, p.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		from, err := readFrom(ctx, c)
		assert.Equal(t, "replica", from)
		if err != nil {
			return err
		}
		_, _, err = c.From("categories").Select("*", "exact", true).ExecuteWithContext(ctx) // HEAD
		return err
	}))
	require.NoError(t, p.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("categories").Insert(map[string]any{"name": "Rent"}, false, "", "", "").ExecuteWithContext(ctx)
		return err
	}))
	require.NoError(t, p.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("categories").Update(map[string]any{"name": "Rent"}, "", "").Eq("id", "1").ExecuteWithContext(ctx)
		return err
	}))
	require.NoError(t, p.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("categories").Delete("", "").Eq("id", "1").ExecuteWithContext(ctx)
		return err
	}))
	require.NoError(t, p.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		return supapool.RPC(ctx, c, "whoami", nil, nil) // a POST: the primary, even for a read-only function
	}))
	require.NoError(t, p.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		_, _ = c.Auth.GetUser() // auth is not served by replicas; its answer here is not a user
		return nil
	}))

	rp, rauth := replica.served()
	assert.Equal(t, []string{"GET /eu/rest/v1/categories", "HEAD /eu/rest/v1/categories"}, rp)
	assert.Equal(t, []string{"Bearer jwt-alice", "Bearer jwt-alice"}, rauth, "the checkout's principal on the replica too")
	pp, pauth := primary.served()
	assert.Equal(t, []string{"POST /rest/v1/categories", "PATCH /rest/v1/categories", "DELETE /rest/v1/categories",
		"POST /rest/v1/rpc/whoami", "GET /auth/v1/user"}, pp)
	for _, a := range pauth {
		assert.Equal(t, "Bearer jwt-alice", a)
	}

	st := p.Stats()
	checkIdentities(t, st)
	require.Len(t, st.Endpoints, 2)
	assert.Equal(t, supapool.EndpointStats{URL: primary.URL, Role: "primary", Requests: 5, Healthy: true}, st.Endpoints[0])
	assert.Equal(t, supapool.EndpointStats{URL: replica.URL + "/eu/", Role: "replica", Requests: 2, Healthy: true}, st.Endpoints[1])
}

func TestReplicaNoneConfigured(t *testing.T) {
	primary := newEndpointServer(t, "primary", false)
	p := newReplicaPool(t, primary.URL, supapool.Config{})
	assert.Equal(t, "primary", readOn(t, p, supapool.OnPrimary(context.Background())))
	assert.Equal(t, "primary", readOn(t, p, context.Background()))
	st := p.Stats()
	assert.Nil(t, st.Endpoints)
	b, err := json.Marshal(st)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "endpoints")
	assert.Nil(t, p.HealthCheck(context.Background()).Details.Endpoints)
}

func TestReplicaConfigValidation(t *testing.T) {
	for _, bad := range []string{"", "ftp://x", "/relative", "http://"} {
		_, err := supapool.New(unusedURL, testKey, supapool.Config{ReadReplicas: []string{unusedURL, bad}})
		require.ErrorIs(t, err, supapool.ErrInvalidConfig, bad)
		assert.Contains(t, err.Error(), "ReadReplicas[1]", bad)
	}
	_, err := supapool.New(unusedURL, testKey, supapool.Config{ReplicaCoolDown: -1})
	require.ErrorIs(t, err, supapool.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "ReplicaCoolDown")
}

// TestReplicaBalance sends 1,000 reads one after another to two replicas:
// with nothing in flight every pick is a tie, broken at random.
func TestReplicaBalance(t *testing.T) {
	primary := newEndpointServer(t, "primary", false)
	a, b := newEndpointServer(t, "a", false), newEndpointServer(t, "b", false)
	p := newReplicaPool(t, primary.URL, supapool.Config{}, a.URL, b.URL)
	const n = 1000
	for range n {
		readOn(t, p, context.Background())
	}
	t.Logf("replica a %d, replica b %d, primary %d of %d reads", a.reads.Load(), b.reads.Load(), primary.total(), n)
	assert.Zero(t, primary.total())
	assert.Equal(t, int64(n), a.reads.Load()+b.reads.Load())
	for _, r := range []*endpointServer{a, b} {
		assert.GreaterOrEqual(t, r.reads.Load(), int64(n*35/100), r.name)
		assert.LessOrEqual(t, r.reads.Load(), int64(n*65/100), r.name)
	}
	st := p.Stats()
	assert.Equal(t, a.reads.Load(), st.Endpoints[1].Requests)
	assert.Equal(t, b.reads.Load(), st.Endpoints[2].Requests)
}

// TestReplicaFewestInFlight holds one read at a replica: the next reads go
// to the other replica, which has none in flight.
func TestReplicaFewestInFlight(t *testing.T) {
	primary := newEndpointServer(t, "primary", false)
	a, b := newEndpointServer(t, "a", false), newEndpointServer(t, "b", false)
	for _, r := range []*endpointServer{a, b} {
		r.gate, r.arrived = make(chan struct{}), make(chan struct{}, 1)
	}
	p := newReplicaPool(t, primary.URL, supapool.Config{}, a.URL, b.URL)
	held := make(chan string)
	go func() { held <- readOn(t, p, context.Background()) }()
	var busy, free *endpointServer
	select {
	case <-a.arrived:
		busy, free = a, b
	case <-b.arrived:
		busy, free = b, a
	}
	close(free.gate)
	for range 20 {
		assert.Equal(t, free.name, readOn(t, p, context.Background()))
	}
	st := p.Stats()
	inFlight := map[string]int64{st.Endpoints[1].URL: st.Endpoints[1].InFlight, st.Endpoints[2].URL: st.Endpoints[2].InFlight}
	assert.Equal(t, map[string]int64{busy.URL: 1, free.URL: 0}, inFlight)
	close(busy.gate)
	assert.Equal(t, busy.name, <-held)
	for _, e := range p.Stats().Endpoints {
		assert.Zero(t, e.InFlight, e.URL)
	}
}

func TestReplicaReadYourWrites(t *testing.T) {
	primary := newEndpointServer(t, "primary", false)
	replica := newEndpointServer(t, "replica", false)
	p := newReplicaPool(t, primary.URL, supapool.Config{}, replica.URL)
	ctx := context.Background()

	var got []string
	require.NoError(t, p.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		for i := range 4 {
			if i == 2 {
				if err := insert(ctx, c); err != nil {
					return err
				}
			}
			from, err := readFrom(ctx, c)
			if err != nil {
				return err
			}
			got = append(got, from)
		}
		// Without a ctx (Execute) too.
		var out []struct{ From string }
		_, err := c.From("categories").Select("*", "", false).ExecuteTo(&out)
		got = append(got, out[0].From)
		return err
	}))
	assert.Equal(t, []string{"replica", "replica", "primary", "primary", "primary"}, got)
	assert.Equal(t, "replica", readOn(t, p, ctx), "a new checkout reads from the replica again")

	// Acquire and Release: the flag goes with the checkout, not the client.
	c, err := p.Acquire(ctx)
	require.NoError(t, err)
	require.NoError(t, insert(ctx, c))
	from, err := readFrom(ctx, c)
	require.NoError(t, err)
	assert.Equal(t, "primary", from)
	require.NoError(t, p.Release(c))
	for range 4 { // MaxConnections: every client comes round
		c, err := p.Acquire(ctx)
		require.NoError(t, err)
		from, err := readFrom(ctx, c)
		require.NoError(t, err)
		assert.Equal(t, "replica", from)
		require.NoError(t, p.Release(c))
	}
}

func TestReplicaOnPrimary(t *testing.T) {
	primary := newEndpointServer(t, "primary", false)
	replica := newEndpointServer(t, "replica", false)
	p := newReplicaPool(t, primary.URL, supapool.Config{}, replica.URL)
	ctx := context.Background()

	// A closure run with OnPrimary, with and without the ctx.
	require.NoError(t, p.WithClient(supapool.OnPrimary(ctx), func(ctx context.Context, c *supabase.Client) error {
		from, err := readFrom(ctx, c)
		assert.Equal(t, "primary", from)
		var out []struct{ From string }
		_, err2 := c.From("categories").Select("*", "", false).ExecuteTo(&out)
		assert.Equal(t, "primary", out[0].From)
		return errors.Join(err, err2)
	}))
	// One request of a closure.
	require.NoError(t, p.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		from, err := readFrom(supapool.OnPrimary(ctx), c)
		assert.Equal(t, "primary", from)
		from2, err2 := readFrom(ctx, c)
		assert.Equal(t, "replica", from2, "only that request")
		return errors.Join(err, err2)
	}))
	// A client acquired with it, sending without a ctx.
	c, err := p.Acquire(supapool.OnPrimary(ctx))
	require.NoError(t, err)
	var out []struct{ From string }
	_, err = c.From("categories").Select("*", "", false).ExecuteTo(&out)
	require.NoError(t, err)
	assert.Equal(t, "primary", out[0].From)
	require.NoError(t, p.Release(c))
	// WithRetry and a user's checkout.
	user := supapool.WithAuthToken(supapool.OnPrimary(ctx), "jwt-bob")
	require.NoError(t, p.WithRetry(user, func(ctx context.Context, c *supabase.Client) error {
		from, err := readFrom(ctx, c)
		assert.Equal(t, "primary", from)
		return err
	}))
	_, auth := primary.served()
	assert.Equal(t, "Bearer jwt-bob", auth[len(auth)-1])
	assert.Equal(t, int64(1), replica.reads.Load())
}

// TestReplicaFailover points one replica at a closed port: every read
// still succeeds, sent on within the same request to the other replica
// (or, with none, the primary), and the dead replica is tried once per
// cool-down.
func TestReplicaFailover(t *testing.T) {
	primary := newEndpointServer(t, "primary", false)
	healthy := newEndpointServer(t, "healthy", false)
	dead := refusedURL(t)

	p := newReplicaPool(t, primary.URL, supapool.Config{}, dead, healthy.URL)
	for range 50 {
		assert.Equal(t, "healthy", readOn(t, p, context.Background()))
	}
	assert.Zero(t, primary.total())
	st := p.Stats()
	assert.Equal(t, supapool.EndpointStats{URL: dead, Role: "replica", Requests: 1, Failures: 1, Failovers: 1, Ejections: 1}, st.Endpoints[1],
		"tried once, then skipped for the cool-down")
	assert.Equal(t, int64(50), st.Endpoints[2].Requests)
	assert.True(t, st.Endpoints[2].Healthy)

	// With the dead replica alone, reads fall back to the primary.
	p2 := newReplicaPool(t, primary.URL, supapool.Config{}, dead)
	for range 20 {
		assert.Equal(t, "primary", readOn(t, p2, context.Background()))
	}
	assert.Equal(t, int64(20), primary.reads.Load())
	assert.Equal(t, int64(1), p2.Stats().Endpoints[1].Requests)
}

// TestReplicaFailoverOnGatewayErrors: a replica that answers 502, 503 or
// 504 is ejected and the read goes to the primary; other errors are the
// caller's.
func TestReplicaFailoverOnGatewayErrors(t *testing.T) {
	for _, rep := range []reply{gateway502, pgrst000, gateway504, pgrst003, lostDB} {
		primary := newEndpointServer(t, "primary", false)
		replica := newEndpointServer(t, "replica", false)
		replica.fail.Store(&rep)
		p := newReplicaPool(t, primary.URL, supapool.Config{}, replica.URL)
		assert.Equal(t, "primary", readOn(t, p, context.Background()), "%d", rep.status)
		assert.Equal(t, "primary", readOn(t, p, context.Background()), "%d", rep.status)
		assert.Equal(t, int64(1), replica.reads.Load(), "ejected after one %d", rep.status)
		assert.False(t, p.Stats().Endpoints[1].Healthy)
	}
	// A 400 is an answer: the replica stays in service and the error is the caller's.
	primary := newEndpointServer(t, "primary", false)
	replica := newEndpointServer(t, "replica", false)
	replica.fail.Store(&undefCol)
	p := newReplicaPool(t, primary.URL, supapool.Config{}, replica.URL)
	err := p.WithClient(context.Background(), read)
	var e *supapool.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 400, e.Status)
	assert.Zero(t, primary.total())
	assert.True(t, p.Stats().Endpoints[1].Healthy)
}

// TestReplicaWritesNeverFailOver: a write the primary could not take is
// not sent to a replica.
func TestReplicaWritesNeverFailOver(t *testing.T) {
	replica := newEndpointServer(t, "replica", false)
	p := newReplicaPool(t, refusedURL(t), supapool.Config{}, replica.URL)
	err := p.WithRetry(context.Background(), insert, supapool.RetryMax(2))
	require.Error(t, err)
	assert.True(t, supapool.IsTransient(err), "%v", err)
	assert.Zero(t, replica.total())
	st := p.Stats()
	assert.Equal(t, int64(3), st.Endpoints[0].Failures, "three attempts, all on the primary")
	assert.False(t, st.Endpoints[0].Healthy)
	// Reads go on at the replica; the primary's health does not matter to them.
	assert.Equal(t, "replica", readOn(t, p, context.Background()))
	// A read pinned to the primary does not go elsewhere.
	err = p.WithClient(supapool.OnPrimary(context.Background()), read)
	require.Error(t, err)
	assert.Equal(t, int64(1), replica.total())
}

// TestReplicaRecoversAfterCoolDown runs on synctest's clock with an
// in-memory transport: a replica that fails is skipped for the cool-down
// (5s by default), then one read tries it; while it still fails, one read
// per cool-down does; once it answers, reads use it again.
func TestReplicaRecoversAfterCoolDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var down atomic.Bool
		var replicaTries atomic.Int64
		rt := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Host == "replica.test" {
				replicaTries.Add(1)
				if down.Load() {
					return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
				}
			}
			resp := answer(200, "", `[{"id":1,"from":"`+strings.TrimSuffix(r.URL.Host, ".test")+`"}]`)
			resp.Request = r
			return resp, nil
		})
		p, err := supapool.New("http://primary.test", testKey, supapool.Config{
			Transport: rt, ReadReplicas: []string{"http://replica.test"},
		})
		require.NoError(t, err)
		defer p.Close(context.Background())
		ctx := context.Background()

		assert.Equal(t, "replica", readOn(t, p, ctx))
		down.Store(true)
		assert.Equal(t, "primary", readOn(t, p, ctx), "failed over within the request")
		for range 10 {
			assert.Equal(t, "primary", readOn(t, p, ctx))
		}
		assert.Equal(t, int64(2), replicaTries.Load(), "skipped while ejected")

		time.Sleep(5 * time.Second) // the cool-down, on the fake clock
		assert.Equal(t, "primary", readOn(t, p, ctx), "the trial failed over")
		assert.Equal(t, "primary", readOn(t, p, ctx))
		assert.Equal(t, int64(3), replicaTries.Load(), "one trial per cool-down")
		assert.False(t, p.Stats().Endpoints[1].Healthy)

		down.Store(false)
		time.Sleep(4 * time.Second)
		assert.Equal(t, "primary", readOn(t, p, ctx), "still cooling down")
		time.Sleep(time.Second)
		assert.Equal(t, "replica", readOn(t, p, ctx), "the trial answered")
		for range 10 {
			assert.Equal(t, "replica", readOn(t, p, ctx))
		}
		st := p.Stats().Endpoints[1]
		assert.True(t, st.Healthy)
		assert.Equal(t, supapool.EndpointStats{URL: "http://replica.test", Role: "replica", Requests: 14, Failures: 2,
			Failovers: 2, Ejections: 1, Healthy: true}, st)
	})
}

// TestReplicaHealth: HealthCheck probes every endpoint and says which is
// down; the pool is healthy while the primary is. A probe that succeeds
// puts an ejected replica back at once.
func TestReplicaHealth(t *testing.T) {
	primary := newEndpointServer(t, "primary", false)
	replica := newEndpointServer(t, "replica", false)
	replica.fail.Store(&pgrst000)
	secret := strings.Replace(replica.URL, "http://", "http://user:hunter2@", 1)
	p := newReplicaPool(t, primary.URL, supapool.Config{}, secret)

	h := p.HealthCheck(context.Background())
	assert.True(t, h.Healthy, "%+v", h)
	require.Len(t, h.Details.Endpoints, 2)
	assert.True(t, h.Details.Endpoints[0].Success)
	assert.Equal(t, "primary", h.Details.Endpoints[0].Role)
	assert.Equal(t, h.Details.TestQuery, h.Details.Endpoints[0].TestQueryResult)
	down := h.Details.Endpoints[1]
	assert.False(t, down.Success)
	assert.Equal(t, 503, down.Status)
	assert.Equal(t, "replica", down.Role)
	assert.False(t, h.Details.Stats.Endpoints[1].Healthy)

	b, err := json.Marshal(h)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "hunter2")
	assert.NotContains(t, string(b), testKey)
	assert.Contains(t, string(b), `"endpoints":[{"url":"`+primary.URL+`","role":"primary","success":true`)

	replica.fail.Store(nil)
	h = p.HealthCheck(context.Background())
	assert.True(t, h.Details.Endpoints[1].Success)
	assert.True(t, h.Details.Stats.Endpoints[1].Healthy, "back in service before its cool-down")
	assert.Equal(t, "replica", readOn(t, p, context.Background()))

	primary.fail.Store(&gateway502)
	h = p.HealthCheck(context.Background())
	assert.False(t, h.Healthy, "the primary is down")
	assert.True(t, h.Details.Endpoints[1].Success)
}

// TestReplicasOverHTTP2 runs 100 goroutines on a pool of 20 against a
// primary and a replica that serve TLS with HTTP/2, trusted through
// Config.TLSClientConfig: every request arrives over HTTP/2 with its
// principal, at most 20 are in flight at once, retries work, and a few
// TCP connections carry everything.
func TestReplicasOverHTTP2(t *testing.T) {
	primary := newEndpointServer(t, "primary", true)
	replica := newEndpointServer(t, "replica", true)
	roots := x509.NewCertPool()
	roots.AddCert(primary.Certificate())
	const maxConns, goroutines, rounds = 20, 100, 10
	p := newReplicaPool(t, primary.URL, supapool.Config{
		MaxConnections: maxConns, TLSClientConfig: &tls.Config{RootCAs: roots},
	}, replica.URL)
	both := new(gauge) // requests in flight at either server
	primary.inFlight, replica.inFlight = both, both

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ctx := supapool.WithAuthToken(context.Background(), "jwt-u"+string(rune('a'+g%4)))
			for range rounds {
				err := p.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
					if _, err := readFrom(ctx, c); err != nil {
						return err
					}
					if g%5 == 0 {
						return insert(ctx, c)
					}
					return nil
				})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()

	for _, e := range []*endpointServer{primary, replica} {
		assert.Equal(t, e.total(), e.http2.Load(), "%s: every request over HTTP/2", e.name)
		paths, auth := e.served()
		for i, a := range auth {
			assert.True(t, strings.HasPrefix(a, "Bearer jwt-u"), "%s %s: %q", e.name, paths[i], a)
		}
	}
	assert.Equal(t, int64(goroutines*rounds), replica.reads.Load())
	assert.Equal(t, int64(goroutines/5*rounds), primary.writes.Load())
	assert.LessOrEqual(t, both.peak.Load(), int64(maxConns), "the pool bounds requests in flight")
	// Go's transport dials for each request that finds no connection
	// until it knows the server speaks HTTP/2, then keeps one connection
	// and closes the others.
	for _, e := range []*endpointServer{primary, replica} {
		e.conns.waitOpen(t, 2) // the server notices closed connections on its own goroutines
		open, peak, opened := e.conns.snapshot()
		t.Logf("HTTP/2 %s: %d requests, peak in flight at both servers %d; TCP connections: %d opened, peak %d open, %d open after",
			e.name, e.total(), both.peak.Load(), opened, peak, open)
		assert.LessOrEqual(t, opened, maxConns, "%s: at most MaxConnections per endpoint", e.name)
		assert.LessOrEqual(t, open, 2, "%s: HTTP/2 multiplexes on few connections", e.name)
	}

	// A retry over HTTP/2: the replica's 504 fails over to the primary,
	// whose one 503 PGRST000 WithRetry retries.
	before := primary.reads.Load()
	primary.failTimes.Store(1)
	primary.fail.Store(&pgrst000)
	replica.fail.Store(&gateway504)
	require.NoError(t, p.WithRetry(context.Background(), read, supapool.RetryMax(3)))
	assert.Equal(t, before+2, primary.reads.Load(), "two attempts at the primary")
	st := p.Stats()
	checkIdentities(t, st)
	for _, e := range st.Endpoints {
		assert.Zero(t, e.InFlight, e.URL)
	}
}

// TestReplicaHasItsOwnBreaker: with Config.Breaker, a failing replica's own
// breaker opens (the primary's stays closed), after which the replica gets
// nothing more while reads keep going to the primary, and every failed
// attempt was reported to the replica's breaker, not the primary's.
func TestReplicaHasItsOwnBreaker(t *testing.T) {
	primary := newEndpointServer(t, "primary", false)
	replica := newEndpointServer(t, "replica", false)
	replica.fail.Store(&gateway502)
	p := newReplicaPool(t, primary.URL, supapool.Config{
		Breaker:         supapool.BreakerConfig{Enabled: true, ConsecutiveFailures: 2, OpenTimeout: time.Hour},
		ReplicaCoolDown: time.Nanosecond, // every read is the replica's trial
	}, replica.URL)
	for range 10 {
		assert.Equal(t, "primary", readOn(t, p, context.Background()))
	}
	assert.Equal(t, int64(2), replica.reads.Load(), "the replica's breaker opened after 2 failures")
	assert.Equal(t, int64(10), primary.reads.Load())
	s := p.Stats()
	assert.Equal(t, "closed", s.Breaker, "the primary's breaker saw only good answers")
	require.Len(t, s.Endpoints, 2)
	assert.False(t, s.Endpoints[1].Healthy)

	replica.fail.Store(nil) // back, but its breaker stays open for OpenTimeout
	assert.Equal(t, "primary", readOn(t, p, context.Background()))
	assert.Equal(t, int64(2), replica.reads.Load())
	assert.True(t, p.HealthCheck(context.Background()).Healthy, "the pool is healthy while the primary is")
}
