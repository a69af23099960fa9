// Command loadtest measures what pooling changes, on a real PostgREST: the
// same category query sent by many concurrent workers in five ways, one
// after another.
//
//	(a) before:  a new supabase.Client per request, as Go services do
//	             today; every client sends through http.DefaultTransport,
//	             which keeps at most 2 idle connections per host.
//	(b) after:   one supapool.Pool with ProductionConfig (MaxConnections 20),
//	             requests through Pool.WithClient.
//	(c) ceiling: plain net/http with a hand-tuned http.Transport (20
//	             connections per host, all kept alive), the same GET built
//	             by hand and decoded into the same structs; no pool.
//	(d) replica: (b) with Config.ReadReplicas set to the stack's streaming
//	             read replica: the reads go to the replica's gateway.
//	(e) TLS:     (b) over the gateway's TLS listener, where Go's transport
//	             negotiates HTTP/2 and multiplexes requests on few
//	             connections.
//
// Modes (d) and (e) run on the local stack only. In (d) the connection
// columns add up both gateways.
//
// Each mode runs -concurrency workers (default 100) that send requests back
// to back: a warm-up second that is not measured, then -duration (default
// 10s) that is. Per mode it reports requests/s, errors, average, p50 and
// p99 latency, the peak of concurrent TCP connections and the new TCP
// connections the server saw (warm-up included), and the peak heap of this
// process. Then it checks three goals (PASS/FAIL; a FAIL does not change
// the exit status):
//
//	(b) req/s >= 0.95 x (c)           the pool costs at most 5% throughput
//	(b) p99 <= (a) p99                pooling does not hurt the tail
//	(b) new, peak conns <= 20         the pool bounds TCP connections
//
// By default it starts its own PostgreSQL 15 + PostgREST 12 + gateway proxy
// on loopback (install them with scripts/setup-stack.sh) and seeds a budget
// with 20 categories:
//
//	go run ./internal/loadtest [-duration 10s] [-concurrency 100] [-max-conns 20] [-json]
//
// With SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY set it loads that server
// instead. It then queries the budget given with -budget, or seeds one
// (owner_id "supapool-loadtest") and deletes it again at exit. The server's
// connection counts are unavailable then: new connections are counted on
// the client (net/http/httptrace), and the peak shows as n/a.
//
// With -adaptive (make adaptive) it runs another scenario instead, on the
// local stack only: Config.AdaptiveLimit against fixed sizes on a PostgREST
// with a db-pool of 4, with a neighbour outside the pool (see adaptive.go);
// -duration and -concurrency set its compared runs' length and workers.
//
// Run it from inside the module: the stack finds its binaries there.
//
// Read the numbers with their setting in mind. With a fixed number of
// workers that send back to back, the average latency is the concurrency
// divided by the throughput (Little's law), so a mode lowers it only by
// serving more requests per second; what a pool changes is where requests
// wait (in its FIFO queue instead of at the server), which shows in p99.
// On a machine with few cores one run varies by several percent, so
// compare the medians of a few runs before trusting a 5% difference.
// On the local stack the gateway proxy runs inside this process (its CPU
// and heap are in the numbers of every mode), everything shares the
// machine's cores, and a new connection costs a loopback TCP handshake
// without TLS, far less than a TLS handshake across a network to a real
// Supabase project. Over HTTPS, HTTP/2 may be negotiated, and then one
// connection carries many requests in every mode.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/stack"
)

func main() {
	var (
		o        options
		asJSON   bool
		budgetID string
		adaptive bool
	)
	flag.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time per mode (after a 1s warm-up)")
	flag.IntVar(&o.Concurrency, "concurrency", 100, "concurrent workers per mode")
	flag.BoolVar(&asJSON, "json", false, "print a JSON document instead of the table")
	flag.IntVar(&o.MaxConns, "max-conns", supapool.ProductionConfig().MaxConnections, "connection bound of (b), as its MaxConnections, and of (c)")
	flag.StringVar(&budgetID, "budget", "", "with SUPABASE_URL: query this existing budget instead of seeding one")
	flag.BoolVar(&adaptive, "adaptive", false, "run the AdaptiveLimit scenario instead (local stack only; see adaptive.go)")
	flag.Parse()
	if o.Duration <= 0 || o.Concurrency <= 0 || o.MaxConns <= 0 {
		fmt.Fprintln(os.Stderr, "loadtest: -duration, -concurrency and -max-conns must be positive")
		os.Exit(2)
	}
	o.Warmup, o.Settle = time.Second, 500*time.Millisecond

	// SIGINT or SIGTERM cancels ctx: the workers stop, and run closes the
	// pool and stops the stack before it returns.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if adaptive {
		ao := defaultAdaptiveOptions()
		ao.Workers, ao.Duration = o.Concurrency, o.Duration
		err = runAdaptiveScenario(ctx, ao, asJSON, os.Stdout, os.Stderr)
	} else {
		err = run(ctx, o, budgetID, asJSON, os.Stdout, os.Stderr)
	}
	interrupted := ctx.Err() != nil // before stop, which cancels ctx too
	stop()
	switch {
	case err != nil && interrupted:
		fmt.Fprintln(os.Stderr, "loadtest: interrupted; everything it started is stopped")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "loadtest: "+err.Error())
		os.Exit(1)
	}
}

// run sets up the target (the local stack, or the server of SUPABASE_URL),
// runs the modes, prints the report on out and progress on progress,
// and undoes its setup, also when ctx is canceled.
func run(ctx context.Context, o options, budgetID string, asJSON bool, out, progress io.Writer) (err error) {
	url, key := os.Getenv("SUPABASE_URL"), os.Getenv("SUPABASE_SERVICE_ROLE_KEY")
	var t target
	switch {
	case url != "" && key != "":
		t = target{url: strings.TrimSuffix(url, "/"), key: key, where: "external server " + redactURL(url)}
	case url != "" || key != "":
		return errors.New("set both SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, or neither (to use the local stack)")
	default:
		if budgetID != "" {
			return errors.New("-budget needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY; the local stack is always seeded")
		}
		s, err := stack.ForCommand(ctx, "loadtest", progress, stack.Options{Replica: true, TLS: true})
		if err != nil {
			return err
		}
		defer func() {
			if cerr := s.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("stop the stack: %w", cerr))
			}
		}()
		t = target{url: s.URL, key: s.ServiceKey, server: s, where: "local stack (PostgreSQL 15 + PostgREST 12 + gateway proxy on loopback, a streaming read replica, TLS gateways)",
			replicaURL: s.ReplicaURL, tlsURL: s.TLSURL, tls: s.TLSClientConfig()}
	}

	if budgetID == "" {
		id, unseed, err := seed(ctx, t.url, t.key)
		if err != nil {
			return err
		}
		defer func() {
			// Not ctx: it may be canceled, and the rows must go anyway.
			c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if uerr := unseed(c); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}()
		budgetID = id
	}
	t.budgetID = budgetID
	if t.want, err = countCategories(ctx, t); err != nil {
		return err
	}
	if t.want == 0 {
		return fmt.Errorf("budget %s has no categories; pick one that has some", budgetID)
	}
	if t.server != nil && t.server.ReplicaURL != "" {
		if err := t.server.WaitReplica(ctx); err != nil {
			return err
		}
	}

	rep, err := runAll(ctx, t, o, progress)
	if err != nil {
		return err
	}
	if asJSON {
		return rep.writeJSON(out)
	}
	return rep.writeText(out)
}
