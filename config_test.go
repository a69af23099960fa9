package supapool_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/supapool/supapool"
)

const testKey = "sb-secret-key-never-printed-0123456789"

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

func TestNewRejectsBadInputWithoutLeakingTheKey(t *testing.T) {
	cases := []struct {
		name, url, key string
		cfg            supapool.Config
		want           string
	}{
		{"empty url", "", testKey, supapool.DefaultConfig(), "url is empty"},
		{"empty key", "http://127.0.0.1:1", "", supapool.DefaultConfig(), "key is empty"},
		{"unparsable url", "http://[::1", testKey, supapool.DefaultConfig(), "does not parse"},
		{"relative url", "example.supabase.co", testKey, supapool.DefaultConfig(), "not an absolute http(s) URL"},
		{"bad config", "http://127.0.0.1:1", testKey, supapool.Config{MaxConnections: -1}, "MaxConnections"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := supapool.New(tc.url, tc.key, tc.cfg)
			require.Nil(t, p)
			require.ErrorIs(t, err, supapool.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "supapool: "), err.Error())
			assert.NotContains(t, err.Error(), testKey)
			assert.False(t, errors.Is(err, supapool.ErrPoolClosed))
		})
	}
}

func TestPoolPrintsNoKey(t *testing.T) {
	p := newPool(t, supapool.DefaultConfig())
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p), fmt.Sprintf("%+v", p.Stats())} {
		assert.NotContains(t, s, testKey)
	}
	assert.Contains(t, p.String(), "supapool.Pool(http://127.0.0.1:1")
}
