package supapool_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

// connCountingServer answers like PostgREST after ~1ms of "work" and
// counts the TCP connections its clients opened.
func connCountingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var newConns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond) // simulated query time, not synchronisation
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[]`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &newConns
}

// load sends workers*perWorker requests, pausing 1ms between requests as
// a service does between the queries of its handlers (think time, not
// synchronisation): the pauses are what lets idle connections pile up.
func load(t *testing.T, workers, perWorker int, do func(ctx context.Context) error) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				if err := do(context.Background()); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
}

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

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
