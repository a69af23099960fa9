package stack

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ConnStats counts what a gateway's server side has seen: TCP connections
// and requests, over plain HTTP and TLS together.
type ConnStats struct {
	Open int64 // connections open now
	Peak int64 // most connections open at once since Start or ResetConns
	New  int64 // connections accepted since Start or ResetConns

	// Requests under /rest/v1 since Start or ResetConns: reads (GET,
	// HEAD) and writes (every other method), and those of them that came
	// over HTTP/2.
	Reads, Writes, HTTP2 int64
	InFlight             int64 // requests being served now
	PeakInFlight         int64 // most requests served at once since Start or ResetConns
}

// gateway is the proxy in front of one PostgREST, as Supabase's API
// gateway: it serves PostgREST under /rest/v1 on a plain HTTP listener
// and, with Options.TLS, on a TLS listener too (HTTP/2 and HTTP/1.1), and
// counts connections and requests on both.
type gateway struct {
	handler   http.Handler
	transport *http.Transport
	tlsConfig *tls.Config // nil without Options.TLS
	addrs     []string    // host:port of each listener (plain, then TLS), kept across stop and start
	servers   []*http.Server
	done      []chan struct{}

	connNew, connOpen, connPeak atomic.Int64
	reads, writes, http2        atomic.Int64
	inFlight, peakInFlight      atomic.Int64
	requests                    atomic.Int64   // every request for /rest/v1 since Start; ResetConns leaves it
	connsLive                   sync.WaitGroup // one count per open connection
}

// newGateway builds a gateway for the PostgREST on restPort and starts
// serving on free ports; with tlsConfig, on a second, TLS listener too.
func newGateway(restPort int, tlsConfig *tls.Config) (*gateway, error) {
	target := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(restPort))}
	g := &gateway{
		tlsConfig: tlsConfig,
		transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1000,
			MaxIdleConnsPerHost: 200,
			IdleConnTimeout:     90 * time.Second,
		},
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
		Transport: g.transport,
		ErrorLog:  log.New(discardWriter{}, "", 0),
	}
	g.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != prefix && !strings.HasPrefix(r.URL.Path, prefix+"/") {
			http.NotFound(w, r)
			return
		}
		g.count(r)
		defer g.inFlight.Add(-1)
		rp.ServeHTTP(w, r)
	})
	n := 1
	if tlsConfig != nil {
		n = 2
	}
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("stack: gateway: %w", err)
		}
		lns = append(lns, ln)
		g.addrs = append(g.addrs, ln.Addr().String())
	}
	g.serve(lns)
	return g, nil
}

// count counts a request that the gateway serves (and its end is counted
// by the caller, in inFlight).
func (g *gateway) count(r *http.Request) {
	g.requests.Add(1)
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		g.reads.Add(1)
	} else {
		g.writes.Add(1)
	}
	if r.ProtoMajor == 2 {
		g.http2.Add(1)
	}
	raise(&g.peakInFlight, g.inFlight.Add(1))
}

// raise sets peak to n if n is higher.
func raise(peak *atomic.Int64, n int64) {
	for {
		p := peak.Load()
		if n <= p || peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// url is the gateway's plain HTTP base URL.
func (g *gateway) url() string { return "http://" + g.addrs[0] }

// tlsURL is the gateway's HTTPS base URL; "" without TLS.
func (g *gateway) tlsURL() string {
	if len(g.addrs) < 2 {
		return ""
	}
	return "https://" + g.addrs[1]
}

// serve serves the handler on lns: the plain listener, then the TLS one.
func (g *gateway) serve(lns []net.Listener) {
	g.servers, g.done = nil, nil
	for i, ln := range lns {
		srv := &http.Server{
			Handler:           g.handler,
			ConnState:         g.connState,
			ErrorLog:          log.New(discardWriter{}, "", 0),
			ReadHeaderTimeout: 10 * time.Second,
		}
		done := make(chan struct{})
		if i == 1 {
			srv.TLSConfig = g.tlsConfig.Clone()
			go func() {
				defer close(done)
				_ = srv.ServeTLS(ln, "", "") // enables HTTP/2
			}()
		} else {
			go func() {
				defer close(done)
				_ = srv.Serve(ln)
			}()
		}
		g.servers, g.done = append(g.servers, srv), append(g.done, done)
	}
}

// stop closes the gateway's listeners and connections: idle ones at once,
// busy ones when their request is done or, at the latest, after grace. It
// returns when the gateway has stopped serving and every connection's
// goroutine has finished (so Open is 0). The caller holds Stack.mu.
func (g *gateway) stop(grace time.Duration) {
	if g.servers == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range g.servers {
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
		})
	}
	wg.Wait()
	for _, d := range g.done {
		<-d
	}
	// Serve has returned, so no connection is added any more; the closed
	// ones report StateClosed from their own goroutines.
	g.connsLive.Wait()
	g.servers, g.done = nil, nil
}

