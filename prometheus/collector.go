// Package supapoolprom exports a supapool.Pool's metrics to Prometheus.
//
//	pool, err := supapool.New(url, key, supapool.ProductionConfig())
//	...
//	prometheus.MustRegister(supapoolprom.NewCollector(pool, "main"))
//	http.Handle("/metrics", promhttp.Handler())
//
// The gauges and counters are read from Pool.Stats at every scrape; the
// histograms and the request counter are fed by an observer
// (supapool.Pool.Observe) that NewCollector attaches. Every metric has the
// label pool, so that several pools can share a registry. The metrics, in
// the style of client_golang's database/sql collector:
//
//	supapool_connections{state="idle"|"used"}      gauge: clients now
//	supapool_connections_max                       gauge: Config.MaxConnections
//	supapool_connections_min                       gauge: Config.MinConnections
//	supapool_limit                                 gauge: Stats.Limit, the adaptive limit (MaxConnections without AdaptiveLimit)
//	supapool_pending_requests                      gauge: Acquire calls waiting now
//	supapool_acquires_total                        counter: successful Acquires (Stats.TotalAcquired)
//	supapool_acquire_timeouts_total                counter: Acquires that timed out
//	supapool_acquire_canceled_total                counter: Acquires whose ctx ended while they waited
//	supapool_leaks_total                           counter: checkouts held longer than Config.LeakThreshold
//	supapool_connections_created_total             counter: clients created
//	supapool_connections_closed_total{reason}      counter: clients closed: idle, lifetime, discarded, reset, resize, closed
//	supapool_acquire_wait_seconds                  histogram: wait of each successful Acquire (0 when none)
//	supapool_connection_use_seconds                histogram: time held, per Release or Discard
//	supapool_connection_create_seconds             histogram: time to build a client
//	supapool_requests_total{method,code}           counter: requests the pool's transport carried; code is the status, or "error"
//	supapool_request_duration_seconds{method}      histogram: until the response's headers (or the error)
//
// The observer's histograms count only what happened after NewCollector.
package supapoolprom

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/supapool/supapool"
)

// Bucket bounds in seconds. An Acquire that does not wait observes 0; a
// wait ends at Config.AcquireTimeout (5s by default, 15s at most among the
// presets). Creating a client does no I/O and takes microseconds.
var (
	waitBuckets    = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15}
	useBuckets     = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	createBuckets  = []float64{0.000001, 0.000005, 0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01}
	requestBuckets = prometheus.DefBuckets
)

// Collector is a prometheus.Collector for one pool. Create it with
// NewCollector and register it.
type Collector struct {
	pool *supapool.Pool

	conns, connsMax, connsMin, pending  *prometheus.Desc
	limit                               *prometheus.Desc
	acquires, timeouts, canceled, leaks *prometheus.Desc
	created, closed                     *prometheus.Desc
	wait, use, create                   prometheus.Histogram
	requests                            *prometheus.CounterVec
	requestDuration                     *prometheus.HistogramVec
}

