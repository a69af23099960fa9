// Package stack starts a real PostgreSQL 15, a real PostgREST 12 and a small
// reverse proxy that mimics Supabase's API gateway, all on loopback, for the
// integration tests and benchmarks of supapool; optionally also a streaming
// read replica with its own PostgREST and gateway (Options.Replica), and
// gateways that serve TLS with HTTP/2 (Options.TLS).
//
// Install the binaries with scripts/setup-stack.sh. Every Stack has its own
// temporary folder and free ports, so several test binaries may run stacks
// at the same time. Every child process gets Pdeathsig=SIGKILL, so nothing
// outlives the test binary even when it crashes or times out.
//
// The gateway serves PostgREST under /rest/v1 (the prefix is stripped, as
// Supabase's gateway does; anything else is 404) and answers 502 when
// PostgREST is down. StopProxy and StartProxy take the gateway itself down
// and up again on the same addresses, for "connection refused". Its server
// side counts TCP connections and requests (see Conns).
//
// The files, by concern: stack.go holds Options, Stack, its nodes (the
// primary and the replica), Start and Close; postgres.go PostgreSQL's
// lifecycle and SQL; postgrest.go PostgREST's; replica.go makes the
// replica; gateway.go the gateways, their counts and StopProxy/StartProxy;
// tls.go the gateways' certificate; proc.go the child processes;
// discover.go finds the binaries; schema.go and jwt.go hold the database
// schema and the tokens; fortest.go and forcommand.go start a stack for a
// test or a command.
package stack

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
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
	"syscall"
	"time"
)

// Options configures a Stack.
type Options struct {
	DBPool                   int // PGRST_DB_POOL; 0 means 10
	DBPoolAcquisitionTimeout int // seconds, PGRST_DB_POOL_ACQUISITION_TIMEOUT; 0 means 10

	// Replica also starts a streaming read replica: a second PostgreSQL
	// cluster made with pg_basebackup -R from the primary, its own
	// PostgREST and its own gateway (ReplicaURL). A write sent there fails
	// with PostgreSQL's read-only error (25006). It adds about a second to
	// Start.
	Replica bool

	// TLS also serves every gateway over TLS (TLSURL, ReplicaTLSURL), with
	// HTTP/2 and HTTP/1.1, with a certificate for 127.0.0.1 made at start;
	// trust it with TLSClientConfig or CertPool.
	TLS bool
}

// Stack is a running PostgreSQL + PostgREST + gateway proxy, and with
// Options.Replica a read replica with its own PostgREST and gateway.
type Stack struct {
	URL           string // base URL of the primary's gateway, e.g. "http://127.0.0.1:41234"; supabase-go appends /rest/v1 itself
	TLSURL        string // the same gateway over HTTPS (HTTP/2); "" without Options.TLS
	ReplicaURL    string // base URL of the replica's gateway; "" without Options.Replica
	ReplicaTLSURL string // the replica's gateway over HTTPS; "" without both options
	ServiceKey    string // HS256 JWT, role service_role (bypasses RLS)
	AnonKey       string // HS256 JWT, role anon

	opts         Options
	bins         binaries
	cred         *syscall.Credential // PostgreSQL's OS user, nil for the current one
	dir          string              // temporary folder, removed by Close
	sockDir      string
	dbPassword   string // authenticator's
	replPassword string // replicator's, with Options.Replica
	jwtSecret    []byte
	tlsConfig    *tls.Config // the gateways' server side; nil without Options.TLS
	roots        *x509.CertPool
	probe        *http.Client // readiness checks, no keep-alive
	primary      node
	replica      *node      // nil without Options.Replica
	mu           sync.Mutex // serializes lifecycle operations and guards the fields below and the nodes' processes
	closed       bool
	closeErr     error
}

// node is one PostgreSQL cluster with its PostgREST and gateway: the
// primary, or the read replica.
type node struct {
	name      string // "primary" or "replica"
	dataDir   string
	pgPort    int
	restPort  int
	adminPort int
	pgOut     *tailBuffer
	restOut   *tailBuffer
	pg        *proc // nil while stopped
	rest      *proc // nil while stopped
	gw        *gateway
}

