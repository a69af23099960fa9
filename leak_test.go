package supapool_test

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/supapool/supapool"
)

func TestLeakDetection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, logs := newLogger(slog.LevelInfo)
		p := newPool(t, supapool.Config{MaxConnections: 2, LeakThreshold: 50 * time.Millisecond, Logger: log})
		var r recorder
		p.Observe(r.observe)

		short, err := p.Acquire(context.Background())
		require.NoError(t, err)
		leaked, err := p.Acquire(context.Background())
		require.NoError(t, err)
		time.Sleep(40 * time.Millisecond)
		require.NoError(t, p.Release(short)) // under the threshold: not a leak
		time.Sleep(160 * time.Millisecond)
		synctest.Wait()

		warns := logs.lines("level=WARN", "LeakThreshold")
		require.Len(t, warns, 1, logs.String())
		assert.Contains(t, warns[0], "TestLeakDetection", "the acquirer's stack")
		assert.Contains(t, warns[0], "leak_test.go:")
		assert.NotContains(t, warns[0], "supapool.(*Pool)", "the pool's own frames are left out")
		// Found between 50ms and 75ms (the checker ticks every 25ms).
		assert.Contains(t, warns[0], "held=50ms")
		assert.EqualValues(t, 1, p.Stats().Leaks)
		assert.Len(t, r.takeKind(supapool.EventLeak), 1)

		require.NoError(t, p.Release(leaked))
		infos := logs.lines("level=INFO", "leaked", "returned")
		require.Len(t, infos, 1, logs.String())
		assert.Contains(t, infos[0], "held=200ms")
		assert.Contains(t, infos[0], "TestLeakDetection")
		assert.NotContains(t, logs.String(), testKey)

		// Reported once per checkout: the next checkout of the same
		// client is judged afresh.
		again, err := p.Acquire(context.Background())
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, p.Release(again))
		time.Sleep(100 * time.Millisecond)
		assert.Len(t, logs.lines("level=WARN"), 1)
		assert.EqualValues(t, 1, p.Stats().Leaks)
	})
}

func TestLeakDetectionOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, logs := newLogger(slog.LevelDebug)
		p := newPool(t, supapool.Config{MaxConnections: 1, MinConnections: 1, Logger: log})
		c, err := p.Acquire(context.Background())
		require.NoError(t, err)
		time.Sleep(time.Hour)
		require.NoError(t, p.Release(c))
		assert.Empty(t, logs.lines("level=WARN"))
		assert.Zero(t, p.Stats().Leaks)
	})
	// Off, Acquire captures nothing and allocates nothing (the hot path is
	// checked with an observer too in TestAcquireReleaseAllocateNothing).
	p := newPool(t, supapool.Config{MaxConnections: 1, MinConnections: 1})
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		c, _ := p.Acquire(context.Background())
		_ = p.Release(c)
	}))
}
