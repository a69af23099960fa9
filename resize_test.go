package supapool_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
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

func TestMaxWaitingShedsLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 1, MaxWaiting: 3, AcquireTimeout: time.Minute})
		held, err := p.Acquire(context.Background())
		require.NoError(t, err)
		got := startWaiters(t, p, 3)
		require.Equal(t, 3, p.Stats().WaitingForConnection, "exactly MaxWaiting callers are admitted")

		start := time.Now()
		_, err = p.Acquire(context.Background())
		require.ErrorIs(t, err, supapool.ErrPoolExhausted)
		assert.Zero(t, time.Since(start), "refused without waiting")
		var pe *supapool.PoolExhaustedError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, 3, pe.Stats.WaitingForConnection)
		assert.True(t, supapool.IsTransient(err))
		assert.Regexp(t, `^supapool: `, err.Error())

		// The admitted waiters are served in turn; nothing leaks.
		c := held
		for range 3 {
			require.NoError(t, p.Release(c))
			c = <-got
		}
		require.NoError(t, p.Release(c))
		s := p.Stats()
		assert.EqualValues(t, 1, s.RejectedAcquires)
		assert.Zero(t, s.WaitingForConnection)
		assert.Zero(t, s.ActiveConnections)
		checkIdentities(t, s)
	})
}

func TestSetMaxConnectionsRejectsBadValues(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 4, MinConnections: 2})
	for _, n := range []int{0, -1, 1} {
		err := p.SetMaxConnections(n)
		require.ErrorIs(t, err, supapool.ErrInvalidConfig, "n=%d", n)
	}
	assert.Equal(t, 4, p.Stats().MaxConnections, "nothing changed")
}

func TestSetMaxConnectionsGrowsAndServesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 1, AcquireTimeout: time.Minute})
		held, err := p.Acquire(context.Background())
		require.NoError(t, err)
		got := startWaiters(t, p, 2)
		require.Equal(t, 2, p.Stats().WaitingForConnection)
		require.NoError(t, p.SetMaxConnections(12)) // beyond the idle channel's first capacity
		a, b := <-got, <-got
		s := p.Stats()
		assert.Equal(t, 12, s.MaxConnections)
		assert.Equal(t, 3, s.ActiveConnections)
		assert.Zero(t, s.WaitingForConnection)
		// All 12 can be out and come back to the idle channel.
		more := acquireN(t, p, 9)
		for _, c := range append(more, held, a, b) {
			require.NoError(t, p.Release(c))
		}
		s = p.Stats()
		assert.Equal(t, 12, s.IdleConnections)
		checkIdentities(t, s)
	})
}

func TestSetMaxConnectionsShrinks(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 4})
	cs := acquireN(t, p, 4)
	require.NoError(t, p.Release(cs[0]))
	require.NoError(t, p.Release(cs[1]))
	require.NoError(t, p.SetMaxConnections(1))
	s := p.Stats()
	assert.Equal(t, 2, s.TotalConnections, "idle surplus closed at once")
	assert.Equal(t, 1, s.MaxConnections)
	require.NoError(t, p.Release(cs[2]))
	assert.Equal(t, 1, p.Stats().TotalConnections, "a returning client above the max is destroyed")
	require.NoError(t, p.Release(cs[3]))
	s = p.Stats()
	assert.Equal(t, 1, s.TotalConnections, "the last one is kept")
	assert.EqualValues(t, 3, s.ResizeClosed)
	checkIdentities(t, s)
	// From now on, one client at most.
	c, err := p.Acquire(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = p.Acquire(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, p.Release(c))
}

func TestReset(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 4, MinConnections: 2})
	cs := acquireN(t, p, 3)
	require.NoError(t, p.Release(cs[0]))
	require.NoError(t, p.Release(cs[1]))
	p.Reset()
	s := p.Stats()
	assert.EqualValues(t, 1, s.Resets)
	assert.EqualValues(t, 2, s.ResetClosed, "idle clients closed now")
	assert.Equal(t, 2, s.TotalConnections, "refilled to MinConnections, counting the one in use")
	require.NoError(t, p.Release(cs[2]))
	s = p.Stats()
	assert.EqualValues(t, 3, s.ResetClosed, "the client in use is closed when it comes back")
	assert.Equal(t, 2, s.TotalConnections, "and replaced, to keep MinConnections")
	checkIdentities(t, s)
	// The pool keeps serving with fresh clients.
	for _, c := range acquireN(t, p, 4) {
		assert.NotContains(t, cs, c)
		require.NoError(t, p.Release(c))
	}
}

