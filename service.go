package supapool

import (
	"context"

	supabase "github.com/supabase-community/supabase-go"
)

// PooledService is the base type for services that run their queries on
// pooled clients. Embed a *PooledService in your own service type and
// write each method as a closure over a client:
//
//	type CategoryService struct{ *supapool.PooledService }
//
//	func (s CategoryService) ListCategories(ctx context.Context, budgetID string) ([]Category, error) {
//		var out []Category
//		err := s.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
//			_, err := c.From("categories").Select("*", "", false).Eq("budget_id", budgetID).ExecuteToWithContext(ctx, &out)
//			return err
//		})
//		return out, err
//	}
//
// A PooledService is safe for concurrent use; many services may share one
// Pool. Its zero value is not usable: create it with NewPooledService.
type PooledService struct {
	pool *Pool
}

// NewPooledService returns a service base that runs closures on p's clients.
func NewPooledService(p *Pool) *PooledService {
	if p == nil {
		panic("supapool: NewPooledService needs a non-nil *Pool")
	}
	return &PooledService{pool: p}
}

// Pool returns the pool the service runs on.
func (s *PooledService) Pool() *Pool { return s.pool }

// WithClient runs fn on a pooled client: see Pool.WithClient.
func (s *PooledService) WithClient(ctx context.Context, fn func(ctx context.Context, c *supabase.Client) error) error {
	return s.pool.WithClient(ctx, fn)
}

// WithRetry runs fn with retries: see Pool.WithRetry.
func (s *PooledService) WithRetry(ctx context.Context, fn func(ctx context.Context, c *supabase.Client) error, opts ...RetryOption) error {
	return s.pool.WithRetry(ctx, fn, opts...)
}

// PoolStats returns the pool's statistics: see Pool.Stats.
func (s *PooledService) PoolStats() Stats { return s.pool.Stats() }

// HealthCheck checks the pool and PostgREST: see Pool.HealthCheck.
func (s *PooledService) HealthCheck(ctx context.Context) Health { return s.pool.HealthCheck(ctx) }

// WithClient acquires a client, calls fn with it and releases it. While fn
// runs the client is checked out to fn: if ctx carries a user token
// (WithAuthToken), every request the client sends carries that token and
// never the pool's key, whichever call sends it (ExecuteWithContext,
// Execute, supabase-go's Rpc, RPC, Storage); a request sent without a ctx
// (Execute, Rpc) inherits fn's ctx, so it is bounded and canceled with it.
// Every request is observed by the pool.
//
// WithClient returns fn's error. When that error is the error of a failed
// request (its transport error, the *Error that RPC returned, or the error
// postgrest-go built from the failed response), it is wrapped in an *Error
// that keeps the HTTP status and PostgREST's code; errors.Is and errors.As
// see through it. An error fn makes itself, after handling a failed
// request, is returned unchanged. A client whose request failed at the
// transport (connection reset, EOF, timeout) is discarded rather than
// reused. If fn panics, the client is discarded and the panic goes on.
func (p *Pool) WithClient(ctx context.Context, fn func(ctx context.Context, c *supabase.Client) error) error {
	_, err := p.run(ctx, fn)
	return err
}

// run is one attempt: acquire, call fn on a client bound to a fresh wire
// record, release or discard. When fn's error is a failed request's, it
// returns the record for WithRetry's decision, and nil otherwise.
func (p *Pool) run(ctx context.Context, fn func(ctx context.Context, c *supabase.Client) error) (*wireRecord, error) {
	c, err := p.acquire(ctx, false)
	if err != nil {
		return nil, err
	}
	rec := &wireRecord{}
	p.bind(c, ctx, rec, ctx)
	ok := false
	defer func() {
		if !ok { // fn panicked
			_ = p.Discard(c.client)
		}
	}()
	err = fn(ctx, c.client)
	ok = true
	fail, transportFailed, _ := rec.snapshot()
	if transportFailed {
		_ = p.Discard(c.client)
	} else {
		_ = p.Release(c.client)
	}
	if err == nil || fail == nil || !fail.causes(err) {
		return nil, err
	}
	e := *fail
	e.Attempts = 1
	if err != error(fail) {
		e.Err = err
	}
	return rec, &e
}
