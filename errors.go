package supapool

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
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

	// ErrPoolExhausted is matched by the error Acquire returns at once,
	// without waiting, when Config.MaxWaiting callers already wait for a
	// client (load shedding). The concrete error is a *PoolExhaustedError
	// that carries the pool's Stats. It is transient: answer 503 with a
	// Retry-After and let the caller come back.
	ErrPoolExhausted = errors.New("supapool: pool exhausted: too many callers waiting for a client")

	// ErrCircuitOpen is matched by the error of a request that the pool's
	// circuit breaker (Config.Breaker) refused because the upstream has
	// been failing: the request was not sent, so it is safe to send again
	// (Error.NeverRan is true, and it is transient). The concrete error is
	// a *CircuitOpenError, which says when the breaker lets a probe
	// through. Answer 503 with a Retry-After rather than wait.
	ErrCircuitOpen = errors.New("supapool: circuit breaker is open")

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
	// ErrClientReleased is the error of every request sent by a client
	// after it was released or discarded (a caller kept it): the request
	// is refused before it leaves, and Stats.UseAfterRelease counts it.
	ErrClientReleased = errors.New("supapool: the client was released to the pool; the request was not sent (use a client only between Acquire and Release, or inside its closure)")

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
	return fmt.Sprintf("supapool: timed out after %v waiting for a client: %s (%d waiting); "+
		"raise Config.MaxConnections or Config.AcquireTimeout, or find code that acquires clients and never releases them "+
		"(acquired %d, released %d)",
		e.Waited, inUse(s), s.WaitingForConnection, s.TotalAcquired, s.TotalReleased)
}

// inUse says how many clients are in use, and against which bound: the
// adaptive limit when it is below MaxConnections.
func inUse(s Stats) string {
	if s.Limit < s.MaxConnections {
		return fmt.Sprintf("%d in use at the adaptive limit of %d (MaxConnections=%d), which the server's latency set",
			s.ActiveConnections, s.Limit, s.MaxConnections)
	}
	return fmt.Sprintf("all %d of MaxConnections=%d are in use", s.ActiveConnections, s.MaxConnections)
}

// Is reports whether target is ErrAcquireTimeout.
func (e *AcquireTimeoutError) Is(target error) bool { return target == ErrAcquireTimeout }

// CircuitOpenError is the error of a request refused by the pool's circuit
// breaker: it was not sent. It matches ErrCircuitOpen.
type CircuitOpenError struct {
	Endpoint string // the upstream, as scheme://host
	State    string // "open", or "half-open" when the probes it allows are already out
	// RetryAfter is how long after the refusal the breaker lets probes
	// through (it half-opens); 0 when it is half-open already.
	RetryAfter time.Duration

	halfOpenAt time.Time // when the breaker half-opens, for WithRetry
}

// Error says what happened and what to do about it.
func (e *CircuitOpenError) Error() string {
	if e.State == "half-open" {
		return "supapool: circuit breaker for " + e.Endpoint + " is half-open and its probes are out; " +
			"the request was not sent (safe to retry shortly)"
	}
	return fmt.Sprintf("supapool: circuit breaker for %s is open after repeated transient failures; "+
		"the request was not sent (safe to retry; probes in %v)", e.Endpoint, e.RetryAfter.Round(time.Millisecond))
}

// Is reports whether target is ErrCircuitOpen.
func (e *CircuitOpenError) Is(target error) bool { return target == ErrCircuitOpen }

