package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/catalog"
	"github.com/supapool/supapool/internal/stack"
)

// seedReplicated inserts a budget of owner with n categories on the
// primary and waits until the replica has them.
func seedReplicated(ctx context.Context, t *testing.T, s *stack.Stack, owner string, n int) string {
	t.Helper()
	budget := insertBudget(ctx, t, s, owner)
	sqlOut(ctx, t, s, fmt.Sprintf("insert into categories (budget_id, owner_id, name, sort_order) "+
		"select '%s', '%s', 'seed-' || i, i from generate_series(1, %d) i", budget, owner, n))
	require.NoError(t, s.WaitReplica(ctx))
	return budget
}

// TestReplicaReadsAndWrites sends reads and writes through a pool with the
// stack's streaming replica: the replica's gateway sees every read and no
// write (a write there would fail with 0A000, read-only), the primary's
// every write; a read after a write in the same closure sees the row, and
// so does a read in another closure with OnPrimary.
func TestReplicaReadsAndWrites(t *testing.T) {
	s := stack.ForTest(t, stack.Options{Replica: true})
	ctx := testCtx(t, 40*time.Second)
	budget := seedReplicated(ctx, t, s, "user-a", 5)
	cfg := testConfig(6)
	cfg.ReadReplicas = []string{s.ReplicaURL}
	svc, pool := newService(t, s, cfg)
	s.ResetConns()

	const reads, writes = 60, 12
	var wg sync.WaitGroup
	var created atomic.Int64
	for g := range 6 {
		wg.Go(func() {
			for i := range reads / 6 {
				cats, err := svc.List(ctx, budget, supapool.RetryMax(0))
				if assert.NoError(t, err) {
					assert.GreaterOrEqual(t, len(cats), 5)
				}
				if i%(reads/writes) == 0 {
					_, err := svc.Create(ctx, catalog.NewCategory{BudgetID: budget, OwnerID: "user-a", Name: fmt.Sprintf("w-%d-%d", g, i)}, supapool.RetryMax(0))
					if assert.NoError(t, err, "a write sent to the replica fails read-only") {
						created.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	primary, replica := s.Conns(), s.ReplicaConns()
	t.Logf("gateways: primary %d reads, %d writes; replica %d reads, %d writes", primary.Reads, primary.Writes, replica.Reads, replica.Writes)
	assert.Equal(t, int64(reads), replica.Reads, "every read at the replica")
	assert.Zero(t, replica.Writes, "no write at the replica")
	assert.Zero(t, primary.Reads, "no read at the primary")
	assert.Equal(t, int64(writes), primary.Writes)
	assert.Equal(t, int64(writes), created.Load())
	st := pool.Stats()
	checkStats(t, st)
	require.Len(t, st.Endpoints, 2)
	assert.Equal(t, primary.Writes, st.Endpoints[0].Requests)
	assert.Equal(t, replica.Reads, st.Endpoints[1].Requests)
	assert.Zero(t, st.Endpoints[0].Failures+st.Endpoints[1].Failures)

	// Read-your-writes: in the closure that wrote, the read goes to the
	// primary and sees the row; the replica may not have it yet.
	s.ResetConns()
	for i := range 10 {
		name := fmt.Sprintf("ryw-%d", i)
		err := pool.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
			if _, _, err := c.From("categories").Insert(catalog.NewCategory{BudgetID: budget, OwnerID: "user-a", Name: name}, false, "", "", "").
				ExecuteWithContext(ctx); err != nil {
				return err
			}
			cats, err := catalog.List(ctx, c, budget)
			if err != nil {
				return err
			}
			assert.True(t, slices.ContainsFunc(cats, func(c catalog.Category) bool { return c.Name == name }), "the read sees %s", name)
			return nil
		})
		require.NoError(t, err)
		// Another closure with OnPrimary sees it too.
		cats, err := svc.List(supapool.OnPrimary(ctx), budget)
		require.NoError(t, err)
		assert.True(t, slices.ContainsFunc(cats, func(c catalog.Category) bool { return c.Name == name }), "OnPrimary sees %s", name)
	}
	primary, replica = s.Conns(), s.ReplicaConns()
	assert.Equal(t, int64(20), primary.Reads, "the reads after a write and with OnPrimary")
	assert.Zero(t, replica.Reads+replica.Writes)

	// A user's token works on the replica, with row-level security.
	other := seedReplicated(ctx, t, s, "user-b", 2)
	cats, err := svc.List(supapool.WithAuthToken(ctx, s.UserToken("user-b")), "")
	require.NoError(t, err)
	require.Len(t, cats, 2)
	for _, c := range cats {
		assert.Equal(t, other, c.BudgetID)
	}
	assert.Equal(t, int64(1), s.ReplicaConns().Reads)

	h := pool.HealthCheck(ctx)
	assert.True(t, h.Healthy, "%+v", h)
	require.Len(t, h.Details.Endpoints, 2)
	assert.True(t, h.Details.Endpoints[1].Success)
}

// readLog records when each read of the failover test ended and how long
// it took.
type readLog struct {
	mu    sync.Mutex
	ends  []time.Time
	took  []time.Duration
	fails int
}

func (l *readLog) add(end time.Time, took time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.fails++
		return
	}
	l.ends, l.took = append(l.ends, end), append(l.took, took)
}

// slowest returns the longest read that ended in [from, to), and how many did.
func (l *readLog) slowest(from, to time.Time) (time.Duration, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var worst time.Duration
	n := 0
	for i, e := range l.ends {
		if !e.Before(from) && e.Before(to) {
			worst = max(worst, l.took[i])
			n++
		}
	}
	return worst, n
}

// TestReplicaStoppedUnderLoad runs 60 readers and 20 writers on one pool
// with the replica, and takes the replica away twice: its gateway
// (connection refused), then its PostgreSQL (PostgREST answers 503). No
// read fails (reads are not retried here: the router sends a read the
// replica could not serve to the primary within the same request), no
// write fails, and reads come back to the replica after it restarts and
// its cool-down has passed.
func TestReplicaStoppedUnderLoad(t *testing.T) {
	s := stack.ForTest(t, stack.Options{Replica: true, DBPool: 20})
	ctx := testCtx(t, 90*time.Second)
	budget := seedReplicated(ctx, t, s, "user-a", 10)
	cfg := testConfig(30)
	cfg.ReadReplicas = []string{s.ReplicaURL}
	cfg.ReplicaCoolDown = time.Second
	svc, pool := newService(t, s, cfg)

	var (
		log           readLog
		writeFails    atomic.Int64
		writes        atomic.Int64
		wg            sync.WaitGroup
		stopWorkers   = make(chan struct{})
		failuresByErr sync.Map
	)
	for range 60 {
		wg.Go(func() {
			for {
				select {
				case <-stopWorkers:
					return
				default:
				}
				start := time.Now()
				_, err := svc.List(ctx, budget, supapool.RetryMax(0))
				end := time.Now()
				log.add(end, end.Sub(start), err)
				if err != nil {
					failuresByErr.Store(err.Error(), true)
				}
			}
		})
	}
	for g := range 20 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopWorkers:
					return
				default:
				}
				_, err := svc.Create(ctx, catalog.NewCategory{BudgetID: budget, OwnerID: "user-a", Name: fmt.Sprintf("load-%d-%d", g, i)})
				if err != nil {
					writeFails.Add(1)
					failuresByErr.Store("write: "+err.Error(), true)
				}
				writes.Add(1)
				time.Sleep(10 * time.Millisecond) // a writer's think time, not synchronisation
			}
		})
	}
	replicaReads := func() int64 { return pool.Stats().Endpoints[1].Requests }

	type outage struct {
		name        string
		stop, start func() error
	}
	for _, o := range []outage{
		{"gateway stopped (connection refused)", s.StopReplicaProxy, func() error { return s.StartReplicaProxy(ctx) }},
		{"PostgreSQL stopped (503)", func() error { return s.StopReplica(ctx) }, func() error { return s.StartReplica(ctx) }},
	} {
		eventually(t, 10*time.Second, func() bool { return s.ReplicaConns().Reads > 200 }, "reads reach the replica")
		before := pool.Stats().Endpoints
		s.ResetConns()
		warm := time.Now()
		time.Sleep(500 * time.Millisecond) // load before the outage, for comparison
		stopped := time.Now()
		require.NoError(t, o.stop(), o.name)
		stopTook := time.Since(stopped)
		atStop := s.Conns().Reads
		time.Sleep(time.Second) // the outage
		restarted := time.Now()
		require.NoError(t, o.start(), o.name)
		down := s.Conns().Reads - atStop
		atRestart := replicaReads()
		back := eventually(t, 30*time.Second, func() bool { return replicaReads() > atRestart+100 }, "reads come back to the replica")
		after := pool.Stats().Endpoints

		normal, n := log.slowest(warm, stopped)
		gap, m := log.slowest(stopped, restarted)
		t.Logf("%s: stopping took %v; before it the slowest of %d reads took %v, during the outage the slowest of %d took %v; "+
			"%d reads went to the primary meanwhile; replica: %d failures, %d failovers, %d ejections; reads back at the replica %v after the restart",
			o.name, stopTook.Round(time.Millisecond), n, normal.Round(time.Millisecond), m, gap.Round(time.Millisecond), down,
			after[1].Failures-before[1].Failures, after[1].Failovers-before[1].Failovers, after[1].Ejections-before[1].Ejections,
			back.Round(time.Millisecond))
		assert.Positive(t, down, "%s: reads moved to the primary", o.name)
		assert.Positive(t, after[1].Ejections-before[1].Ejections, o.name)
	}
	close(stopWorkers)
	wg.Wait()

	var errs []string
	failuresByErr.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return true })
	assert.Zero(t, log.fails, "failed reads: %s", strings.Join(errs, "; "))
	assert.Zero(t, writeFails.Load(), "failed writes: %s", strings.Join(errs, "; "))
	st := pool.Stats()
	checkStats(t, st)
	t.Logf("%d reads, %d writes; endpoints %+v", len(log.ends), writes.Load(), st.Endpoints)
}

