package supapoolotel_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/supapool/supapool"
	supapoolotel "github.com/supapool/supapool/otel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "sb-secret-key-never-printed-0123456789"

// point is one data point as the test compares it.
type point struct {
	unit  string
	attrs string // state=... when set
	value float64
}

// collect reads r and returns its data points by instrument name; for
// histograms the value is the count.
func collect(t *testing.T, r sdkmetric.Reader) map[string][]point {
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	out := map[string][]point{}
	for _, sm := range rm.ScopeMetrics {
		assert.Equal(t, supapoolotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			add := func(set attribute.Set, v float64) {
				name, ok := set.Value("db.client.connection.pool.name")
				assert.True(t, ok, "%s has the pool's name", m.Name)
				assert.Equal(t, "main", name.AsString())
				state, _ := set.Value("db.client.connection.state")
				out[m.Name] = append(out[m.Name], point{unit: m.Unit, attrs: state.AsString(), value: v})
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					add(dp.Attributes, float64(dp.Value))
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					add(dp.Attributes, float64(dp.Count))
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

func TestInstrument(t *testing.T) {
	cumulative := sdkmetric.NewManualReader()
	delta := sdkmetric.NewManualReader(sdkmetric.WithTemporalitySelector(func(sdkmetric.InstrumentKind) metricdata.Temporality {
		return metricdata.DeltaTemporality
	}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(cumulative), sdkmetric.WithReader(delta))
	defer func() { require.NoError(t, mp.Shutdown(context.Background())) }()

	p, err := supapool.New("http://127.0.0.1:1", testKey, supapool.Config{
		MaxConnections: 2, MinConnections: 1, AcquireTimeout: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	require.NoError(t, supapoolotel.Instrument(p, "main", mp))

	ctx := context.Background()
	a, err := p.Acquire(ctx) // the idle client
	require.NoError(t, err)
	b, err := p.Acquire(ctx) // a new one
	require.NoError(t, err)
	_, err = p.Acquire(ctx)
	require.ErrorIs(t, err, supapool.ErrAcquireTimeout)
	require.NoError(t, p.Release(b))

	got := collect(t, cumulative)
	assert.Equal(t, map[string][]point{
		"db.client.connection.count": {
			{unit: "{connection}", attrs: "idle", value: 1},
			{unit: "{connection}", attrs: "used", value: 1},
		},
		"db.client.connection.max":              {{unit: "{connection}", value: 2}},
		"db.client.connection.idle.max":         {{unit: "{connection}", value: 2}},
		"db.client.connection.idle.min":         {{unit: "{connection}", value: 1}},
		"db.client.connection.pending_requests": {{unit: "{request}", value: 0}},
		"supapool.limit":                        {{unit: "{connection}", value: 2}}, // MaxConnections without AdaptiveLimit
		"db.client.connection.timeouts":         {{unit: "{timeout}", value: 1}},
		"db.client.connection.create_time":      {{unit: "s", value: 1}}, // b
		"db.client.connection.wait_time":        {{unit: "s", value: 2}}, // a and b; the timeout is not an acquire
		"db.client.connection.use_time":         {{unit: "s", value: 1}}, // b
	}, sorted(got))

	// Close with a still out: the pool stops reporting at once, and a's
	// later release is not recorded.
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	require.Error(t, p.Close(closeCtx), "a is still out")
	collect(t, delta) // what happened before Close
	require.NoError(t, p.Release(a))
	assert.Empty(t, collect(t, delta), "nothing after Close")
	after := collect(t, cumulative)
	for _, name := range []string{"db.client.connection.count", "db.client.connection.max", "db.client.connection.idle.max",
		"db.client.connection.idle.min", "db.client.connection.pending_requests", "supapool.limit"} {
		assert.NotContains(t, after, name, "observed no more")
	}
	assert.Equal(t, got["db.client.connection.use_time"], after["db.client.connection.use_time"], "a's release is not recorded")
	require.NoError(t, p.Close(ctx))
}

func TestInstrumentClosedPool(t *testing.T) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	defer func() { require.NoError(t, mp.Shutdown(context.Background())) }()
	p, err := supapool.New("http://127.0.0.1:1", testKey, supapool.Config{MinConnections: 1})
	require.NoError(t, err)
	require.NoError(t, p.Close(context.Background()))
	require.NoError(t, supapoolotel.Instrument(p, "main", mp))
	assert.Empty(t, collect(t, r))
}

// sorted orders the count's points by state.
func sorted(m map[string][]point) map[string][]point {
	if c := m["db.client.connection.count"]; len(c) == 2 && c[0].attrs > c[1].attrs {
		c[0], c[1] = c[1], c[0]
	}
	return m
}
