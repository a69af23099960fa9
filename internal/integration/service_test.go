package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/catalog"
	"github.com/supapool/supapool/internal/stack"
)

// TestServiceCalls lists, inserts, updates and deletes categories through
// a catalog.Service on a pool, against the real schema.
func TestServiceCalls(t *testing.T) {
	s := stack.ForTest(t, stack.Options{})
	ctx := testCtx(t, 30*time.Second)
	budget := insertBudget(ctx, t, s, "user-a")
	svc, pool := newService(t, s, testConfig(4))

	cats, err := svc.List(ctx, budget)
	require.NoError(t, err)
	assert.Empty(t, cats)

	// Insert three, concurrently, as the service key (no sub: owner_id is
	// given).
	names := []string{"Rent", "Food", "Salary"}
	created := make([]catalog.Category, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			c, err := svc.Create(ctx, catalog.NewCategory{BudgetID: budget, OwnerID: "user-a", Name: name, SortOrder: i})
			assert.NoError(t, err)
			created[i] = c
		})
	}
	wg.Wait()
	for i, c := range created {
		assert.Len(t, c.ID, 36)
		assert.Equal(t, names[i], c.Name)
		assert.Equal(t, budget, c.BudgetID)
		assert.Equal(t, "user-a", c.OwnerID)
	}

	cats, err = svc.List(ctx, budget)
	require.NoError(t, err)
	require.Len(t, cats, 3)
	assert.Equal(t, names, []string{cats[0].Name, cats[1].Name, cats[2].Name}, "in sort order")

	renamed, err := svc.Rename(ctx, created[1].ID, "Groceries")
	require.NoError(t, err)
	assert.Equal(t, "Groceries", renamed.Name)
	assert.Equal(t, 1, renamed.SortOrder, "fields not sent stay as they were")

	require.NoError(t, svc.Delete(ctx, created[0].ID))
	require.NoError(t, svc.Delete(ctx, created[0].ID), "deleting again matches nothing, which is no error")

	cats, err = svc.List(ctx, budget)
	require.NoError(t, err)
	require.Len(t, cats, 2)
	assert.Equal(t, []string{"Groceries", "Salary"}, []string{cats[0].Name, cats[1].Name})
	assert.Equal(t, "Groceries\nSalary", sqlOut(ctx, t, s, "select name from categories order by sort_order"),
		"what the database holds")

	// PostgREST's errors come back as *supapool.Error with status and code.
	_, err = svc.Create(ctx, catalog.NewCategory{BudgetID: "00000000-0000-0000-0000-000000000000", OwnerID: "user-a", Name: "Orphan"})
	e := asError(t, err)
	assert.Equal(t, 409, e.Status, "%v", err)
	assert.Equal(t, "23503", e.Code, "foreign key violation")
	assert.Equal(t, 1, e.Attempts)
	assert.False(t, supapool.IsTransient(err))
	_, err = svc.List(ctx, "not-a-uuid")
	e = asError(t, err)
	assert.Equal(t, 400, e.Status, "%v", err)
	assert.Equal(t, "22P02", e.Code)
	assert.False(t, supapool.IsTransient(err))

	st := svc.PoolStats()
	checkStats(t, st)
	assert.Equal(t, st, pool.Stats())
	assert.Positive(t, st.TotalAcquired)
	assert.LessOrEqual(t, st.TotalCreated, int64(4), "at most MaxConnections clients were made: %+v", st)
	h := svc.HealthCheck(ctx)
	assert.True(t, h.Healthy, "%+v", h)
	assert.True(t, h.Details.TestQuery.Success, "%+v", h)
	assert.Equal(t, 200, h.Details.TestQuery.Status)
	assert.Empty(t, h.Details.TestQuery.Error)
	checkStats(t, pool.Stats())
	t.Logf("stats after the service calls: %+v; health check latency %.1f ms", pool.Stats(), h.Details.TestQuery.LatencyMs)
}

