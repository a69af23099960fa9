package supapool_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

func TestRPCRetriedWhenItNeverRanAndDecoded(t *testing.T) {
	f := newFakeREST(t, pgrst000, reply{status: 200, body: `{"sub":"alice"}`})
	s := newService(t, f.URL, supapool.Config{MaxRetries: 2})
	var out struct{ Sub string }
	err := s.WithRetry(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		return supapool.RPC(ctx, c, "whoami", nil, &out)
	})
	require.NoError(t, err)
	assert.Equal(t, 2, f.count())
	assert.Equal(t, "alice", out.Sub)
}

func TestRPCReturnsPostgRESTsError(t *testing.T) {
	f := newFakeREST(t, reply{status: 404, body: `{"code":"PGRST202","message":"Could not find the function public.nope without parameters in the schema cache"}`})
	s := newService(t, f.URL, supapool.Config{MaxRetries: 2})
	err := s.WithRetry(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		return supapool.RPC(ctx, c, "nope", map[string]int{"a": 1}, nil)
	})
	var e *supapool.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 404, e.Status)
	assert.Equal(t, "PGRST202", e.Code)
	assert.Equal(t, 1, e.Attempts)
	assert.Equal(t, 1, f.count(), "a 404 is not retried")
	assert.Contains(t, err.Error(), "PGRST202")
}

func TestRPCDroppedAfterSendIsNotRepeated(t *testing.T) {
	f := newFakeREST(t, dropped, reply{status: 200, body: `{}`})
	s := newService(t, f.URL, supapool.Config{MaxRetries: 2})
	err := s.WithRetry(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		return supapool.RPC(ctx, c, "transfer", map[string]int{"amount": 10}, nil)
	})
	var e *supapool.Error
	require.ErrorAs(t, err, &e)
	assert.True(t, supapool.IsTransient(err))
	assert.False(t, e.NeverRan())
	assert.Equal(t, 1, f.count(), "the call may have run: not sent again")
	assert.EqualValues(t, 1, s.PoolStats().Discarded, "the broken connection's client is discarded")
}

func TestRPCOutsideAPool(t *testing.T) {
	c, err := supabase.NewClient(unusedURL, testKey, nil)
	require.NoError(t, err)
	err = supapool.RPC(context.Background(), c, "fn", nil, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not from a supapool.Pool")
	assert.False(t, errors.Is(err, supapool.ErrClientReleased))
}
