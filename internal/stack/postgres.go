package stack

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

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
