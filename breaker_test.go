package supapool_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

// breakerPool makes a pool over rt with the circuit breaker bc (turned
// on here), logging to log, and closes it when t ends.
func breakerPool(t *testing.T, rt http.RoundTripper, bc supapool.BreakerConfig, log *logRecorder) *supapool.Pool {
	t.Helper()
	bc.Enabled = true
	p, err := supapool.New(unusedURL, testKey, supapool.Config{
		Transport: rt, Breaker: bc, MaxConnections: 4, RetryDelay: time.Millisecond, Logger: slog.New(log),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

// requireRefused asserts that err is a request refused by the breaker: it
// matches ErrCircuitOpen, never ran, is transient, and names no key.
func requireRefused(t *testing.T, err error) *supapool.CircuitOpenError {
	t.Helper()
	require.ErrorIs(t, err, supapool.ErrCircuitOpen)
	assert.True(t, supapool.IsTransient(err), "%v", err)
	var pe *supapool.Error
	require.ErrorAs(t, err, &pe)
	assert.True(t, pe.NeverRan(), "%v", err)
	assert.Equal(t, 0, pe.Status)
	var ce *supapool.CircuitOpenError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, unusedURL, ce.Endpoint)
	assert.NotContains(t, err.Error(), testKey)
	return ce
}

// levels drops the Debug lines and keeps the level and the start of the
// message of the others.
func levels(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "DEBUG") {
			out = append(out, l[:strings.Index(l, ":")])
		}
	}
	return out
}

func TestBreakerOpensProbesAndCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const openTimeout = 5 * time.Second
		up := &upstreamRT{answer: pgrst000}
		log := &logRecorder{}
		p := breakerPool(t, up, supapool.BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: openTimeout}, log)
		ctx := context.Background()
		assert.Equal(t, "closed", p.Stats().Breaker)

		// Exactly ConsecutiveFailures transient failures open it.
		for i := range 3 {
			err := p.WithClient(ctx, read)
			require.Error(t, err)
			require.NotErrorIs(t, err, supapool.ErrCircuitOpen, "failure %d was sent", i+1)
			want := "closed"
			if i == 2 {
				want = "open"
			}
			assert.Equal(t, want, p.Stats().Breaker, "after %d failures", i+1)
		}
		calls, _ := up.count()
		require.Equal(t, 3, calls)

		// While open, nothing leaves until OpenTimeout has passed.
		opened := time.Now()
		for time.Since(opened) < openTimeout {
			ce := requireRefused(t, p.WithClient(ctx, read))
			assert.Equal(t, "open", ce.State)
			assert.Equal(t, openTimeout-time.Since(opened), ce.RetryAfter, "time until it half-opens")
			time.Sleep(250 * time.Millisecond)
		}
		calls, _ = up.count()
		assert.Equal(t, 3, calls, "the upstream saw nothing while the breaker was open")

		// Then it lets one probe through; other requests are refused
		// while the probe is out.
		time.Sleep(time.Millisecond)
		assert.Equal(t, "half-open", p.Stats().Breaker)
		up.set(ok200)
		release := up.hold()
		probe := make(chan error, 1)
		go func() { probe <- p.WithClient(ctx, read) }()
		synctest.Wait() // the probe is at the upstream
		ce := requireRefused(t, p.WithClient(ctx, read))
		assert.Equal(t, "half-open", ce.State)
		assert.Zero(t, ce.RetryAfter)
		calls, _ = up.count()
		assert.Equal(t, 4, calls, "one probe")

		// A good answer closes it.
		release()
		require.NoError(t, <-probe)
		assert.Equal(t, "closed", p.Stats().Breaker)
		require.NoError(t, p.WithClient(ctx, read))

		// A bad answer to the probe opens it again, for another OpenTimeout.
		up.set(pgrst000)
		for range 3 {
			require.NotErrorIs(t, p.WithClient(ctx, read), supapool.ErrCircuitOpen)
		}
		assert.Equal(t, "open", p.Stats().Breaker)
		time.Sleep(openTimeout + time.Millisecond)
		err := p.WithClient(ctx, read) // the probe
		var pe *supapool.Error
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "PGRST000", pe.Code)
		assert.Equal(t, "open", p.Stats().Breaker)
		ce = requireRefused(t, p.WithClient(ctx, read))
		assert.Equal(t, openTimeout, ce.RetryAfter)
		calls, _ = up.count()
		assert.Equal(t, 4+1+3+1, calls)

		// Refusals cost no client: nothing was sent on them.
		st := p.Stats()
		assert.Zero(t, st.Discarded)
		checkIdentities(t, st)

		lines := log.logged()
		assert.Equal(t, []string{"WARN supapool", "INFO supapool", "WARN supapool", "WARN supapool"}, levels(lines), "%q", lines)
		assert.Contains(t, lines[0], "circuit breaker opened")
		assert.Contains(t, lines[0], "endpoint="+unusedURL)
		for _, l := range lines {
			assert.NotContains(t, l, testKey)
		}
		assert.Contains(t, strings.Join(lines, "\n"), "circuit breaker closed")
		assert.Contains(t, strings.Join(lines, "\n"), "opened again: a probe failed")
	})
}

func TestBreakerDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &upstreamRT{answer: gateway502}
		p := breakerPool(t, up, supapool.BreakerConfig{}, &logRecorder{})
		ctx := context.Background()
		for range 4 {
			require.NotErrorIs(t, p.WithClient(ctx, read), supapool.ErrCircuitOpen)
		}
		assert.Equal(t, "closed", p.Stats().Breaker, "4 failures")
		require.Error(t, p.WithClient(ctx, read))
		assert.Equal(t, "open", p.Stats().Breaker, "zero ConsecutiveFailures means 5")
		ce := requireRefused(t, p.WithClient(ctx, read))
		assert.Equal(t, 5*time.Second, ce.RetryAfter, "zero OpenTimeout means 5s")
		time.Sleep(5*time.Second + time.Millisecond)
		assert.Equal(t, "half-open", p.Stats().Breaker)
	})
}

// TestBreakerCountsOnlyUpstreamFailures: 4xx, 409, other 5xx and normal
// answers count as successes (they reset the count of failures in a row);
// a request whose own ctx ended is ignored (it neither counts nor resets).
func TestBreakerCountsOnlyUpstreamFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &upstreamRT{}
		p := breakerPool(t, up, supapool.BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: time.Minute}, &logRecorder{})
		ctx := context.Background()
		internal := reply{status: 500, body: `{"code":"XX000","message":"internal error"}`}
		for _, a := range []reply{undefCol, noAuthJWT, missingTbl, uniqueViol, internal, ok200} {
			up.set(pgrst000)
			require.Error(t, p.WithClient(ctx, read))
			up.set(a)
			_ = p.WithClient(ctx, insert)
			up.set(pgrst000)
			require.Error(t, p.WithClient(ctx, read))
			up.set(a)
			for range 5 {
				_ = p.WithClient(ctx, read)
			}
			assert.Equal(t, "closed", p.Stats().Breaker, "status %d", a.status)
		}

		// The caller's own deadline and cancellation are ignored.
		up.set(pgrst000)
		require.Error(t, p.WithClient(ctx, read)) // one failure
		up.set(reply{})                           // hangs until the request's ctx ends
		for range 5 {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			require.ErrorIs(t, p.WithClient(dctx, read), context.DeadlineExceeded)
			cancel()

			readCanceledAtUpstream(t, p)
		}
		assert.Equal(t, "closed", p.Stats().Breaker)
		up.set(dropped) // the connection broke after sending: the upstream's doing
		require.Error(t, p.WithClient(ctx, read))
		assert.Equal(t, "open", p.Stats().Breaker, "the ignored requests did not reset the count either")

		// A probe whose caller gives up frees its place for another probe.
		time.Sleep(time.Minute + time.Millisecond)
		up.set(reply{})
		readCanceledAtUpstream(t, p)
		assert.Equal(t, "half-open", p.Stats().Breaker)
		up.set(ok200)
		require.NoError(t, p.WithClient(ctx, read))
		assert.Equal(t, "closed", p.Stats().Breaker)
	})
}

