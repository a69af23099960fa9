package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/supabase-community/postgrest-go"
	supabase "github.com/supabase-community/supabase-go"
	"go.uber.org/goleak"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/stack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Category is a row of the stack's categories table.
type Category struct {
	ID        string `json:"id"`
	BudgetID  string `json:"budget_id"`
	OwnerID   string `json:"owner_id"`
	Name      string `json:"name"`
	SortOrder int    `json:"sort_order"`
	IsIncome  bool   `json:"is_income"`
}

// newCategory is what an insert sends; owner_id is left to its default,
// the JWT's sub, unless set (the service key has no sub).
type newCategory struct {
	BudgetID  string `json:"budget_id"`
	OwnerID   string `json:"owner_id,omitempty"`
	Name      string `json:"name"`
	SortOrder int    `json:"sort_order"`
}

// CategoryService is a service as the README shows it: it embeds a
// *supapool.PooledService and writes each method as a closure. The methods
// act for the user whose token is in ctx (supapool.WithAuthToken), or with
// the pool's key.
type CategoryService struct{ *supapool.PooledService }

// List returns a budget's categories (all visible ones for budgetID ""),
// by sort order and name. A read is always safe to retry.
func (s CategoryService) List(ctx context.Context, budgetID string, opts ...supapool.RetryOption) ([]Category, error) {
	var cats []Category
	err := s.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		var out []Category
		q := c.From("categories").Select("id,budget_id,owner_id,name,sort_order,is_income", "", false)
		if budgetID != "" {
			q = q.Eq("budget_id", budgetID)
		}
		_, err := q.Order("sort_order", &postgrest.OrderOpts{Ascending: true}).
			Order("name", &postgrest.OrderOpts{Ascending: true}).
			ExecuteToWithContext(ctx, &out)
		if err != nil {
			return err
		}
		cats = out
		return nil
	}, opts...)
	return cats, err
}

// Create inserts a category. An insert is not idempotent: WithRetry runs
// it again only when the failure proves that it never ran.
func (s CategoryService) Create(ctx context.Context, in newCategory, opts ...supapool.RetryOption) (Category, error) {
	var created Category
	err := s.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		var out []Category
		_, err := c.From("categories").Insert(in, false, "", "representation", "").ExecuteToWithContext(ctx, &out)
		if err != nil {
			return err
		}
		if len(out) != 1 {
			return fmt.Errorf("insert returned %d rows", len(out))
		}
		created = out[0]
		return nil
	}, opts...)
	return created, err
}

// Rename sets a category's name. Setting an absolute value is idempotent.
func (s CategoryService) Rename(ctx context.Context, id, name string) (Category, error) {
	var updated Category
	err := s.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		var out []Category
		_, err := c.From("categories").Update(map[string]string{"name": name}, "representation", "").
			Eq("id", id).ExecuteToWithContext(ctx, &out)
		if err != nil {
			return err
		}
		if len(out) != 1 {
			return fmt.Errorf("update matched %d rows", len(out))
		}
		updated = out[0]
		return nil
	}, supapool.Idempotent())
	return updated, err
}

// Delete deletes a category by id; deleting by key is idempotent.
func (s CategoryService) Delete(ctx context.Context, id string, opts ...supapool.RetryOption) error {
	return s.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("categories").Delete("minimal", "").Eq("id", id).ExecuteWithContext(ctx)
		return err
	}, append([]supapool.RetryOption{supapool.Idempotent()}, opts...)...)
}

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
func newService(t *testing.T, s *stack.Stack, cfg supapool.Config) (CategoryService, *supapool.Pool) {
	t.Helper()
	pool, err := supapool.New(s.URL, s.ServiceKey, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		// Not t.Context(): it is canceled before cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, pool.Close(ctx))
	})
	return CategoryService{supapool.NewPooledService(pool)}, pool
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
