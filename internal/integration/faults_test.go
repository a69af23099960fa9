package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/catalog"
	"github.com/supapool/supapool/internal/stack"
)

// failures tallies the errors that workers met, by kind of call and by
// "status code" (e.g. "read 503 PGRST000 attempts=4").
type failures struct {
	mu     sync.Mutex
	byKind map[string]int
}

func (f *failures) add(kind string, err error) {
	var e *supapool.Error
	key := kind + " " + err.Error()
	if errors.As(err, &e) {
		code := e.Code
		if e.Status == 0 {
			code = "(no response)"
		}
		key = fmt.Sprintf("%s %d %s attempts=%d neverRan=%v", kind, e.Status, code, e.Attempts, e.NeverRan())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byKind == nil {
		f.byKind = map[string]int{}
	}
	f.byKind[key]++
}

// count returns how many failures had a key with this prefix.
func (f *failures) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, v := range f.byKind {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func (f *failures) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for k, v := range f.byKind {
		lines = append(lines, fmt.Sprintf("%5d x %s", v, k))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestPostgresStoppedMidRun stops PostgreSQL while workers read and insert
// through one pool with WithRetry, and starts it again: PostgREST answers
// 503 PGRST000, health turns unhealthy, reads recover on their own, and no
// insert is applied twice.
func TestPostgresStoppedMidRun(t *testing.T) {
	s := stack.ForTest(t, stack.Options{})
	ctx := testCtx(t, 60*time.Second)
	budget := insertBudget(ctx, t, s, "user-a")
	cfg := testConfig(8)
	cfg.MaxRetries, cfg.RetryDelay, cfg.MaxRetryDelay = 3, 20*time.Millisecond, 200*time.Millisecond
	svc, pool := newService(t, s, cfg)

	var (
		mu                 sync.Mutex
		inserts            []insertResult
		fails              failures
		readsOK, insertsOK atomic.Int64
	)
	ws := newWorkers()
	for w := range 6 {
		ws.goLoop(func(i int) {
			if _, err := svc.List(ctx, budget); err != nil {
				fails.add("read", err)
			} else {
				readsOK.Add(1)
			}
			marker := fmt.Sprintf("pgdown-%d-%d", w, i)
			_, err := svc.Create(ctx, catalog.NewCategory{BudgetID: budget, OwnerID: "user-a", Name: marker})
			if err != nil {
				fails.add("insert", err)
			} else {
				insertsOK.Add(1)
			}
			mu.Lock()
			inserts = append(inserts, insertResult{marker, err})
			mu.Unlock()
		})
	}
	defer ws.stop()

	eventually(t, 10*time.Second, func() bool { return insertsOK.Load() >= 20 }, "workers are running")

	t0 := time.Now()
	require.NoError(t, s.StopPostgres(ctx))
	t.Logf("PostgreSQL stopped in %v", time.Since(t0).Round(time.Millisecond))
	eventually(t, 10*time.Second, func() bool {
		return fails.count("read 503 PGRST000") > 0 && fails.count("insert 503 PGRST000") > 0
	}, "workers see 503 PGRST000 for reads and inserts:\n%v", &fails)

	// One read without retries: the failure as it is on the wire.
	err := svc.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("categories").Select("id", "", false).ExecuteWithContext(ctx)
		return err
	})
	e := asError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, e.Status, "%v", err)
	assert.Equal(t, "PGRST000", e.Code)
	assert.Equal(t, time.Duration(0), e.RetryAfter, "PostgREST sends Retry-After: 0")
	assert.Equal(t, 1, e.Attempts)
	assert.True(t, e.NeverRan(), "PGRST000: the statement never reached the database")
	assert.True(t, supapool.IsTransient(err))
	assert.NotContains(t, err.Error(), s.ServiceKey)
	// The header, seen without the pool.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/rest/v1/categories", nil)
	require.NoError(t, err)
	req.Header.Set("apikey", s.ServiceKey)
	req.Header.Set("Authorization", "Bearer "+s.ServiceKey)
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, []string{"0"}, resp.Header.Values("Retry-After"))

	// WithRetry retries the read MaxRetries times, backing off, and then
	// gives up with the last error.
	start := time.Now()
	attempts := 0
	err = svc.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		attempts++
		_, _, err := c.From("categories").Select("id", "", false).ExecuteWithContext(ctx)
		return err
	})
	took := time.Since(start)
	e = asError(t, err)
	assert.Equal(t, 503, e.Status)
	assert.Equal(t, cfg.MaxRetries+1, e.Attempts, "%v", err)
	assert.Equal(t, cfg.MaxRetries+1, attempts)
	t.Logf("WithRetry read while PostgreSQL is down: %d attempts in %v: %v", attempts, took.Round(time.Millisecond), err)

	// Health.
	h := pool.HealthCheck(ctx)
	assert.False(t, h.Healthy, "%+v", h)
	assert.False(t, h.Details.TestQuery.Success)
	t.Logf("health while PostgreSQL is down: %+v", h.Details.TestQuery)
	rec := httptest.NewRecorder()
	pool.HealthHandler().ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/health/pool", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "%s", rec.Body)
	var body supapool.Health
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "%s", rec.Body)
	assert.False(t, body.Healthy)
	assert.NotContains(t, rec.Body.String(), s.ServiceKey)

	down := time.Since(t0)
	readsBefore, insertsBefore := readsOK.Load(), insertsOK.Load()
	t1 := time.Now()
	require.NoError(t, s.StartPostgres(ctx))
	pgUp := time.Since(t1)
	// Same pool, no restart: the workers' reads succeed again by themselves.
	recovered := eventually(t, 20*time.Second, func() bool { return readsOK.Load() > readsBefore },
		"reads recover after PostgreSQL is back:\n%v", &fails)
	eventually(t, 10*time.Second, func() bool {
		return readsOK.Load() >= readsBefore+20 && insertsOK.Load() >= insertsBefore+20
	}, "workers keep going after recovery")
	ws.stop()
	t.Logf("PostgreSQL down for %v; it started in %v, and the workers' reads succeeded again %v after that",
		down.Round(time.Millisecond), pgUp.Round(time.Millisecond), (pgUp + recovered).Round(time.Millisecond))
	t.Logf("worker failures:\n%v", &fails)

	// No insert is duplicated, and every insert that returned nil is there.
	n := checkInserts(ctx, t, s, "pgdown-", inserts)
	t.Logf("inserts: %d returned nil, %d failed (%d of them applied nonetheless); rows: %d; reads ok: %d",
		n.ok, n.failed, n.failedButApplied, n.rows, readsOK.Load())

	checkStats(t, pool.Stats())
	h = pool.HealthCheck(ctx)
	assert.True(t, h.Healthy, "%+v", h)
	assert.True(t, h.Details.TestQuery.Success)
	t.Logf("stats: %+v", pool.Stats())
}

