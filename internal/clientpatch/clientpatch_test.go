package clientpatch_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"
	"go.uber.org/goleak"

	"github.com/supapool/supapool/internal/clientpatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLayout fails loudly when a supabase-go upgrade renames or retypes
// Client.rest: the pool would then fall back to http.DefaultTransport.
func TestLayout(t *testing.T) {
	require.NoError(t, clientpatch.Check(), "supabase-go layout changed: update internal/clientpatch before upgrading")
}

type countingRT struct {
	n    atomic.Int64
	base http.RoundTripper
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func TestSetTransportRoutesRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/rest/v1/things", r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[]`))
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()

	c, err := supabase.NewClient(srv.URL, "key", nil)
	require.NoError(t, err)
	before, err := clientpatch.Transport(c)
	require.NoError(t, err)
	require.Nil(t, before, "a fresh client uses http.DefaultTransport")

	rt := &countingRT{base: tr}
	require.NoError(t, clientpatch.SetTransport(c, rt))
	got, err := clientpatch.Transport(c)
	require.NoError(t, err)
	require.Same(t, rt, got)

	for range 3 {
		_, _, err = c.From("things").Select("*", "", false).Execute()
		require.NoError(t, err)
	}
	require.EqualValues(t, 3, rt.n.Load(), "every PostgREST request goes through the transport that was set")
}

func TestNilClient(t *testing.T) {
	require.Error(t, clientpatch.SetTransport(nil, http.DefaultTransport))
}
