// Package catalog reads and writes the categories table of internal/stack's
// schema for the integration tests and the load test: one Category type,
// the list query on one client (and its URL, for requests built by hand),
// and a Service on a pool, written the way the README shows services.
//
// examples/categories keeps its own types and service on purpose: users
// copy it out of the module, so it imports nothing internal.
package catalog

import (
	"context"
	"fmt"
	"net/url"

	"github.com/supabase-community/postgrest-go"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

// Category is a row of the categories table, as List selects it.
type Category struct {
	ID        string  `json:"id"`
	BudgetID  string  `json:"budget_id"`
	OwnerID   string  `json:"owner_id"`
	Name      string  `json:"name"`
	GroupName *string `json:"group_name"`
	SortOrder int     `json:"sort_order"`
	IsIncome  bool    `json:"is_income"`
}

// NewCategory is what an insert sends. An empty OwnerID is left to the
// column's default, the JWT's sub; the service key has no sub, so inserts
// made with it must set OwnerID.
type NewCategory struct {
	BudgetID  string  `json:"budget_id"`
	OwnerID   string  `json:"owner_id,omitempty"`
	Name      string  `json:"name"`
	GroupName *string `json:"group_name,omitempty"`
	SortOrder int     `json:"sort_order"`
	IsIncome  bool    `json:"is_income"`
}

// columns are the columns List selects: Category's fields.
const columns = "id,budget_id,owner_id,name,group_name,sort_order,is_income"

// List returns a budget's categories (every visible one for budgetID ""),
// by sort order, then name, through c.
func List(ctx context.Context, c *supabase.Client, budgetID string) ([]Category, error) {
	var out []Category
	q := c.From("categories").Select(columns, "", false)
	if budgetID != "" {
		q = q.Eq("budget_id", budgetID)
	}
	_, err := q.Order("sort_order", &postgrest.OrderOpts{Ascending: true}).
		Order("name", &postgrest.OrderOpts{Ascending: true}).
		ExecuteToWithContext(ctx, &out)
	return out, err
}

// ListURL is the URL List requests for budgetID (not ""), byte for byte,
// for a client that builds the same GET by hand.
func ListURL(baseURL, budgetID string) string {
	q := url.Values{
		"select":    {columns},
		"budget_id": {"eq." + budgetID},
		"order":     {"sort_order.asc.nullslast,name.asc.nullslast"},
	}
	return baseURL + "/rest/v1/categories?" + q.Encode()
}

// Service is a service as the README shows it: it embeds a
// *supapool.PooledService and writes each method as a closure. The methods
// act for the user whose token is in ctx (supapool.WithAuthToken), or with
// the pool's key.
type Service struct{ *supapool.PooledService }

// NewService returns a Service on p.
func NewService(p *supapool.Pool) Service {
	return Service{supapool.NewPooledService(p)}
}

// List is List on a pooled client. A read is always safe to retry.
func (s Service) List(ctx context.Context, budgetID string, opts ...supapool.RetryOption) ([]Category, error) {
	var cats []Category
	err := s.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		out, err := List(ctx, c, budgetID)
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
func (s Service) Create(ctx context.Context, in NewCategory, opts ...supapool.RetryOption) (Category, error) {
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
func (s Service) Rename(ctx context.Context, id, name string) (Category, error) {
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
func (s Service) Delete(ctx context.Context, id string, opts ...supapool.RetryOption) error {
	return s.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("categories").Delete("minimal", "").Eq("id", id).ExecuteWithContext(ctx)
		return err
	}, append([]supapool.RetryOption{supapool.Idempotent()}, opts...)...)
}