// TestPostgRESTKilledAndGatewayDown kills PostgREST (the gateway answers
// 502) and then stops the gateway itself (connection refused), and checks
// what WithRetry retries, what reaches the database, and that the pool
// recovers without a restart.
func TestPostgRESTKilledAndGatewayDown(t *testing.T) {
	s := stack.ForTest(t, stack.Options{})
	ctx := testCtx(t, 40*time.Second)
	budget := insertBudget(ctx, t, s, "user-a")
	cfg := testConfig(4)
	cfg.MaxRetries, cfg.RetryDelay, cfg.MaxRetryDelay = 3, 10*time.Millisecond, 100*time.Millisecond
	svc, pool := newService(t, s, cfg)

	// read and insert count the attempts WithRetry makes.
	read := func(opts ...supapool.RetryOption) (int, error) {
		n := 0
		err := svc.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
			n++
			_, _, err := c.From("categories").Select("id", "", false).ExecuteWithContext(ctx)
			return err
		}, opts...)
		return n, err
	}
	var attemptsSeen atomic.Int64 // of the last insert, for polling
	insert := func(marker string, opts ...supapool.RetryOption) (int, error) {
		n := 0
		err := svc.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
			n++
			attemptsSeen.Store(int64(n))
			_, _, err := c.From("categories").
				Insert(catalog.NewCategory{BudgetID: budget, OwnerID: "user-a", Name: marker}, false, "", "minimal", "").
				ExecuteWithContext(ctx)
			return err
		}, opts...)
		return n, err
	}
	_, err := insert("gw-before")
	require.NoError(t, err)
	c, err := svc.Create(ctx, catalog.NewCategory{BudgetID: budget, OwnerID: "user-a", Name: "gw-to-delete"})
	require.NoError(t, err)

	// PostgREST killed: the gateway answers 502 without a PostgREST code.
	require.NoError(t, s.KillPostgREST())
	n, err := read()
	e := asError(t, err)
	assert.Equal(t, http.StatusBadGateway, e.Status, "%v", err)
	assert.Empty(t, e.Code)
	assert.True(t, supapool.IsTransient(err))
	assert.False(t, e.NeverRan(), "a gateway's 502 does not prove the request did not reach PostgREST")
	assert.Equal(t, cfg.MaxRetries+1, n, "a read is retried")
	assert.Equal(t, n, e.Attempts)

	n, err = insert("gw-502")
	e = asError(t, err)
	assert.Equal(t, http.StatusBadGateway, e.Status, "%v", err)
	assert.True(t, supapool.IsTransient(err))
	assert.Equal(t, 1, n, "a write is not retried after a 502")
	assert.Equal(t, 1, e.Attempts)

	err = svc.Delete(ctx, c.ID) // Idempotent
	e = asError(t, err)
	assert.Equal(t, http.StatusBadGateway, e.Status, "%v", err)
	assert.Equal(t, cfg.MaxRetries+1, e.Attempts, "a write declared Idempotent is retried")

	h := pool.HealthCheck(ctx)
	assert.False(t, h.Healthy)
	assert.Equal(t, http.StatusBadGateway, h.Details.TestQuery.Status, "%+v", h.Details.TestQuery)

	t0 := time.Now()
	require.NoError(t, s.StartPostgREST(ctx))
	pgrstUp := time.Since(t0)
	var lastErr error
	recovered := eventually(t, 10*time.Second, func() bool {
		_, lastErr = read(supapool.RetryMax(0))
		return lastErr == nil
	}, "reads recover after PostgREST is back: %v", lastErr)
	t.Logf("PostgREST restarted in %v; the pool's reads succeeded %v later", pgrstUp.Round(time.Millisecond), recovered.Round(time.Millisecond))
	// Server side: the 502 insert never ran, nor was it sent again later.
	assert.Equal(t, map[string]int{"gw-before": 1, "gw-to-delete": 1}, nameCounts(ctx, t, s, "gw-"))

	// The gateway itself down: connection refused.
	require.NoError(t, s.StopProxy())
	n, err = read()
	e = asError(t, err)
	assert.Equal(t, 0, e.Status, "%v", err)
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "%v", err)
	assert.True(t, e.NeverRan())
	assert.True(t, supapool.IsTransient(err))
	assert.Equal(t, cfg.MaxRetries+1, n, "%v", err)

	n, err = insert("gw-refused")
	e = asError(t, err)
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "%v", err)
	assert.True(t, e.NeverRan())
	assert.True(t, supapool.IsTransient(err))
	assert.Equal(t, cfg.MaxRetries+1, n, "a write is retried when the connection was refused: %v", err)
	assert.Equal(t, n, e.Attempts)

	h = pool.HealthCheck(ctx)
	assert.False(t, h.Healthy)
	assert.Equal(t, 0, h.Details.TestQuery.Status)

	// An insert that keeps retrying while the gateway is down succeeds,
	// once, when it comes back.
	attemptsSeen.Store(0)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := insert("gw-after", supapool.RetryMax(500), supapool.RetryBackoff(10*time.Millisecond, 40*time.Millisecond))
		done <- result{n, err}
	}()
	eventually(t, 10*time.Second, func() bool { return attemptsSeen.Load() >= 3 }, "the insert is being retried")
	t1 := time.Now()
	require.NoError(t, s.StartProxy(ctx))
	r := <-done
	require.NoError(t, r.err)
	t.Logf("an insert retried while the gateway was down succeeded %v after it was back, after %d attempts",
		time.Since(t1).Round(time.Millisecond), r.n)
	assert.GreaterOrEqual(t, r.n, 3)
	assert.Equal(t, map[string]int{"gw-before": 1, "gw-to-delete": 1, "gw-after": 1}, nameCounts(ctx, t, s, "gw-"))

	_, err = read(supapool.RetryMax(0))
	assert.NoError(t, err)
	require.NoError(t, svc.Delete(ctx, c.ID))
	checkStats(t, pool.Stats())
	assert.True(t, pool.HealthCheck(ctx).Healthy)
	t.Logf("stats: %+v", pool.Stats())
}

