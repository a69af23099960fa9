package supapool_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

func TestWithClientReturnsErrorsUnchangedOrWrapped(t *testing.T) {
	srv := newFakeREST(t, undefCol)
	s := newService(t, srv.URL, supapool.Config{})
	mine := errors.New("mine")
	require.Same(t, mine, s.WithClient(context.Background(), func(context.Context, *supabase.Client) error { return mine }))

	var inner error
	err := s.WithClient(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		inner = read(ctx, c)
		return fmt.Errorf("listing: %w", inner)
	})
	require.ErrorIs(t, err, inner, "errors.Is reaches the closure's error")
	var pe *supapool.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 400, pe.Status)
	assert.Equal(t, "42703", pe.Code)
	assert.Equal(t, 1, pe.Attempts)
	assert.Equal(t, 1, srv.count(), "WithClient never retries")
}

func TestWithClientDiscardsAfterTransportFailure(t *testing.T) {
	srv := newFakeREST(t, dropped)
	s := newService(t, srv.URL, supapool.Config{})
	require.Error(t, s.WithClient(context.Background(), read))
	st := s.PoolStats()
	assert.EqualValues(t, 1, st.Discarded, "a client whose request broke is not reused")
	assert.Equal(t, 0, st.ActiveConnections)
	checkIdentities(t, st)

	ok := newFakeREST(t, undefCol)
	s2 := newService(t, ok.URL, supapool.Config{})
	require.Error(t, s2.WithClient(context.Background(), read))
	assert.EqualValues(t, 0, s2.PoolStats().Discarded, "an HTTP error answer leaves the client healthy")
}

func TestWithClientPanicDiscardsAndRepanics(t *testing.T) {
	s := newService(t, unusedURL, supapool.Config{})
	require.PanicsWithValue(t, "boom", func() {
		_ = s.WithClient(context.Background(), func(context.Context, *supabase.Client) error { panic("boom") })
	})
	st := s.PoolStats()
	assert.Equal(t, 0, st.ActiveConnections)
	assert.EqualValues(t, 1, st.Discarded)
	checkIdentities(t, st)
	require.Panics(t, func() {
		_ = s.WithRetry(context.Background(), func(context.Context, *supabase.Client) error { panic("again") })
	})
	assert.Equal(t, 0, s.PoolStats().ActiveConnections)
}

func TestWithClientOnClosedPool(t *testing.T) {
	p, err := supapool.New(unusedURL, testKey, supapool.Config{})
	require.NoError(t, err)
	require.NoError(t, p.Close(context.Background()))
	called := false
	err = p.WithClient(context.Background(), func(context.Context, *supabase.Client) error { called = true; return nil })
	require.ErrorIs(t, err, supapool.ErrPoolClosed)
	assert.False(t, called)
}

func TestWithClientKeepsClientWhenOwnCtxEnds(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	s := newService(t, srv.URL, supapool.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.WithClient(ctx, read)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.EqualValues(t, 0, s.PoolStats().Discarded, "the caller's deadline is not the client's fault")
	assert.False(t, supapool.IsTransient(err))
}

// TestClosuresOwnErrorIsNotBlamedOnAHandledFailure: a closure that handles
// a failed request and then fails for a reason of its own gets its own
// error back, unwrapped, and WithRetry does not retry it.
func TestClosuresOwnErrorIsNotBlamedOnAHandledFailure(t *testing.T) {
	errValidation := errors.New("validation failed")
	for _, first := range []reply{missingTbl, pgrst000} {
		f := newFakeREST(t, first, ok200)
		s := newService(t, f.URL, supapool.Config{MaxRetries: 2})
		err := s.WithRetry(context.Background(), func(ctx context.Context, c *supabase.Client) error {
			if err := read(ctx, c); err == nil {
				return errors.New("expected the scripted failure")
			}
			return errValidation
		})
		require.Equal(t, errValidation, err, "first reply %d", first.status)
		assert.Equal(t, 1, f.count(), "fn's own error is not retried")
	}
}
