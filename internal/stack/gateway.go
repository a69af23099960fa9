package stack

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ConnStats counts the TCP connections the proxy's server side has seen.
type ConnStats struct {
	Open int64 // currently open
	Peak int64 // most open at once since Start or ResetConns
	New  int64 // accepted since Start or ResetConns
}

// startProxy builds the proxy's handler and transport and starts serving
// on a free port.
func (s *Stack) startProxy() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("stack: proxy: %w", err)
	}
	target := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.restPort))}
	s.transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 200,
		IdleConnTimeout:     90 * time.Second,
	}
	const prefix = "/rest/v1"
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.URL.Path = strings.TrimPrefix(r.In.URL.Path, prefix)
			r.Out.URL.RawPath = strings.TrimPrefix(r.In.URL.RawPath, prefix)
			if r.Out.URL.Path == "" {
				r.Out.URL.Path = "/"
				r.Out.URL.RawPath = ""
			}
		},
		Transport: s.transport,
		ErrorLog:  log.New(discardWriter{}, "", 0),
	}
	s.proxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != prefix && !strings.HasPrefix(r.URL.Path, prefix+"/") {
			http.NotFound(w, r)
			return
		}
		s.requests.Add(1)
		rp.ServeHTTP(w, r)
	})
	s.proxyAddr = ln.Addr().String()
	s.serveProxyLocked(ln)
	return nil
}

// serveProxyLocked serves the proxy's handler on ln.
func (s *Stack) serveProxyLocked(ln net.Listener) {
	s.proxy = &http.Server{
		Handler:           s.proxyHandler,
		ConnState:         s.connState,
		ErrorLog:          log.New(discardWriter{}, "", 0),
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.proxyDone = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(s.proxy, s.proxyDone)
}

// stopProxyLocked closes the proxy's listener and its connections: idle
// ones at once, busy ones when their request is done or, at the latest,
// after grace. It returns when the proxy has stopped serving and every
// connection's goroutine has finished (so Conns().Open is 0).
func (s *Stack) stopProxyLocked(grace time.Duration) {
	if s.proxy == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	if err := s.proxy.Shutdown(ctx); err != nil {
		s.proxy.Close()
	}
	cancel()
	<-s.proxyDone
	// Serve has returned, so no connection is added any more; the closed
	// ones report StateClosed from their own goroutines.
	s.connsLive.Wait()
	s.proxy, s.proxyDone = nil, nil
}

// StopProxy stops the gateway: it closes its listener and every
// connection to it (idle ones at once, ones with a request in flight when
// that request is done, or after 5 s), so that clients get "connection
// refused" until StartProxy. PostgREST and PostgreSQL keep running. (While
// only PostgREST is down, the proxy answers 502 instead.) Stopping a
// stopped proxy does nothing.
func (s *Stack) StopProxy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.stopProxyLocked(proxyStopGrace)
	return nil
}

// StartProxy starts the gateway again on the same address, so that URL
// stays valid. It retries the bind until ctx is done, in case the port is
// briefly taken. Starting a running proxy does nothing.
func (s *Stack) StartProxy(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if s.proxy != nil {
		return nil
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		ln, err := net.Listen("tcp", s.proxyAddr)
		if err == nil {
			s.serveProxyLocked(ln)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stack: restart proxy on %s: %w (last error: %v)", s.proxyAddr, ctx.Err(), err)
		case <-t.C:
		}
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func (s *Stack) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.connsLive.Add(1)
		s.connNew.Add(1)
		open := s.connOpen.Add(1)
		for {
			peak := s.connPeak.Load()
			if open <= peak || s.connPeak.CompareAndSwap(peak, open) {
				break
			}
		}
	case http.StateClosed, http.StateHijacked:
		s.connOpen.Add(-1)
		s.connsLive.Done()
	}
}

// Conns returns the TCP connections seen by the proxy's server side.
func (s *Stack) Conns() ConnStats {
	return ConnStats{Open: s.connOpen.Load(), Peak: s.connPeak.Load(), New: s.connNew.Load()}
}

// Requests returns how many requests for /rest/v1 the proxy has received
// since Start, whatever became of them (PostgREST's answer or the proxy's
// 502).
func (s *Stack) Requests() int64 { return s.requests.Load() }

// ResetConns zeroes New and sets Peak to the connections open now.
func (s *Stack) ResetConns() {
	s.connNew.Store(0)
	s.connPeak.Store(s.connOpen.Load())
}
