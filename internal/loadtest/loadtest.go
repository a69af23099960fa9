package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/catalog"
	"github.com/supapool/supapool/internal/stack"
)

// target is the server under load and the budget whose categories every
// request lists.
type target struct {
	url, key string
	where    string       // for the report
	server   *stack.Stack // the local stack; nil for an external server
	budgetID string
	want     int // categories every request must return

	replicaURL string      // the local stack's read replica, for mode (d); "" to skip it
	tlsURL     string      // the local stack's gateway over TLS, for mode (e); "" to skip it
	tls        *tls.Config // trusts tlsURL's certificate
}

// options are the load's shape.
type options struct {
	Concurrency int           // workers per mode
	Duration    time.Duration // measured time per mode
	Warmup      time.Duration // unmeasured time before it
	Settle      time.Duration // pause between modes
	MaxConns    int           // connection bound of (b) and (c); 0 means ProductionConfig's (20)
}

// maxConns returns the connection bound of modes (b) and (c).
func (o options) maxConns() int {
	if o.MaxConns > 0 {
		return o.MaxConns
	}
	return supapool.ProductionConfig().MaxConnections
}

// A query sends one request and returns the categories it got.
type query func(ctx context.Context) ([]catalog.Category, error)

// A mode is one way of sending the query. setup prepares it and returns
// the query and a function that releases what setup made once the workers
// are done (closes connections, closes the pool).
type mode struct {
	Label string // the table's first column
	setup func(t target, o options) (query, func(context.Context) error, error)
	can   func(t target) bool // whether t offers what the mode needs; nil: always
}

var modes = []mode{
	{"(a) before: new supabase.Client per request", setupBefore, nil},
	{"(b) after: supapool.Pool, ProductionConfig", setupPool, nil},
	{"(c) ceiling: net/http, tuned Transport", setupCeiling, nil},
	{"(d) supapool, one read replica", setupReplica, func(t target) bool { return t.replicaURL != "" }},
	{"(e) supapool over TLS + HTTP/2", setupTLS, func(t target) bool { return t.tlsURL != "" }},
}

// setupBefore is what Go services do today: a client per request. Every
// supabase-go client sends through http.DefaultTransport.
func setupBefore(t target, _ options) (query, func(context.Context) error, error) {
	q := func(ctx context.Context) ([]catalog.Category, error) {
		c, err := supabase.NewClient(t.url, t.key, nil)
		if err != nil {
			return nil, err
		}
		return catalog.List(ctx, c, t.budgetID)
	}
	done := func(context.Context) error {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		return nil
	}
	return q, done, nil
}

// setupPool is the same query on one pool's clients.
func setupPool(t target, o options) (query, func(context.Context) error, error) {
	return setupPoolWith(t.url, t, o, func(*supapool.Config) {})
}

// setupReplica is (b) with the stack's read replica: every read goes there.
func setupReplica(t target, o options) (query, func(context.Context) error, error) {
	return setupPoolWith(t.url, t, o, func(c *supapool.Config) { c.ReadReplicas = []string{t.replicaURL} })
}

// setupTLS is (b) over TLS, where the pool's transport speaks HTTP/2.
func setupTLS(t target, o options) (query, func(context.Context) error, error) {
	return setupPoolWith(t.tlsURL, t, o, func(c *supapool.Config) { c.TLSClientConfig = t.tls })
}

// setupPoolWith is the query on the clients of a pool on url with
// ProductionConfig, changed by adjust.
func setupPoolWith(url string, t target, o options, adjust func(*supapool.Config)) (query, func(context.Context) error, error) {
	cfg := supapool.ProductionConfig()
	cfg.MaxConnections = o.maxConns()
	cfg.MinConnections = min(cfg.MinConnections, cfg.MaxConnections)
	adjust(&cfg)
	pool, err := supapool.New(url, t.key, cfg)
	if err != nil {
		return nil, nil, err
	}
	q := func(ctx context.Context) (out []catalog.Category, err error) {
		err = pool.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
			out, err = catalog.List(ctx, c, t.budgetID)
			return err
		})
		return out, err
	}
	return q, pool.Close, nil // Close also closes the pool's idle connections
}

// setupCeiling is the same GET without supabase-go or a pool: what a
// hand-tuned net/http client achieves with the same connection bound.
func setupCeiling(t target, o options) (query, func(context.Context) error, error) {
	maxConns := o.maxConns()
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:   true, // as http.DefaultTransport and the pool's transport
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		MaxConnsPerHost:     maxConns,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	hc := &http.Client{Transport: tr}
	u := catalog.ListURL(t.url, t.budgetID)
	q := func(ctx context.Context) ([]catalog.Category, error) {
		return fetchCategories(ctx, hc, u, t.key)
	}
	done := func(context.Context) error {
		tr.CloseIdleConnections()
		return nil
	}
	return q, done, nil
}

// runAll runs the modes one after another. Before each one it lets the
// previous one's connections close, collects garbage and zeroes the
// server's connection counters, so that each mode starts from nothing.
func runAll(ctx context.Context, t target, o options, progress io.Writer) (*report, error) {
	rep := &report{
		Target: t.where, Categories: t.want, Concurrency: o.Concurrency, MaxConnections: o.maxConns(),
		Duration: o.Duration, DurationS: o.Duration.Seconds(), Warmup: o.Warmup, WarmupS: o.Warmup.Seconds(),
	}
	for _, m := range modes {
		if m.can != nil && !m.can(t) {
			fmt.Fprintf(progress, "loadtest: %s: skipped, it needs the local stack\n", m.Label)
			continue
		}
		runtime.GC()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(o.Settle):
		}
		if t.server != nil {
			if open := t.server.Conns().Open; open > 0 {
				fmt.Fprintf(progress, "loadtest: note: %d connection(s) of the previous mode still open\n", open)
			}
			t.server.ResetConns()
		}
		r, err := runMode(ctx, t, m, o, progress)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Label, err)
		}
		rep.Modes = append(rep.Modes, r)
	}
	rep.Goals = checkGoals(rep.Modes, o.maxConns())
	return rep, nil
}

