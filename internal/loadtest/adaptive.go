package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/stack"
)

// The adaptive scenario (-adaptive; make adaptive) measures
// Config.AdaptiveLimit against fixed sizes on a server that can take only
// a few requests at once: PostgREST with a db-pool of 4 connections, and a
// query (slow_read) that holds one for a few milliseconds. Workers send
// it back to back through a pool; a neighbour (another service on the same
// PostgREST) sends the same query one at a time on its own connection,
// outside the pool. Every request beyond the 4 that run waits inside
// PostgREST for a connection, the neighbour's included, so the more a pool
// lets through, the longer the neighbour waits.
//
// It first sweeps fixed MaxConnections to find the best fixed size (of
// those within 5% of the most requests per second, the one with the
// lowest p99), then runs, one after another in the same
// process: fixed MaxConnections 50, the best fixed size, and AdaptiveLimit
// with MaxConnections 50, and checks the targets.

// adaptiveOptions are the scenario's shape.
type adaptiveOptions struct {
	Workers      int
	DBPool       int           // PostgREST's db-pool
	Query        time.Duration // slow_read's time in PostgreSQL
	Max          int           // MaxConnections of the fixed-50 and adaptive modes
	Sweep        []int         // the fixed sizes tried
	SweepTime    time.Duration // measured per size of the sweep
	Duration     time.Duration // measured per compared mode
	Warmup       time.Duration // unmeasured, before each
	Settle       time.Duration // pause between runs
	LimitEvery   time.Duration // how often the limit is sampled
	NeighbourGap time.Duration // the neighbour's pause between its requests
}

func defaultAdaptiveOptions() adaptiveOptions {
	return adaptiveOptions{
		Workers: 100, DBPool: 4, Query: 5 * time.Millisecond, Max: 50,
		Sweep:     []int{2, 4, 6, 8, 12, 16, 24},
		SweepTime: 3 * time.Second, Duration: 10 * time.Second,
		Warmup: time.Second, Settle: 500 * time.Millisecond,
		LimitEvery: 50 * time.Millisecond, NeighbourGap: 10 * time.Millisecond,
	}
}

// adaptiveRun is what one run measured: the workers' successful requests
// completed while measuring, their errors, the pool's limit, and the
// neighbour's requests.
type adaptiveRun struct {
	Label          string  `json:"label"`
	MaxConnections int     `json:"max_connections"`
	Adaptive       bool    `json:"adaptive"`
	Requests       int     `json:"requests"`
	ReqPerSec      float64 `json:"req_per_s"`
	P50Ms          float64 `json:"p50_ms"`
	P99Ms          float64 `json:"p99_ms"`
	Errors         int     `json:"errors"`
	PGRST003       int     `json:"errors_504_pgrst003"` // included in Errors
	LimitMin       int     `json:"limit_min"`
	LimitMedian    int     `json:"limit_median"`
	LimitMax       int     `json:"limit_max"`
	NeighbourReqs  int     `json:"neighbour_requests"`
	NeighbourErrs  int     `json:"neighbour_errors"`
	NeighbourP50Ms float64 `json:"neighbour_p50_ms"`
	NeighbourP99Ms float64 `json:"neighbour_p99_ms"`
	FirstError     string  `json:"first_error,omitempty"`
}

// adaptiveReport is everything the scenario prints.
type adaptiveReport struct {
	Options adaptiveOptions `json:"-"`
	Sweep   []adaptiveRun   `json:"sweep"`
	Best    int             `json:"best_fixed"`
	Modes   []adaptiveRun   `json:"modes"` // fixed Max, best fixed, adaptive
	Goals   []goal          `json:"goals"`
}

// runAdaptiveScenario starts a stack with PostgREST's db-pool at
// o.DBPool, runs the scenario and prints its report.
func runAdaptiveScenario(ctx context.Context, o adaptiveOptions, asJSON bool, out, progress io.Writer) (err error) {
	s, err := stack.ForCommand(ctx, "loadtest", progress, stack.Options{DBPool: o.DBPool, DBPoolAcquisitionTimeout: 1})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("stop the stack: %w", cerr))
		}
	}()
	rep, err := adaptiveScenario(ctx, s.URL, s.ServiceKey, o, progress)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}
	return rep.writeText(out)
}

