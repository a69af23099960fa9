package supapool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	supabase "github.com/supabase-community/supabase-go"
)

// RetryOption changes how one WithRetry call retries.
type RetryOption func(*retryPolicy)

type retryPolicy struct {
	retries    int
	base, cap  time.Duration
	idempotent bool
}

// RetryMax sets how many retries this call may make after the first
// attempt, instead of Config.MaxRetries. Zero means no retries; negative
// values count as zero.
func RetryMax(n int) RetryOption {
	return func(p *retryPolicy) { p.retries = max(n, 0) }
}

// RetryBackoff sets this call's backoff base and cap, instead of
// Config.RetryDelay and Config.MaxRetryDelay. Zero values keep the pool's.
func RetryBackoff(base, maxDelay time.Duration) RetryOption {
	return func(p *retryPolicy) {
		if base > 0 {
			p.base = base
		}
		if maxDelay > 0 {
			p.cap = maxDelay
		}
	}
}

// Idempotent declares that the writes of this call may safely run twice
// (an upsert, a delete by key, an update that sets absolute values), so
// that WithRetry retries them also after an ambiguous failure.
func Idempotent() RetryOption {
	return func(p *retryPolicy) { p.idempotent = true }
}

// WithRetry runs fn like WithClient and runs it again after a transient
// failure that is safe to repeat; see PooledService.WithRetry.
func (p *Pool) WithRetry(ctx context.Context, fn func(ctx context.Context, c *supabase.Client) error, opts ...RetryOption) error {
	pol := retryPolicy{retries: p.cfg.MaxRetries, base: p.cfg.RetryDelay, cap: p.cfg.MaxRetryDelay}
	for _, o := range opts {
		o(&pol)
	}
	for attempt := 1; ; attempt++ {
		rec, err := p.run(ctx, fn)
		if err == nil {
			return nil
		}
		var e *Error
		if errors.As(err, &e) {
			e.Attempts = attempt
		}
		if attempt > pol.retries || rec == nil || !retryable(rec, pol.idempotent) {
			return err
		}
		wait := pol.backoff(attempt)
		if e.RetryAfter > wait {
			if e.RetryAfter > pol.cap {
				return err // the server will not be ready soon: let the caller decide
			}
			wait = e.RetryAfter
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err // the next attempt could not start before ctx ends
		}
		if werr := sleep(ctx, wait); werr != nil {
			return fmt.Errorf("%w (last attempt: %w)", werr, err)
		}
	}
}

// backoff is the wait before retry number n (1-based): full jitter over an
// exponentially growing, capped window.
func (pol retryPolicy) backoff(n int) time.Duration {
	window := pol.cap
	if n < 32 && pol.base<<(n-1) > 0 && pol.base<<(n-1) < pol.cap {
		window = pol.base << (n - 1)
	}
	if window <= 0 {
		return 0
	}
	return rand.N(window)
}

// sleep waits d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryable decides whether an attempt that failed may run again: the
// failure must be transient, and running the attempt again must not
// repeat a write that may have taken effect.
func retryable(rec *wireRecord, idempotent bool) bool {
	fail, _, writeMayHaveRun := rec.snapshot()
	if fail == nil || !isTransient(fail) {
		return false
	}
	return idempotent || !writeMayHaveRun
}

// IsTransient reports whether err is a failure that may go away on its own
// and so is worth retrying for a request that is safe to repeat: the
// connection could not be made; PostgREST could not reach the database or
// timed out waiting for a connection (503 PGRST000-PGRST002, 504
// PGRST003); PostgreSQL reported a connection (class 08) or resource
// (class 53) problem or an admin shutdown (57P01); or a gateway answered
// 502, 503 or 504 without a PostgREST code, or the connection broke after
// the request was sent. An acquire timeout (ErrAcquireTimeout: the pool
// is saturated) is transient too, though WithRetry does not retry it, as
// it has already waited AcquireTimeout. Other 4xx and 5xx answers, a
// canceled ctx and ErrEmptyAuthToken are not transient.
//
// Transient does not mean safe to resend: for a write, see Error.NeverRan.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, ErrAcquireTimeout) {
		return true
	}
	var e *Error
	if errors.As(err, &e) {
		return isTransient(e)
	}
	return neverSent(err) && !errors.Is(err, ErrEmptyAuthToken)
}

func isTransient(e *Error) bool {
	if e.Status == 0 {
		return e.Err != nil && !errors.Is(e.Err, ErrEmptyAuthToken) &&
			!errors.Is(e.Err, context.Canceled) && !errors.Is(e.Err, context.DeadlineExceeded)
	}
	if statementNeverRan(e) {
		return true
	}
	switch e.Status {
	case 503:
		return e.Code == "" || e.Code == "57P01" || strings.HasPrefix(e.Code, "08") || strings.HasPrefix(e.Code, "53")
	case 502, 504:
		return e.Code == ""
	}
	return false
}

// statementNeverRan reports whether the failure proves that the server did
// not run the request's statement: the connection was never made, or
// PostgREST answered that it could not get to the database (PGRST000,
// PGRST001, PGRST002 with 503; PGRST003 with 504).
func statementNeverRan(e *Error) bool {
	if e.Status == 0 {
		return e.neverSent
	}
	switch e.Code {
	case "PGRST000", "PGRST001", "PGRST002":
		return e.Status == 503
	case "PGRST003":
		return e.Status == 504
	}
	return false
}
