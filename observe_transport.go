package supapool

import (
	"fmt"
	"net/http"
	"time"
)

// wrapTransport applies Config.WrapTransport, if set, to base: the pool's
// own sized transport or Config.Transport.
func wrapTransport(cfg Config, base http.RoundTripper) (http.RoundTripper, error) {
	if cfg.WrapTransport == nil {
		return base, nil
	}
	rt := cfg.WrapTransport(base)
	if rt == nil {
		return nil, fmt.Errorf("%w: WrapTransport returned nil; return the RoundTripper it was given, wrapped", ErrInvalidConfig)
	}
	return rt, nil
}

// observeTransport is the layer of the pool's request path that reports
// each request to the pool's observers (EventRequest). It sits between each
// client's own transport (checkout.go) and the rest of the path (the router
// with read replicas, the endpoint's breaker, and the transport that
// carries the requests, after Config.WrapTransport), so it sees the request
// as the client sent it, once per round trip whatever the router did, and
// costs one atomic load when nothing is attached.
type observeTransport struct {
	p    *Pool
	base http.RoundTripper
}

func (t *observeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	os := t.p.obs.Load()
	if os == nil {
		return t.base.RoundTrip(req)
	}
	start := time.Since(t.p.epoch)
	resp, err := t.base.RoundTrip(req)
	e := Event{Kind: EventRequest, Method: req.Method, Duration: time.Since(t.p.epoch) - start, Err: err}
	if err == nil {
		e.Status = resp.StatusCode
	}
	os.emit(e)
	return resp, err
}
