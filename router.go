package supapool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// defaultReplicaCoolDown is how long a failed endpoint is skipped when
// Config.ReplicaCoolDown is zero.
const defaultReplicaCoolDown = 5 * time.Second

// maxReadReplicas bounds Config.ReadReplicas (a read tracks the replicas it
// has tried in one uint64).
const maxReadReplicas = 64

// The router is the request path's routing layer, present only when
// Config.ReadReplicas is set. It sits below each client's own transport
// (checkout.go) and above the transport that carries requests (the pool's
// own, or Config.Transport), and sends every request to one endpoint: a
// GET or HEAD for the REST API (/rest/v1) to a healthy read replica, the
// one with the fewest requests in flight (ties broken at random), and
// everything else, auth included, to the primary. A read pinned to the
// primary (OnPrimary, or read-your-writes: see pin) goes to the primary too.
//
// A read that a replica could not serve (a transport error that is not the
// request's own ctx ending, or a 502, 503 or 504 answer) is sent again at
// once, within the same RoundTrip, to another healthy replica and at last
// to the primary, so callers see no error while one endpoint is up. GET and
// HEAD requests have no body, so the same request can be sent again; each
// attempt gets its own shallow copy with the endpoint's URL.
//
// An endpoint that fails that way is ejected for the cool-down: replicas
// are skipped until it has passed, and then exactly one read (the first
// that finds it due) tries the replica again; an answer puts it back in
// service, a failure ejects it for another cool-down. The primary is never
// skipped: its ejection only shows in Stats.
type router struct {
	primary  *endpoint
	replicas []*endpoint
	coolDown int64     // nanoseconds
	epoch    time.Time // of the clock below
}

// endpoint is one server the router sends to: the primary or a replica.
type endpoint struct {
	r         *router
	role      string // "primary" or "replica"
	scheme    string
	host      string
	prefix    string // the URL's path without trailing slashes, which precedes /rest/v1
	rawPrefix string // prefix, escaped
	label     string // the URL, redacted: for Stats and health

	// rt carries the endpoint's requests: the endpoint's circuit breaker
	// (with Config.Breaker), then the transport below the router.
	rt      http.RoundTripper
	breaker *breaker // nil without Config.Breaker

	inFlight  atomic.Int64 // requests sent whose response body is not yet closed or read to the end
	requests  atomic.Int64 // requests sent (every attempt counts)
	failures  atomic.Int64 // requests that met a transport error or a 502, 503 or 504 answer
	failovers atomic.Int64 // reads it failed that went on to another endpoint
	ejections atomic.Int64 // times it was ejected
	// downUntil is the router's clock (see now) until which the endpoint
	// is ejected; 0 while it is healthy. When a replica's cool-down has
	// passed, the read that claims its trial moves downUntil on by a
	// cool-down, so that no other read follows it there meanwhile.
	downUntil atomic.Int64
}

// newRouter makes the router for the primary URL and cfg.ReadReplicas,
// both already validated, over base; with cfg.Breaker.Enabled, each
// endpoint gets a circuit breaker of its own in front of base.
func newRouter(primary string, cfg Config, base http.RoundTripper, epoch time.Time, log *slog.Logger) *router {
	r := &router{coolDown: int64(cfg.ReplicaCoolDown), epoch: epoch}
	r.primary = r.newEndpoint("primary", primary, base, cfg, log)
	for _, u := range cfg.ReadReplicas {
		r.replicas = append(r.replicas, r.newEndpoint("replica", u, base, cfg, log))
	}
	return r
}

func (r *router) newEndpoint(role, raw string, base http.RoundTripper, cfg Config, log *slog.Logger) *endpoint {
	u, _ := url.Parse(raw) // validated
	e := &endpoint{
		r: r, role: role, scheme: u.Scheme, host: u.Host,
		prefix: strings.TrimRight(u.Path, "/"), rawPrefix: strings.TrimRight(u.EscapedPath(), "/"),
		label: redactedURL(raw), rt: base,
	}
	if cfg.Breaker.Enabled {
		e.breaker = newBreaker(raw, base, cfg.Breaker, log)
		e.rt = e.breaker
	}
	return e
}

// checkAPIURL reports why raw is not an absolute http(s) URL, or nil.
func checkAPIURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("does not parse")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", u.Redacted())
	}
	return nil
}

// redactedURL is raw without a password, for display.
func redactedURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// now is the router's clock: nanoseconds since epoch, plus one so that it
// is never 0 (downUntil's "healthy").
func (r *router) now() int64 { return int64(time.Since(r.epoch)) + 1 }

// routeKey is the ctx key of a request's route: pinPrimary (OnPrimary,
// read-your-writes) or one endpoint of a router (HealthCheck's probes).
type routeKey struct{}

// pinPrimary is the route of a request pinned to the primary.
var pinPrimary = &endpoint{role: "primary"}