// Error is a failed PostgREST request as seen on the wire: the HTTP status,
// PostgREST's JSON error body, and the Retry-After the server sent. The
// error from postgrest-go ("(CODE) message") drops the status and headers;
// the pool's transport keeps them, and WithClient and WithRetry return them
// as an *Error that wraps the closure's own error (errors.Is and errors.As
// see through it). Error never contains a key or a token.
type Error struct {
	Method     string        // HTTP method of the failed request
	Status     int           // HTTP status; 0 when no response arrived
	Code       string        // PostgREST or PostgreSQL error code, e.g. "PGRST000", "23505"
	Message    string        // PostgREST's message
	Details    string        // PostgREST's details, if any
	Hint       string        // PostgREST's hint, if any
	RetryAfter time.Duration // the server's Retry-After; 0 when absent
	Attempts   int           // attempts made (WithRetry); 1 for WithClient
	Err        error         // the closure's error

	// What the wire showed about a request that got no response (Status
	// 0); the transport sets them, so that the judgement does not depend
	// on which error the closure returned.
	neverSent bool // the request failed before it reached the server
	permanent bool // the failure will recur on every attempt (see permanent)
	ctxEnded  bool // the request's ctx had ended when it failed: the caller's doing

	noSQLState    bool   // PostgREST's body said "code": "": see lostDatabase
	clientText    string // the error text postgrest-go builds from this response; "" when unknown
	clientTextCut bool   // clientText is only the start of that text (a body over maxErrorBody)
}

// Error describes the failure.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("supapool: ")
	if e.Method != "" {
		b.WriteString(e.Method)
		b.WriteString(": ")
	}
	switch {
	case e.Status != 0:
		b.WriteString(strconv.Itoa(e.Status))
		if e.Code != "" {
			b.WriteString(" " + e.Code)
		}
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
		if e.Details != "" {
			b.WriteString(" (" + e.Details + ")")
		}
		if e.Hint != "" {
			b.WriteString(" hint: " + e.Hint)
		}
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("request failed")
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	return b.String()
}

// NeverRan reports whether the failure proves that the server did not run
// the request, so that sending it again cannot apply a write twice: the
// connection could not be made, the server's certificate was refused (the
// handshake comes before the request), net/http refused to send the
// request's headers, the circuit breaker refused it (ErrCircuitOpen), or
// PostgREST answered 503 PGRST000-PGRST002 or 504 PGRST003. A handler can
// use it to tell its own caller whether a
// retry is safe.
func (e *Error) NeverRan() bool { return statementNeverRan(e) }

// causes reports whether err, returned by a closure, is this failed
// request's own error rather than one the closure made itself after
// handling the failure: it wraps the transport error, it is (or wraps)
// the *Error that RPC returned, or it is (or wraps) the error that
// postgrest-go built from this response, whose text it matches exactly.
func (e *Error) causes(err error) bool {
	if e.Err != nil && errors.Is(err, e.Err) {
		return true
	}
	for ; err != nil; err = errors.Unwrap(err) {
		if err == error(e) || e.isClientText(err.Error()) {
			return true
		}
	}
	return false
}

// isClientText reports whether s is the text postgrest-go built from this
// response.
func (e *Error) isClientText(s string) bool {
	if e.clientText == "" {
		return false
	}
	if e.clientTextCut {
		return strings.HasPrefix(s, e.clientText)
	}
	return s == e.clientText
}

// Unwrap returns the closure's error.
func (e *Error) Unwrap() error { return e.Err }

