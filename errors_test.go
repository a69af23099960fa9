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

// TestPermanentTransportFailures: a server whose certificate is not
// trusted, and a request net/http refuses to send (a user token with a
// trailing newline, an env-file mistake), fail the same way on every
// attempt. Neither request left (the handshake, and net/http's header
// validation, come before it), so it never ran and no client is suspect.
func TestPermanentTransportFailures(t *testing.T) {
	const token = "user-jwt-from-an-env-file"
	cases := []struct {
		name   string
		server func(*testing.T) *fakeREST
		ctx    context.Context
		check  func(*testing.T, error)
	}{{
		"untrusted certificate",
		func(t *testing.T) *fakeREST { return newFakeRESTTLS(t, ok200) },
		context.Background(),
		func(t *testing.T, err error) { assert.ErrorAs(t, err, new(*tls.CertificateVerificationError)) },
	}, {
		"token with a trailing newline",
		func(t *testing.T) *fakeREST { return newFakeREST(t, successPost) },
		supapool.WithAuthToken(context.Background(), token+"\n"),
		func(t *testing.T, err error) { assert.NotContains(t, err.Error(), token) },
	}}
	for _, tc := range cases {
		for _, op := range []struct {
			name string
			fn   func(context.Context, *supabase.Client) error
		}{{"GET", read}, {"POST", insert}} {
			t.Run(tc.name+"/"+op.name, func(t *testing.T) {
				srv := tc.server(t)
				s := newService(t, srv.URL, supapool.Config{MaxRetries: 2})
				err := s.WithRetry(tc.ctx, op.fn)
				require.Error(t, err)
				tc.check(t, err)
				assert.False(t, supapool.IsTransient(err), "IsTransient(%v)", err)
				var pe *supapool.Error
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, 1, pe.Attempts)
				assert.True(t, pe.NeverRan(), "the request never left")
				assert.EqualValues(t, 0, s.PoolStats().Discarded)
				assert.Equal(t, 0, srv.count())
			})
		}
	}
}

// TestLostDatabaseIsTransient: PostgREST answers 400 with an empty code
// and message when the statement's database connection dropped (seen with
// a replica restarting): a read is retried, a write is not (it may have
// run), and a 400 with a code stays the caller's error.
func TestLostDatabaseIsTransient(t *testing.T) {
	f := newFakeREST(t, lostDB, ok200)
	s := newService(t, f.URL, supapool.Config{MaxRetries: 2})
	require.NoError(t, s.WithRetry(context.Background(), read))
	assert.Equal(t, 2, f.count(), "the read was retried")

	f = newFakeREST(t, lostDB, successPost)
	s = newService(t, f.URL, supapool.Config{MaxRetries: 2})
	err := s.WithRetry(context.Background(), insert)
	var e *supapool.Error
	require.ErrorAs(t, err, &e)
	assert.True(t, supapool.IsTransient(err))
	assert.False(t, e.NeverRan())
	assert.Equal(t, 1, f.count(), "the write may have run: not repeated")

	f = newFakeREST(t, undefCol)
	s = newService(t, f.URL, supapool.Config{MaxRetries: 2})
	err = s.WithRetry(context.Background(), read)
	assert.False(t, supapool.IsTransient(err))
	assert.Equal(t, 1, f.count())
}