// TestRowLevelSecurity runs two users and the service key concurrently on
// the same pool, so that clients pass between identities: each user sees
// and writes only their own rows, and cannot write into the other's budget.
func TestRowLevelSecurity(t *testing.T) {
	s := stack.ForTest(t, stack.Options{})
	ctx := testCtx(t, 40*time.Second)
	users := []string{"user-a", "user-b"}
	budgets := map[string]string{}
	for _, u := range users {
		budgets[u] = insertBudget(ctx, t, s, u)
		sqlOut(ctx, t, s, fmt.Sprintf("insert into categories (budget_id, owner_id, name, sort_order) "+
			"select '%s', '%s', 'seed-%s-' || i, i from generate_series(1, 3) i", budgets[u], u, u))
	}
	tokens := map[string]string{"user-a": s.UserToken("user-a"), "user-b": s.UserToken("user-b")}
	// Fewer clients than goroutines: every client serves all identities.
	svc, pool := newService(t, s, testConfig(6))

	const goroutines, rounds = 20, 8
	var (
		mu       sync.Mutex
		inserted = map[string]int{} // owner -> rows inserted
	)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			who := "service"
			if g%3 < 2 {
				who = users[g%3]
			}
			for r := range rounds {
				ctx := ctx
				if who != "service" {
					ctx = supapool.WithAuthToken(ctx, tokens[who])
				}
				cats, err := svc.List(ctx, "")
				if !assert.NoError(t, err, who) {
					return
				}
				owners := map[string]int{}
				for _, c := range cats {
					owners[c.OwnerID]++
				}
				if who == "service" {
					assert.GreaterOrEqual(t, owners["user-a"], 3, "the service key sees user-a's rows")
					assert.GreaterOrEqual(t, owners["user-b"], 3, "the service key sees user-b's rows")
					continue
				}
				assert.Equal(t, []string{who}, keys(owners), "%s sees only its own rows", who)
				for _, c := range cats {
					assert.Equal(t, budgets[who], c.BudgetID, "%s sees only its own budget", who)
				}
				// Insert into the own budget: owner_id is the JWT's sub.
				c, err := svc.Create(ctx, catalog.NewCategory{BudgetID: budgets[who], Name: fmt.Sprintf("rls-%d-%d", g, r)})
				if assert.NoError(t, err, who) {
					assert.Equal(t, who, c.OwnerID)
					mu.Lock()
					inserted[who]++
					mu.Unlock()
				}
				// Insert into the other user's budget: refused.
				other := users[1-g%3]
				_, err = svc.Create(ctx, catalog.NewCategory{BudgetID: budgets[other], Name: fmt.Sprintf("intrude-%d-%d", g, r)})
				e := asError(t, err)
				assert.Equal(t, 403, e.Status, "%s inserts into %s's budget: %v", who, other, err)
				assert.Equal(t, "42501", e.Code)
				assert.Equal(t, 1, e.Attempts, "a refusal is not retried")
				assert.False(t, supapool.IsTransient(err))
			}
		})
	}
	wg.Wait()

	// The database agrees.
	for _, u := range users {
		n := sqlInt(ctx, t, s, "select count(*) from categories where owner_id = '"+u+"' and budget_id = '"+budgets[u]+"'")
		assert.Equal(t, 3+inserted[u], n, "%s's rows", u)
		cats, err := svc.List(supapool.WithAuthToken(ctx, tokens[u]), "")
		require.NoError(t, err)
		assert.Len(t, cats, n, "what %s sees through the pool", u)
	}
	assert.Equal(t, 0, sqlInt(ctx, t, s, "select count(*) from categories where name like 'intrude-%'"))
	assert.Equal(t, 0, sqlInt(ctx, t, s,
		"select count(*) from categories c join budgets b on b.id = c.budget_id where c.owner_id <> b.owner_id"))
	all, err := svc.List(ctx, "")
	require.NoError(t, err)
	assert.Len(t, all, 6+inserted["user-a"]+inserted["user-b"], "the service key sees every row")

	// An empty token is refused before it leaves, never sent with the key.
	_, err = svc.List(supapool.WithAuthToken(ctx, ""), "")
	assert.True(t, errors.Is(err, supapool.ErrEmptyAuthToken), "%v", err)

	st := pool.Stats()
	checkStats(t, st)
	t.Logf("%d goroutines x %d rounds on %d clients: inserted %v; stats %+v", goroutines, rounds, st.MaxConnections, inserted, st)
}

func keys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestOnePrincipalWithoutCtx runs two users and the service key on one
// pool with the calls that take no ctx (Execute, supabase-go's Rpc) next to
// RPC: each request runs as its checkout's principal, so no user sees
// another's rows and whoami() names the caller.
func TestOnePrincipalWithoutCtx(t *testing.T) {
	s := stack.ForTest(t, stack.Options{})
	ctx := testCtx(t, 40*time.Second)
	users := []string{"user-a", "user-b"}
	for _, u := range users {
		b := insertBudget(ctx, t, s, u)
		sqlOut(ctx, t, s, fmt.Sprintf("insert into categories (budget_id, owner_id, name) values ('%s', '%s', 'own-%s')", b, u, u))
	}
	_, pool := newService(t, s, testConfig(3))
	var crossRows, wrongWho atomic.Int64
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			who := []string{"user-a", "user-b", "service"}[g%3]
			for range 10 {
				ctx := ctx
				if who != "service" {
					ctx = supapool.WithAuthToken(ctx, s.UserToken(who))
				}
				err := pool.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
					var rows []catalog.Category
					if _, err := c.From("categories").Select("*", "", false).ExecuteTo(&rows); err != nil {
						return err
					}
					for _, r := range rows {
						if who != "service" && r.OwnerID != who {
							crossRows.Add(1)
						}
					}
					if got := c.Rpc("whoami", "", nil); got != `"`+who+`"` {
						wrongWho.Add(1)
						t.Errorf("Rpc whoami as %s: %s", who, got)
					}
					var me string
					if err := supapool.RPC(ctx, c, "whoami", nil, &me); err != nil {
						return err
					}
					if me != who {
						wrongWho.Add(1)
						t.Errorf("RPC whoami as %s: %s", who, me)
					}
					return nil
				})
				assert.NoError(t, err, who)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, crossRows.Load(), "rows of another user")
	assert.Zero(t, wrongWho.Load(), "requests that ran as someone else")
	checkStats(t, pool.Stats())
}
