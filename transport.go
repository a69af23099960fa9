package supapool

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// ownTransport is the transport a pool owns when Config.Transport is nil:
// an *http.Transport sized to the pool, at most MaxConnections connections
// per host (the primary and each read replica), all of which may stay
// idle, for as long as an idle client would, with Config.TLSClientConfig.
// The other timeouts keep a dead network from holding a client forever.
//
// An http.Transport's limits must not change while it is in use, so
// SetMaxConnections and Reset replace the current one with a fresh
// transport (resize.go); requests already under way finish on the old one,
// whose connections the pool closes as its last clients come back.
type ownTransport struct {
	cfg Config // for the transport's settings; MaxConnections is passed to swap
	cur atomic.Pointer[http.Transport]
}

func newOwnTransport(cfg Config) *ownTransport {
	o := &ownTransport{cfg: cfg}
	o.cur.Store(o.build(cfg.MaxConnections))
	return o
}

// build makes a transport for maxConns connections to each endpoint (the
// primary and each read replica): all of them may stay idle.
func (o *ownTransport) build(maxConns int) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       o.cfg.TLSClientConfig.Clone(), // the transport may change its copy
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          maxConns * (1 + len(o.cfg.ReadReplicas)),
		MaxIdleConnsPerHost:   maxConns,
		MaxConnsPerHost:       maxConns,
		IdleConnTimeout:       o.cfg.IdleTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: o.cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

// RoundTrip sends req on the current transport.
func (o *ownTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return o.cur.Load().RoundTrip(req)
}

// swap puts a fresh transport for maxConns connections per host in place
// and returns the one it replaces.
func (o *ownTransport) swap(maxConns int) *http.Transport {
	return o.cur.Swap(o.build(maxConns))
}

// CloseIdleConnections closes the current transport's idle connections.
func (o *ownTransport) CloseIdleConnections() { o.cur.Load().CloseIdleConnections() }