func newNode(name, dataDir string) node {
	return node{name: name, dataDir: dataDir, pgOut: newTailBuffer(outputBufBytes), restOut: newTailBuffer(outputBufBytes)}
}

// nodes returns the primary, then the replica if there is one.
func (s *Stack) nodes() []*node {
	if s.replica != nil {
		return []*node{&s.primary, s.replica}
	}
	return []*node{&s.primary}
}

// onNode runs f with mu held, unless n cannot be acted on (see usable).
func (s *Stack) onNode(n *node, f func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(n); err != nil {
		return err
	}
	return f()
}

// usable returns an error when n cannot be acted on: the stack is closed,
// or n is the replica of a stack without one. The caller holds mu.
func (s *Stack) usable(n *node) error {
	switch {
	case s.closed:
		return errClosed
	case n == nil:
		return errors.New("stack: no replica; start the stack with Options.Replica")
	}
	return nil
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

// Start starts PostgreSQL, loads the schema, starts PostgREST and the
// gateway (and the replica, with Options.Replica), and returns when all of
// them are ready. On error everything started so far
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
		opts:         opts,
		bins:         bins,
		cred:         cred,
		dbPassword:   randomHex(16),
		replPassword: randomHex(16),
		jwtSecret:    []byte(randomHex(32)),
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
	if s.opts.TLS {
		if err := s.makeCertificate(); err != nil {
			return err
		}
	}
	if err := s.initdb(ctx); err != nil {
		return err
	}
	if err := retryPorts(func() error {
		s.primary.pgPort = freePort()
		return s.startPostgresLocked(ctx, &s.primary)
	}); err != nil {
		return err
	}
	if _, err := s.SQL(ctx, schemaSQL(s.dbPassword)); err != nil {
		return fmt.Errorf("stack: load schema: %w", err)
	}
	// The replica is copied from the primary while the primary's
	// PostgREST starts.
	replicaErr := make(chan error, 1)
	if s.opts.Replica {
		go func() { replicaErr <- s.makeReplicaLocked(ctx) }()
	} else {
		replicaErr <- nil
	}
	for _, err := range []error{s.startServingLocked(ctx, &s.primary), <-replicaErr} {
		if err != nil {
			return err
		}
	}
	if s.replica != nil {
		if err := s.startServingLocked(ctx, s.replica); err != nil {
			return err
		}
		s.ReplicaURL, s.ReplicaTLSURL = s.replica.gw.url(), s.replica.gw.tlsURL()
	}
	s.URL, s.TLSURL = s.primary.gw.url(), s.primary.gw.tlsURL()

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

// startServingLocked starts n's PostgREST and its gateway.
func (s *Stack) startServingLocked(ctx context.Context, n *node) error {
	if err := retryPorts(func() error {
		n.restPort, n.adminPort = freePort(), freePort()
		return s.startPostgRESTLocked(ctx, n)
	}); err != nil {
		return err
	}
	gw, err := newGateway(n.restPort, s.tlsConfig)
	if err != nil {
		return err
	}
	n.gw = gw
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
	s.primary = newNode("primary", filepath.Join(dir, "data"))
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
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

// Close stops the gateways, PostgREST (SIGTERM, SIGKILL after 5 s) and
// PostgreSQL (fast shutdown, SIGKILL after 10 s), replica included, waits for them, and
// removes the temporary folder. Calling it again returns the first result.
func (s *Stack) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.closeErr
	}
	s.closed = true
	var errs []error
	nodes := s.nodes()
	for _, n := range nodes {
		if n.gw != nil {
			n.gw.stop(proxyStopGrace)
			n.gw.transport.CloseIdleConnections()
		}
		if n.rest != nil {
			n.rest.stop(context.Background(), syscall.SIGTERM, restStopGrace)
			n.rest = nil
		}
	}
	for i := len(nodes) - 1; i >= 0; i-- { // the replica first: it would wait for the primary
		if n := nodes[i]; n.pg != nil {
			n.pg.stop(context.Background(), syscall.SIGINT, pgStopGrace)
			n.pg = nil
		}
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
