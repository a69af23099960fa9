// Package stack starts a real PostgreSQL 15, a real PostgREST 12 and a small
// reverse proxy that mimics Supabase's API gateway, all on loopback, for the
// integration tests and benchmarks of supapool.
//
// Install the binaries with scripts/setup-stack.sh. Every Stack has its own
// temporary folder and free ports, so several test binaries may run stacks
// at the same time. Every child process gets Pdeathsig=SIGKILL, so nothing
// outlives the test binary even when it crashes or times out.
//
// The proxy serves PostgREST under /rest/v1 (the prefix is stripped, as
// Supabase's gateway does; anything else is 404) and answers 502 when
// PostgREST is down. StopProxy and StartProxy take the proxy itself down
// and up again on the same address, for "connection refused". Its server
// side counts TCP connections (see Conns).
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configures a Stack.
type Options struct {
	DBPool                   int // PGRST_DB_POOL; 0 means 10
	DBPoolAcquisitionTimeout int // seconds, PGRST_DB_POOL_ACQUISITION_TIMEOUT; 0 means 10
}

// ConnStats counts the TCP connections the proxy's server side has seen.
type ConnStats struct {
	Open int64 // currently open
	Peak int64 // most open at once since Start or ResetConns
	New  int64 // accepted since Start or ResetConns
}

// Stack is a running PostgreSQL + PostgREST + proxy.
type Stack struct {
	URL        string // base URL of the proxy, e.g. "http://127.0.0.1:41234"; supabase-go appends /rest/v1 itself
	ServiceKey string // HS256 JWT, role service_role (bypasses RLS)
	AnonKey    string // HS256 JWT, role anon

	opts       Options
	bins       binaries
	cred       *syscall.Credential // PostgreSQL's OS user, nil for the current one
	dir        string              // temporary folder, removed by Close
	dataDir    string
	sockDir    string
	pgPort     int
	restPort   int
	adminPort  int
	dbPassword string // authenticator's
	jwtSecret  []byte

	pgOut   *tailBuffer
	restOut *tailBuffer
	probe   *http.Client // readiness checks, no keep-alive

	mu       sync.Mutex // serializes lifecycle operations and guards the fields below
	closed   bool
	closeErr error
	pg       *proc // nil while stopped
	rest     *proc // nil while stopped

	proxy        *http.Server // nil while the proxy is stopped
	proxyDone    chan struct{}
	proxyAddr    string // host:port the proxy listens on, kept across StopProxy/StartProxy
	proxyHandler http.Handler
	transport    *http.Transport

	connNew, connOpen, connPeak atomic.Int64
	connsLive                   sync.WaitGroup // one count per open proxy connection
}

const (
	pollInterval    = 50 * time.Millisecond
	restStopGrace   = 5 * time.Second
	proxyStopGrace  = 5 * time.Second
	pgStopGrace     = 10 * time.Second
	outputBufBytes  = 64 << 10
	portAttempts    = 4
	maxSockPathLen  = 100 // sun_path is 108 bytes
	pgMaxConnection = 200
)

var errClosed = errors.New("stack: closed")

// Start starts PostgreSQL, loads the schema, starts PostgREST and the proxy,
// and returns when all of them are ready. On error everything started so far
// is stopped again.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	if opts.DBPool <= 0 {
		opts.DBPool = 10
	}
	if opts.DBPoolAcquisitionTimeout <= 0 {
		opts.DBPoolAcquisitionTimeout = 10
	}
	s := &Stack{
		opts:       opts,
		bins:       bins,
		cred:       cred,
		dbPassword: randomHex(16),
		jwtSecret:  []byte(randomHex(32)),
		pgOut:      newTailBuffer(outputBufBytes),
		restOut:    newTailBuffer(outputBufBytes),
		probe: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		},
	}
	if err := s.start(ctx); err != nil {
		if cerr := s.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	if err := s.makeDirs(); err != nil {
		return err
	}
	if err := s.initdb(ctx); err != nil {
		return err
	}
	if err := retryPorts(func() error {
		s.pgPort = freePort()
		return s.startPostgresLocked(ctx)
	}); err != nil {
		return err
	}
	if _, err := s.SQL(ctx, schemaSQL(s.dbPassword)); err != nil {
		return fmt.Errorf("stack: load schema: %w", err)
	}
	if err := retryPorts(func() error {
		s.restPort, s.adminPort = freePort(), freePort()
		return s.startPostgRESTLocked(ctx)
	}); err != nil {
		return err
	}
	if err := s.startProxy(); err != nil {
		return err
	}
	s.URL = "http://" + s.proxyAddr

	now := time.Now()
	s.ServiceKey = signHS256(s.jwtSecret, map[string]any{
		"iss": "supabase", "role": "service_role",
		"iat": now.Unix(), "exp": now.AddDate(10, 0, 0).Unix(),
	})
	s.AnonKey = signHS256(s.jwtSecret, map[string]any{
		"iss": "supabase", "role": "anon",
		"iat": now.Unix(), "exp": now.AddDate(10, 0, 0).Unix(),
	})
	return nil
}

