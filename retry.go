package supapool

import (
	"context"
	"errors"
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

// WithRetry runs fn like WithClient and runs it again, on a fresh client
// from the pool, after a failure that is transient (see IsTransient) and
// safe to repeat, at most Config.MaxRetries times (RetryMax overrides it).
//
// A failure is safe to repeat when the attempt sent only reads (GET,
// HEAD), or when it proves that the statement never ran: the connection
// could not be made, or PostgREST answered 503 PGRST000-PGRST002 or 504
// PGRST003. A write (POST, PATCH, PUT, DELETE, an RPC over POST) that may
// have reached the database is not run again, so an insert never becomes
// two rows, unless the call declares it Idempotent. An attempt whose
// earlier request changed data is not repeated either.
//
// Waits between attempts grow exponentially from Config.RetryDelay with
// full jitter, capped by Config.MaxRetryDelay. A server's Retry-After is
// honoured when it is longer; one beyond MaxRetryDelay, or a wait that
// would outlast ctx's deadline, ends the retries with the last error, and
// so does a request refused by an open circuit breaker (ErrCircuitOpen)
// unless the breaker lets probes through within the wait. When
// ctx ends during a wait, WithRetry returns at once with an error that
// matches both ctx's error and the last attempt's.
//
// The error of the last attempt is returned as WithClient returns it; an
// *Error's Attempts says how many attempts were made.
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
		if d, refused := breakerWait(err); refused && d > wait {
			return err // the circuit breaker stays open past the wait: let the caller decide
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err // the next attempt could not start before ctx ends
		}
		if werr := sleep(ctx, wait); werr != nil {
			return &retryWaitError{ctxErr: werr, last: err}
		}
	}
}

// retryWaitError is WithRetry's error when ctx ends while it waits to
// retry: it matches ctx's error and the last attempt's.
type retryWaitError struct {
	ctxErr, last error
}

func (e *retryWaitError) Error() string {
	return "supapool: " + e.ctxErr.Error() + " while waiting to retry (last attempt: " +
		strings.TrimPrefix(e.last.Error(), "supapool: ") + ")"
}

func (e *retryWaitError) Unwrap() []error { return []error{e.ctxErr, e.last} }

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
