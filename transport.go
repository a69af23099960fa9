package supapool

import (
	"net"
	"net/http"
	"time"
)

// newOwnTransport returns the transport a pool owns when Config.Transport
// is nil. It is sized to the pool: at most MaxConnections connections per
// host, all of which may stay idle, for as long as an idle client would.
// The other timeouts keep a dead network from holding a client forever.
func newOwnTransport(cfg Config) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          cfg.MaxConnections,
		MaxIdleConnsPerHost:   cfg.MaxConnections,
		MaxConnsPerHost:       cfg.MaxConnections,
		IdleConnTimeout:       cfg.IdleTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

// poolTransport is the RoundTripper every client of a pool sends its
// PostgREST (and auth) requests through. It applies the request-scoped user
// token of the request's ctx (see WithAuthToken) and records what happened
// on the wire for WithClient and WithRetry.
type poolTransport struct {
	base http.RoundTripper
}

func (t *poolTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if tok := authTokenFrom(ctx); tok != nil {
		if tok.jwt == "" {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			err := ErrEmptyAuthToken
			if rec := wireRecordFrom(ctx); rec != nil {
				rec.observe(req, nil, err)
			}
			return nil, err
		}
		// postgrest-go has already added the client's own Authorization
		// header to req; replace it on a copy, so that the request carries
		// exactly one, and leave the client untouched.
		r2 := new(http.Request)
		*r2 = *req
		r2.Header = req.Header.Clone()
		r2.Header.Set("Authorization", "Bearer "+tok.jwt)
		req = r2
	}
	rec := wireRecordFrom(ctx)
	if rec == nil {
		return t.base.RoundTrip(req)
	}
	resp, err := t.base.RoundTrip(req)
	rec.observe(req, resp, err)
	return resp, err
}