// TestResizeAndResetBoundTCPConnections drives real requests through the
// pool's own transport: after SetMaxConnections(2) no more than 2 TCP
// connections are open, and after Reset no old connection is reused.
func TestResizeAndResetBoundTCPConnections(t *testing.T) {
	ct := &connTracker{}
	release := make(chan struct{})
	var inFlight atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		if r.URL.Query().Get("hold") != "" {
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[]`))
	}))
	srv.Config.ConnState = ct.state
	srv.Start()
	defer srv.Close()
	p := newService(t, srv.URL, supapool.Config{MaxConnections: 8, AcquireTimeout: time.Minute}).Pool()
	traffic := func(workers int, hold bool) {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				err := p.WithClient(context.Background(), func(ctx context.Context, c *supabase.Client) error {
					q := c.From("t").Select("*", "", false)
					if hold {
						q = q.Eq("hold", "1")
					}
					_, _, err := q.ExecuteWithContext(ctx)
					return err
				})
				assert.NoError(t, err)
			})
		}
		if hold {
			for inFlight.Load() < int32(workers) {
				time.Sleep(time.Millisecond)
			}
			close(release)
		}
		wg.Wait()
	}
	traffic(8, true) // 8 requests at once: 8 connections
	_, peak, _ := ct.snapshot()
	require.Equal(t, 8, peak)

	require.NoError(t, p.SetMaxConnections(2))
	ct.waitOpen(t, 0) // nothing was in use: the old transport's connections are closed now
	ct.resetPeak()
	for range 20 {
		traffic(8, false)
	}
	open, peak, opened := ct.snapshot()
	assert.LessOrEqual(t, peak, 2, "never more than the new max of TCP connections")
	assert.LessOrEqual(t, open, 2)
	t.Logf("after SetMaxConnections(2): 160 requests from 8 goroutines, peak %d open, %d opened in all", peak, opened)

	_, _, before := ct.snapshot()
	p.Reset()
	ct.waitOpen(t, 0)
	traffic(1, false)
	_, _, after := ct.snapshot()
	assert.Equal(t, before+1, after, "after Reset a request goes on a new connection")
}

// TestResizeAndResetUnderStress interleaves Reset and SetMaxConnections
// with Acquire, Release and Discard; one case adds a Close partway, one an
// adaptive limit that moves at random: no client has two owners, the
// identities hold, never more clients exist than the largest maximum set,
// and after the run the maximum in force holds (or, closed, nothing is
// left).
func TestResizeAndResetUnderStress(t *testing.T) {
	for _, tc := range []struct {
		closeAfter int // chaos rounds before Close; 0: never
		adaptive   bool
	}{{0, false}, {200, false}, {0, true}} {
		t.Run(fmt.Sprintf("close after %d, adaptive %v", tc.closeAfter, tc.adaptive), func(t *testing.T) {
			const largest = 6
			p := newPool(t, supapool.Config{MaxConnections: 4, MinConnections: 1, AcquireTimeout: time.Second, AdaptiveLimit: tc.adaptive})
			var owners sync.Map
			var acquired atomic.Int64
			stopWatching := watchIdentitiesWithin(t, p, largest)
			stopMoving := func() {}
			if tc.adaptive {
				stopMoving = moveLimit(p)
			}
			stop := make(chan struct{})
			var chaos sync.WaitGroup
			chaos.Go(func() {
				for i := 1; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					switch {
					case i == tc.closeAfter:
						go func() { assert.NoError(t, p.Close(context.Background())) }()
					case i%3 == 0:
						p.Reset()
					default:
						err := p.SetMaxConnections(1 + i%largest)
						if !errors.Is(err, supapool.ErrPoolClosed) {
							assert.NoError(t, err)
						}
					}
					time.Sleep(20 * time.Microsecond) // pacing, not synchronisation
				}
			})
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Go(func() {
					r := newRand(w)
					for range 300 {
						c, err := p.Acquire(context.Background())
						switch {
						case errors.Is(err, supapool.ErrAcquireTimeout):
							continue
						case errors.Is(err, supapool.ErrPoolClosed):
							return
						case !assert.NoError(t, err):
							return
						}
						acquired.Add(1)
						holdAndReturn(t, p, &owners, w, c, r, 20*time.Microsecond, r.IntN(3) == 0)
					}
				})
			}
			wg.Wait()
			close(stop)
			chaos.Wait()
			stopMoving()
			stopWatching()
			s := checkQuiet(t, p, acquired.Load())
			if tc.closeAfter > 0 {
				require.NoError(t, p.Close(context.Background()))
				s = p.Stats()
				assert.True(t, s.Closed)
				assert.Zero(t, s.TotalConnections, "a closed pool keeps nothing")
			} else {
				assert.LessOrEqual(t, s.TotalConnections, s.MaxConnections, "once all are back, the max in force holds")
			}
			t.Logf("acquired %d; stats %+v", acquired.Load(), s)
		})
	}
}
