package supapoolprom_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"
	"go.uber.org/goleak"

	"github.com/supapool/supapool"
	supapoolprom "github.com/supapool/supapool/prometheus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "sb-secret-key-never-printed-0123456789"

// server answers like PostgREST: 503 PGRST000 first, then 200.
func server(t *testing.T) *httptest.Server {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"code":"PGRST000","message":"Database connection error."}`)
			return
		}
		_, _ = io.WriteString(w, `[]`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func read(ctx context.Context, c *supabase.Client) error {
	var out []map[string]any
	_, err := c.From("categories").Select("*", "", false).ExecuteToWithContext(ctx, &out)
	return err
}

// TestCollectorAfterKnownTraffic: 5 acquire/release cycles, a 503 and a
// 200 (one Acquire each), two clients held, a third Acquire timing out,
// one of the two released at once and the other held until it is
// reported as leaked.
func TestCollectorAfterKnownTraffic(t *testing.T) {
	p, err := supapool.New(server(t).URL, testKey, supapool.Config{
		MaxConnections: 2, MinConnections: 1, AcquireTimeout: 20 * time.Millisecond,
		LeakThreshold: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close(context.Background())) }()
	c := supapoolprom.NewCollector(p, "main")
	ctx := context.Background()

	for range 5 {
		cl, err := p.Acquire(ctx)
		require.NoError(t, err)
		require.NoError(t, p.Release(cl))
	}
	require.Error(t, p.WithClient(ctx, read), "503")
	require.NoError(t, p.WithClient(ctx, read))
	leaked, err := p.Acquire(ctx)
	require.NoError(t, err)
	other, err := p.Acquire(ctx)
	require.NoError(t, err)
	_, err = p.Acquire(ctx)
	require.ErrorIs(t, err, supapool.ErrAcquireTimeout)
	require.NoError(t, p.Release(other))
	require.Eventually(t, func() bool { return p.Stats().Leaks == 1 }, 5*time.Second, 10*time.Millisecond)

	expected := `
# HELP supapool_connections Clients in the pool now, by state: idle or used (checked out).
# TYPE supapool_connections gauge
supapool_connections{pool="main",state="idle"} 1
supapool_connections{pool="main",state="used"} 1
# HELP supapool_connections_max The most clients the pool allows (Config.MaxConnections).
# TYPE supapool_connections_max gauge
supapool_connections_max{pool="main"} 2
# HELP supapool_connections_min The clients the pool keeps even when idle (Config.MinConnections).
# TYPE supapool_connections_min gauge
supapool_connections_min{pool="main"} 1
# HELP supapool_limit The clients that may be checked out at once: the adaptive limit with Config.AdaptiveLimit, else MaxConnections.
# TYPE supapool_limit gauge
supapool_limit{pool="main"} 2
# HELP supapool_pending_requests Acquire calls waiting for a client now.
# TYPE supapool_pending_requests gauge
supapool_pending_requests{pool="main"} 0
# HELP supapool_acquires_total Successful Acquires.
# TYPE supapool_acquires_total counter
supapool_acquires_total{pool="main"} 9
# HELP supapool_acquire_timeouts_total Acquires that gave up after Config.AcquireTimeout.
# TYPE supapool_acquire_timeouts_total counter
supapool_acquire_timeouts_total{pool="main"} 1
# HELP supapool_acquire_canceled_total Acquires whose ctx ended while they waited.
# TYPE supapool_acquire_canceled_total counter
supapool_acquire_canceled_total{pool="main"} 0
# HELP supapool_leaks_total Checkouts held longer than Config.LeakThreshold.
# TYPE supapool_leaks_total counter
supapool_leaks_total{pool="main"} 1
# HELP supapool_connections_created_total Clients created.
# TYPE supapool_connections_created_total counter
supapool_connections_created_total{pool="main"} 2
# HELP supapool_connections_closed_total Clients closed, by reason: idle, lifetime, discarded, reset (Reset), resize (SetMaxConnections), closed (the pool was closed).
# TYPE supapool_connections_closed_total counter
supapool_connections_closed_total{pool="main",reason="closed"} 0
supapool_connections_closed_total{pool="main",reason="discarded"} 0
supapool_connections_closed_total{pool="main",reason="idle"} 0
supapool_connections_closed_total{pool="main",reason="lifetime"} 0
supapool_connections_closed_total{pool="main",reason="reset"} 0
supapool_connections_closed_total{pool="main",reason="resize"} 0
# HELP supapool_requests_total Requests the pool's transport carried, by method and code: the HTTP status, or error when no response came.
# TYPE supapool_requests_total counter
supapool_requests_total{code="200",method="GET",pool="main"} 1
supapool_requests_total{code="503",method="GET",pool="main"} 1
`
	names := []string{
		"supapool_connections", "supapool_connections_max", "supapool_connections_min", "supapool_limit", "supapool_pending_requests",
		"supapool_acquires_total", "supapool_acquire_timeouts_total", "supapool_acquire_canceled_total", "supapool_leaks_total",
		"supapool_connections_created_total", "supapool_connections_closed_total", "supapool_requests_total",
	}
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(expected), names...))

	counts := histogramCounts(t, c)
	assert.Equal(t, map[string]uint64{
		"supapool_acquire_wait_seconds":                9, // every successful Acquire
		"supapool_connection_use_seconds":              8, // all but the leaked client came back
		"supapool_connection_create_seconds":           1, // the second client; the first came with New, before the collector
		"supapool_request_duration_seconds/method=GET": 2,
	}, counts)

	require.NoError(t, p.Release(leaked))
	assert.Equal(t, uint64(9), histogramCounts(t, c)["supapool_connection_use_seconds"])
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP supapool_connections Clients in the pool now, by state: idle or used (checked out).
# TYPE supapool_connections gauge
supapool_connections{pool="main",state="idle"} 2
supapool_connections{pool="main",state="used"} 0
`), "supapool_connections"))
}

// histogramCounts gathers c and returns each histogram's sample count, by
// name and, for vectors, name/label=value.
func histogramCounts(t *testing.T, c prometheus.Collector) map[string]uint64 {
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() != "pool" {
					key += "/" + l.GetName() + "=" + l.GetValue()
				}
			}
			out[key] = m.GetHistogram().GetSampleCount()
		}
	}
	return out
}

func TestCollectorLintsAndRegistersPedantically(t *testing.T) {
	p, err := supapool.New(server(t).URL, testKey, supapool.Config{MaxConnections: 2})
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close(context.Background())) }()
	c := supapoolprom.NewCollector(p, "main")
	require.Error(t, p.WithClient(context.Background(), read)) // some request samples

	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	// A second pool on the same registry, told apart by its label.
	p2, err := supapool.New(server(t).URL, testKey, supapool.Config{})
	require.NoError(t, err)
	defer func() { require.NoError(t, p2.Close(context.Background())) }()
	require.NoError(t, reg.Register(supapoolprom.NewCollector(p2, "replica")))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	assert.Len(t, mfs, 16)
	for _, mf := range mfs {
		assert.True(t, strings.HasPrefix(mf.GetName(), "supapool_"), mf.GetName())
		for _, m := range mf.GetMetric() {
			assert.Contains(t, m.String(), `name:"pool"`, mf.GetName())
		}
	}
}
