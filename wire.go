package supapool

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	postgrest "github.com/supabase-community/postgrest-go"
)

// wireRecord collects what the requests of one closure call met on the
// wire. The client's transport fills it (see checkout.go); WithClient and
// WithRetry read it after the closure returns. A closure may send requests
// from several goroutines.
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

// maxErrorBody bounds how much of an error response the recorder reads.
// The caller (postgrest-go) still reads all of it.
const maxErrorBody = 64 << 10

// observe classifies one round trip and returns its failure: nil for a
// response below 400, else the *Error that describes it. With a record
// (rec not nil: the request was sent inside a closure) it records the
// round trip, and makes the response's body report its read errors to rec
// (the body is part of the round trip). For a response with status >= 400
// it reads at most maxErrorBody of the body to find PostgREST's error, and
// hands the caller what it read followed by the rest of the body, so that
// the caller sees every byte.
func observe(rec *wireRecord, req *http.Request, resp *http.Response, err error) *Error {
	var fail *Error
	switch {
	case err != nil:
		fail = transportFailure(req, err)
	default:
		body := resp.Body
		if rec != nil {
			body = &observedBody{body: resp.Body, rec: rec, req: req, status: resp.StatusCode}
			resp.Body = body
		}
		if resp.StatusCode >= 400 {
			fail = &Error{Method: req.Method, Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now)}
			prefix, rerr := io.ReadAll(io.LimitReader(body, maxErrorBody))
			var rest io.Reader = body
			if rerr != nil {
				rest = errReader{rerr} // the caller meets the same error at the same place
			}
			resp.Body = readCloser{io.MultiReader(bytes.NewReader(prefix), rest), body}
			parseErrorBody(prefix, fail)
			switch {
			case rerr == nil && len(prefix) < maxErrorBody: // the whole body
				fail.clientText = postgrestText(prefix)
			case fail.Code != "":
				// Longer than the recorder reads: postgrest-go's text is
				// "(CODE) " and a message of which only the start is known.
				fail.clientText, fail.clientTextCut = "("+fail.Code+") ", true
			}
		}
	}
	if rec != nil {
		rec.record(req, fail, err)
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
		// A request cut short by its own ctx, or one that never left,
		// says nothing about the client's connection.
		if err != nil && !fail.neverSent && !fail.ctxEnded {
			r.transportFailed = true
		}
	}
	if !safe && (fail == nil || !statementNeverRan(fail)) {
		r.writeMayHaveRun = true
	}
}

// transportFailure is the failure of req, which got no response but err.
// It is judged by what happened: whether the request can have left (see
// neverSent and unsendable), whether trying again can help (permanent), and
// whether req's ctx has ended. The last is asked of the ctx itself, not of
// err: since Go 1.26 the transport's own ResponseHeaderTimeout error
// matches context.DeadlineExceeded too.
func transportFailure(req *http.Request, err error) *Error {
	refused := unsendable(req)
	return &Error{
		Method:    req.Method,
		Err:       err,
		neverSent: refused || neverSent(err),
		permanent: refused || permanent(err),
		ctxEnded:  req.Context().Err() != nil,
	}
}

// unsendable reports whether req carries a header field (or trailer) that
// net/http refuses to send. net/http validates the fields before it looks
// for a connection, and its error for them ("net/http: invalid header
// field value for ...") has no type to recognise, so the request itself is
// checked, by the same rules: a request that failed and has such a field
// never left, and will fail the same way on every attempt.
func unsendable(req *http.Request) bool {
	for _, h := range []http.Header{req.Header, req.Trailer} {
		for name, values := range h {
			if !validFieldName(name) {
				return true
			}
			for _, v := range values {
				if !validFieldValue(v) {
					return true
				}
			}
		}
	}
	return false
}

// validFieldName reports whether name is a token (RFC 9110, 5.1), as
// net/http requires of a header field's name.
func validFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validFieldValue reports whether v can be sent as a header field's value
// by net/http: no control character but horizontal tab (RFC 9110, 5.5:
// no CR, LF or NUL in particular).
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost reports whether host (a URL's host[:port]) can be sent as the
// Host header: net/http sends an empty Host instead of one with other
// bytes. Non-ASCII names must be given in their punycode (xn--) form.
func validHost(host string) bool {
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) >= 0) {
			return false
		}
	}
	return true
}

// bodyFailed records that reading the body of req's response (status)
// failed with err: the connection broke after the request was sent. For
// an error status the failure is already recorded; for another, a read
// that broke is the request's failure.
func (r *wireRecord) bodyFailed(req *http.Request, status int, err error) {
	ctxEnded := req.Context().Err() != nil
	r.mu.Lock()
	defer r.mu.Unlock()
	if status < 400 {
		r.fail = &Error{Method: req.Method, Err: err, ctxEnded: ctxEnded}
	}
	if !ctxEnded {
		r.transportFailed = true
	}
}

// observedBody is a response body that tells its record when a read fails
// with anything but io.EOF, before the caller has closed it: a connection
// that drops mid-body breaks the request as surely as one that drops
// before the headers.
type observedBody struct {
	body   io.ReadCloser
	rec    *wireRecord
	req    *http.Request
	status int
	closed atomic.Bool // the caller closed the body: later read errors are its own doing
	failed bool        // a read failed and was recorded; reads are not concurrent
}

func (b *observedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err != nil && err != io.EOF && !b.failed && !b.closed.Load() {
		b.failed = true
		b.rec.bodyFailed(b.req, b.status, err)
	}
	return n, err
}

func (b *observedBody) Close() error {
	b.closed.Store(true)
	return b.body.Close()
}

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// parseErrorBody fills fail's Code, Message, Details and Hint from prefix,
// the start of a PostgREST error body ({"code":..., "message":...,
// "details":..., "hint":...}), which may be cut anywhere. It reads token by
// token and keeps what it found before the first token it cannot read, so
// the code, which PostgREST writes first, is found in a body of any size.
// Keys match as encoding/json matches them to struct fields (the last of
// duplicate keys wins, case does not matter).
func parseErrorBody(prefix []byte, fail *Error) {
	dec := json.NewDecoder(bytes.NewReader(prefix))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return
	}
	for dec.More() {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok {
			return
		}
		var v any
		switch {
		case strings.EqualFold(key, "code"):
			err = dec.Decode(&fail.Code)
			fail.noSQLState = err == nil && fail.Code == ""
		case strings.EqualFold(key, "message"):
			err = dec.Decode(&fail.Message)
		case strings.EqualFold(key, "details"):
			if err = dec.Decode(&v); err == nil {
				fail.Details = text(v)
			}
		case strings.EqualFold(key, "hint"):
			if err = dec.Decode(&v); err == nil {
				fail.Hint = text(v)
			}
		default:
			err = dec.Decode(new(json.RawMessage))
		}
		if err != nil {
			return
		}
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

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP
// date. A number of seconds too large for a time.Duration (or for any
// integer) saturates at the longest Duration rather than wrapping around:
// it means "not soon", which ends WithRetry's retries.
func parseRetryAfter(v string, now func() time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if strings.Trim(v, "0123456789") == "" { // delay-seconds = 1*DIGIT
		const maxSeconds = math.MaxInt64 / uint64(time.Second)
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil || s > maxSeconds { // only ErrRange is possible
			return math.MaxInt64
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
