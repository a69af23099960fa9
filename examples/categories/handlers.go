package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/supapool/supapool"
)

const (
	maxBodyBytes   = 64 << 10         // request bodies are small JSON objects
	requestTimeout = 15 * time.Second // bounds the pool wait, the retries and PostgREST
)

// api serves the HTTP endpoints.
type api struct {
	svc CategoryService
	log *slog.Logger
}

// routes returns the API's handler. The pool's health endpoint needs no
// user token: it checks the pool and PostgREST with the pool's key, and its
// answer holds statistics only.
func routes(pool *supapool.Pool, log *slog.Logger) *http.ServeMux {
	a := &api{svc: NewCategoryService(pool), log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /budgets/{id}/categories", a.authed(a.listCategories))
	mux.HandleFunc("POST /budgets/{id}/categories", a.authed(a.createCategory))
	mux.HandleFunc("PATCH /categories/{id}", a.authed(a.updateCategory))
	mux.HandleFunc("DELETE /categories/{id}", a.authed(a.deleteCategory))
	mux.Handle("GET /health/pool", pool.HealthHandler())
	return mux
}

// authed runs h with a ctx that carries the caller's JWT, so that every
// query h makes runs as that user under row-level security. A request
// without a bearer token is refused: falling back to the pool's key would
// run it as the service role, which bypasses row-level security.
//
// The JWT is not verified here; PostgREST verifies it on every request and
// answers 401 for a bad or expired one, which writeError passes on.
func (a *api) authed(h func(ctx context.Context, w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		jwt, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer`)
			writeJSON(w, http.StatusUnauthorized, errorBody{"missing bearer token"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		h(supapool.WithAuthToken(ctx, jwt), w, r)
	}
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

func (a *api) listCategories(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	cats, err := a.svc.ListCategories(ctx, r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, cats)
}

func (a *api) createCategory(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	var in NewCategory
	if err := decodeJSON(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	cat, err := a.svc.CreateCategory(ctx, r.PathValue("id"), in)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, cat)
}

func (a *api) updateCategory(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	var in CategoryUpdate
	if err := decodeJSON(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	cat, err := a.svc.UpdateCategory(ctx, r.PathValue("id"), in)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, cat)
}

func (a *api) deleteCategory(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	if err := a.svc.DeleteCategory(ctx, r.PathValue("id")); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decodeJSON reads one JSON object of at most maxBodyBytes into v and
// rejects unknown fields, such as an owner_id the caller may not set.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &httpError{http.StatusRequestEntityTooLarge, "request body too large"}
		}
		return fmt.Errorf("%w: body is not a valid JSON object: %v", ErrInvalid, err)
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return fmt.Errorf("%w: body must hold a single JSON object", ErrInvalid)
	}
	return nil
}

// httpError is an error with the status to answer it with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

type errorBody struct {
	Error string `json:"error"`
}

// writeError maps err to a status and a JSON body. The body never holds
// the token: it holds our own messages or PostgREST's, and supapool's
// errors contain no key or token either.
func (a *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "internal error"
	quiet := false // a 503 that floods in during an outage or overload, which the pool's Stats (and log) show already
	var he *httpError
	var pe *supapool.Error
	switch {
	case errors.As(err, &he):
		status, msg = he.status, he.msg
	case errors.Is(err, ErrInvalid):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, ErrNotFound):
		status, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, supapool.ErrAcquireTimeout), errors.Is(err, supapool.ErrPoolExhausted):
		// Every pooled client stayed busy for Config.AcquireTimeout, or
		// Config.MaxWaiting callers already wait for one: we are
		// overloaded. Ask the caller to come back instead of queueing more.
		status, msg = http.StatusServiceUnavailable, "server busy, try again"
		w.Header().Set("Retry-After", "1")
		quiet = errors.Is(err, supapool.ErrPoolExhausted)
	case errors.Is(err, supapool.ErrCircuitOpen):
		// The database has been failing and the pool's circuit breaker
		// stopped sending it requests: nothing was sent, so the caller may
		// safely send the same request again once the breaker lets probes
		// through, which is what Retry-After says. The pool logged the
		// breaker's opening once.
		status, msg = http.StatusServiceUnavailable, "database temporarily unavailable, try again"
		w.Header().Set("Retry-After", retryAfter(err))
		quiet = true
	case supapool.IsTransient(err):
		// The database is unreachable or restarting, and WithRetry has
		// spent its retries (or it was not safe to retry: then the caller
		// should check before sending the write again).
		status, msg = http.StatusServiceUnavailable, "database temporarily unavailable, try again"
		w.Header().Set("Retry-After", retryAfter(err))
	case errors.As(err, &pe) && pe.Status >= 400 && pe.Status < 500:
		// PostgREST's 4xx are the caller's fault and say why: 400 for a
		// malformed uuid (22P02), 401 for a bad or expired JWT, 409 for a
		// duplicate (23505) or a missing budget (23503).
		status, msg = pe.Status, pe.Message
		if msg == "" {
			msg = http.StatusText(pe.Status)
		}
	case errors.Is(err, context.DeadlineExceeded):
		status, msg = http.StatusGatewayTimeout, "request timed out"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the caller went away; nobody reads an answer
	}
	if status >= 500 && !quiet {
		// supapool's errors hold no key or token, so they are safe to log.
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	}
	writeJSON(w, status, errorBody{msg})
}

// retryAfter is the Retry-After to send for a transient error, in whole
// seconds: when the circuit breaker lets requests through again, or the
// server's own, or one second.
func retryAfter(err error) string {
	d := time.Second
	var ce *supapool.CircuitOpenError
	var pe *supapool.Error
	switch {
	case errors.As(err, &ce):
		d = max(ce.RetryAfter, time.Second) // 0 while half-open: its probe is out
	case errors.As(err, &pe) && pe.RetryAfter > 0:
		d = pe.RetryAfter
	}
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
