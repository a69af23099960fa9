package integration

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/stack"
)

// TestLoadBoundsConnections runs 100 goroutines of category reads against
// a pool of 20 for about three seconds, and counts at the gateway the TCP
// connections the pool opened: never more than 20 at once, and hardly any
// more than 20 in all, because they are kept alive and reused.
func TestLoadBoundsConnections(t *testing.T) {
	s := stack.ForTest(t, stack.Options{})
	ctx := testCtx(t, 30*time.Second)
	budget := insertBudget(ctx, t, s, "user-a")
	sqlOut(ctx, t, s, fmt.Sprintf("insert into categories (budget_id, owner_id, name, sort_order) "+
		"select '%s', 'user-a', 'load-' || i, i from generate_series(1, 10) i", budget))
	const (
		maxConns   = 20
		goroutines = 100
		duration   = 3 * time.Second
	)
	cfg := testConfig(maxConns)
	cfg.MinConnections = 0
	svc, pool := newService(t, s, cfg)

	s.ResetConns()
	before := s.Conns()
	var (
		ok, failed atomic.Int64
		wg         sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(duration)
	for range goroutines {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				cats, err := svc.List(ctx, budget, supapool.RetryMax(0))
				if err != nil || len(cats) != 10 {
					if failed.Add(1) <= 3 {
						t.Errorf("read: %d categories, %v", len(cats), err)
					}
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	conns := s.Conns()
	st := pool.Stats()

	assert.Zero(t, failed.Load())
	require.Positive(t, ok.Load())
	assert.LessOrEqual(t, conns.Peak, int64(maxConns), "connections open at once at the gateway")
	assert.LessOrEqual(t, conns.New, int64(maxConns+3), "connections opened in all")
	assert.LessOrEqual(t, st.TotalCreated, int64(maxConns))
	checkStats(t, st)
	var avgWait time.Duration
	if st.WaitCount > 0 {
		avgWait = st.WaitDuration / time.Duration(st.WaitCount)
	}
	t.Logf("%d goroutines, MaxConnections %d, %v: %d reads (%.0f/s), %d failed; gateway: %d connections open before, peak %d, %d new, %d open after; "+
		"pool: %d clients created, %d waits (avg %v), %d acquire timeouts",
		goroutines, maxConns, elapsed.Round(time.Millisecond), ok.Load(), float64(ok.Load())/elapsed.Seconds(), failed.Load(),
		before.Open, conns.Peak, conns.New, conns.Open, st.TotalCreated, st.WaitCount, avgWait.Round(time.Microsecond), st.AcquireTimeouts)
}