// TestDBPoolExhausted runs PostgREST with one database connection and a
// one-second acquisition timeout, and holds that connection with a slow
// RPC: a concurrent request gets 504 PGRST003, which is transient and
// proves the statement never ran, so WithRetry retries it, also an insert,
// until the slow call is over.
func TestDBPoolExhausted(t *testing.T) {
	s := stack.ForTest(t, stack.Options{DBPool: 1, DBPoolAcquisitionTimeout: 1})
	ctx := testCtx(t, 30*time.Second)
	budget := insertBudget(ctx, t, s, "user-a")
	svc, pool := newService(t, s, testConfig(4))

	// supabase-go's Rpc takes no ctx (the pool would not see it); an RPC
	// is a POST to rpc/<name>, which From(...).Insert sends with ctx.
	const slowSeconds = 2.5
	slowDone := make(chan error, 1)
	// The slow statement starts after this, so it ends after
	// launched + slowSeconds.
	launched := time.Now()
	go func() {
		slowDone <- svc.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
			b, _, err := c.From("rpc/slow").Insert(map[string]float64{"seconds": slowSeconds}, false, "", "", "").ExecuteWithContext(ctx)
			if err == nil && string(b) != "1" {
				err = fmt.Errorf("slow returned %q", b)
			}
			return err
		})
	}()
	// Wait until the slow call holds PostgREST's only connection.
	eventually(t, 10*time.Second, func() bool {
		out, err := s.SQL(ctx, "select count(*) from pg_stat_activity where wait_event = 'PgSleep'")
		return err == nil && out == "1"
	}, "the slow call is running")

	var wg sync.WaitGroup
	// Without retries: 504 PGRST003.
	wg.Go(func() {
		start := time.Now()
		err := svc.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
			_, _, err := c.From("categories").Select("id", "", false).ExecuteWithContext(ctx)
			return err
		})
		e := asError(t, err)
		assert.Equal(t, http.StatusGatewayTimeout, e.Status, "%v", err)
		assert.Equal(t, "PGRST003", e.Code)
		assert.True(t, supapool.IsTransient(err))
		assert.True(t, e.NeverRan(), "PGRST003: the statement never got a connection")
		t.Logf("concurrent read without retries: %v after %v", err, time.Since(start).Round(time.Millisecond))
	})
	// With retries, a read and an insert succeed once the slow call is over.
	retried := func(name string, fn func(ctx context.Context, c *supabase.Client) error) {
		wg.Go(func() {
			var (
				attempts int
				errs     []string
			)
			err := svc.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
				attempts++
				err := fn(ctx, c)
				if err != nil {
					errs = append(errs, err.Error())
				}
				return err
			}, supapool.RetryMax(10), supapool.RetryBackoff(50*time.Millisecond, 250*time.Millisecond))
			assert.NoError(t, err, name)
			assert.GreaterOrEqual(t, attempts, 2, "%s was retried", name)
			for _, msg := range errs {
				assert.Contains(t, msg, "PGRST003", name)
			}
			assert.GreaterOrEqual(t, time.Since(launched), time.Duration(slowSeconds*float64(time.Second)),
				"%s succeeded only after the slow call ended", name)
			t.Logf("%s with WithRetry: %d attempts, failures %q", name, attempts, errs)
		})
	}
	retried("read", func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("categories").Select("id", "", false).ExecuteWithContext(ctx)
		return err
	})
	retried("insert", func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("categories").
			Insert(catalog.NewCategory{BudgetID: budget, OwnerID: "user-a", Name: "exhausted-insert"}, false, "", "minimal", "").
			ExecuteWithContext(ctx)
		return err
	})
	wg.Wait()
	require.NoError(t, <-slowDone)
	assert.Equal(t, map[string]int{"exhausted-insert": 1}, nameCounts(ctx, t, s, "exhausted-"), "inserted once")
	checkStats(t, pool.Stats())
	t.Logf("stats: %+v", pool.Stats())
}