// neverSent reports whether err proves the request never reached the
// server: the connection could not be made (refused, DNS, dial timeout),
// the server's certificate was refused during the TLS handshake, which
// precedes any byte of the request, or the pool refused the request before
// it left (ErrEmptyAuthToken, ErrCircuitOpen).
func neverSent(err error) bool {
	if errors.Is(err, ErrEmptyAuthToken) || errors.Is(err, ErrCircuitOpen) || certificateError(err) {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// permanent reports whether err, a request's transport error, will recur
// on every attempt: the request was refused before it left
// (ErrEmptyAuthToken), or the server's certificate is not trusted.
// (Requests that net/http refuses to send are recognised by their headers:
// see unsendable.)
func permanent(err error) bool {
	return errors.Is(err, ErrEmptyAuthToken) || certificateError(err)
}

// certificateError reports whether err is the refusal of a server's
// certificate, by its type: crypto/tls wraps the verifier's error in a
// *tls.CertificateVerificationError; the x509 types cover a custom
// transport that returns them bare.
func certificateError(err error) bool {
	var (
		verify     *tls.CertificateVerificationError
		authority  x509.UnknownAuthorityError
		invalid    x509.CertificateInvalidError
		hostname   x509.HostnameError
		roots      x509.SystemRootsError
		constraint x509.ConstraintViolationError
		critical   x509.UnhandledCriticalExtension
		algorithm  x509.InsecureAlgorithmError
	)
	return errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &invalid) ||
		errors.As(err, &hostname) || errors.As(err, &roots) || errors.As(err, &constraint) ||
		errors.As(err, &critical) || errors.As(err, &algorithm)
}

// IsTransient reports whether err is a failure that may go away on its own
// and so is worth retrying for a request that is safe to repeat: the
// connection could not be made; PostgREST could not reach the database or
// timed out waiting for a connection (503 PGRST000-PGRST002, 504
// PGRST003); PostgreSQL reported a connection (class 08) or resource
// (class 53) problem or an admin shutdown (57P01); or a gateway answered
// 502, 503 or 504 without a PostgREST code; or the connection broke after
// the request was sent (reset, EOF, a body cut mid-stream, no response
// headers within Config.ResponseHeaderTimeout). A request refused by the
// circuit breaker (ErrCircuitOpen) is transient, and WithRetry retries it
// only when the breaker lets probes through within its next wait. An
// acquire timeout (ErrAcquireTimeout: the pool is saturated) is transient
// too, though WithRetry does not retry it, as it has already waited
// AcquireTimeout. Other 4xx and 5xx answers, a request whose own ctx
// ended, an untrusted server certificate, a request net/http refused to
// send (a header with a newline, say) and ErrEmptyAuthToken are not
// transient.
//
// Transient does not mean safe to resend: for a write, see Error.NeverRan.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var waited *retryWaitError
	if errors.As(err, &waited) {
		return false // ctx ended while WithRetry waited: the call is over
	}
	if errors.Is(err, ErrAcquireTimeout) || errors.Is(err, ErrPoolExhausted) {
		return true
	}
	var e *Error
	if errors.As(err, &e) {
		return isTransient(e)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return neverSent(err) && !permanent(err)
}

func isTransient(e *Error) bool {
	if e.Status == 0 {
		return e.Err != nil && !e.ctxEnded && !e.permanent
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
	return e.lostDatabase()
}

// lostDatabase reports whether PostgREST answered that the database failed
// without saying how: an error body with an empty "code" and message.
// PostgREST maps a SQLSTATE to an HTTP status and falls back to 400 for one
// it does not know; a statement cut off by its connection to PostgreSQL
// dropping (a server shutting down or restarting) reaches it with no
// SQLSTATE at all, and comes back as 400 {"code":"","message":""}. Observed
// on the real stack with a read replica restarting under load. A request
// that is wrong gets a code.
func (e *Error) lostDatabase() bool {
	return e.Status == 400 && e.noSQLState && e.Message == ""
}

// statementNeverRan reports whether the failure proves that the server did
// not run the request's statement: the request never left, or
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

// PoolExhaustedError is the error Acquire returns at once when
// Config.MaxWaiting callers already wait. It matches ErrPoolExhausted.
type PoolExhaustedError struct {
	Stats Stats // the pool's statistics when the Acquire was refused
}

// Error says what happened and what to do about it.
func (e *PoolExhaustedError) Error() string {
	s := e.Stats
	return fmt.Sprintf("supapool: pool exhausted: %s and %d callers already wait (MaxWaiting); "+
		"answer 503 with Retry-After and let the caller come back, or raise Config.MaxConnections or Config.MaxWaiting",
		inUse(s), s.WaitingForConnection)
}

// Is reports whether target is ErrPoolExhausted.
func (e *PoolExhaustedError) Is(target error) bool { return target == ErrPoolExhausted }
