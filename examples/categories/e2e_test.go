package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/stack"
)

// TestEndToEnd runs the API against a real PostgreSQL and PostgREST with
// the real schema and row-level security. It skips when the stack's
// binaries are missing (see scripts/setup-stack.sh).
func TestEndToEnd(t *testing.T) {
	start := time.Now()
	s := stack.ForTest(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	budgetA := insertBudget(ctx, t, s, "user-a")
	budgetB := insertBudget(ctx, t, s, "user-b")
	userA, userB := s.UserToken("user-a"), s.UserToken("user-b")

	api, _ := startApp(t, s.URL, s.ServiceKey, supapool.ProductionConfig())
	listPath := "/budgets/" + budgetA + "/categories"

	// A creates two categories in A's budget.
	r := api.do("POST", listPath, userA, map[string]any{"name": "Rent", "sort_order": 1})
	require.Equal(t, 201, r.Status, "body: %s", r.Body)
	rent := decode[Category](t, r)
	assert.NotEmpty(t, rent.ID)
	assert.Equal(t, budgetA, rent.BudgetID)
	assert.Equal(t, "user-a", rent.OwnerID, "owner_id defaults to the JWT's sub")
	assert.False(t, rent.CreatedAt.IsZero())

	r = api.do("POST", listPath, userA, map[string]any{"name": "Food", "group_name": "Living", "sort_order": 2})
	require.Equal(t, 201, r.Status, "body: %s", r.Body)
	food := decode[Category](t, r)
	require.NotNil(t, food.GroupName)
	assert.Equal(t, "Living", *food.GroupName)

	// A lists them, in sort order.
	r = api.do("GET", listPath, userA, nil)
	require.Equal(t, 200, r.Status, "body: %s", r.Body)
	cats := decode[[]Category](t, r)
	require.Len(t, cats, 2)
	assert.Equal(t, []string{"Rent", "Food"}, []string{cats[0].Name, cats[1].Name})

	// A renames one.
	r = api.do("PATCH", "/categories/"+food.ID, userA, map[string]any{"name": "Groceries"})
	require.Equal(t, 200, r.Status, "body: %s", r.Body)
	renamed := decode[Category](t, r)
	assert.Equal(t, "Groceries", renamed.Name)
	assert.Equal(t, 2, renamed.SortOrder, "fields not sent stay as they were")
	assert.False(t, renamed.UpdatedAt.Before(food.UpdatedAt))

	// B sees none of A's categories and cannot change or delete them:
	// row-level security makes them look missing.
	r = api.do("GET", listPath, userB, nil)
	require.Equal(t, 200, r.Status, "body: %s", r.Body)
	assert.JSONEq(t, "[]", string(r.Body))
	r = api.do("PATCH", "/categories/"+food.ID, userB, map[string]any{"name": "Mine now"})
	assert.Equal(t, 404, r.Status, "body: %s", r.Body)
	r = api.do("DELETE", "/categories/"+food.ID, userB, nil)
	assert.Equal(t, 404, r.Status, "body: %s", r.Body)

	// A deletes one; deleting it again finds nothing.
	r = api.do("DELETE", "/categories/"+rent.ID, userA, nil)
	assert.Equal(t, 204, r.Status, "body: %s", r.Body)
	r = api.do("DELETE", "/categories/"+rent.ID, userA, nil)
	assert.Equal(t, 404, r.Status, "body: %s", r.Body)

	// One is left, and B's attempts changed nothing.
	r = api.do("GET", listPath, userA, nil)
	require.Equal(t, 200, r.Status, "body: %s", r.Body)
	cats = decode[[]Category](t, r)
	require.Len(t, cats, 1)
	assert.Equal(t, food.ID, cats[0].ID)
	assert.Equal(t, "Groceries", cats[0].Name)
	out, err := s.SQL(ctx, "select owner_id || ':' || name from categories order by name")
	require.NoError(t, err)
	assert.Equal(t, "user-a:Groceries", out)

	// B's own budget works for B.
	r = api.do("POST", "/budgets/"+budgetB+"/categories", userB, map[string]any{"name": "Salary", "is_income": true})
	assert.Equal(t, 201, r.Status, "body: %s", r.Body)

	// PostgREST's 4xx come through with their status.
	r = api.do("PATCH", "/categories/not-a-uuid", userA, map[string]any{"name": "x"})
	assert.Equal(t, 400, r.Status, "body: %s", r.Body)
	assert.Contains(t, r.errMsg(), "uuid")
	r = api.do("POST", "/budgets/00000000-0000-0000-0000-000000000000/categories", userA, map[string]any{"name": "x"})
	assert.Equal(t, 403, r.Status, "the policy admits only budgets the user owns, and a missing one is not; body: %s", r.Body)
	r = api.do("GET", listPath, "not.a.jwt", nil)
	assert.Equal(t, 401, r.Status, "PostgREST rejects a bad JWT; body: %s", r.Body)
	r = api.do("GET", listPath, "", nil)
	assert.Equal(t, 401, r.Status, "no token, no service key on the caller's behalf; body: %s", r.Body)

	// Health, and the pool's headers for this loopback client.
	r = api.do("GET", "/health/pool", "", nil)
	assert.Equal(t, 200, r.Status, "body: %s", r.Body)
	assert.Contains(t, string(r.Body), `"healthy":true`)
	assert.NotContains(t, string(r.Body), s.ServiceKey)
	for _, h := range []string{"X-Pool-Total-Connections", "X-Pool-Active-Connections", "X-Pool-Idle-Connections", "X-Pool-Waiting-Requests"} {
		assert.NotEmpty(t, r.Header.Get(h), h)
	}

	t.Logf("end-to-end test took %v (stack start included)", time.Since(start).Round(time.Millisecond))
}

// insertBudget inserts a budget owned by owner, as the superuser.
func insertBudget(ctx context.Context, t *testing.T, s *stack.Stack, owner string) string {
	t.Helper()
	id, err := s.SQL(ctx, "insert into budgets (owner_id, name) values ('"+owner+"', 'Budget of "+owner+"') returning id")
	require.NoError(t, err)
	id = strings.TrimSpace(id)
	require.Len(t, id, 36, "a uuid: %q", id)
	return id
}