// retryPorts runs start again (it picks new ports) while it fails because a
// port was taken between picking and binding it.
func retryPorts(start func() error) error {
	var err error
	for range portAttempts {
		err = start()
		// PostgreSQL says "Address already in use", PostgREST "Address in use".
		if err == nil || !strings.Contains(err.Error(), "Address already in use") && !strings.Contains(err.Error(), "Address in use") {
			return err
		}
	}
	return err
}

const (
	dirPrefix = "supapool-stack-"
	ownerFile = "owner.pid"
)

// removeStaleDirs removes the temporary folders of stacks whose test binary
// died without closing them (its children died with it, by Pdeathsig).
func removeStaleDirs(parent string) {
	matches, _ := filepath.Glob(filepath.Join(parent, dirPrefix+"*"))
	for _, dir := range matches {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

func (s *Stack) makeDirs() error {
	removeStaleDirs(os.TempDir())
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	if len(dir)+len("/sock/.s.PGSQL.65535") > maxSockPathLen {
		// A long TMPDIR would make the Unix socket path too long.
		os.Remove(dir)
		removeStaleDirs("/tmp")
		if dir, err = os.MkdirTemp("/tmp", dirPrefix); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}
	s.dir = dir
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	s.dataDir = filepath.Join(dir, "data")
	s.sockDir = filepath.Join(dir, "sock")
	if err := os.Mkdir(s.sockDir, 0o700); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	if s.cred != nil {
		for _, d := range []string{dir, s.sockDir} {
			if err := os.Chown(d, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return fmt.Errorf("stack: %w", err)
			}
		}
	}
	return nil
}

func (s *Stack) initdb(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bins.pgBin, "initdb"),
		"-D", s.dataDir, "-U", "postgres", "-E", "UTF8", "--locale=C",
		"--auth-local=trust", "--auth-host=scram-sha-256",
		"--no-sync", "--no-instructions")
	cmd.Env = childEnv()
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr(s.cred)
	out := newTailBuffer(outputBufBytes)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("stack: initdb: %w; last output:\n%s", err, out.Tail(20))
	}
	return nil
}

// childEnv is the environment of every child: nothing inherited, so that no
// PG* or PGRST_* variable of the caller changes its behaviour.
func childEnv(extra ...string) []string {
	return append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}, extra...)
}

func (s *Stack) startPostgresLocked(ctx context.Context) error {
	if s.closed {
		return errClosed
	}
	if s.pg != nil && !s.pg.exited() {
		return nil
	}
	s.pg = nil
	s.pgOut.Write([]byte("--- starting postgres ---\n"))
	p, err := spawn("postgres", filepath.Join(s.bins.pgBin, "postgres"), []string{
		"-D", s.dataDir,
		"-h", "127.0.0.1",
		"-p", strconv.Itoa(s.pgPort),
		"-k", s.sockDir,
		"-c", "max_connections=" + strconv.Itoa(pgMaxConnection),
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "wal_level=minimal",
		"-c", "max_wal_senders=0",
		"-c", "logging_collector=off",
	}, childEnv(), s.dir, s.cred, s.pgOut)
	if err != nil {
		return err
	}
	err = p.waitReady(ctx, pollInterval, s.postgresReady)
	if err != nil {
		p.stop(context.Background(), syscall.SIGKILL, 0)
		return err
	}
	s.pg = p
	return nil
}

func (s *Stack) postgresReady(ctx context.Context) bool {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bins.pgBin, "pg_isready"), "-q",
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.pgPort), "-U", "postgres", "-d", "postgres", "-t", "2")
	cmd.Env = childEnv()
	cmd.SysProcAttr = sysProcAttr(nil)
	return cmd.Run() == nil
}