// OnPrimary returns a ctx that sends every request made with it, and every
// request of a closure run with it (WithClient, WithRetry) or of a client
// acquired with it, to the primary instead of a read replica: for a read
// that must see a write made by an earlier request, in another checkout.
// (Within one checkout, reads after a write go to the primary anyway.)
// Without Config.ReadReplicas every request goes to the primary, and
// OnPrimary changes nothing.
func OnPrimary(ctx context.Context) context.Context {
	return context.WithValue(ctx, routeKey{}, pinPrimary)
}

func routeFrom(ctx context.Context) *endpoint {
	ep, _ := ctx.Value(routeKey{}).(*endpoint)
	return ep
}

func isRead(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// pin applies read-your-writes to a request of checkout b, on its way to
// the router: once b has sent a write, or if b was made with an OnPrimary
// ctx, its reads carry the primary's route. It allocates only for such a
// read.
func (r *router) pin(b *checkout, req *http.Request) *http.Request {
	if !isRead(req.Method) {
		b.primary.Store(true)
		return req
	}
	if b.primary.Load() && routeFrom(req.Context()) == nil {
		return req.WithContext(context.WithValue(req.Context(), routeKey{}, pinPrimary))
	}
	return req
}

// RoundTrip sends req to the endpoint its route, method and path call for.
func (r *router) RoundTrip(req *http.Request) (*http.Response, error) {
	route := routeFrom(req.Context())
	if route != nil && route.r == r {
		return route.send(req, false) // a health probe: this endpoint only
	}
	if route != nil || !isRead(req.Method) || len(r.replicas) == 0 || !r.primary.isREST(req.URL.Path) ||
		(req.Body != nil && req.Body != http.NoBody) {
		return r.primary.send(req, false)
	}
	var tried uint64
	for {
		i, ep := r.pick(tried)
		if ep == nil {
			return r.primary.send(req, false)
		}
		tried |= 1 << i
		resp, err := ep.send(req, true)
		if resp != nil || err != nil {
			return resp, err
		}
		ep.failovers.Add(1)
	}
}

// pick returns the replica for a read that has tried those in tried: the
// first replica found whose cool-down has passed (the read is its trial),
// or else the healthy one with the fewest requests in flight, ties broken
// at random; nil when none is left.
func (r *router) pick(tried uint64) (int, *endpoint) {
	n := len(r.replicas)
	start := 0
	if n > 1 {
		start = rand.N(n)
	}
	now := r.now()
	best, bestLoad := -1, int64(0)
	for k := range n {
		i := (start + k) % n
		if tried&(1<<i) != 0 {
			continue
		}
		ep := r.replicas[i]
		if d := ep.downUntil.Load(); d != 0 {
			if now >= d && ep.downUntil.CompareAndSwap(d, now+r.coolDown) {
				return i, ep // due for its trial
			}
			continue
		}
		if load := ep.inFlight.Load(); best < 0 || load < bestLoad {
			best, bestLoad = i, load
		}
	}
	if best < 0 {
		return 0, nil
	}
	return best, r.replicas[best]
}

// isREST reports whether path, a path on the primary, is under the REST
// API (/rest/v1), the part of Supabase's API that read replicas serve.
func (e *endpoint) isREST(path string) bool {
	rest, ok := strings.CutPrefix(path, e.prefix)
	if !ok {
		return false
	}
	rest = strings.TrimLeft(rest, "/")
	return rest == "rest/v1" || strings.HasPrefix(rest, "rest/v1/")
}

// send sends req, a request made for the primary, to e, and keeps e's
// counts and health. With failover set (a read that another endpoint can
// serve), a failure of e's making returns (nil, nil): the caller sends the
// read elsewhere.
func (e *endpoint) send(req *http.Request, failover bool) (*http.Response, error) {
	out := req
	if e != e.r.primary {
		out = e.rewrite(req)
	}
	// A read that may fail over carries a breaker report of its own: the
	// client's transport reports only the attempt whose answer it gets.
	outer, attempt := e.attemptReport(&out, failover)
	start := e.r.now()
	e.requests.Add(1)
	e.inFlight.Add(1)
	resp, err := e.rt.RoundTrip(out)
	switch {
	case err != nil:
		e.inFlight.Add(-1)
		if req.Context().Err() != nil {
			attempt.finish(errOutcomeIgnored)
			return nil, err // the request's own ctx ended: not the endpoint's fault
		}
		e.fail()
		if failover {
			attempt.finish(errOutcomeUnwell)
			return nil, nil
		}
		attempt.handTo(outer)
		return nil, err
	case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable ||
		resp.StatusCode == http.StatusGatewayTimeout || failover && lostDatabase(resp):
		e.fail()
		if failover {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
			_ = resp.Body.Close()
			e.inFlight.Add(-1)
			attempt.finish(errOutcomeUnwell)
			return nil, nil
		}
	default:
		e.ok(start)
	}
	attempt.handTo(outer)
	if resp.Body == nil || resp.Body == http.NoBody {
		e.inFlight.Add(-1)
	} else {
		resp.Body = &trackedBody{ReadCloser: resp.Body, ep: e}
	}
	return resp, nil
}

// rewrite returns a shallow copy of req, a request for the primary, with
// e's scheme, host and path prefix.
func (e *endpoint) rewrite(req *http.Request) *http.Request {
	p := e.r.primary
	u := *req.URL
	u.Scheme, u.Host = e.scheme, e.host
	u.Path = e.prefix + strings.TrimPrefix(u.Path, p.prefix)
	if u.RawPath != "" {
		u.RawPath = e.rawPrefix + strings.TrimPrefix(u.RawPath, p.rawPrefix)
	}
	out := new(http.Request)
	*out = *req
	out.URL = &u
	out.Host = "" // the Host header follows the URL
	return out
}

// fail ejects e for a cool-down (again, if it is ejected already).
func (e *endpoint) fail() {
	e.failures.Add(1)
	if e.downUntil.Swap(e.r.now()+e.r.coolDown) == 0 {
		e.ejections.Add(1)
	}
}

// ok puts e back in service after an answer to a request sent at start,
// unless e was ejected after start (by a failure the answer predates).
func (e *endpoint) ok(start int64) {
	if d := e.downUntil.Load(); d != 0 && start >= d-e.r.coolDown {
		e.downUntil.CompareAndSwap(d, 0)
	}
}

// trackedBody counts its endpoint's request in flight until the body is
// read to the end or closed.
type trackedBody struct {
	io.ReadCloser
	ep   *endpoint
	done atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.finish()
	}
	return n, err
}

