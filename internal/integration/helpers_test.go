package integration

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/catalog"
	"github.com/supapool/supapool/internal/stack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is a pool configuration with small durations.
func testConfig(maxConns int) supapool.Config {
	return supapool.Config{
		MaxConnections:     maxConns,
		MinConnections:     1,
		AcquireTimeout:     10 * time.Second,
		MaxRetries:         3,
		RetryDelay:         10 * time.Millisecond,
		MaxRetryDelay:      200 * time.Millisecond,
		HealthCheckTimeout: 2 * time.Second,
		Logger:             slog.New(slog.DiscardHandler),
	}
}

// newService opens a pool on s with the service key and closes it when t
// ends (before the stack, which was registered earlier).
func newService(t *testing.T, s *stack.Stack, cfg supapool.Config) (catalog.Service, *supapool.Pool) {
	t.Helper()
	return newServiceAt(t, s.URL, s.ServiceKey, cfg)
}

// newServiceAt is newService on url with key.
func newServiceAt(t *testing.T, url, key string, cfg supapool.Config) (catalog.Service, *supapool.Pool) {
	t.Helper()
	pool, err := supapool.New(url, key, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		// Not t.Context(): it is canceled before cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, pool.Close(ctx))
	})
	return catalog.NewService(pool), pool
}

// testCtx is a ctx for the body of a test, bounded well inside the
// package's time budget.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// sqlOut runs query as the superuser and returns its output.
func sqlOut(ctx context.Context, t *testing.T, s *stack.Stack, query string) string {
	t.Helper()
	out, err := s.SQL(ctx, query)
	require.NoError(t, err, "query: %s", query)
	return out
}

// sqlInt runs a query that returns one integer.
func sqlInt(ctx context.Context, t *testing.T, s *stack.Stack, query string) int {
	t.Helper()
	out := sqlOut(ctx, t, s, query)
	n, err := strconv.Atoi(out)
	require.NoError(t, err, "query: %s", query)
	return n
}

// insertBudget inserts a budget owned by owner, as the superuser.
func insertBudget(ctx context.Context, t *testing.T, s *stack.Stack, owner string) string {
	t.Helper()
	id := sqlOut(ctx, t, s, "insert into budgets (owner_id, name) values ('"+owner+"', 'Budget of "+owner+"') returning id")
	require.Len(t, id, 36, "a uuid: %q", id)
	return id
}

// nameCounts returns how many categories there are per name, for names
// with the given prefix.
func nameCounts(ctx context.Context, t *testing.T, s *stack.Stack, prefix string) map[string]int {
	t.Helper()
	out := sqlOut(ctx, t, s, "select name || '|' || count(*) from categories where name like '"+prefix+"%' group by name")
	counts := map[string]int{}
	if out == "" {
		return counts
	}
	for _, line := range strings.Split(out, "\n") {
		name, n, ok := strings.Cut(line, "|")
		require.True(t, ok, line)
		c, err := strconv.Atoi(n)
		require.NoError(t, err, line)
		counts[name] = c
	}
	return counts
}

// checkStats asserts Stats' identities, and that no client is checked out.
func checkStats(t *testing.T, st supapool.Stats) {
	t.Helper()
	assert.Equal(t, st.TotalConnections, st.ActiveConnections+st.IdleConnections, "Total = Active + Idle: %+v", st)
	assert.Equal(t, int64(st.TotalConnections), st.TotalCreated-st.TotalDestroyed, "Created - Destroyed = Total: %+v", st)
	assert.Equal(t, int64(st.ActiveConnections), st.TotalAcquired-st.TotalReleased, "Acquired - Released = Active: %+v", st)
	assert.Equal(t, 0, st.ActiveConnections, "no client is checked out: %+v", st)
	assert.Equal(t, 0, st.WaitingForConnection, "%+v", st)
	assert.LessOrEqual(t, st.TotalConnections, st.MaxConnections, "%+v", st)
}

// asError returns err's *supapool.Error. If there is none it marks t
// failed and returns an empty Error (so it may be called from any
// goroutine).
func asError(t *testing.T, err error) *supapool.Error {
	t.Helper()
	var e *supapool.Error
	if !assert.True(t, errors.As(err, &e), "want a *supapool.Error, got %T: %v", err, err) {
		return &supapool.Error{}
	}
	return e
}

// eventually polls cond every 10 ms until it is true or d has passed, and
// fails t in the latter case. It returns how long it took.
func eventually(t *testing.T, d time.Duration, cond func() bool, msgAndArgs ...any) time.Duration {
	t.Helper()
	start := time.Now()
	require.Eventually(t, cond, d, 10*time.Millisecond, msgAndArgs...)
	return time.Since(start)
}

// insertResult is one insert a worker made: the category's name, unique to
// the insert, and what Create returned.
type insertResult struct {
	marker string
	err    error
}

// insertTally is what became of a run's inserts.
type insertTally struct {
	ok, refused, failed, failedButApplied, rows int
}

// checkInserts compares the categories whose names start with prefix with
// the inserts that made them: none is stored twice; every insert that
// returned nil is stored; one refused by the circuit breaker is not; one
// that failed otherwise is stored only if its failure did not prove that it
// never ran; and there is no row without an insert.
func checkInserts(ctx context.Context, t *testing.T, s *stack.Stack, prefix string, inserts []insertResult) insertTally {
	t.Helper()
	counts := nameCounts(ctx, t, s, prefix)
	var n insertTally
	for _, in := range inserts {
		c := counts[in.marker]
		assert.LessOrEqual(t, c, 1, "marker %s appears %d times", in.marker, c)
		switch {
		case in.err == nil:
			n.ok++
			assert.Equal(t, 1, c, "marker %s: insert returned nil", in.marker)
		case errors.Is(in.err, supapool.ErrCircuitOpen):
			n.refused++
			assert.Zero(t, c, "marker %s was refused by the circuit breaker: %v", in.marker, in.err)
		default:
			n.failed++
			if c > 0 {
				n.failedButApplied++
				assert.False(t, asError(t, in.err).NeverRan(), "marker %s: %v", in.marker, in.err)
			}
		}
	}
	n.rows = len(counts)
	assert.Equal(t, n.ok+n.failedButApplied, n.rows, "no rows without a matching insert")
	return n
}

// workers are goroutines that loop until stop is called.
type workers struct {
	quit    chan struct{}
	wg      sync.WaitGroup
	stopped bool
}

func newWorkers() *workers { return &workers{quit: make(chan struct{})} }

// goLoop runs body in a new goroutine with i = 0, 1, ... until stop.
func (w *workers) goLoop(body func(i int)) {
	w.wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-w.quit:
				return
			default:
			}
			body(i)
		}
	})
}

// stop ends the loops and waits for them. Later calls do nothing; call it
// from the test's goroutine only.
func (w *workers) stop() {
	if !w.stopped {
		w.stopped = true
		close(w.quit)
		w.wg.Wait()
	}
}
