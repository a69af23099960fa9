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
