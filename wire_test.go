package supapool_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

// TestBrokenAnswerDiscardsTheClient: a GET sent and then left without
// headers past ResponseHeaderTimeout, or whose 200 body is cut mid-stream,
// broke at the transport after the request was sent: the failure is an
// *Error, transient (the caller's ctx did not end), and the client is not
// reused.
func TestBrokenAnswerDiscardsTheClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		rep  reply
	}{{"response header timeout", hung}, {"body cut mid-stream", cut200}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeREST(t, tc.rep)
			s := newService(t, srv.URL, supapool.Config{ResponseHeaderTimeout: 100 * time.Millisecond})
			err := s.WithClient(context.Background(), read)
			require.Error(t, err)
			assert.True(t, supapool.IsTransient(err), "IsTransient(%v)", err)
			assert.EqualValues(t, 1, s.PoolStats().Discarded, "the client whose request broke is not reused")
			var pe *supapool.Error
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, 0, pe.Status)
			assert.False(t, pe.NeverRan(), "the request was sent")
		})
	}
}

// TestHugeErrorBodyReachesTheCallerWhole: the recorder reads a bounded
// prefix of an error body, but postgrest-go still gets all of it, and the
// *Error has the status and PostgREST's code however long the body is.
func TestHugeErrorBodyReachesTheCallerWhole(t *testing.T) {
	srv := newFakeREST(t, hugeError)
	s := newService(t, srv.URL, supapool.Config{})
	var inner error
	err := s.WithClient(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		inner = read(ctx, c)
		return inner
	})
	require.Error(t, inner)
	assert.True(t, inner.Error() == "(42P01) "+hugeMessage, "postgrest-go parsed the whole body; got %.120q", inner)
	var pe *supapool.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 404, pe.Status)
	assert.Equal(t, "42P01", pe.Code)
}
