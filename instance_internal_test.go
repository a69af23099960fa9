package supapool

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestInstanceNeverReturnsAClosedPool puts the registry in the state a
// concurrent Close can leave it in (the pool closed, its entry still
// there) and checks that Instance creates a fresh pool rather than return
// the closed one.
func TestInstanceNeverReturnsAClosedPool(t *testing.T) {
	const url, key = "http://127.0.0.1:1", "instance-internal-test-key"
	a, err := Instance(url, key, Config{})
	require.NoError(t, err)
	require.NoError(t, a.Close(context.Background()))
	registry.mu.Lock()
	registry.pools[instanceKey{url, key}] = a
	registry.mu.Unlock()

	b, err := Instance(url, key, Config{})
	require.NoError(t, err)
	require.NotSame(t, a, b)
	require.False(t, b.Stats().Closed)
	require.NoError(t, b.Close(context.Background()))
}
