package supapool

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// breaker is the circuit breaker of one upstream endpoint (the pool's URL,
// and with Config.ReadReplicas each replica: router.go gives every endpoint
// its own), and the layer of the request path in front of that endpoint's
// transport:
//
//	client's own transport (checkout.go) -> ... -> breaker -> the sized http.Transport
//
// It asks gobreaker's TwoStepCircuitBreaker whether a request may leave
// (Allow), and reports the outcome with the done func that Allow returned.
// A refused request fails with a *CircuitOpenError and is not sent.
//
// The outcome is judged from the *Error that observe (wire.go) makes of the
// round trip, and observe must run only once per response, since it reads
// the error body. So the breaker does not judge requests itself: the
// client's own transport, which observes every response anyway, puts a
// breakerReport in the request's ctx (withBreakerReport); the breaker
// leaves its done func there, and the client's transport calls report with
// observe's result. A request that comes without a report (none does
// today) is observed here instead, since nobody above will.
type breaker struct {
	endpoint string // scheme://host: no path, no user info
	base     http.RoundTripper
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	timeout  time.Duration // BreakerConfig.OpenTimeout
	log      *slog.Logger
	epoch    time.Time
	// st is the gobreaker.State the breaker last changed to, and
	// halfOpenAt when the breaker, last opened, lets probes through, as
	// time.Since(epoch). Both are set by changed, under gobreaker's lock,
	// and read without it, so that Stats (under Pool.mu) never takes that
	// lock: gobreaker changes from open to half-open lazily, when asked,
	// and logs as it does.
	st         atomic.Int32
	halfOpenAt atomic.Int64
}

// newBreaker returns the breaker of the endpoint rawURL in front of base.
// cfg has its defaults applied.
func newBreaker(rawURL string, base http.RoundTripper, cfg BreakerConfig, log *slog.Logger) *breaker {
	b := &breaker{endpoint: endpointName(rawURL), base: base, timeout: cfg.OpenTimeout, log: log, epoch: time.Now()}
	failures := cfg.ConsecutiveFailures
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:          b.endpoint,
		MaxRequests:   cfg.HalfOpenRequests,
		Timeout:       cfg.OpenTimeout,
		ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded:    func(err error) bool { return err == errOutcomeIgnored },
		OnStateChange: b.changed,
	})
	return b
}

// endpointName is rawURL (validated by New) as scheme://host.
func endpointName(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host
}

// The outcomes a round trip reports to gobreaker, besides nil (a success).
var (
	errOutcomeUnwell  = errors.New("the upstream is unwell")
	errOutcomeIgnored = errors.New("says nothing about the upstream")
)

// RoundTrip sends req if the breaker allows it, and otherwise fails at once
// with a *CircuitOpenError, without sending anything.
func (b *breaker) RoundTrip(req *http.Request) (*http.Response, error) {
	done, err := b.cb.Allow()
	if err != nil {
		closeBody(req)
		return nil, b.refusal(err)
	}
	reported := false
	defer func() {
		if !reported { // base panicked: count it, so that a probe is not lost
			done(errOutcomeUnwell)
		}
	}()
	resp, err := b.base.RoundTrip(req)
	reported = true
	if r, ok := req.Context().Value(breakerReportKey{}).(*breakerReport); ok {
		r.done = done
	} else {
		done(outcome(req, observe(nil, req, resp, err)))
	}
	return resp, err
}

// refusal is the error of a request that Allow refused with err.
func (b *breaker) refusal(err error) *CircuitOpenError {
	e := &CircuitOpenError{Endpoint: b.endpoint, State: "half-open"}
	if errors.Is(err, gobreaker.ErrOpenState) {
		e.State = "open"
		at := time.Duration(b.halfOpenAt.Load())
		e.halfOpenAt = b.epoch.Add(at)
		e.RetryAfter = max(at-time.Since(b.epoch), 0)
	}
	return e
}

