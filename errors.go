package supapool

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Match them with errors.Is; the errors the pool returns
// wrap them with details.
var (
	// ErrPoolClosed is returned by Acquire, WithClient and waiters once
	// Close has been called.
	ErrPoolClosed = errors.New("supapool: pool is closed")

	// ErrAcquireTimeout is matched by the error Acquire returns when no
	// client became free within Config.AcquireTimeout. The concrete error
	// is an *AcquireTimeoutError that carries the pool's Stats.
	ErrAcquireTimeout = errors.New("supapool: timed out waiting for a client")

	// ErrInvalidConfig is matched by every error of Config.Validate and by
	// New's errors about a bad URL, key or Config.
	ErrInvalidConfig = errors.New("supapool: invalid config")

	// ErrUnknownClient is returned by Release and Discard for a client that
	// this pool did not hand out or that is not checked out now (nil, a
	// second Release, a client of another pool). Nothing changes.
	ErrUnknownClient = errors.New("supapool: client is not checked out from this pool (nil, foreign, or already released)")

	// ErrEmptyAuthToken is the error of a request sent with a ctx from
	// WithAuthToken(ctx, ""): it is refused before it leaves rather than
	// sent with the pool's key. Check for a missing user token first.
	ErrEmptyAuthToken = errors.New("supapool: WithAuthToken was given an empty token; the request was not sent (it would have run with the pool's key)")
)

// AcquireTimeoutError is the error Acquire returns after waiting
// Config.AcquireTimeout in vain. It matches ErrAcquireTimeout.
type AcquireTimeoutError struct {
	Waited time.Duration // how long Acquire waited
	Stats  Stats         // the pool's statistics when the wait ended
}

// Error says what happened and what to do about it.
func (e *AcquireTimeoutError) Error() string {
	s := e.Stats
	return fmt.Sprintf("supapool: timed out after %v waiting for a client: all %d of MaxConnections=%d are in use (%d waiting); "+
		"raise Config.MaxConnections or Config.AcquireTimeout, or find code that acquires clients and never releases them "+
		"(acquired %d, released %d)",
		e.Waited, s.ActiveConnections, s.MaxConnections, s.WaitingForConnection, s.TotalAcquired, s.TotalReleased)
}

// Is reports whether target is ErrAcquireTimeout.
func (e *AcquireTimeoutError) Is(target error) bool { return target == ErrAcquireTimeout }
