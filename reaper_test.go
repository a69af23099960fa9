package supapool_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/supapool/supapool"
)

func TestReaperShrinksUnderLightSteadyLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 10 * time.Second
		p := newPool(t, supapool.Config{MaxConnections: 10, MinConnections: 2, IdleTimeout: idle})
		ctx := context.Background()
		// A burst grows the pool to its maximum.
		burst := acquireN(t, p, 10)
		for _, c := range burst {
			require.NoError(t, p.Release(c))
		}
		require.Equal(t, 10, p.Stats().TotalConnections)
		// Then one request at a time, every 100ms: the channel hands the
		// clients out in turn, so each is used every second.
		start := time.Now()
		for time.Since(start) < 3*idle {
			c, err := p.Acquire(ctx)
			require.NoError(t, err)
			time.Sleep(10 * time.Millisecond)
			require.NoError(t, p.Release(c))
			time.Sleep(90 * time.Millisecond)
		}
		s := p.Stats()
		assert.Equal(t, 2, s.TotalConnections, "back to MinConnections within a few IdleTimeouts")
		assert.EqualValues(t, 8, s.IdleClosed)
		checkIdentities(t, s)
	})
}

func TestReaperKeepsBusyClientsAndRefillsMin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 10 * time.Second
		p := newPool(t, supapool.Config{MaxConnections: 4, MinConnections: 2, IdleTimeout: idle})
		held := acquireN(t, p, 4)
		time.Sleep(3 * idle)
		// The reaper wakes at this same instant (every idle): let it finish
		// before the discards, or it may refill between them.
		synctest.Wait()
		assert.Equal(t, 4, p.Stats().TotalConnections, "clients in use are never reaped")
		for _, c := range held {
			require.NoError(t, p.Discard(c))
		}
		require.Equal(t, 0, p.Stats().TotalConnections)
		time.Sleep(idle + time.Second)
		s := p.Stats()
		assert.Equal(t, 2, s.TotalConnections, "the reaper refills to MinConnections")
		assert.Equal(t, 2, s.IdleConnections)
		checkIdentities(t, s)
	})
}

func TestMaxLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 2, MinConnections: 1, MaxLifetime: time.Minute, MaxLifetimeJitter: 10 * time.Second})
		ctx := context.Background()
		first, err := p.Acquire(ctx)
		require.NoError(t, err)
		require.NoError(t, p.Release(first))
		time.Sleep(80 * time.Second) // past lifetime + jitter
		c, err := p.Acquire(ctx)
		require.NoError(t, err)
		assert.NotSame(t, first, c, "an expired client is not handed out")
		// A client in use that expires is destroyed when released.
		time.Sleep(80 * time.Second)
		require.NoError(t, p.Release(c))
		s := p.Stats()
		assert.EqualValues(t, 2, s.LifetimeClosed)
		checkIdentities(t, s)
	})
}

// TestExpiredClientIsNeverHandedOut checks MaxLifetime between reaper
// passes: a client created at 50ms with MaxLifetime 400ms expires at 450ms,
// while the reaper (every 100ms) would only notice it at 500ms.
func TestExpiredClientIsNeverHandedOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 2, IdleTimeout: time.Hour, MaxLifetime: 400 * time.Millisecond})
		ctx := context.Background()
		time.Sleep(50 * time.Millisecond)
		first, err := p.Acquire(ctx)
		require.NoError(t, err)
		require.NoError(t, p.Release(first))
		time.Sleep(410 * time.Millisecond) // 460ms: expired, not yet reaped
		c, err := p.Acquire(ctx)
		require.NoError(t, err)
		assert.NotSame(t, first, c, "an expired client is not handed out, even between reaper passes")
		assert.EqualValues(t, 1, p.Stats().LifetimeClosed)

		// Released after its deadline but before the reaper's next pass:
		// destroyed on release.
		time.Sleep(420 * time.Millisecond)
		require.NoError(t, p.Release(c))
		s := p.Stats()
		assert.EqualValues(t, 2, s.LifetimeClosed)
		assert.Equal(t, 0, s.TotalConnections)
		checkIdentities(t, s)
	})
}
