package supapool

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	functions "github.com/supabase-community/functions-go"
	gotrue "github.com/supabase-community/gotrue-go"
	storage "github.com/supabase-community/storage-go"
	supabase "github.com/supabase-community/supabase-go"
	"github.com/supapool/supapool/internal/clientpatch"
)

// A checkout binds a client to whoever holds it: the principal its
// requests speak for, the wire record of the closure it runs in, and the
// closure's ctx. Each pooled client sends every PostgREST and auth request
// through its own clientTransport, set once when the client is created,
// which reads the binding at each request. So what a request carries does
// not depend on which ctx, if any, the caller passed to it: Execute()
// without a ctx and supabase-go's Rpc speak for the same principal as
// ExecuteWithContext(ctx).
//
// Acquire (and so WithClient, WithRetry and HealthCheck) stores the
// binding; Release and Discard clear it, after which the client refuses to
// send anything (ErrClientReleased).
type checkout struct {
	tok *authToken      // the user's token, from the ctx of Acquire or WithClient; nil: the pool's key
	rec *wireRecord     // the closure's wire record; nil outside WithClient and WithRetry
	ctx context.Context // the closure's ctx, inherited by requests sent without one; nil outside closures

	// For a user's checkout, the Storage and Functions clients made for
	// the user's token, which stand in for the pooled ones until release.
	storage   *storage.Client
	functions *functions.Client

	// primary: with read replicas, every read of this checkout goes to the
	// primary from now on, because it has sent a write (read-your-writes)
	// or was made with an OnPrimary ctx. See router.pin.
	primary atomic.Bool
}

// clientTransport is the RoundTripper of one pooled client: the first layer
// of every request the client sends, before the pool's shared chain
// (Pool.rt: the observer, the router when there are read replicas, the
// circuit breaker of each endpoint, then Config.WrapTransport and the sized
// http.Transport). It observes every response once, and tells the breaker
// how it went.
type clientTransport struct {
	p *Pool
	c *conn
}

// RoundTrip applies the client's checkout to req and sends it.
func (t *clientTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	b := t.c.bound.Load()
	if b == nil {
		t.p.useAfterRelease.Add(1)
		closeBody(req)
		return nil, ErrClientReleased
	}
	if b.ctx != nil && isBackground(req.Context()) {
		// Sent without a ctx (Execute, Rpc): the closure's ctx bounds it.
		req = req.WithContext(b.ctx)
	}
	tok, err := principal(b.tok, authTokenFrom(req.Context()))
	if err == nil && tok != nil {
		// postgrest-go has already added the client's own Authorization
		// header; replace it on a copy, so that the request carries
		// exactly one, and leave the client untouched.
		r2 := new(http.Request)
		*r2 = *req
		r2.Header = req.Header.Clone()
		r2.Header.Set("Authorization", "Bearer "+tok.jwt)
		req = r2
	}
	var resp *http.Response
	var br *breakerReport // the breaker's done func comes back in it (breaker.go)
	var sent time.Time    // with AdaptiveLimit, when req left (limit.go)
	if err != nil {
		closeBody(req)
	} else {
		if t.p.router != nil {
			req = t.p.router.pin(b, req)
		}
		req, br = t.p.withBreakerReport(req)
		sent = t.p.lim.begin()
		resp, err = t.p.rt.RoundTrip(req)
	}
	fail := observe(b.rec, req, resp, err)
	br.report(req, fail)
	t.p.lim.end(sent, fail)
	if slot, ok := req.Context().Value(failSlotKey{}).(**Error); ok {
		*slot = fail
	}
	return resp, err
}

// principal decides whose token a request carries: the checkout's, or, on
// a checkout with the pool's key, the token of the request's own ctx (a
// request may narrow the pool's key to a user, never widen a user's
// checkout). It returns nil for the pool's key, and an error for a request
// that must not leave.
func principal(checkout, request *authToken) (*authToken, error) {
	tok := checkout
	switch {
	case tok == nil:
		tok = request
	case request != nil && request.jwt != tok.jwt:
		return nil, errOtherPrincipal
	}
	if tok != nil && tok.jwt == "" {
		return nil, ErrEmptyAuthToken
	}
	return tok, nil
}

var errOtherPrincipal = errors.New("supapool: the request's ctx carries a different user token than the checkout's; the request was not sent " +
	"(a checked-out client speaks for one user: acquire another client for the other user)")