// adaptiveScenario runs the sweep and the three compared modes against the
// PostgREST behind url.
func adaptiveScenario(ctx context.Context, url, key string, o adaptiveOptions, progress io.Writer) (*adaptiveReport, error) {
	rep := &adaptiveReport{Options: o}
	run := func(label string, maxConns int, adaptive bool, d time.Duration) (adaptiveRun, error) {
		select {
		case <-ctx.Done():
			return adaptiveRun{}, ctx.Err()
		case <-time.After(o.Settle):
		}
		fmt.Fprintf(progress, "loadtest: %s: %s warm-up, %s measured\n", label, o.Warmup, d)
		r, err := adaptiveOne(ctx, url, key, o, maxConns, adaptive, d)
		r.Label = label
		if err != nil {
			return r, fmt.Errorf("%s: %w", label, err)
		}
		if r.FirstError != "" {
			fmt.Fprintf(progress, "loadtest: %s: first error: %s\n", label, r.FirstError)
		}
		return r, nil
	}
	for _, n := range o.Sweep {
		r, err := run(fmt.Sprintf("fixed MaxConnections %d", n), n, false, o.SweepTime)
		if err != nil {
			return nil, err
		}
		rep.Sweep = append(rep.Sweep, r)
	}
	rep.Best = bestFixed(rep.Sweep)
	for _, m := range []struct {
		label    string
		max      int
		adaptive bool
	}{
		{fmt.Sprintf("fixed MaxConnections %d", o.Max), o.Max, false},
		{fmt.Sprintf("fixed MaxConnections %d (best of sweep)", rep.Best), rep.Best, false},
		{fmt.Sprintf("AdaptiveLimit, MaxConnections %d", o.Max), o.Max, true},
	} {
		r, err := run(m.label, m.max, m.adaptive, o.Duration)
		if err != nil {
			return nil, err
		}
		rep.Modes = append(rep.Modes, r)
	}
	rep.Goals = adaptiveGoals(rep.Modes[0], rep.Modes[1], rep.Modes[2])
	return rep, nil
}

// bestFixed picks the best size of the sweep: of the sizes within 5% of
// the highest rate (closer than that is the noise of one short run), the
// one with the lowest p99.
func bestFixed(sweep []adaptiveRun) int {
	var top float64
	for _, r := range sweep {
		top = max(top, r.ReqPerSec)
	}
	best := -1
	for i, r := range sweep {
		if r.ReqPerSec >= 0.95*top && (best < 0 || r.P99Ms < sweep[best].P99Ms) {
			best = i
		}
	}
	return sweep[best].MaxConnections
}

// adaptiveOne runs o.Workers workers through one pool, and the neighbour,
// for o.Warmup and then d measured.
func adaptiveOne(ctx context.Context, url, key string, o adaptiveOptions, maxConns int, adaptive bool, d time.Duration) (adaptiveRun, error) {
	cfg := supapool.ProductionConfig()
	cfg.MaxConnections, cfg.MinConnections, cfg.AdaptiveLimit = maxConns, 1, adaptive
	pool, err := supapool.New(url, key, cfg)
	if err != nil {
		return adaptiveRun{}, err
	}
	args := map[string]any{"seconds": o.Query.Seconds()}
	query := func(ctx context.Context) error {
		return pool.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
			var one int
			return supapool.RPC(ctx, c, "slow_read", args, &one)
		})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var measuring atomic.Bool
	type tally struct {
		lat            []time.Duration
		errors, pgrst3 int
		first          error
	}
	record := func(t *tally, took time.Duration, err error) {
		if !measuring.Load() || ctx.Err() != nil {
			return
		}
		if err != nil {
			t.errors++
			if e := (*supapool.Error)(nil); errors.As(err, &e) && e.Code == "PGRST003" {
				t.pgrst3++
			}
			if t.first == nil {
				t.first = err
			}
			return
		}
		t.lat = append(t.lat, took)
	}
	var wg sync.WaitGroup
	workers := make([]tally, o.Workers)
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				err := query(ctx)
				record(w, time.Since(start), err)
			}
		})
	}
	var nb tally
	nbClient := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	wg.Go(func() {
		body, _ := json.Marshal(args)
		for ctx.Err() == nil {
			start := time.Now()
			err := neighbourQuery(ctx, nbClient, url, key, body)
			record(&nb, time.Since(start), err)
			select {
			case <-ctx.Done():
			case <-time.After(o.NeighbourGap): // the neighbour's own pace
			}
		}
	})

	var limits []int
	tick := time.NewTicker(o.LimitEvery)
	warm := time.After(o.Warmup)
	var end <-chan time.Time
	var began time.Time
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-warm:
			measuring.Store(true)
			began = time.Now()
			end = time.After(d)
		case <-end:
			break loop
		case <-tick.C:
			if measuring.Load() {
				limits = append(limits, pool.Stats().Limit)
			}
		}
	}
	elapsed := time.Since(began)
	measuring.Store(false)
	tick.Stop()
	cancel()
	wg.Wait()
	nbClient.CloseIdleConnections()
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer closeCancel()
	if err := pool.Close(closeCtx); err != nil {
		return adaptiveRun{}, fmt.Errorf("close the pool: %w", err)
	}

	r := adaptiveRun{MaxConnections: maxConns, Adaptive: adaptive}
	var all []time.Duration
	var first error
	for _, w := range workers {
		all = append(all, w.lat...)
		r.Errors += w.errors
		r.PGRST003 += w.pgrst3
		first = cmpErr(first, w.first)
	}
	if first != nil {
		r.FirstError = first.Error()
	}
	r.Requests = len(all)
	r.ReqPerSec = float64(len(all)) / elapsed.Seconds()
	r.P50Ms, r.P99Ms = quantilesMs(all)
	r.NeighbourReqs, r.NeighbourErrs = len(nb.lat), nb.errors
	r.NeighbourP50Ms, r.NeighbourP99Ms = quantilesMs(nb.lat)
	if len(limits) > 0 {
		slices.Sort(limits)
		r.LimitMin, r.LimitMedian, r.LimitMax = limits[0], limits[len(limits)/2], limits[len(limits)-1]
	}
	return r, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// quantilesMs returns the p50 and p99 of lat in milliseconds (0 for none).
