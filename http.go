package supapool

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// HealthHandler returns an http.Handler that runs HealthCheck with the
// request's ctx and answers 200 when healthy and 503 when not, with the
// Health as JSON. Mount it where your monitoring looks, e.g. GET
// /health/pool. The body holds pool statistics but no key or token; like
// the pool headers, consider serving it only to internal callers.
func (p *Pool) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := p.HealthCheck(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if h.Healthy {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(h)
	})
}

// Middleware sets the pool's statistics as response headers before next
// runs, so they are there however next writes its response:
//
//	X-Pool-Total-Connections, X-Pool-Active-Connections,
//	X-Pool-Idle-Connections, X-Pool-Waiting-Requests
//
// They disclose internals; to show them only to some requests (say, from
// an internal network or with a debug header), use MiddlewareFor.
func (p *Pool) Middleware(next http.Handler) http.Handler {
	return p.MiddlewareFor(nil)(next)
}

// MiddlewareFor is Middleware that sets the headers only on requests for
// which show returns true. A nil show means every request.
func (p *Pool) MiddlewareFor(show func(r *http.Request) bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if show == nil || show(r) {
				s := p.Stats()
				h := w.Header()
				h.Set("X-Pool-Total-Connections", strconv.Itoa(s.TotalConnections))
				h.Set("X-Pool-Active-Connections", strconv.Itoa(s.ActiveConnections))
				h.Set("X-Pool-Idle-Connections", strconv.Itoa(s.IdleConnections))
				h.Set("X-Pool-Waiting-Requests", strconv.Itoa(s.WaitingForConnection))
			}
			next.ServeHTTP(w, r)
		})
	}
}
