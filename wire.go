package supapool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/supabase-community/postgrest-go"
)

// wireRecord collects what the requests of one closure call met on the
// wire. The client's transport fills it (see checkout.go); WithClient and
// WithRetry read it after the closure returns. A closure may send requests from several goroutines.
type wireRecord struct {
	mu sync.Mutex
	// fail is the last request that failed (transport error or status >= 400).
	fail *Error
	// transportFailed: a request broke at the transport after it may have
	// been written (reset, EOF, timeout): the client's connection is suspect.
	transportFailed bool
	// writeMayHaveRun: a request that is not GET or HEAD may have changed
	// data (it succeeded, or failed in a way that does not prove otherwise).
	writeMayHaveRun bool
}

// maxErrorBody bounds how much of an error response the transport reads.
const maxErrorBody = 64 << 10

// observe classifies one round trip: it returns nil for a response below
// 400, and otherwise the *Error that describes the failure. For a response
// with status >= 400 it reads the (small) error body and replaces
// resp.Body with a copy, so that postgrest-go still sees the whole body.
func observe(req *http.Request, resp *http.Response, err error) *Error {
	switch {
	case err != nil:
		return &Error{Method: req.Method, Err: err, neverSent: neverSent(err)}
	case resp.StatusCode < 400:
		return nil
	}
	fail := &Error{Method: req.Method, Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now)}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr == nil {
		var pg struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Details any    `json:"details"`
			Hint    any    `json:"hint"`
		}
		if json.Unmarshal(body, &pg) == nil {
			fail.Code, fail.Message = pg.Code, pg.Message
			fail.Details, fail.Hint = text(pg.Details), text(pg.Hint)
		}
		if len(body) < maxErrorBody {
			fail.clientText = postgrestText(body)
		}
	}
	return fail
}

// postgrestText returns the error text postgrest-go builds from an error
// body (it formats it without %w, so this text is the only link between
// its error and the response), or "" where it would build none.
func postgrestText(body []byte) string {
	var e *postgrest.ExecuteError
	if err := json.Unmarshal(body, &e); err != nil {
		return "error parsing error response: " + err.Error()
	}
	if e == nil {
		return ""
	}
	return "(" + e.Code + ") " + e.Message
}

// record adds one round trip, classified by observe (fail nil: it
// succeeded), to the record.
func (r *wireRecord) record(req *http.Request, fail *Error, err error) {
	safe := req.Method == http.MethodGet || req.Method == http.MethodHead
	r.mu.Lock()
	defer r.mu.Unlock()
	if fail != nil {
		r.fail = fail
		// A request cut short by its own ctx says nothing about the client.
		if err != nil && !fail.neverSent && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			r.transportFailed = true
		}
	}
	if !safe && (fail == nil || !statementNeverRan(fail)) {
		r.writeMayHaveRun = true
	}
}

// snapshot returns the last failure and the flags.
func (r *wireRecord) snapshot() (fail *Error, transportFailed, writeMayHaveRun bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fail, r.transportFailed, r.writeMayHaveRun
}

// text renders a JSON value of PostgREST's details or hint as text.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now func() time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now()); d > 0 {
			return d
		}
	}
	return 0
}
