package supapool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

func ExampleNew() {
	pool, err := supapool.New("https://example.supabase.co", "service-role-key", supapool.ProductionConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	s := pool.Stats()
	fmt.Printf("%d clients ready, up to %d\n", s.IdleConnections, s.MaxConnections)
	// Output: 5 clients ready, up to 20
}

func ExamplePool_Acquire() {
	pool, err := supapool.New("https://example.supabase.co", "service-role-key", supapool.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	client, err := pool.Acquire(context.Background())
	if err != nil {
		log.Fatal(err) // ErrAcquireTimeout, ErrPoolClosed or ctx's error
	}
	// ... client.From("categories").Select(...).ExecuteToWithContext(ctx, &out)
	fmt.Println("active:", pool.Stats().ActiveConnections)
	if err := pool.Release(client); err != nil {
		log.Fatal(err)
	}
	fmt.Println("active:", pool.Stats().ActiveConnections)
	// Output:
	// active: 1
	// active: 0
}

func ExamplePool_WithClient() {
	// A stand-in for PostgREST that answers every query with one category.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[{"id":"c1","name":"Rent"}]`)
	}))
	defer srv.Close()

	pool, err := supapool.New(srv.URL, "service-role-key", supapool.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	var categories []struct{ ID, Name string }
	err = pool.WithClient(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		_, err := c.From("categories").Select("id,name", "", false).Eq("budget_id", "b1").ExecuteToWithContext(ctx, &categories)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(categories[0].Name)
	// Output: Rent
}

func ExamplePooledService_WithRetry() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_, _ = io.WriteString(w, `{"code":"23505","message":"duplicate key value violates unique constraint","details":null,"hint":null}`)
	}))
	defer srv.Close()
	pool, err := supapool.New(srv.URL, "service-role-key", supapool.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())
	svc := supapool.NewPooledService(pool)

	err = svc.WithRetry(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("categories").Insert(map[string]string{"name": "Rent"}, false, "", "", "").ExecuteWithContext(ctx)
		return err
	})
	var pe *supapool.Error
	if errors.As(err, &pe) {
		fmt.Println(pe.Status, pe.Code, supapool.IsTransient(err), pe.Attempts)
	}
	// Output: 409 23505 false 1
}

func ExampleWithAuthToken() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[]`)
	}))
	defer srv.Close()
	pool, err := supapool.New(srv.URL, "service-role-key", supapool.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	// In a handler: the user's JWT from the request, for row-level security.
	ctx := supapool.WithAuthToken(context.Background(), "user-jwt")
	_ = pool.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("budgets").Select("*", "", false).ExecuteWithContext(ctx)
		return err
	})
	// Output: Bearer user-jwt
}
