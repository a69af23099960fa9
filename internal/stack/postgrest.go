package stack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"syscall"
)

func (s *Stack) startPostgRESTLocked(ctx context.Context, n *node) error {
	if s.closed {
		return errClosed
	}
	if n.rest != nil && !n.rest.exited() {
		return nil
	}
	n.rest = nil
	n.restOut.Write([]byte("--- starting postgrest ---\n"))
	dbURI := fmt.Sprintf("postgres://authenticator:%s@127.0.0.1:%d/postgres?sslmode=disable", s.dbPassword, n.pgPort)
	p, err := spawn("postgrest ("+n.name+")", s.bins.postgrest, nil, childEnv(
		"PGRST_DB_URI="+dbURI,
		"PGRST_DB_SCHEMAS=public",
		"PGRST_DB_ANON_ROLE=anon",
		"PGRST_JWT_SECRET="+string(s.jwtSecret),
		"PGRST_SERVER_HOST=127.0.0.1",
		"PGRST_SERVER_PORT="+strconv.Itoa(n.restPort),
		"PGRST_ADMIN_SERVER_PORT="+strconv.Itoa(n.adminPort),
		"PGRST_DB_POOL="+strconv.Itoa(s.opts.DBPool),
		"PGRST_DB_POOL_ACQUISITION_TIMEOUT="+strconv.Itoa(s.opts.DBPoolAcquisitionTimeout),
	), s.dir, nil, n.restOut)
	if err != nil {
		return err
	}
	// PostgREST 12.0.2 serves nothing before it has reached the database
	// once: its API port is closed and its admin port accepts connections
	// but does not answer. So while PostgreSQL is stopped, wait only until
	// the admin port listens; the proxy answers 502 until PostgREST has
	// connected (on its own reconnect backoff: 0, 1, 2, 4, ... s).
	check := func(ctx context.Context) bool { return s.adminOK(ctx, n, "/ready") }
	if n.pg == nil {
		check = func(ctx context.Context) bool { return adminListens(ctx, n) }
	}
	err = p.waitReady(ctx, pollInterval, check)
	if err != nil {
		p.stop(context.Background(), syscall.SIGKILL, 0)
		return err
	}
	n.rest = p
	return nil
}

func adminListens(ctx context.Context, n *node) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n.adminPort)))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (s *Stack) adminOK(ctx context.Context, n *node, endpoint string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", n.adminPort, endpoint), nil)
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

// KillPostgREST kills the primary's PostgREST with SIGKILL and waits for
// it to exit.
func (s *Stack) KillPostgREST() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if n := &s.primary; n.rest != nil {
		n.rest.stop(context.Background(), syscall.SIGKILL, 0)
		n.rest = nil
	}
	return nil
}

// StartPostgREST starts the primary's PostgREST again on the same ports
// and waits until it is ready (its admin /ready answers 200). While
// PostgreSQL is stopped it waits only until PostgREST's admin port listens:
// PostgREST 12.0.2 opens its API port only after it has reached the
// database, so until then the proxy answers 502. Starting a running
// PostgREST does nothing.
func (s *Stack) StartPostgREST(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startPostgRESTLocked(ctx, &s.primary)
}
