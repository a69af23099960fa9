package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/supabase-community/postgrest-go"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

// Category is a row of the categories table.
type Category struct {
	ID        string    `json:"id"`
	BudgetID  string    `json:"budget_id"`
	OwnerID   string    `json:"owner_id"`
	Name      string    `json:"name"`
	GroupName *string   `json:"group_name"`
	SortOrder int       `json:"sort_order"`
	IsIncome  bool      `json:"is_income"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// NewCategory is what a caller may set when creating a category. There is
// no OwnerID: the column defaults to the JWT's sub, and the row-level
// security policy rejects any other value.
type NewCategory struct {
	Name      string  `json:"name"`
	GroupName *string `json:"group_name,omitempty"`
	SortOrder int     `json:"sort_order"`
	IsIncome  bool    `json:"is_income"`
}

// CategoryUpdate holds the fields to change; nil fields stay as they are.
type CategoryUpdate struct {
	Name      *string `json:"name,omitempty"`
	GroupName *string `json:"group_name,omitempty"`
	SortOrder *int    `json:"sort_order,omitempty"`
	IsIncome  *bool   `json:"is_income,omitempty"`
}

var (
	// ErrNotFound: no row with that id is visible to the caller. Row-level
	// security makes another user's row look exactly like a missing one.
	ErrNotFound = errors.New("category not found")

	// ErrInvalid is wrapped by the errors of the input checks.
	ErrInvalid = errors.New("invalid input")
)

func (in NewCategory) validate() error {
	if strings.TrimSpace(in.Name) == "" {
		return fmt.Errorf("%w: name is required", ErrInvalid)
	}
	return nil
}

func (in CategoryUpdate) validate() error {
	if in == (CategoryUpdate{}) {
		return fmt.Errorf("%w: nothing to update", ErrInvalid)
	}
	if in.Name != nil && strings.TrimSpace(*in.Name) == "" {
		return fmt.Errorf("%w: name must not be empty", ErrInvalid)
	}
	return nil
}

// CategoryService runs its queries on pooled clients. Its methods act for
// the user whose JWT is in ctx (supapool.WithAuthToken), so PostgreSQL's
// row-level security decides which rows they see; without a token they
// would run with the pool's key, which for a service-role key sees all.
//
// Each closure passed to WithRetry may run more than once: it keeps its
// results in local variables and copies them out only when it succeeds,
// and it passes the closure's ctx (not the method's) to every request so
// that the pool can apply the token and observe the request.
type CategoryService struct{ *supapool.PooledService }

func NewCategoryService(p *supapool.Pool) CategoryService {
	return CategoryService{supapool.NewPooledService(p)}
}

// ListCategories returns a budget's categories in display order. A read is
// always safe to retry.
func (s CategoryService) ListCategories(ctx context.Context, budgetID string) ([]Category, error) {
	var cats []Category
	err := s.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		var out []Category
		_, err := c.From("categories").Select("*", "", false).
			Eq("budget_id", budgetID).
			Order("sort_order", &postgrest.OrderOpts{Ascending: true}).
			Order("name", &postgrest.OrderOpts{Ascending: true}).
			ExecuteToWithContext(ctx, &out)
		if err != nil {
			return err
		}
		cats = out
		return nil
	})
	return cats, err
}

// CreateCategory inserts a category into a budget. An insert is not
// idempotent (a second run would add a second row), so it is not declared
// Idempotent: WithRetry then retries it only when the failure proves the
// statement never ran (no connection, or PostgREST could not reach the
// database).
//
// Whether the caller may add to this budget is for the database's policy
// to decide, not for this method: users can reach PostgREST without this
// API. A policy that checked only the row's owner_id would let anyone add
// rows to another user's budget; the example schema's WITH CHECK also
// requires that the budget belongs to the caller, so such an insert fails
// with 403 (PostgreSQL 42501).
func (s CategoryService) CreateCategory(ctx context.Context, budgetID string, in NewCategory) (Category, error) {
	if err := in.validate(); err != nil {
		return Category{}, err
	}
	row := struct {
		BudgetID string `json:"budget_id"`
		NewCategory
	}{budgetID, in}
	var cat Category
	err := s.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		var out []Category
		_, err := c.From("categories").Insert(row, false, "", "representation", "").
			ExecuteToWithContext(ctx, &out)
		if err != nil {
			return err
		}
		if len(out) != 1 {
			return fmt.Errorf("insert returned %d rows, want 1", len(out))
		}
		cat = out[0]
		return nil
	})
	return cat, err
}

// UpdateCategory changes the given fields of the category with this id.
//
// Declaring it Idempotent is safe: it sets absolute values on one row
// chosen by its primary key, so running it twice leaves the row as running
// it once does. (An update such as sort_order = sort_order + 1 would not
// be.)
func (s CategoryService) UpdateCategory(ctx context.Context, id string, in CategoryUpdate) (Category, error) {
	if err := in.validate(); err != nil {
		return Category{}, err
	}
	var cat Category
	err := s.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		var out []Category
		_, err := c.From("categories").Update(in, "representation", "").
			Eq("id", id).
			ExecuteToWithContext(ctx, &out)
		if err != nil {
			return err
		}
		if len(out) == 0 {
			return ErrNotFound // no such row, or not the caller's
		}
		cat = out[0]
		return nil
	}, supapool.Idempotent())
	return cat, err
}

// DeleteCategory deletes the category with this id.
//
// Declaring it Idempotent is safe: deleting a row by its primary key twice
// leaves the same table as deleting it once. One consequence: when a first
// attempt deleted the row but its answer was lost, the retry finds nothing
// and DeleteCategory reports ErrNotFound; the row is gone either way.
func (s CategoryService) DeleteCategory(ctx context.Context, id string) error {
	return s.WithRetry(ctx, func(ctx context.Context, c *supabase.Client) error {
		var out []Category
		_, err := c.From("categories").Delete("representation", "").
			Eq("id", id).
			ExecuteToWithContext(ctx, &out)
		if err != nil {
			return err
		}
		if len(out) == 0 {
			return ErrNotFound
		}
		return nil
	}, supapool.Idempotent())
}