func (s *Stack) startPostgRESTLocked(ctx context.Context) error {
	if s.closed {
		return errClosed
	}
	if s.rest != nil && !s.rest.exited() {
		return nil
	}
	s.rest = nil
	s.restOut.Write([]byte("--- starting postgrest ---\n"))
	dbURI := fmt.Sprintf("postgres://authenticator:%s@127.0.0.1:%d/postgres?sslmode=disable", s.dbPassword, s.pgPort)
	p, err := spawn("postgrest", s.bins.postgrest, nil, childEnv(
		"PGRST_DB_URI="+dbURI,
		"PGRST_DB_SCHEMAS=public",
		"PGRST_DB_ANON_ROLE=anon",
		"PGRST_JWT_SECRET="+string(s.jwtSecret),
		"PGRST_SERVER_HOST=127.0.0.1",
		"PGRST_SERVER_PORT="+strconv.Itoa(s.restPort),
		"PGRST_ADMIN_SERVER_PORT="+strconv.Itoa(s.adminPort),
		"PGRST_DB_POOL="+strconv.Itoa(s.opts.DBPool),
		"PGRST_DB_POOL_ACQUISITION_TIMEOUT="+strconv.Itoa(s.opts.DBPoolAcquisitionTimeout),
	), s.dir, nil, s.restOut)
	if err != nil {
		return err
	}
	// PostgREST 12.0.2 serves nothing before it has reached the database
	// once: its API port is closed and its admin port accepts connections
	// but does not answer. So while PostgreSQL is stopped, wait only until
	// the admin port listens; the proxy answers 502 until PostgREST has
	// connected (on its own reconnect backoff: 0, 1, 2, 4, ... s).
	check := func(ctx context.Context) bool { return s.adminOK(ctx, "/ready") }
	if s.pg == nil {
		check = s.adminListens
	}
	err = p.waitReady(ctx, pollInterval, check)
	if err != nil {
		p.stop(context.Background(), syscall.SIGKILL, 0)
		return err
	}
	s.rest = p
	return nil
}

func (s *Stack) adminListens(ctx context.Context) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.adminPort)))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (s *Stack) adminOK(ctx context.Context, endpoint string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", s.adminPort, endpoint), nil)
	if err != nil {
		return false
	}
	resp, err := s.probe.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
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

// ResetConns zeroes New and sets Peak to the connections open now.
func (s *Stack) ResetConns() {
	s.connNew.Store(0)
	s.connPeak.Store(s.connOpen.Load())
}

// UserToken returns an HS256 JWT for role "authenticated" with the given
// "sub" (the owner_id the RLS policies compare with), valid for an hour.
func (s *Stack) UserToken(sub string) string {
	now := time.Now()
	return signHS256(s.jwtSecret, map[string]any{
		"iss": "supabase", "role": "authenticated", "aud": "authenticated", "sub": sub,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
}

// StopPostgres shuts PostgreSQL down (fast shutdown, SIGKILL after 10 s or
// when ctx is done) and waits for it to exit. Stopping a stopped
// PostgreSQL does nothing.
func (s *Stack) StopPostgres(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if s.pg != nil {
		s.pg.stop(ctx, syscall.SIGINT, pgStopGrace)
		s.pg = nil
	}
	return nil
}

// StartPostgres starts PostgreSQL again on the same data folder and port,
// and waits until it accepts connections. Starting a running PostgreSQL
// does nothing.
func (s *Stack) StartPostgres(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startPostgresLocked(ctx)
}

// KillPostgREST kills PostgREST with SIGKILL and waits for it to exit.
func (s *Stack) KillPostgREST() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if s.rest != nil {
		s.rest.stop(context.Background(), syscall.SIGKILL, 0)
		s.rest = nil
	}
	return nil
}

// StartPostgREST starts PostgREST again on the same ports and waits until
// it is ready (its admin /ready answers 200). While PostgreSQL is stopped it
// waits only until PostgREST's admin port listens: PostgREST 12.0.2 opens
// its API port only after it has reached the database, so until then the
// proxy answers 502. Starting a running PostgREST does nothing.
func (s *Stack) StartPostgREST(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startPostgRESTLocked(ctx)
}

// SQL runs query (one or more statements) with psql -XAt as the superuser
// against the stack's database and returns its trimmed standard output.
func (s *Stack) SQL(ctx context.Context, query string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bins.pgBin, "psql"), "-XAtq",
		"-v", "ON_ERROR_STOP=1", "-h", s.sockDir, "-p", strconv.Itoa(s.pgPort),
		"-U", "postgres", "-d", "postgres", "-f", "-")
	cmd.Env = childEnv("PGCONNECT_TIMEOUT=5")
	cmd.SysProcAttr = sysProcAttr(nil)
	cmd.Stdin = strings.NewReader(query)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("stack: psql: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Close stops the proxy, PostgREST (SIGTERM, SIGKILL after 5 s) and
// PostgreSQL (fast shutdown, SIGKILL after 10 s), waits for them, and
// removes the temporary folder. Calling it again returns the first result.
func (s *Stack) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.closeErr
	}
	s.closed = true
	var errs []error
	s.stopProxyLocked(proxyStopGrace)
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	if s.rest != nil {
		s.rest.stop(context.Background(), syscall.SIGTERM, restStopGrace)
		s.rest = nil
	}
	if s.pg != nil {
		s.pg.stop(context.Background(), syscall.SIGINT, pgStopGrace)
		s.pg = nil
	}
	s.probe.CloseIdleConnections()
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("stack: remove temp dir: %w", err))
		}
	}
	s.closeErr = errors.Join(errs...)
	return s.closeErr
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("stack: no free port on 127.0.0.1: " + err.Error())
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
