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
// side counts TCP connections (see Conns) and requests (Requests).
//
// The files, by concern: stack.go holds Options, Stack, Start and Close;
// postgres.go PostgreSQL's lifecycle and SQL; postgrest.go PostgREST's;
// gateway.go the proxy, its connection counts and StopProxy/StartProxy;
// proc.go the child processes; discover.go finds the binaries; schema.go
// and jwt.go hold the database schema and the tokens; fortest.go and
// forcommand.go start a stack for a test or a command.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
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
	requests                    atomic.Int64   // requests for /rest/v1 the proxy received
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

// childEnv is the environment of every child: nothing inherited, so that no
// PG* or PGRST_* variable of the caller changes its behaviour.
func childEnv(extra ...string) []string {
	return append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}, extra...)
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