// readCanceledAtUpstream sends a read that the upstream holds, and cancels
// its ctx once it is there.
func readCanceledAtUpstream(t *testing.T, p *supapool.Pool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.WithClient(ctx, read) }()
	synctest.Wait()
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// TestBreakerRefusedWriteIsRetriedSafely: WithRetry does not sleep against
// an open breaker, waits when the breaker lets probes through within its
// backoff, and a write refused by the breaker, never sent, is sent once
// the breaker has closed, and stored once.
func TestBreakerRefusedWriteIsRetriedSafely(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const openTimeout = 5 * time.Second
		up := &upstreamRT{answer: pgrst000}
		p := breakerPool(t, up, supapool.BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: openTimeout}, &logRecorder{})
		ctx := context.Background()
		for range 3 {
			require.Error(t, p.WithClient(ctx, read))
		}
		opened := time.Now()
		var attempts atomic.Int32
		countedInsert := func(ctx context.Context, c *supabase.Client) error {
			attempts.Add(1)
			return insert(ctx, c)
		}
		retry := []supapool.RetryOption{supapool.RetryMax(5), supapool.RetryBackoff(10*time.Millisecond, 100*time.Millisecond)}

		// Open for another 5s, far beyond the backoff: WithRetry returns at once.
		err := p.WithRetry(ctx, countedInsert, retry...)
		requireRefused(t, err)
		var pe *supapool.Error
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, 1, pe.Attempts)
		assert.EqualValues(t, 1, attempts.Load())
		assert.Zero(t, time.Since(opened), "no wait")
		calls, posts := up.count()
		assert.Equal(t, 3, calls, "the write was not sent")
		assert.Zero(t, posts)

		// At the instant it half-opens, the refused write waits one backoff
		// and is sent as the probe, which closes the breaker.
		time.Sleep(openTimeout)
		up.set(successPost)
		attempts.Store(0)
		require.NoError(t, p.WithRetry(ctx, countedInsert, retry...))
		assert.EqualValues(t, 2, attempts.Load(), "refused once, then sent")
		assert.Equal(t, "closed", p.Stats().Breaker)
		calls, posts = up.count()
		assert.Equal(t, 4, calls)
		assert.Equal(t, 1, posts, "stored once")

		// Half-open with its probe out: a write is refused, waits its
		// backoff, and is sent once the probe has closed the breaker.
		up.set(pgrst000)
		for range 3 {
			require.Error(t, p.WithClient(ctx, read))
		}
		time.Sleep(openTimeout + time.Millisecond)
		up.set(successPost)
		release := up.hold()
		probe := make(chan error, 1)
		go func() { probe <- p.WithClient(ctx, read) }()
		synctest.Wait()
		attempts.Store(0)
		write := make(chan error, 1)
		go func() { write <- p.WithRetry(ctx, countedInsert, retry...) }()
		synctest.Wait() // refused, waiting its backoff
		assert.EqualValues(t, 1, attempts.Load())
		release()
		require.NoError(t, <-probe)
		require.NoError(t, <-write)
		assert.EqualValues(t, 2, attempts.Load())
		_, posts = up.count()
		assert.Equal(t, 2, posts, "each write stored once")
	})
}

func TestBreakerHealth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &upstreamRT{answer: pgrst000}
		p := breakerPool(t, up, supapool.BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: 5 * time.Second}, &logRecorder{})
		ctx := context.Background()
		h := p.HealthCheck(ctx) // the first failure
		assert.False(t, h.Healthy)
		assert.Equal(t, "closed", h.Details.Stats.Breaker)
		require.Error(t, p.WithClient(ctx, read))

		rec := httptest.NewRecorder()
		p.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/health/pool", nil))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		var body struct {
			Healthy bool
			Details struct {
				Stats     map[string]any
				TestQuery supapool.TestQueryResult
			}
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		assert.False(t, body.Healthy)
		assert.Equal(t, "open", body.Details.Stats["breaker"])
		assert.Contains(t, body.Details.TestQuery.Error, "circuit breaker")
		calls, _ := up.count()
		assert.Equal(t, 2, calls, "the health check sent nothing while the breaker was open")

		// Once it half-opens, the health check's request may be the probe
		// that closes it.
		time.Sleep(5*time.Second + time.Millisecond)
		up.set(ok200)
		h = p.HealthCheck(ctx)
		assert.True(t, h.Healthy, "%+v", h)
		assert.Equal(t, "closed", h.Details.Stats.Breaker)
	})
}

