package supapool_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

// TestPoolBoundsTCPConnections shows why the pool owns the transport:
// supabase-go clients share http.DefaultTransport, which keeps 2 idle
// connections per host, so concurrent use keeps opening new connections;
// the pool's clients reuse at most MaxConnections.
func TestPoolBoundsTCPConnections(t *testing.T) {
	const maxConns, perWorker = 8, 200

	srv, pooledNew := connCountingServer(t)
	s := newService(t, srv.URL, supapool.Config{MaxConnections: maxConns, MinConnections: maxConns})
	load(t, maxConns, perWorker, func(ctx context.Context) error { return s.WithClient(ctx, read) })
	assert.LessOrEqual(t, pooledNew.Load(), int64(maxConns+2), "pooled clients reuse their connections")

	// The same load on one supabase client per worker, as services do today.
	srv2, plainNew := connCountingServer(t)
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	load(t, maxConns, perWorker, func(ctx context.Context) error {
		c, err := supabase.NewClient(srv2.URL, testKey, nil)
		require.NoError(t, err)
		return read(ctx, c)
	})
	t.Logf("new TCP connections: pooled %d for %d requests; default transport %d for %d requests",
		pooledNew.Load(), maxConns*perWorker, plainNew.Load(), maxConns*perWorker)
	assert.Greater(t, plainNew.Load(), int64(maxConns+2), "the default transport cannot keep %d connections idle", maxConns)
}

func TestCallerSuppliedTransport(t *testing.T) {
	srv, _ := connCountingServer(t)
	var n atomic.Int64
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	rt := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		n.Add(1)
		return tr.RoundTrip(r)
	})
	s := newService(t, srv.URL, supapool.Config{Transport: rt})
	for range 3 {
		require.NoError(t, s.WithClient(context.Background(), read))
	}
	assert.EqualValues(t, 3, n.Load(), "every request goes through Config.Transport")
}