// start serves again on the same addresses, retrying the binds until ctx
// is done, in case a port is briefly taken. The caller holds Stack.mu.
func (g *gateway) start(ctx context.Context) error {
	if g.servers != nil {
		return nil
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var lns []net.Listener
	for len(lns) < len(g.addrs) {
		ln, err := net.Listen("tcp", g.addrs[len(lns)])
		if err == nil {
			lns = append(lns, ln)
			continue
		}
		select {
		case <-ctx.Done():
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("stack: restart gateway on %s: %w (last error: %v)", g.addrs[len(lns)], ctx.Err(), err)
		case <-t.C:
		}
	}
	g.serve(lns)
	return nil
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func (g *gateway) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		g.connsLive.Add(1)
		g.connNew.Add(1)
		raise(&g.connPeak, g.connOpen.Add(1))
	case http.StateClosed, http.StateHijacked:
		g.connOpen.Add(-1)
		g.connsLive.Done()
	}
}

func (g *gateway) stats() ConnStats {
	return ConnStats{
		Open: g.connOpen.Load(), Peak: g.connPeak.Load(), New: g.connNew.Load(),
		Reads: g.reads.Load(), Writes: g.writes.Load(), HTTP2: g.http2.Load(),
		InFlight: g.inFlight.Load(), PeakInFlight: g.peakInFlight.Load(),
	}
}

func (g *gateway) reset() {
	g.connNew.Store(0)
	g.connPeak.Store(g.connOpen.Load())
	g.reads.Store(0)
	g.writes.Store(0)
	g.http2.Store(0)
	g.peakInFlight.Store(g.inFlight.Load())
}

// Requests returns how many requests for /rest/v1 the primary's gateway
// has received since Start, whatever became of them (PostgREST's answer or
// the gateway's 502); ResetConns does not zero it.
func (s *Stack) Requests() int64 { return s.primary.gw.requests.Load() }

// Conns returns what the primary's gateway has seen.
func (s *Stack) Conns() ConnStats { return s.primary.gw.stats() }

// ReplicaConns returns what the replica's gateway has seen; zero without
// Options.Replica.
func (s *Stack) ReplicaConns() ConnStats {
	if s.replica == nil {
		return ConnStats{}
	}
	return s.replica.gw.stats()
}

// ResetConns zeroes New and the request counts of every gateway, and sets
// the peaks to what is open and in flight now.
func (s *Stack) ResetConns() {
	for _, n := range s.nodes() {
		n.gw.reset()
	}
}

// StopProxy stops the primary's gateway: it closes its listeners and every
// connection to it (idle ones at once, ones with a request in flight when
// that request is done, or after 5 s), so that clients get "connection
// refused" until StartProxy. PostgREST and PostgreSQL keep running. (While
// only PostgREST is down, the gateway answers 502 instead.) Stopping a
// stopped gateway does nothing.
func (s *Stack) StopProxy() error { return s.stopGateway(&s.primary) }

// StartProxy starts the primary's gateway again on the same addresses, so
// that URL and TLSURL stay valid. It retries the binds until ctx is done.
// Starting a running gateway does nothing.
func (s *Stack) StartProxy(ctx context.Context) error { return s.startGateway(ctx, &s.primary) }

// StopReplicaProxy is StopProxy for the replica's gateway: reads sent to
// ReplicaURL are refused until StartReplicaProxy.
func (s *Stack) StopReplicaProxy() error { return s.stopGateway(s.replica) }

// StartReplicaProxy is StartProxy for the replica's gateway.
func (s *Stack) StartReplicaProxy(ctx context.Context) error { return s.startGateway(ctx, s.replica) }

func (s *Stack) stopGateway(n *node) error {
	return s.onNode(n, func() error {
		n.gw.stop(proxyStopGrace)
		return nil
	})
}

func (s *Stack) startGateway(ctx context.Context, n *node) error {
	return s.onNode(n, func() error { return n.gw.start(ctx) })
}
