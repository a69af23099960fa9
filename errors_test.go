package supapool_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

func TestErrorNeverRan(t *testing.T) {
	for _, tc := range []struct {
		rep  reply
		want bool
	}{{pgrst000, true}, {pgrst003, true}, {gateway502, false}, {admin57P01, false}, {uniqueViol, false}} {
		srv := newFakeREST(t, tc.rep)
		s := newService(t, srv.URL, supapool.Config{})
		var pe *supapool.Error
		require.ErrorAs(t, s.WithClient(context.Background(), insert), &pe)
		assert.Equal(t, tc.want, pe.NeverRan(), "%d %s", pe.Status, pe.Code)
	}
}

// TestCertificateErrorIsPermanent: a server whose certificate is not
// trusted will not be trusted on the next attempt either. No request left
// (the handshake comes first), so no client is suspect.
func TestCertificateErrorIsPermanent(t *testing.T) {
	for _, op := range []struct {
		name string
		fn   func(context.Context, *supabase.Client) error
	}{{"GET", read}, {"POST", insert}} {
		t.Run(op.name, func(t *testing.T) {
			srv := newFakeRESTTLS(t, ok200)
			s := newService(t, srv.URL, supapool.Config{MaxRetries: 2})
			err := s.WithRetry(context.Background(), op.fn)
			require.Error(t, err)
			assert.ErrorAs(t, err, new(*tls.CertificateVerificationError))
			assert.False(t, supapool.IsTransient(err), "IsTransient(%v)", err)
			var pe *supapool.Error
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, 1, pe.Attempts)
			assert.True(t, pe.NeverRan())
			assert.EqualValues(t, 0, s.PoolStats().Discarded)
			assert.Equal(t, 0, srv.count())
		})
	}
}

// TestUnsendableHeaderNeverLeaves: a user token with a trailing newline
// (an env-file mistake) cannot be put on the wire; net/http refuses the
// request before it dials, so the request never ran and retrying it is
// pointless.
func TestUnsendableHeaderNeverLeaves(t *testing.T) {
	const token = "user-jwt-from-an-env-file"
	for _, op := range []struct {
		name string
		fn   func(context.Context, *supabase.Client) error
	}{{"GET", read}, {"POST", insert}} {
		t.Run(op.name, func(t *testing.T) {
			srv := newFakeREST(t, successPost)
			s := newService(t, srv.URL, supapool.Config{MaxRetries: 2})
			err := s.WithRetry(supapool.WithAuthToken(context.Background(), token+"\n"), op.fn)
			require.Error(t, err)
			assert.False(t, supapool.IsTransient(err), "IsTransient(%v)", err)
			assert.NotContains(t, err.Error(), token)
			var pe *supapool.Error
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, 1, pe.Attempts)
			assert.True(t, pe.NeverRan(), "the request never left")
			assert.EqualValues(t, 0, s.PoolStats().Discarded)
			assert.Equal(t, 0, srv.count())
		})
	}
}
