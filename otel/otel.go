// Package supapoolotel reports a supapool.Pool's metrics through
// OpenTelemetry, following the semantic conventions for database client
// connection pools (db.client.connection.*, "development" stability at
// the time of writing):
//
//	db.client.connection.count             {connection}  UpDownCounter, with db.client.connection.state = idle | used
//	db.client.connection.max               {connection}  UpDownCounter: Config.MaxConnections
//	db.client.connection.idle.max          {connection}  UpDownCounter: Config.MaxConnections (every client may be idle)
//	db.client.connection.idle.min          {connection}  UpDownCounter: Config.MinConnections
//	supapool.limit                         {connection}  UpDownCounter: Stats.Limit (not a semantic convention)
//	db.client.connection.pending_requests  {request}     UpDownCounter: Acquire calls waiting
//	db.client.connection.timeouts          {timeout}     Counter: Acquires that timed out
//	db.client.connection.create_time       s             Histogram: time to build a client
//	db.client.connection.wait_time         s             Histogram: wait of each successful Acquire (0 when none)
//	db.client.connection.use_time          s             Histogram: time held, per Release or Discard
//
// Every data point has the attribute db.client.connection.pool.name. The
// UpDownCounters are observed from Pool.Stats at each collection; the
// others are fed by an observer (supapool.Pool.Observe). When the pool is
// closed, the callback is unregistered and the observer detached: the
// instruments stop reporting the pool.
//
// For HTTP client spans and metrics, wrap the pool's own transport with
// Config.WrapTransport, e.g. with otelhttp.NewTransport: see the example.
package supapoolotel

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/supapool/supapool"
)

// ScopeName is the instrumentation scope of the pool's meter.
const ScopeName = "github.com/supapool/supapool/otel"

// Advised histogram bounds in seconds (creating a client does no I/O and
// takes microseconds; waits end at Config.AcquireTimeout).
var (
	createBounds = []float64{0.000001, 0.000005, 0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01}
	waitBounds   = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15}
	useBounds    = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
)

// Instrument reports p's metrics, each with db.client.connection.pool.name
// = poolName, through a meter of mp (nil means the global MeterProvider)
// until p is closed. It fails only when an instrument cannot be created.
func Instrument(p *supapool.Pool, poolName string, mp metric.MeterProvider) error {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	in := &instruments{pool: p}
	pool := attribute.String("db.client.connection.pool.name", poolName)
	in.attrs = metric.WithAttributeSet(attribute.NewSet(pool))
	in.idleAttrs = metric.WithAttributeSet(attribute.NewSet(pool, attribute.String("db.client.connection.state", "idle")))
	in.usedAttrs = metric.WithAttributeSet(attribute.NewSet(pool, attribute.String("db.client.connection.state", "used")))

	var err error
	updown := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		if err != nil {
			return nil
		}
		var c metric.Int64ObservableUpDownCounter
		c, err = m.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	hist := func(name, desc string, bounds []float64) metric.Float64Histogram {
		if err != nil {
			return nil
		}
		var h metric.Float64Histogram
		h, err = m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(bounds...))
		return h
	}
	in.count = updown("db.client.connection.count", "{connection}", "The number of connections that are currently in state described by the state attribute.")
	in.max = updown("db.client.connection.max", "{connection}", "The maximum number of open connections allowed.")
	in.idleMax = updown("db.client.connection.idle.max", "{connection}", "The maximum number of idle open connections allowed.")
	in.idleMin = updown("db.client.connection.idle.min", "{connection}", "The minimum number of idle open connections allowed.")
	in.pending = updown("db.client.connection.pending_requests", "{request}", "The number of current pending requests for an open connection.")
	in.limit = updown("supapool.limit", "{connection}", "The connections that may be in use at once: the adaptive limit with AdaptiveLimit, else the maximum.")
	in.create = hist("db.client.connection.create_time", "The time it took to create a new connection.", createBounds)
	in.wait = hist("db.client.connection.wait_time", "The time it took to obtain an open connection from the pool.", waitBounds)
	in.use = hist("db.client.connection.use_time", "The time between borrowing a connection and returning it to the pool.", useBounds)
	if err != nil {
		return err
	}
	in.timeouts, err = m.Int64Counter("db.client.connection.timeouts", metric.WithUnit("{timeout}"),
		metric.WithDescription("The number of connection timeouts that have occurred trying to obtain a connection from the pool."))
	if err != nil {
		return err
	}
	reg, err := m.RegisterCallback(in.observe, in.count, in.max, in.idleMax, in.idleMin, in.pending, in.limit)
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.reg = reg
	in.mu.Unlock()
	// On a closed pool, Observe delivers EventClose at once, which
	// unregisters the callback again.
	detach := p.Observe(in.event)
	in.mu.Lock()
	in.detach = detach
	if in.closed {
		in.detach()
	}
	in.mu.Unlock()
	return nil
}

// instruments are one pool's instruments.
type instruments struct {
	pool                                  *supapool.Pool
	attrs, idleAttrs, usedAttrs           metric.MeasurementOption
	count, max, idleMax, idleMin, pending metric.Int64ObservableUpDownCounter
	limit                                 metric.Int64ObservableUpDownCounter
	timeouts                              metric.Int64Counter
	create, wait, use                     metric.Float64Histogram

	mu     sync.Mutex
	reg    metric.Registration // nil once unregistered
	detach func()              // nil until attached
	closed bool                // the pool said EventClose
}

// observe is the callback of the UpDownCounters: one Stats snapshot.
func (in *instruments) observe(_ context.Context, o metric.Observer) error {
	s := in.pool.Stats()
	if s.Closed {
		return nil
	}
	o.ObserveInt64(in.count, int64(s.IdleConnections), in.idleAttrs)
	o.ObserveInt64(in.count, int64(s.ActiveConnections), in.usedAttrs)
	o.ObserveInt64(in.max, int64(s.MaxConnections), in.attrs)
	o.ObserveInt64(in.idleMax, int64(s.MaxConnections), in.attrs)
	o.ObserveInt64(in.idleMin, int64(s.MinConnections), in.attrs)
	o.ObserveInt64(in.pending, int64(s.WaitingForConnection), in.attrs)
	o.ObserveInt64(in.limit, int64(s.Limit), in.attrs)
	return nil
}

// event is the pool's observer. It may run with the pool's lock held (see
// supapool.Pool.Observe), so it only records, except for EventClose,
// which the pool sends without its lock.
func (in *instruments) event(e supapool.Event) {
	ctx := context.Background()
	switch e.Kind {
	case supapool.EventAcquire:
		in.wait.Record(ctx, e.Duration.Seconds(), in.attrs)
	case supapool.EventRelease:
		in.use.Record(ctx, e.Duration.Seconds(), in.attrs)
	case supapool.EventCreate:
		in.create.Record(ctx, e.Duration.Seconds(), in.attrs)
	case supapool.EventTimeout:
		in.timeouts.Add(ctx, 1, in.attrs)
	case supapool.EventClose:
		in.mu.Lock()
		defer in.mu.Unlock()
		in.closed = true
		if in.reg != nil {
			_ = in.reg.Unregister()
			in.reg = nil
		}
		if in.detach != nil {
			in.detach()
		}
	}
}
