// Package integration tests supapool against a real PostgreSQL 15 and
// PostgREST 12 behind a gateway proxy (see internal/stack): service calls
// through the pool, row-level security with request-scoped user tokens on
// a shared pool, faults (PostgreSQL stopped, PostgREST killed, the gateway
// down, PostgREST's database pool exhausted) and a load test that checks
// the pool's bound on TCP connections at the gateway.
//
// The package has only tests. They skip when the stack's binaries are
// missing (run scripts/setup-stack.sh), and fail instead when CI=true:
//
//	go test -race -count=1 ./internal/integration
package integration