// outcome is what the round trip of req, which observe judged fail (nil:
// an answer below 400), says about the upstream: nil (it is well),
// errOutcomeUnwell, or errOutcomeIgnored when req's own ctx ended (the
// caller gave up; that a slow statement or a caller's short deadline ends
// requests says nothing about the upstream's health).
func outcome(req *http.Request, fail *Error) error {
	switch {
	case fail == nil:
		return nil
	case req.Context().Err() != nil:
		return errOutcomeIgnored
	case isTransient(fail):
		return errOutcomeUnwell
	}
	return nil // an answer: a 4xx, or another 5xx
}

// changed records and logs the breaker's state changes. gobreaker calls it
// with its lock held, so it does nothing else (and Config.Logger must not
// send requests through the pool).
func (b *breaker) changed(_ string, from, to gobreaker.State) {
	b.st.Store(int32(to))
	switch to {
	case gobreaker.StateOpen:
		b.halfOpenAt.Store(int64(time.Since(b.epoch) + b.timeout))
		msg := "supapool: circuit breaker opened: the upstream failed repeatedly; requests fail with ErrCircuitOpen until it lets a probe through"
		if from == gobreaker.StateHalfOpen {
			msg = "supapool: circuit breaker opened again: a probe failed; requests fail with ErrCircuitOpen until it lets a probe through"
		}
		b.log.Warn(msg, "endpoint", b.endpoint, "probeIn", b.timeout)
	case gobreaker.StateHalfOpen:
		b.log.Debug("supapool: circuit breaker half-open: letting probes through", "endpoint", b.endpoint)
	case gobreaker.StateClosed:
		b.log.Info("supapool: circuit breaker closed: the upstream answers again", "endpoint", b.endpoint)
	}
}

// state is the breaker's state for Stats: "closed", "open", "half-open",
// or "" for no breaker (b nil). An open breaker whose OpenTimeout has
// passed is half-open, as gobreaker will find when next asked.
func (b *breaker) state() string {
	if b == nil {
		return ""
	}
	st := gobreaker.State(b.st.Load())
	if st == gobreaker.StateOpen && time.Since(b.epoch) > time.Duration(b.halfOpenAt.Load()) {
		st = gobreaker.StateHalfOpen
	}
	return st.String()
}

// breakerReportKey is the ctx key of a request's breakerReport.
type breakerReportKey struct{}

// breakerReport carries the done func of the breaker that let one request
// through up to the client's own transport, which calls report once it has
// observed the response. It serves one round trip.
type breakerReport struct {
	done func(error) // nil until a breaker let the request through
}

// withBreakerReport returns req with a fresh breakerReport in its ctx, or
// req and nil when the pool has no breaker.
func (p *Pool) withBreakerReport(req *http.Request) (*http.Request, *breakerReport) {
	if p.breaker == nil {
		return req, nil
	}
	r := &breakerReport{}
	return req.WithContext(context.WithValue(req.Context(), breakerReportKey{}, r)), r
}

// report tells the breaker that let req through (if any) how its round trip
// went: fail is observe's judgement of it. r may be nil.
func (r *breakerReport) report(req *http.Request, fail *Error) {
	if r == nil || r.done == nil {
		return
	}
	r.done(outcome(req, fail))
	r.done = nil
}

// finish tells the attempt's breaker its outcome. r may be nil.
func (r *breakerReport) finish(outcome error) {
	if r != nil && r.done != nil {
		r.done(outcome)
		r.done = nil
	}
}

// handTo passes the attempt's breaker on to outer, the client transport's
// report, which will judge the answer. r may be nil.
func (r *breakerReport) handTo(outer *breakerReport) {
	if r != nil && outer != nil {
		outer.done, r.done = r.done, nil
	}
}

// breakerWait returns how long from now the breaker that refused the
// request behind err lets probes through, and whether err is such a
// refusal at all.
func breakerWait(err error) (time.Duration, bool) {
	var e *CircuitOpenError
	if !errors.As(err, &e) {
		return 0, false
	}
	if e.halfOpenAt.IsZero() {
		return 0, true // half-open already
	}
	return time.Until(e.halfOpenAt), true
}
