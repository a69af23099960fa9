package stack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"syscall"
)

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
