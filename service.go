package supapool

import (
	"context"

	supabase "github.com/supabase-community/supabase-go"
)

// WithClient acquires a client, calls fn with it and releases it. fn gets a
// ctx derived from ctx; pass it to the requests (ExecuteWithContext,
// ExecuteToWithContext) so that they are bounded by ctx, carry the user
// token of WithAuthToken, and are observed by the pool.
//
// WithClient returns fn's error. When it stems from a failed PostgREST
// request, it is wrapped in an *Error that keeps the HTTP status and
// PostgREST's code; errors.Is and errors.As see through it. A client whose
// request failed at the transport (connection reset, EOF, timeout) is
// discarded rather than reused. If fn panics, the client is discarded and
// the panic goes on.
func (p *Pool) WithClient(ctx context.Context, fn func(ctx context.Context, c *supabase.Client) error) error {
	_, err := p.run(ctx, fn)
	return err
}

// run is one attempt: acquire, call fn with a wire record, release or
// discard. It returns the record for WithRetry's decision.
func (p *Pool) run(ctx context.Context, fn func(ctx context.Context, c *supabase.Client) error) (*wireRecord, error) {
	client, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	rec := &wireRecord{}
	ok := false
	defer func() {
		if !ok { // fn panicked
			_ = p.Discard(client)
		}
	}()
	err = fn(withWireRecord(ctx, rec), client)
	ok = true
	fail, transportFailed, _ := rec.snapshot()
	if transportFailed {
		_ = p.Discard(client)
	} else {
		_ = p.Release(client)
	}
	if err != nil && fail != nil {
		e := *fail
		e.Attempts = 1
		e.Err = err
		return rec, &e
	}
	return rec, err
}
