package supapool_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/supapool/supapool"
)

func TestInstance(t *testing.T) {
	cfg := supapool.Config{MaxConnections: 3}
	a, err := supapool.Instance(unusedURL, testKey, cfg)
	require.NoError(t, err)
	b, err := supapool.Instance(unusedURL, testKey, supapool.Config{MaxConnections: 7})
	require.NoError(t, err)
	require.Same(t, a, b, "same (url, key): same pool, whatever the cfg")
	assert.Equal(t, 3, b.Stats().MaxConnections)
	other, err := supapool.Instance(unusedURL, "another-key", cfg)
	require.NoError(t, err)
	require.NotSame(t, a, other)

	require.NoError(t, a.Close(context.Background()))
	fresh, err := supapool.Instance(unusedURL, testKey, cfg)
	require.NoError(t, err)
	require.NotSame(t, a, fresh, "a closed pool leaves the registry")
	require.False(t, fresh.Stats().Closed)
	require.NoError(t, fresh.Close(context.Background()))
	require.NoError(t, other.Close(context.Background()))

	_, err = supapool.Instance("", testKey, cfg)
	require.ErrorIs(t, err, supapool.ErrInvalidConfig)
}
