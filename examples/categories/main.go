// Command categories is a small JSON API over the categories of a budgeting
// app, backed by Supabase through a supapool.Pool. It shows how to share
// one pool among all requests, act for the calling user under row-level
// security, retry safely, map database errors to HTTP statuses, and shut
// down without dropping requests.
//
// It also serves the pool's Prometheus metrics at /metrics and reports a
// client held longer than LeakThreshold in its log. It is a module of its
// own, so that the supapool module does not depend on client_golang:
//
//	cd examples/categories
//	SUPABASE_URL=https://<project>.supabase.co \
//	SUPABASE_SERVICE_ROLE_KEY=... \
//	go run .
//
//	curl -H "Authorization: Bearer $USER_JWT" localhost:8080/budgets/$BUDGET/categories
//	curl localhost:8080/metrics
//
// In this repository, `make example` runs it against a local PostgreSQL and
// PostgREST instead, and prints a curl command with a user's JWT.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/supapool/supapool"
	supapoolprom "github.com/supapool/supapool/prometheus"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("categories: " + err.Error())
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	url, key := os.Getenv("SUPABASE_URL"), os.Getenv("SUPABASE_SERVICE_ROLE_KEY")
	if url == "" || key == "" {
		return errors.New("set SUPABASE_URL (e.g. https://<project>.supabase.co) and SUPABASE_SERVICE_ROLE_KEY (Project Settings > API)")
	}
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}

	// One pool for the whole process; every request borrows a client from
	// it. The service-role key is the pool's key, but each API request runs
	// with the caller's JWT (see api.authed), so row-level security applies.
	// ProductionConfig turns the circuit breaker on: while the database is
	// down, requests are answered 503 at once instead of each waiting for
	// a failure (see writeError).
	cfg := supapool.ProductionConfig()
	cfg.Logger = log
	// No handler holds a client for longer than requestTimeout; one held
	// for twice that was lost, and the log shows who acquired it.
	cfg.LeakThreshold = 2 * requestTimeout
	pool, err := supapool.New(url, key, cfg)
	if err != nil {
		return err // New's errors never contain the key
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = pool.Close(context.Background())
		return err
	}
	srv := &http.Server{
		Handler:           newHandler(pool, log),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      requestTimeout + 5*time.Second, // handlers give up after requestTimeout
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "pool", pool.String())

	select {
	case err = <-serveErr: // the server failed on its own
	case <-ctx.Done():
		log.Info("shutting down")
	}
	stop() // a second signal now kills the process at once

	// Stop accepting requests and let those in flight finish, then close
	// the pool, which waits for every borrowed client to come back. Both
	// share one 10s deadline.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutdownCtx); serr != nil {
		err = errors.Join(err, fmt.Errorf("shutdown: %w", serr))
	}
	if cerr := pool.Close(shutdownCtx); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// newHandler is the API with the pool's statistics as X-Pool-* response
// headers for the requests showPoolHeaders picks, and the pool's (and the
// Go runtime's) metrics at GET /metrics. Like the headers, the metrics
// hold no key or token but show how loaded the service is: in production,
// serve them on an address that only the Prometheus server can reach.
func newHandler(pool *supapool.Pool, log *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(supapoolprom.NewCollector(pool, "categories"), collectors.NewGoCollector())
	mux := routes(pool, log)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return pool.MiddlewareFor(showPoolHeaders)(mux)
}

// showPoolHeaders decides which responses carry the X-Pool-* headers: a
// request that asks for them with "X-Debug-Pool: 1", or any request from
// loopback (a developer's curl). They hold only counts, never a key or a
// token, but they tell anyone how loaded the service is, which helps no
// legitimate client; so ordinary responses go without them. Note that the
// header is an opt-in, not an access control (any client can send it), and
// that behind a reverse proxy on the same host every request comes from
// loopback: in production, gate them on something a stranger cannot forge.
func showPoolHeaders(r *http.Request) bool {
	if r.Header.Get("X-Debug-Pool") == "1" {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
