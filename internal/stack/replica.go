package stack

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// makeReplicaLocked makes the read replica (Options.Replica) and starts
// its PostgreSQL: a role with the replication privilege on the primary
// (initdb's pg_hba.conf already lets it replicate over 127.0.0.1 with a
// password), a copy of the primary made with pg_basebackup -R, which
// writes the standby's primary_conninfo and standby.signal, and a
// PostgreSQL on it that streams the primary's WAL and serves reads only.
// The caller holds mu; this touches only the replica's node and s.replica.
func (s *Stack) makeReplicaLocked(ctx context.Context) error {
	n := newNode("replica", filepath.Join(s.dir, "replica"))
	s.replica = &n
	if _, err := s.SQL(ctx, fmt.Sprintf("create role replicator with replication login password '%s'", s.replPassword)); err != nil {
		return fmt.Errorf("stack: replica: %w", err)
	}
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=replicator password=%s application_name=replica", s.primary.pgPort, s.replPassword)
	if err := s.runTool(ctx, "pg_basebackup",
		"-d", conninfo, "-D", n.dataDir, "--write-recovery-conf", "--wal-method=stream",
		"--checkpoint=fast", "--no-sync"); err != nil {
		return err
	}
	return retryPorts(func() error {
		n.pgPort = freePort()
		return s.startPostgresLocked(ctx, &n)
	})
}

// WaitReplica waits until the replica has replayed everything the primary
// had written when it was called, so that reads on the replica see it.
func (s *Stack) WaitReplica(ctx context.Context) error {
	lsn, err := s.SQL(ctx, "select pg_current_wal_insert_lsn()")
	if err != nil {
		return err
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		out, err := s.ReplicaSQL(ctx, "select coalesce(pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn, false)")
		if err == nil && strings.TrimSpace(out) == "t" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stack: the replica did not replay up to %s: %w (last: %q, %v)", lsn, ctx.Err(), out, err)
		case <-t.C:
		}
	}
}