// TestHTTP2OverTLS runs 100 goroutines of two users on a pool of 20 over
// the gateway's TLS listener: every request arrives over HTTP/2, at most 20
// are in flight at once, few TCP connections carry them, and row-level
// security holds.
func TestHTTP2OverTLS(t *testing.T) {
	s := stack.ForTest(t, stack.Options{TLS: true})
	ctx := testCtx(t, 40*time.Second)
	users := []string{"user-a", "user-b"}
	budgets := map[string]string{}
	for _, u := range users {
		budgets[u] = insertBudget(ctx, t, s, u)
		sqlOut(ctx, t, s, fmt.Sprintf("insert into categories (budget_id, owner_id, name, sort_order) "+
			"select '%s', '%s', 'h2-' || i, i from generate_series(1, 5) i", budgets[u], u))
	}
	const (
		maxConns   = 20
		goroutines = 100
		duration   = 2 * time.Second
	)
	cfg := testConfig(maxConns)
	cfg.MinConnections = 0
	cfg.TLSClientConfig = s.TLSClientConfig()
	svc, pool := newServiceAt(t, s.TLSURL, s.ServiceKey, cfg)
	s.ResetConns()

	var ok, failed, foreign atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(duration)
	for g := range goroutines {
		wg.Go(func() {
			who := users[g%2]
			uctx := supapool.WithAuthToken(ctx, s.UserToken(who))
			for time.Now().Before(deadline) {
				cats, err := svc.List(uctx, "", supapool.RetryMax(0))
				if err != nil || len(cats) != 5 {
					if failed.Add(1) <= 3 {
						t.Errorf("%s: %d categories, %v", who, len(cats), err)
					}
					continue
				}
				for _, c := range cats {
					if c.OwnerID != who || c.BudgetID != budgets[who] {
						foreign.Add(1)
					}
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	conns := s.Conns()
	// The transport closes the connections it dialed while it did not
	// know the server speaks HTTP/2; the gateway notices on its own.
	eventually(t, 5*time.Second, func() bool { return s.Conns().Open <= 2 }, "connections left open: %+v", s.Conns())
	t.Logf("HTTP/2: %d reads by %d goroutines on %d clients; gateway: %d requests over HTTP/2, peak %d in flight; "+
		"TCP connections: %d opened, peak %d open, %d open after",
		ok.Load(), goroutines, maxConns, conns.HTTP2, conns.PeakInFlight, conns.New, conns.Peak, s.Conns().Open)
	assert.Zero(t, failed.Load())
	assert.Zero(t, foreign.Load(), "rows of another user")
	assert.Equal(t, conns.Reads+conns.Writes, conns.HTTP2, "every request over HTTP/2")
	assert.Equal(t, ok.Load(), conns.Reads)
	assert.LessOrEqual(t, conns.PeakInFlight, int64(maxConns), "the pool bounds requests in flight")
	assert.LessOrEqual(t, conns.New, int64(maxConns), "at most MaxConnections dialed")
	checkStats(t, pool.Stats())
}