// Phases of a mode, in order. Only requests that complete while measuring
// are counted, whenever they started.
const (
	warmingUp int32 = iota
	measuring
	stopping
)

// worker is what one worker measured. Each worker has its own, so that
// recording takes no lock.
type worker struct {
	latencies []time.Duration
	errors    int
	firstErr  error
}

func runMode(ctx context.Context, t target, m mode, o options, progress io.Writer) (result, error) {
	q, done, err := m.setup(t, o)
	if err != nil {
		return result{}, err
	}

	// Count new connections on the client as well: the only count there is
	// when the server is not ours.
	var clientNew atomic.Int64
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				clientNew.Add(1)
			}
		},
	})

	var (
		phase    atomic.Int32
		measured atomic.Int64 // requests completed while measuring
		wg       sync.WaitGroup
	)
	workers := make([]worker, o.Concurrency)
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			for phase.Load() != stopping && ctx.Err() == nil {
				start := time.Now()
				cats, err := q(ctx)
				took := time.Since(start)
				if err == nil && len(cats) != t.want {
					err = fmt.Errorf("got %d categories, want %d", len(cats), t.want)
				}
				if err != nil && w.firstErr == nil {
					w.firstErr = err
				}
				if phase.Load() != measuring {
					continue
				}
				measured.Add(1)
				if err != nil {
					w.errors++
					continue
				}
				w.latencies = append(w.latencies, took)
			}
		})
	}

	heap := startHeapSampler(50 * time.Millisecond)
	began := time.Now()
	var measureStart time.Time
	ticker := time.NewTicker(time.Second)
	warmupEnd := time.After(o.Warmup)
	var measureEnd <-chan time.Time
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-warmupEnd:
			measureStart = time.Now()
			phase.Store(measuring)
			measureEnd = time.After(o.Duration)
		case <-measureEnd:
			break loop
		case now := <-ticker.C:
			if phase.Load() == warmingUp {
				fmt.Fprintf(progress, "loadtest: %-45s warming up   %5.1fs\n", m.Label, now.Sub(began).Seconds())
			} else {
				fmt.Fprintf(progress, "loadtest: %-45s measuring %5.1fs of %s, %d requests\n",
					m.Label, now.Sub(measureStart).Seconds(), o.Duration, measured.Load())
			}
		}
	}
	elapsed := time.Since(measureStart)
	phase.Store(stopping)
	ticker.Stop()
	wg.Wait() // every worker finishes the request it is in
	peakHeap := heap.stop()

	// Read the server's counters before done closes the idle connections
	// (peak and new only grow, so this is only tidier).
	var conns *stack.ConnStats
	var gatewayReads map[string]int64
	if t.server != nil {
		c, rc := t.server.Conns(), t.server.ReplicaConns()
		gatewayReads = map[string]int64{"primary": c.Reads, "replica": rc.Reads}
		c.New += rc.New
		c.Peak += rc.Peak // an upper bound: the two peaks need not be at once
		conns = &c
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := done(closeCtx); err != nil {
		return result{}, fmt.Errorf("clean up: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}

	r := result{Mode: m.Label, ClientNewConns: clientNew.Load(), PeakHeapMiB: float64(peakHeap) / (1 << 20), GatewayReads: gatewayReads}
	var all []time.Duration
	var firstErr error
	for _, w := range workers {
		all = append(all, w.latencies...)
		r.Errors += w.errors
		firstErr = cmp.Or(firstErr, w.firstErr)
	}
	if firstErr != nil {
		r.FirstError = firstErr.Error()
		fmt.Fprintf(progress, "loadtest: %s: first error: %v\n", m.Label, firstErr)
	}
	r.setLatencies(all, elapsed)
	if conns != nil {
		r.PeakConns, r.NewConns = &conns.Peak, conns.New
	} else {
		r.NewConns = r.ClientNewConns
	}
	return r, nil
}

// setLatencies fills in the request rate and the latency statistics.
func (r *result) setLatencies(all []time.Duration, elapsed time.Duration) {
	r.Requests = len(all)
	r.Seconds = elapsed.Seconds()
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	r.ReqPerSec = float64(len(all)) / elapsed.Seconds()
	r.AvgMs = ms(sum / time.Duration(len(all)))
	r.P50Ms = ms(percentile(all, 0.50))
	r.P99Ms = ms(percentile(all, 0.99))
}

// percentile returns the nearest-rank q-quantile of sorted.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// heapSampler records the peak of the heap in use (runtime.MemStats'
// HeapInuse) by sampling it.
type heapSampler struct {
	quit chan struct{}
	peak chan uint64
}

func startHeapSampler(every time.Duration) *heapSampler {
	h := &heapSampler{quit: make(chan struct{}), peak: make(chan uint64)}
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	read := func() uint64 {
		metrics.Read(samples)
		var n uint64
		for _, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				n += s.Value.Uint64()
			}
		}
		return n
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		peak := read()
		for {
			select {
			case <-t.C:
				peak = max(peak, read())
			case <-h.quit:
				h.peak <- max(peak, read())
				return
			}
		}
	}()
	return h
}

// stop ends the sampling and returns the peak in bytes.
func (h *heapSampler) stop() uint64 {
	close(h.quit)
	return <-h.peak
}