func TestBreakerDisabled(t *testing.T) {
	p := newPool(t, supapool.Config{})
	assert.Equal(t, "", p.Stats().Breaker)
	b, err := json.Marshal(p.Stats())
	require.NoError(t, err)
	assert.Contains(t, string(b), `"breaker":""`)

	var ce error = &supapool.CircuitOpenError{Endpoint: "https://x.supabase.co", State: "open", RetryAfter: 1500 * time.Millisecond}
	assert.ErrorIs(t, ce, supapool.ErrCircuitOpen)
	assert.True(t, supapool.IsTransient(ce))
	assert.Equal(t, "supapool: circuit breaker for https://x.supabase.co is open after repeated transient failures; "+
		"the request was not sent (safe to retry; probes in 1.5s)", ce.Error())
}

// TestBreakerFailsFastOnHangingUpstream: an upstream that accepts requests
// and never answers holds each client for ResponseHeaderTimeout; once the
// breaker has opened, callers fail at once and the pool does not saturate.
func TestBreakerFailsFastOnHangingUpstream(t *testing.T) {
	var sent atomic.Int32
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		sent.Add(1)
		<-hang // until the test ends
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) }) // runs first
	const headerTimeout = 100 * time.Millisecond
	log := &logRecorder{}
	p, err := supapool.New(srv.URL, testKey, supapool.Config{
		MaxConnections: 2, ResponseHeaderTimeout: headerTimeout, AcquireTimeout: 5 * time.Second,
		Breaker: supapool.BreakerConfig{Enabled: true, ConsecutiveFailures: 3, OpenTimeout: time.Minute},
		Logger:  slog.New(log),
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	ctx := context.Background()

	for i := range 3 {
		start := time.Now()
		err := p.WithClient(ctx, read)
		require.Error(t, err)
		require.NotErrorIs(t, err, supapool.ErrCircuitOpen)
		assert.GreaterOrEqual(t, time.Since(start), headerTimeout, "request %d waited for the headers: %v", i+1, err)
	}
	require.Equal(t, "open", p.Stats().Breaker)

	// Refusals by an open breaker.
	const n = 201
	took := make([]time.Duration, n)
	for i := range took {
		start := time.Now()
		err := p.WithClient(ctx, read)
		took[i] = time.Since(start)
		require.ErrorIs(t, err, supapool.ErrCircuitOpen)
	}
	slices.Sort(took)
	t.Logf("%d refusals by the open breaker: median %v, p90 %v, max %v (ResponseHeaderTimeout %v)",
		n, took[n/2], took[n*9/10], took[n-1], headerTimeout)
	assert.Less(t, took[n/2], 50*time.Millisecond)

	// 50 callers on 2 clients all get their answer at once: none waits for
	// a client held by the hanging upstream.
	var wg sync.WaitGroup
	var refused atomic.Int32
	start := time.Now()
	for range 50 {
		wg.Go(func() {
			if errors.Is(p.WithClient(ctx, read), supapool.ErrCircuitOpen) {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	burst := time.Since(start)
	t.Logf("50 concurrent callers on 2 clients refused in %v (without the breaker: 25 x %v)", burst, headerTimeout)
	assert.EqualValues(t, 50, refused.Load())
	assert.Less(t, burst, 10*headerTimeout)
	st := p.Stats()
	assert.Zero(t, st.AcquireTimeouts)
	checkIdentities(t, st)

	require.Eventually(t, func() bool { return sent.Load() >= 3 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 3, sent.Load(), "only the failures that opened the breaker reached the upstream")
	assert.Equal(t, []string{"WARN supapool"}, levels(log.logged()))
}
