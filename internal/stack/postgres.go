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
	return s.runTool(ctx, "initdb",
		"-D", s.primary.dataDir, "-U", "postgres", "-E", "UTF8", "--locale=C",
		"--auth-local=trust", "--auth-host=scram-sha-256",
		"--no-sync", "--no-instructions")
}

// runTool runs one of PostgreSQL's programs as PostgreSQL's OS user, in
// the stack's folder, and returns an error with its last output if it fails.
func (s *Stack) runTool(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bins.pgBin, name), args...)
	cmd.Env = childEnv()
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr(s.cred)
	out := newTailBuffer(outputBufBytes)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("stack: %s: %w; last output:\n%s", name, err, out.Tail(20))
	}
	return nil
}

func (s *Stack) startPostgresLocked(ctx context.Context, n *node) error {
	if s.closed {
		return errClosed
	}
	if n.pg != nil && !n.pg.exited() {
		return nil
	}
	n.pg = nil
	n.pgOut.Write([]byte("--- starting postgres ---\n"))
	args := []string{
		"-D", n.dataDir,
		"-h", "127.0.0.1",
		"-p", strconv.Itoa(n.pgPort),
		"-k", s.sockDir,
		"-c", "max_connections=" + strconv.Itoa(pgMaxConnection),
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "logging_collector=off",
	}
	if s.opts.Replica {
		// Streaming replication: WAL for a standby, sent soon after each
		// commit (synchronous_commit is off, so the WAL writer flushes it).
		args = append(args, "-c", "wal_level=replica", "-c", "max_wal_senders=4", "-c", "wal_writer_delay=10ms")
	} else {
		args = append(args, "-c", "wal_level=minimal", "-c", "max_wal_senders=0")
	}
	p, err := spawn("postgres ("+n.name+")", filepath.Join(s.bins.pgBin, "postgres"), args, childEnv(), s.dir, s.cred, n.pgOut)
	if err != nil {
		return err
	}
	err = p.waitReady(ctx, pollInterval, func(ctx context.Context) bool { return s.postgresReady(ctx, n) })
	if err != nil {
		p.stop(context.Background(), syscall.SIGKILL, 0)
		return err
	}
	n.pg = p
	return nil
}

func (s *Stack) postgresReady(ctx context.Context, n *node) bool {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bins.pgBin, "pg_isready"), "-q",
		"-h", "127.0.0.1", "-p", strconv.Itoa(n.pgPort), "-U", "postgres", "-d", "postgres", "-t", "2")
	cmd.Env = childEnv()
	cmd.SysProcAttr = sysProcAttr(nil)
	return cmd.Run() == nil
}

// StopPostgres shuts the primary's PostgreSQL down (fast shutdown, SIGKILL
// after 10 s or when ctx is done) and waits for it to exit. Stopping a
// stopped PostgreSQL does nothing.
func (s *Stack) StopPostgres(ctx context.Context) error { return s.stopPostgres(ctx, &s.primary) }

// StartPostgres starts the primary's PostgreSQL again on the same data
// folder and port, and waits until it accepts connections. Starting a
// running PostgreSQL does nothing.
func (s *Stack) StartPostgres(ctx context.Context) error { return s.startPostgres(ctx, &s.primary) }

// StopReplica is StopPostgres for the replica's PostgreSQL: its PostgREST
// answers 503 until StartReplica.
func (s *Stack) StopReplica(ctx context.Context) error { return s.stopPostgres(ctx, s.replica) }

// StartReplica is StartPostgres for the replica's PostgreSQL, which then
// catches up with the primary by streaming replication.
func (s *Stack) StartReplica(ctx context.Context) error { return s.startPostgres(ctx, s.replica) }

func (s *Stack) stopPostgres(ctx context.Context, n *node) error {
	return s.onNode(n, func() error {
		if n.pg != nil {
			n.pg.stop(ctx, syscall.SIGINT, pgStopGrace)
			n.pg = nil
		}
		return nil
	})
}

func (s *Stack) startPostgres(ctx context.Context, n *node) error {
	return s.onNode(n, func() error { return s.startPostgresLocked(ctx, n) })
}

// SQL runs query (one or more statements) with psql -XAt as the superuser
// against the primary's database and returns its trimmed standard output.
func (s *Stack) SQL(ctx context.Context, query string) (string, error) {
	return s.sql(ctx, &s.primary, query)
}

// ReplicaSQL is SQL on the replica, which is read-only.
func (s *Stack) ReplicaSQL(ctx context.Context, query string) (string, error) {
	if s.replica == nil {
		return "", s.usable(nil)
	}
	return s.sql(ctx, s.replica, query)
}

func (s *Stack) sql(ctx context.Context, n *node, query string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bins.pgBin, "psql"), "-XAtq",
		"-v", "ON_ERROR_STOP=1", "-h", s.sockDir, "-p", strconv.Itoa(n.pgPort),
		"-U", "postgres", "-d", "postgres", "-f", "-")
	cmd.Env = childEnv("PGCONNECT_TIMEOUT=5")
	cmd.SysProcAttr = sysProcAttr(nil)
	cmd.Stdin = strings.NewReader(query)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("stack: psql (%s): %w: %s", n.name, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}
