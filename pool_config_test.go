package supapool_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/supapool/supapool"
)

func TestPresets(t *testing.T) {
	d := supapool.DefaultConfig()
	assert.Equal(t, 10, d.MaxConnections)
	assert.Equal(t, 2, d.MinConnections)
	assert.Equal(t, 30*time.Second, d.IdleTimeout)
	assert.Equal(t, 5*time.Second, d.AcquireTimeout)
	assert.Equal(t, 3, d.MaxRetries)
	assert.Equal(t, 100*time.Millisecond, d.RetryDelay)

	dev := supapool.DevelopmentConfig()
	assert.Equal(t, []any{5, 1, 15 * time.Second, 5 * time.Second}, []any{dev.MaxConnections, dev.MinConnections, dev.IdleTimeout, dev.AcquireTimeout})
	prod := supapool.ProductionConfig()
	assert.Equal(t, []any{20, 5, 60 * time.Second, 10 * time.Second}, []any{prod.MaxConnections, prod.MinConnections, prod.IdleTimeout, prod.AcquireTimeout})
	hi := supapool.HighLoadConfig()
	assert.Equal(t, []any{50, 10, 120 * time.Second, 15 * time.Second}, []any{hi.MaxConnections, hi.MinConnections, hi.IdleTimeout, hi.AcquireTimeout})
	for _, c := range []supapool.Config{d, dev, prod, hi, {}} {
		require.NoError(t, c.Validate())
	}
}

func TestValidateNamesEveryBadField(t *testing.T) {
	c := supapool.Config{
		MaxConnections: -1, MinConnections: -2, IdleTimeout: -time.Second, AcquireTimeout: -1,
		MaxRetries: -3, RetryDelay: -1, MaxLifetime: -1, MaxLifetimeJitter: -1,
		MaxRetryDelay: -1, ResponseHeaderTimeout: -1, HealthCheckTimeout: -1,
	}
	err := c.Validate()
	require.ErrorIs(t, err, supapool.ErrInvalidConfig)
	for _, f := range []string{"MaxConnections", "MinConnections", "IdleTimeout", "AcquireTimeout", "MaxRetries",
		"RetryDelay", "MaxLifetime ", "MaxLifetimeJitter", "MaxRetryDelay", "ResponseHeaderTimeout", "HealthCheckTimeout"} {
		assert.Contains(t, err.Error(), f)
	}
}

func TestValidateMinAboveMax(t *testing.T) {
	err := supapool.Config{MaxConnections: 3, MinConnections: 4}.Validate()
	require.ErrorIs(t, err, supapool.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "MinConnections (4) exceeds MaxConnections (3)")

	// Zero MaxConnections means the default 10, so Min 10 is fine and 11 is not.
	require.NoError(t, supapool.Config{MinConnections: 10}.Validate())
	require.ErrorIs(t, supapool.Config{MinConnections: 11}.Validate(), supapool.ErrInvalidConfig)

	err = supapool.Config{MaxLifetimeJitter: time.Second}.Validate()
	require.ErrorIs(t, err, supapool.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "MaxLifetimeJitter")
}

func TestBreakerConfig(t *testing.T) {
	for _, c := range []supapool.Config{supapool.DefaultConfig(), supapool.DevelopmentConfig(), {}} {
		assert.Equal(t, supapool.BreakerConfig{}, c.Breaker, "off")
	}
	on := supapool.BreakerConfig{Enabled: true, ConsecutiveFailures: 5, OpenTimeout: 5 * time.Second, HalfOpenRequests: 1}
	assert.Equal(t, on, supapool.ProductionConfig().Breaker)
	assert.Equal(t, on, supapool.HighLoadConfig().Breaker)

	err := supapool.Config{Breaker: supapool.BreakerConfig{Enabled: true, OpenTimeout: -time.Second}}.Validate()
	require.ErrorIs(t, err, supapool.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "Breaker.OpenTimeout is negative")
}