func quantilesMs(lat []time.Duration) (p50, p99 float64) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99))
}

// neighbourQuery is the neighbour's request: the same RPC, sent by hand
// on its own connection.
func neighbourQuery(ctx context.Context, hc *http.Client, url, key string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(url, "/")+"/rest/v1/rpc/slow_read", bytes.NewReader(body))
	if err != nil {
		return err
	}
	setHeaders(req, key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// adaptiveGoals checks the targets.
func adaptiveGoals(fixedMax, best, adaptive adaptiveRun) []goal {
	ratio := func(a, b float64) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	return []goal{
		{
			Name:   "adaptive req/s >= 0.9 x best fixed",
			Result: passFail(adaptive.ReqPerSec >= 0.9*best.ReqPerSec),
			Detail: fmt.Sprintf("%.0f vs %.0f (%sx)", adaptive.ReqPerSec, best.ReqPerSec, ratio(adaptive.ReqPerSec, best.ReqPerSec)),
		},
		{
			Name:   "adaptive p99 <= 1.2 x best fixed's",
			Result: passFail(adaptive.P99Ms <= 1.2*best.P99Ms),
			Detail: fmt.Sprintf("%.1fms vs %.1fms (%sx)", adaptive.P99Ms, best.P99Ms, ratio(adaptive.P99Ms, best.P99Ms)),
		},
		{
			Name:   "adaptive: no 504 PGRST003",
			Result: passFail(adaptive.PGRST003 == 0),
			Detail: fmt.Sprintf("%d (fixed %d: %d)", adaptive.PGRST003, fixedMax.MaxConnections, fixedMax.PGRST003),
		},
		{
			Name:   fmt.Sprintf("neighbour p99 under adaptive <= 0.5 x under fixed %d", fixedMax.MaxConnections),
			Result: passFail(adaptive.NeighbourP99Ms <= 0.5*fixedMax.NeighbourP99Ms),
			Detail: fmt.Sprintf("%.1fms vs %.1fms (%sx)", adaptive.NeighbourP99Ms, fixedMax.NeighbourP99Ms, ratio(adaptive.NeighbourP99Ms, fixedMax.NeighbourP99Ms)),
		},
	}
}

// writeText prints the sweep, the comparison and the targets.
func (r *adaptiveReport) writeText(w io.Writer) error {
	o := r.Options
	fmt.Fprintf(w, "PostgREST with db-pool %d, each request slow_read(%g) (%s in PostgreSQL), %d workers through the pool;\n"+
		"a neighbour sends the same request outside the pool, one at a time (%s apart). %s warm-up before each run.\n\n",
		o.DBPool, o.Query.Seconds(), o.Query, o.Workers, o.NeighbourGap, o.Warmup)
	fmt.Fprintf(w, "sweep: fixed MaxConnections, %s each\n", o.SweepTime)
	if err := writeRuns(w, r.Sweep, false); err != nil {
		return err
	}
	fmt.Fprintf(w, "best fixed size: %d (of the sizes within 5%% of the highest req/s, the lowest p99)\n\ncompared, %s each:\n", r.Best, o.Duration)
	if err := writeRuns(w, r.Modes, true); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nreq/s, p50, p99: the workers' successful requests completed while measuring (pool wait included).\n"+
		"errors: failed requests (504 PGRST003 among them); limit: Stats.Limit sampled every "+o.LimitEvery.String()+" (min/median/max).")
	fmt.Fprintln(w)
	for _, g := range r.Goals {
		fmt.Fprintf(w, "%-4s  %s: %s\n", g.Result, g.Name, g.Detail)
	}
	return nil
}

// writeRuns prints one row per run; withLabel puts the runs' labels
// first, left-aligned (the other columns are right-aligned).
func writeRuns(w io.Writer, runs []adaptiveRun, withLabel bool) error {
	width := len("mode")
	for _, m := range runs {
		width = max(width, len(m.Label))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "max conns\treq/s\tp50\tp99\terrors\t504 PGRST003\tlimit min/med/max\tneighbour p50\tneighbour p99\t"
	if withLabel {
		head = fmt.Sprintf("%-*s\t", width, "mode") + head
	}
	fmt.Fprintln(tw, head)
	for _, m := range runs {
		line := fmt.Sprintf("%d\t%.0f\t%.1fms\t%.1fms\t%d\t%d\t%d/%d/%d\t%.1fms\t%.1fms\t",
			m.MaxConnections, m.ReqPerSec, m.P50Ms, m.P99Ms, m.Errors, m.PGRST003,
			m.LimitMin, m.LimitMedian, m.LimitMax, m.NeighbourP50Ms, m.NeighbourP99Ms)
		if withLabel {
			line = fmt.Sprintf("%-*s\t", width, m.Label) + line
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}