func (b *trackedBody) Close() error {
	b.finish()
	return b.ReadCloser.Close()
}

func (b *trackedBody) finish() {
	if b.done.CompareAndSwap(false, true) {
		b.ep.inFlight.Add(-1)
	}
}

// EndpointStats is what the pool counted for one endpoint, the primary or
// a read replica (Stats.Endpoints). Its counters are read one by one,
// without the pool's lock.
type EndpointStats struct {
	URL       string `json:"url"`       // the endpoint's URL, without a password
	Role      string `json:"role"`      // "primary" or "replica"
	Requests  int64  `json:"requests"`  // requests sent to it, every attempt counted
	Failures  int64  `json:"failures"`  // requests that met a transport error or a 502, 503 or 504 answer
	Failovers int64  `json:"failovers"` // reads it failed that went on to another endpoint
	Ejections int64  `json:"ejections"` // times it was ejected after a failure
	InFlight  int64  `json:"inFlight"`  // requests sent whose response is not yet read or closed
	Healthy   bool   `json:"healthy"`   // not ejected: no failure since its last answer
}

// stats returns the endpoints' statistics, primary first; nil without a
// router.
func (r *router) stats() []EndpointStats {
	if r == nil {
		return nil
	}
	out := make([]EndpointStats, 0, 1+len(r.replicas))
	for _, e := range r.endpoints() {
		out = append(out, EndpointStats{
			URL: e.label, Role: e.role,
			Requests: e.requests.Load(), Failures: e.failures.Load(), Failovers: e.failovers.Load(),
			Ejections: e.ejections.Load(), InFlight: e.inFlight.Load(),
			Healthy: e.downUntil.Load() == 0,
		})
	}
	return out
}

// endpoints returns the primary, then the replicas.
func (r *router) endpoints() []*endpoint { return append([]*endpoint{r.primary}, r.replicas...) }

// attemptReport gives *out, a read that may fail over, a breaker report of
// its own when the endpoint has a breaker and the request carries the
// client transport's report (outer): an attempt the router abandons is
// judged here (finish), and the one whose answer goes up hands its breaker
// to outer (handTo), which the client's transport then judges. Otherwise
// it returns nils, and the breaker fills outer directly.
func (e *endpoint) attemptReport(out **http.Request, failover bool) (outer, attempt *breakerReport) {
	if !failover || e.breaker == nil {
		return nil, nil
	}
	outer, _ = (*out).Context().Value(breakerReportKey{}).(*breakerReport)
	if outer == nil {
		return nil, nil
	}
	attempt = &breakerReport{}
	*out = (*out).WithContext(context.WithValue((*out).Context(), breakerReportKey{}, attempt))
	return outer, attempt
}

// lostDatabase reports whether resp, a 400, is PostgREST's answer for a
// statement whose database connection dropped (see Error.lostDatabase): a
// replica in that state is as unwell as one answering 503. It reads at
// most maxErrorBody of the body and leaves resp.Body whole for the caller.
func lostDatabase(resp *http.Response) bool {
	if resp.StatusCode != http.StatusBadRequest {
		return false
	}
	prefix, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var rest io.Reader = resp.Body
	if err != nil {
		rest = errReader{err}
	}
	resp.Body = readCloser{io.MultiReader(bytes.NewReader(prefix), rest), resp.Body}
	e := Error{Status: resp.StatusCode}
	parseErrorBody(prefix, &e)
	return e.lostDatabase()
}