// isBackground reports whether ctx is the one postgrest-go and supabase-go
// use for calls made without a ctx.
func isBackground(ctx context.Context) bool {
	return ctx == context.Background() || ctx == context.TODO()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// failSlotKey is the ctx key under which RPC asks the client's transport
// for the *Error of its one request.
type failSlotKey struct{}

// bindPlain checks c out with the pool's key, outside a closure: the hot
// path of Acquire, small enough to inline. It allocates nothing.
func bindPlain(c *conn) {
	c.client.Storage, c.client.Functions = c.storage, c.functions
	c.bound.Store(&c.plain)
}

// bind checks c out to the caller: tok from ctx, and for a closure its
// wire record and ctx (closure nil for Acquire, whose ctx bounds only the
// wait). Acquire takes bindPlain instead for a checkout with the pool's
// key and no read replicas.
func (p *Pool) bind(c *conn, ctx context.Context, rec *wireRecord, closure context.Context) {
	tok := authTokenFrom(ctx)
	if tok == nil {
		c.client.Storage, c.client.Functions = c.storage, c.functions
		if rec == nil && closure == nil {
			c.plain.primary.Store(routeFrom(ctx) == pinPrimary) // a fresh checkout has not written
			c.bound.Store(&c.plain)
			return
		}
	}
	b := &checkout{tok: tok, rec: rec, ctx: closure}
	if p.router != nil && routeFrom(ctx) == pinPrimary {
		b.primary.Store(true)
	}
	if tok != nil {
		// Storage and Functions take no transport and no ctx: give this
		// checkout clients of their own that carry the user's token. With
		// an empty token they carry "Bearer " and no key.
		b.storage = storage.NewClient(strings.TrimRight(p.url, "/")+supabase.STORGAGE_URL, tok.jwt, p.userHeaders())
		b.functions = functions.NewClient(strings.TrimRight(p.url, "/")+supabase.FUNCTIONS_URL, tok.jwt, p.userHeaders())
		c.client.Storage, c.client.Functions = b.storage, b.functions
	}
	c.bound.Store(b)
}

// checkedOut returns the conn of client, a client of p, and its binding;
// nil for a client that is not checked out from p (nil, another pool's,
// released already, or one whose Acquire has not returned yet). It takes
// no lock: the client's Auth (a poolAuth) leads to its conn, or if the
// holder replaced it, the client's own transport does. changed reports
// whether the holder changed the client's auth state (UpdateAuthSession,
// SignIn*, or by assigning Auth, Storage or Functions), in which case c
// must not be reused.
func (p *Pool) checkedOut(client *supabase.Client) (c *conn, b *checkout, changed bool) {
	if client == nil {
		return nil, nil, false
	}
	if a, ok := client.Auth.(*poolAuth); ok && a.c.client == client {
		if a.p == p {
			c = a.c
		}
	} else if rt, err := clientpatch.Transport(client); err == nil {
		// The holder replaced Auth (changed, below): the transport leads
		// to the conn too, a few loads further.
		if ct, ok := rt.(*clientTransport); ok && ct.p == p {
			c = ct.c
		}
	} else {
		// supabase-go's layout is unknown (New logged it): look it up.
		p.mu.Lock()
		c = p.conns[client]
		p.mu.Unlock()
	}
	if c == nil {
		return nil, nil, false
	}
	b = c.bound.Load()
	if b == nil {
		return nil, nil, false
	}
	wantStorage, wantFunctions := c.storage, c.functions
	if b.storage != nil {
		wantStorage, wantFunctions = b.storage, b.functions
	}
	changed = client.Auth != c.auth || client.Storage != wantStorage || client.Functions != wantFunctions
	return c, b, changed
}

// poolAuthOf returns client's Auth if it is a poolAuth.
func poolAuthOf(client *supabase.Client) (*poolAuth, bool) {
	if client == nil {
		return nil, false
	}
	a, ok := client.Auth.(*poolAuth)
	return a, ok
}

// poolAuth is the Auth of a pooled client: gotrue's client, sending
// through the client's own transport, and the conn the client belongs to.
// It lets Release find the conn in two loads from the client (the
// PostgREST transport takes five, each waiting for the one before). Its
// methods are gotrue's; users see only the gotrue.Client interface, whose
// implementation gotrue-go does not export.
type poolAuth struct {
	gotrue.Client
	p *Pool
	c *conn
}

// unbind ends c's checkout: from now on its transport refuses to send, and
// so do its Storage and Functions clients (see released). Swapping the
// binding to nil lets exactly one Release or Discard of a checkout
// through: unbind reports false if another came first.
func unbind(c *conn) bool {
	if c.bound.Swap(nil) == nil {
		return false
	}
	c.client.Storage, c.client.Functions = released.storage, released.functions
	return true
}

// released holds the Storage and Functions clients of every client that is
// not checked out. storage-go and functions-go send through
// http.DefaultTransport and cannot be refused at the transport, so these
// have no base URL: whatever they are asked to send fails before it leaves
// (unsupported protocol scheme), and a caller who kept a client after
// Release cannot reach Storage with the pool's key.
var released = struct {
	storage   *storage.Client
	functions *functions.Client
}{
	storage:   storage.NewClient("supapool-client-released:", "", nil),
	functions: functions.NewClient("supapool-client-released:", "", nil),
}

// userHeaders are the headers of a user's Storage and Functions clients:
// the pool's key as apikey and the client options' extra headers, but no
// Authorization (storage-go would let it override the user's token).
func (p *Pool) userHeaders() map[string]string {
	h := map[string]string{"apikey": p.creds.key}
	if o := p.cfg.ClientOptions; o != nil {
		for k, v := range o.Headers {
			if !strings.EqualFold(k, "Authorization") && !strings.EqualFold(k, "apikey") {
				h[k] = v
			}
		}
	}
	return h
}
