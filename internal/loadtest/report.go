package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything the load test prints.
type report struct {
	Target         string        `json:"target"`
	Categories     int           `json:"categories_per_request"`
	Concurrency    int           `json:"concurrency"`
	Duration       time.Duration `json:"-"`
	Warmup         time.Duration `json:"-"`
	DurationS      float64       `json:"duration_s"` // Duration, for JSON
	WarmupS        float64       `json:"warmup_s"`   // Warmup, for JSON
	MaxConnections int           `json:"max_connections"`
	Modes          []result      `json:"modes"`
	Goals          []goal        `json:"goals"`
}

// result is what one mode measured. Latencies and rates count the
// successful requests that completed during the measured time; connections
// and heap cover the whole mode, warm-up included.
type result struct {
	Mode      string  `json:"mode"`
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	Seconds   float64 `json:"seconds"`
	ReqPerSec float64 `json:"req_per_s"`
	AvgMs     float64 `json:"avg_ms"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	PeakConns *int64  `json:"peak_conns"` // at the server; null when the server is not ours
	NewConns  int64   `json:"new_conns"`  // at the server, or ClientNewConns when the server is not ours
	// ClientNewConns counts the new connections that carried a request
	// (httptrace). It can be lower than the server's count: a dial that
	// lost the race to an idle connection carries none at first.
	ClientNewConns int64   `json:"client_new_conns"`
	PeakHeapMiB    float64 `json:"peak_heap_mib"`
	FirstError     string  `json:"first_error,omitempty"`
	// GatewayReads counts the reads each gateway of the local stack saw,
	// warm-up included: where the requests went.
	GatewayReads map[string]int64 `json:"gateway_reads,omitempty"`
}

// goal is one PASS/FAIL line.
type goal struct {
	Name   string `json:"name"`
	Result string `json:"result"` // "PASS", "FAIL" or "n/a"
	Detail string `json:"detail"`
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// checkGoals compares the modes, which must be (a), (b), (c) in that order.
func checkGoals(m []result, maxConns int) []goal {
	before, pool, ceiling := m[0], m[1], m[2]
	var goals []goal

	g := goal{Name: "(b) req/s >= 0.95 x (c)", Result: "n/a", Detail: "no successful requests"}
	if pool.Requests > 0 && ceiling.Requests > 0 {
		bar := 0.95 * ceiling.ReqPerSec
		g.Result = passFail(pool.ReqPerSec >= bar)
		g.Detail = fmt.Sprintf("%.0f vs %.0f (0.95 x %.0f; b/c = %.2f)", pool.ReqPerSec, bar, ceiling.ReqPerSec, pool.ReqPerSec/ceiling.ReqPerSec)
	}
	goals = append(goals, g)

	g = goal{Name: "(b) p99 <= (a) p99", Result: "n/a", Detail: "no successful requests"}
	if pool.Requests > 0 && before.Requests > 0 {
		g.Result = passFail(pool.P99Ms <= before.P99Ms)
		g.Detail = fmt.Sprintf("%.1fms vs %.1fms", pool.P99Ms, before.P99Ms)
	}
	goals = append(goals, g)

	g = goal{Name: fmt.Sprintf("(b) new and peak connections <= MaxConnections (%d)", maxConns)}
	ok := pool.NewConns <= int64(maxConns)
	if pool.PeakConns != nil {
		ok = ok && *pool.PeakConns <= int64(maxConns)
		g.Detail = fmt.Sprintf("new %d, peak %d", pool.NewConns, *pool.PeakConns)
	} else {
		g.Detail = fmt.Sprintf("new %d (counted by the client), peak n/a", pool.NewConns)
	}
	g.Result = passFail(ok)
	goals = append(goals, g)
	return goals
}

// split says where each mode's reads went, for the modes of the local stack.
func (r *report) split() string {
	var b strings.Builder
	for _, m := range r.Modes {
		if m.GatewayReads != nil {
			fmt.Fprintf(&b, "  %s: %d reads at the primary's gateway, %d at the replica's\n", m.Mode[:3], m.GatewayReads["primary"], m.GatewayReads["replica"])
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "reads per gateway:\n" + b.String()
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // keep ">=" readable in the goals' names
	return enc.Encode(r)
}

// writeText prints the table, what its columns mean, and the goals.
func (r *report) writeText(w io.Writer) error {
	fmt.Fprintf(w, "%s\n%d workers per mode, %s measured after a %s warm-up; every request lists a budget's %d categories;\n"+
		"(b) and (c) use at most %d connections\n\n",
		r.Target, r.Concurrency, r.Duration, r.Warmup, r.Categories, r.MaxConnections)

	// The first column is left-aligned by padding it by hand; the others
	// are right-aligned, two spaces apart.
	width := len("mode")
	for _, m := range r.Modes {
		width = max(width, len(m.Mode))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 0, ' ', tabwriter.AlignRight)
	row := func(label string, cells ...string) {
		fmt.Fprintf(tw, "%-*s\t", width, label)
		for _, c := range cells {
			fmt.Fprintf(tw, "  %s\t", c)
		}
		fmt.Fprintln(tw)
	}
	row("mode", "req/s", "errors", "avg", "p50", "p99", "peak conns", "new conns", "peak heap")
	for _, m := range r.Modes {
		peak := "n/a"
		if m.PeakConns != nil {
			peak = fmt.Sprint(*m.PeakConns)
		}
		row(m.Mode, fmt.Sprintf("%.0f", m.ReqPerSec), fmt.Sprint(m.Errors),
			fmt.Sprintf("%.1fms", m.AvgMs), fmt.Sprintf("%.1fms", m.P50Ms), fmt.Sprintf("%.1fms", m.P99Ms),
			peak, fmt.Sprint(m.NewConns), fmt.Sprintf("%.1f MiB", m.PeakHeapMiB))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	where := "the server (the gateway proxy; in (d) both gateways, the peaks added)"
	if len(r.Modes) > 0 && r.Modes[0].PeakConns == nil {
		where = "this client (httptrace; the server's are not ours to count)"
	}
	fmt.Fprintf(w, "\nreq/s and latencies: successful requests completed while measuring.\n"+
		"peak conns, new conns: TCP connections seen by %s, warm-up included.\n"+
		"peak heap: this process's HeapInuse, sampled every 50ms (on the local stack it includes the gateway proxy).\n"+
		"%s"+
		"The original design claims, for 100 concurrent requests: before, average 250ms and peak 100 connections;\n"+
		"after pooling, average 180ms and peak 20 connections.\n\n", where, r.split())

	var b strings.Builder
	for _, g := range r.Goals {
		fmt.Fprintf(&b, "%-4s  %s: %s\n", g.Result, g.Name, g.Detail)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