// NewCollector returns a collector of p's metrics, each labelled
// pool=poolName, and attaches its observer to p.
func NewCollector(p *supapool.Pool, poolName string) *Collector {
	labels := prometheus.Labels{"pool": poolName}
	desc := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc("supapool_"+name, help, variable, labels)
	}
	hist := func(name, help string, buckets []float64) prometheus.HistogramOpts {
		return prometheus.HistogramOpts{Namespace: "supapool", Name: name, Help: help, Buckets: buckets, ConstLabels: labels}
	}
	c := &Collector{
		pool:     p,
		conns:    desc("connections", "Clients in the pool now, by state: idle or used (checked out).", "state"),
		connsMax: desc("connections_max", "The most clients the pool allows (Config.MaxConnections)."),
		connsMin: desc("connections_min", "The clients the pool keeps even when idle (Config.MinConnections)."),
		limit:    desc("limit", "The clients that may be checked out at once: the adaptive limit with Config.AdaptiveLimit, else MaxConnections."),
		pending:  desc("pending_requests", "Acquire calls waiting for a client now."),
		acquires: desc("acquires_total", "Successful Acquires."),
		timeouts: desc("acquire_timeouts_total", "Acquires that gave up after Config.AcquireTimeout."),
		canceled: desc("acquire_canceled_total", "Acquires whose ctx ended while they waited."),
		leaks:    desc("leaks_total", "Checkouts held longer than Config.LeakThreshold."),
		created:  desc("connections_created_total", "Clients created."),
		closed:   desc("connections_closed_total", "Clients closed, by reason: idle, lifetime, discarded, reset (Reset), resize (SetMaxConnections), closed (the pool was closed).", "reason"),
		wait:     prometheus.NewHistogram(hist("acquire_wait_seconds", "How long each successful Acquire waited for a client (0 when it did not wait).", waitBuckets)),
		use:      prometheus.NewHistogram(hist("connection_use_seconds", "How long a client was checked out, per Release or Discard.", useBuckets)),
		create:   prometheus.NewHistogram(hist("connection_create_seconds", "How long building a client took.", createBuckets)),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "supapool", Name: "requests_total", ConstLabels: labels,
			Help: "Requests the pool's transport carried, by method and code: the HTTP status, or error when no response came.",
		}, []string{"method", "code"}),
		requestDuration: prometheus.NewHistogramVec(hist("request_duration_seconds",
			"How long the pool's requests took until their response's headers, or their error.", requestBuckets), []string{"method"}),
	}
	p.Observe(c.observe)
	return c
}

func (c *Collector) observe(e supapool.Event) {
	switch e.Kind {
	case supapool.EventAcquire:
		c.wait.Observe(e.Duration.Seconds())
	case supapool.EventRelease:
		c.use.Observe(e.Duration.Seconds())
	case supapool.EventCreate:
		c.create.Observe(e.Duration.Seconds())
	case supapool.EventRequest:
		code := "error"
		if e.Err == nil {
			code = strconv.Itoa(e.Status)
		}
		m := method(e.Method)
		c.requests.WithLabelValues(m, code).Inc()
		c.requestDuration.WithLabelValues(m).Observe(e.Duration.Seconds())
	}
}

// method bounds the method label to the methods PostgREST and auth use.
func method(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS":
		return m
	case "":
		return "GET" // net/http's meaning of an empty method
	}
	return "OTHER"
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.connsMax, c.connsMin, c.limit, c.pending, c.acquires, c.timeouts, c.canceled, c.leaks, c.created, c.closed} {
		ch <- d
	}
	c.wait.Describe(ch)
	c.use.Describe(ch)
	c.create.Describe(ch)
	c.requests.Describe(ch)
	c.requestDuration.Describe(ch)
}

// Collect implements prometheus.Collector: one Stats snapshot for the
// gauges and counters, and the observer's histograms.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stats()
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.conns, s.IdleConnections, "idle")
	gauge(c.conns, s.ActiveConnections, "used")
	gauge(c.connsMax, s.MaxConnections)
	gauge(c.connsMin, s.MinConnections)
	gauge(c.limit, s.Limit)
	gauge(c.pending, s.WaitingForConnection)
	counter(c.acquires, s.TotalAcquired)
	counter(c.timeouts, s.AcquireTimeouts)
	counter(c.canceled, s.CanceledAcquires)
	counter(c.leaks, s.Leaks)
	counter(c.created, s.TotalCreated)
	counter(c.closed, s.IdleClosed, string(supapool.CloseIdle))
	counter(c.closed, s.LifetimeClosed, string(supapool.CloseLifetime))
	counter(c.closed, s.Discarded, string(supapool.CloseDiscarded))
	counter(c.closed, s.ResetClosed, string(supapool.CloseReset))
	counter(c.closed, s.ResizeClosed, string(supapool.CloseResize))
	// Every other destroy is the pool's closing.
	counter(c.closed, s.TotalDestroyed-s.IdleClosed-s.LifetimeClosed-s.Discarded-s.ResetClosed-s.ResizeClosed, string(supapool.ClosePool))
	c.wait.Collect(ch)
	c.use.Collect(ch)
	c.create.Collect(ch)
	c.requests.Collect(ch)
	c.requestDuration.Collect(ch)
}
