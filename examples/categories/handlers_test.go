package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/supapool/supapool"
)

const (
	fakeServiceKey = "service-role-key-not-for-users"
	fakeUserJWT    = "user-a.jwt.signature"
)

// fakeAnswer is one canned PostgREST answer.
type fakeAnswer struct {
	status     int
	retryAfter string
	body       string
}

// fakeRequest is what the fake saw of one request.
type fakeRequest struct {
	Method, Path, Query string
	Auth, APIKey        []string
	Prefer              string
	Body                string
}

// fakePostgREST answers /rest/v1/* with its answers in turn (the last one
// repeats) and records the requests; GET /rest/v1/ (the health check) is
// answered 200 and not recorded.
type fakePostgREST struct {
	answers []fakeAnswer
	block   chan struct{} // if set, table requests wait for it to close
	arrived chan struct{} // if set, gets a value when a table request arrives

	mu   sync.Mutex
	reqs []fakeRequest
}

func (f *fakePostgREST) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/rest/v1/" || r.URL.Path == "/rest/v1" {
		w.Header().Set("Content-Type", "application/openapi+json")
		_, _ = io.WriteString(w, "{}")
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, fakeRequest{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Auth: r.Header.Values("Authorization"), APIKey: r.Header.Values("apikey"),
		Prefer: r.Header.Get("Prefer"), Body: string(body),
	})
	a := f.answers[min(len(f.reqs), len(f.answers))-1]
	f.mu.Unlock()
	if f.arrived != nil {
		f.arrived <- struct{}{}
	}
	if f.block != nil {
		<-f.block
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func (f *fakePostgREST) requests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.reqs...)
}

// startFake starts f and the app on a pool for it.
func startFake(t *testing.T, f *fakePostgREST, cfg supapool.Config) *apiClient {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close) // runs after startApp's cleanup closed the pool
	c, _ := startApp(t, srv.URL, fakeServiceKey, cfg)
	return c
}

func fakeConfig() supapool.Config {
	cfg := supapool.DevelopmentConfig()
	cfg.RetryDelay = time.Millisecond // keep retried cases fast
	return cfg
}

const catJSON = `{"id":"c1","budget_id":"b1","owner_id":"user-a","name":"Food","group_name":null,` +
	`"sort_order":0,"is_income":false,"created_at":"2024-05-01T10:00:00.123456+00:00","updated_at":"2024-05-01T10:00:00.123456+00:00"}`

func TestHandlers(t *testing.T) {
	pgErr := func(status int, code, msg string) fakeAnswer {
		return fakeAnswer{status: status, body: `{"code":"` + code + `","message":"` + msg + `","details":null,"hint":null}`}
	}
	ok := func(status int, body string) fakeAnswer { return fakeAnswer{status: status, body: body} }
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		auth       string // the Authorization header: "" for the user's JWT, "-" for none
		body       any
		answers    []fakeAnswer
		wantStatus int
		wantError  string // substring of the "error" field
		retryAfter string // wanted Retry-After
		wantSent   int    // requests the fake should see
		check      func(t *testing.T, r reply, sent []fakeRequest)
	}{
		{
			name: "no token", method: "GET", path: "/budgets/b1/categories", auth: "-",
			wantStatus: 401, wantError: "missing bearer token",
		},
		{
			name: "basic auth is no token", method: "GET", path: "/budgets/b1/categories", auth: "Basic dXNlcjpwdw==",
			wantStatus: 401, wantError: "missing bearer token",
		},
		{
			name: "empty bearer", method: "DELETE", path: "/categories/c1", auth: "Bearer  ",
			wantStatus: 401, wantError: "missing bearer token",
		},
		{
			name: "list", method: "GET", path: "/budgets/b1/categories",
			answers:    []fakeAnswer{ok(200, "["+catJSON+"]")},
			wantStatus: 200, wantSent: 1,
			check: func(t *testing.T, r reply, sent []fakeRequest) {
				cats := decode[[]Category](t, r)
				require.Len(t, cats, 1)
				assert.Equal(t, "Food", cats[0].Name)
				assert.Equal(t, "/rest/v1/categories", sent[0].Path)
				assert.Contains(t, sent[0].Query, "budget_id=eq.b1")
				assert.Contains(t, sent[0].Query, "order=sort_order.asc")
			},
		},
		{
			name: "empty list is [] not null", method: "GET", path: "/budgets/b1/categories",
			answers:    []fakeAnswer{ok(200, "[]")},
			wantStatus: 200, wantSent: 1,
			check: func(t *testing.T, r reply, _ []fakeRequest) {
				assert.JSONEq(t, "[]", string(r.Body))
			},
		},
		{
			name: "duplicate is 409", method: "POST", path: "/budgets/b1/categories", body: NewCategory{Name: "Food"},
			answers:    []fakeAnswer{pgErr(409, "23505", "duplicate key value violates unique constraint")},
			wantStatus: 409, wantError: "duplicate key", wantSent: 1,
			check: func(t *testing.T, _ reply, sent []fakeRequest) {
				assert.Equal(t, "POST", sent[0].Method)
				assert.Contains(t, sent[0].Prefer, "return=representation")
				assert.JSONEq(t, `{"budget_id":"b1","name":"Food","sort_order":0,"is_income":false}`, sent[0].Body)
			},
		},
		{
			name: "bad uuid is 400", method: "GET", path: "/budgets/nope/categories",
			answers:    []fakeAnswer{pgErr(400, "22P02", `invalid input syntax for type uuid: \"nope\"`)},
			wantStatus: 400, wantError: "invalid input syntax", wantSent: 1,
		},
		{
			name: "expired jwt is 401", method: "GET", path: "/budgets/b1/categories",
			answers:    []fakeAnswer{pgErr(401, "PGRST301", "JWT expired")},
			wantStatus: 401, wantError: "JWT expired", wantSent: 1,
		},
		{
			name: "database down is 503 with the server's Retry-After", method: "GET", path: "/budgets/b1/categories",
			answers: []fakeAnswer{{status: 503, retryAfter: "30",
				body: `{"code":"PGRST000","message":"Database connection error. Retrying the connection."}`}},
			// 30s exceeds MaxRetryDelay, so WithRetry gives up at once.
			wantStatus: 503, retryAfter: "30", wantError: "temporarily unavailable", wantSent: 1,
		},
		{
			name: "read retried after PGRST000", method: "GET", path: "/budgets/b1/categories",
			answers:    []fakeAnswer{pgErr(503, "PGRST000", "Database connection error"), ok(200, "["+catJSON+"]")},
			wantStatus: 200, wantSent: 2,
		},
		{
			name: "insert retried when it provably never ran", method: "POST", path: "/budgets/b1/categories",
			body:       map[string]any{"name": "Food"},
			answers:    []fakeAnswer{pgErr(503, "PGRST001", "Database client error"), ok(201, "["+catJSON+"]")},
			wantStatus: 201, wantSent: 2,
		},
		{
			name: "insert not retried when it may have run", method: "POST", path: "/budgets/b1/categories",
			body:       map[string]any{"name": "Food"},
			answers:    []fakeAnswer{ok(502, "bad gateway")},
			wantStatus: 503, retryAfter: "1", wantSent: 1,
		},
		{
			name: "idempotent update retried after 502", method: "PATCH", path: "/categories/c1",
			body:       map[string]any{"name": "Groceries"},
			answers:    []fakeAnswer{ok(502, "bad gateway"), ok(200, "["+catJSON+"]")},
			wantStatus: 200, wantSent: 2,
		},
		{
			name: "other 5xx is 500 and not retried", method: "GET", path: "/budgets/b1/categories",
			answers:    []fakeAnswer{pgErr(500, "XX000", "internal_error")},
			wantStatus: 500, wantError: "internal error", wantSent: 1,
		},
		{
			name: "update", method: "PATCH", path: "/categories/c1", body: map[string]any{"name": "Groceries"},
			answers:    []fakeAnswer{ok(200, "["+catJSON+"]")},
			wantStatus: 200, wantSent: 1,
			check: func(t *testing.T, _ reply, sent []fakeRequest) {
				assert.Equal(t, "PATCH", sent[0].Method)
				assert.Equal(t, "id=eq.c1", sent[0].Query)
				assert.JSONEq(t, `{"name":"Groceries"}`, sent[0].Body)
			},
		},
		{
			name: "update of an invisible row is 404", method: "PATCH", path: "/categories/c1", body: map[string]any{"name": "x"},
			answers:    []fakeAnswer{ok(200, "[]")},
			wantStatus: 404, wantError: "not found", wantSent: 1,
		},
		{
			name: "delete", method: "DELETE", path: "/categories/c1",
			answers:    []fakeAnswer{ok(200, "["+catJSON+"]")},
			wantStatus: 204, wantSent: 1,
		},
		{
			name: "delete of an invisible row is 404", method: "DELETE", path: "/categories/c1",
			answers:    []fakeAnswer{ok(200, "[]")},
			wantStatus: 404, wantError: "not found", wantSent: 1,
		},
		{
			name: "missing name", method: "POST", path: "/budgets/b1/categories", body: map[string]any{"sort_order": 1},
			wantStatus: 400, wantError: "name is required",
		},
		{
			name: "blank name", method: "POST", path: "/budgets/b1/categories", body: map[string]any{"name": "  "},
			wantStatus: 400, wantError: "name is required",
		},
		{
			name: "owner_id may not be set", method: "POST", path: "/budgets/b1/categories",
			body:       map[string]any{"name": "Food", "owner_id": "user-b"},
			wantStatus: 400, wantError: "unknown field",
		},
		{
			name: "not JSON", method: "POST", path: "/budgets/b1/categories", body: "name=Food",
			wantStatus: 400, wantError: "not a valid JSON object",
		},
		{
			name: "two objects", method: "POST", path: "/budgets/b1/categories", body: `{"name":"a"} {"name":"b"}`,
			wantStatus: 400, wantError: "single JSON object",
		},
		{
			name: "body too large", method: "POST", path: "/budgets/b1/categories",
			body:       `{"name":"` + strings.Repeat("x", maxBodyBytes) + `"}`,
			wantStatus: 413, wantError: "too large",
		},
		{
			name: "empty update", method: "PATCH", path: "/categories/c1", body: map[string]any{},
			wantStatus: 400, wantError: "nothing to update",
		},
		{
			name: "update to a blank name", method: "PATCH", path: "/categories/c1", body: map[string]any{"name": ""},
			wantStatus: 400, wantError: "name must not be empty",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answers := tc.answers
			if answers == nil {
				answers = []fakeAnswer{{status: 500, body: `{"message":"unexpected request"}`}}
			}
			f := &fakePostgREST{answers: answers}
			c := startFake(t, f, fakeConfig())
			var headers []string
			switch tc.auth {
			case "":
				headers = []string{"Authorization", "Bearer " + fakeUserJWT}
			case "-":
			default:
				headers = []string{"Authorization", tc.auth}
			}
			r := c.do(tc.method, tc.path, "", tc.body, headers...)

			assert.Equal(t, tc.wantStatus, r.Status, "body: %s", r.Body)
			if r.Status != http.StatusNoContent {
				assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
			}
			assert.NotContains(t, string(r.Body), fakeUserJWT)
			assert.NotContains(t, string(r.Body), fakeServiceKey)
			if tc.wantError != "" {
				assert.Contains(t, r.errMsg(), tc.wantError)
			} else if r.Status >= 400 {
				assert.NotEmpty(t, r.errMsg())
			}
			assert.Equal(t, tc.retryAfter, r.Header.Get("Retry-After"))
			if tc.wantStatus == 401 && tc.wantSent == 0 {
				assert.Equal(t, "Bearer", r.Header.Get("WWW-Authenticate"))
			}

			sent := f.requests()
			require.Len(t, sent, tc.wantSent)
			for _, s := range sent {
				// The user's JWT replaces the pool's key in Authorization
				// (exactly one header); apikey stays the pool's key.
				assert.Equal(t, []string{"Bearer " + fakeUserJWT}, s.Auth)
				assert.Equal(t, []string{fakeServiceKey}, s.APIKey)
			}
			if tc.check != nil {
				tc.check(t, r, sent)
			}
		})
	}
}

// TestAcquireTimeout: when every pooled client stays busy for
// AcquireTimeout, the API answers 503 at once instead of queueing.
func TestAcquireTimeout(t *testing.T) {
	f := &fakePostgREST{
		answers: []fakeAnswer{{status: 200, body: "[]"}},
		block:   make(chan struct{}),
		arrived: make(chan struct{}, 2),
	}
	cfg := fakeConfig()
	cfg.MaxConnections, cfg.MinConnections = 1, 0
	cfg.AcquireTimeout = 50 * time.Millisecond
	c := startFake(t, f, cfg)

	first := make(chan reply, 1)
	go func() {
		first <- c.do("GET", "/budgets/b1/categories", fakeUserJWT, nil)
	}()
	<-f.arrived // the only client is now busy

	r := c.do("GET", "/budgets/b1/categories", fakeUserJWT, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.Status, "body: %s", r.Body)
	assert.Equal(t, "1", r.Header.Get("Retry-After"))
	assert.Contains(t, r.errMsg(), "busy")

	close(f.block)
	assert.Equal(t, http.StatusOK, (<-first).Status)
	assert.Len(t, f.requests(), 1)
}

// TestHealthAndPoolHeaders: the health endpoint needs no token, and
// loopback requests get the X-Pool-* headers.
func TestHealthAndPoolHeaders(t *testing.T) {
	f := &fakePostgREST{answers: []fakeAnswer{{status: 500, body: "{}"}}}
	c := startFake(t, f, fakeConfig())
	r := c.do("GET", "/health/pool", "", nil)
	assert.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	assert.Contains(t, string(r.Body), `"healthy":true`)
	assert.NotContains(t, string(r.Body), fakeServiceKey)
	assert.NotEmpty(t, r.Header.Get("X-Pool-Total-Connections"))
	assert.NotEmpty(t, r.Header.Get("X-Pool-Idle-Connections"))
	assert.Empty(t, f.requests())
}

// TestMetrics: /metrics shows the pool's live numbers, and no secret.
func TestMetrics(t *testing.T) {
	f := &fakePostgREST{answers: []fakeAnswer{{status: 200, body: "[" + catJSON + "]"}}}
	c := startFake(t, f, fakeConfig())
	require.Equal(t, http.StatusOK, c.do("GET", "/budgets/b1/categories", fakeUserJWT, nil).Status)
	r := c.do("GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	for _, line := range []string{
		`supapool_acquires_total{pool="categories"} 1`,
		`supapool_connections{pool="categories",state="used"} 0`,
		`supapool_connections_max{pool="categories"} 5`,
		`supapool_requests_total{code="200",method="GET",pool="categories"} 1`,
		`supapool_acquire_wait_seconds_count{pool="categories"} 1`,
		`supapool_connection_use_seconds_count{pool="categories"} 1`,
		`go_goroutines `,
	} {
		assert.Contains(t, string(r.Body), line)
	}
	assert.NotContains(t, string(r.Body), fakeServiceKey)
	assert.NotContains(t, string(r.Body), fakeUserJWT)
}

// TestCircuitOpen: once the pool's circuit breaker has opened on a failing
// database, requests are answered 503 at once without being sent, with a
// Retry-After that says when the breaker lets requests through again.
func TestCircuitOpen(t *testing.T) {
	f := &fakePostgREST{answers: []fakeAnswer{{status: 503,
		body: `{"code":"PGRST000","message":"Database connection error. Retrying the connection."}`}}}
	cfg := fakeConfig()
	cfg.Breaker = supapool.BreakerConfig{Enabled: true, ConsecutiveFailures: 2, OpenTimeout: 30 * time.Second}
	c := startFake(t, f, cfg)
	retryAfter := func(r reply) int {
		n, err := strconv.Atoi(r.Header.Get("Retry-After"))
		require.NoError(t, err, "Retry-After %q", r.Header.Get("Retry-After"))
		return n
	}

	// The list's retries open the breaker after two failures, and the
	// third attempt does not wait 30s for it.
	start := time.Now()
	r := c.do("GET", "/budgets/b1/categories", fakeUserJWT, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.Status, "body: %s", r.Body)
	assert.Contains(t, r.errMsg(), "temporarily unavailable")
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.Equal(t, 30, retryAfter(r))
	require.Len(t, f.requests(), 2)

	// A write is refused before it leaves.
	r = c.do("POST", "/budgets/b1/categories", fakeUserJWT, map[string]any{"name": "Food"})
	assert.Equal(t, http.StatusServiceUnavailable, r.Status, "body: %s", r.Body)
	assert.InDelta(t, 30, retryAfter(r), 5)
	assert.Len(t, f.requests(), 2)

	r = c.do("GET", "/health/pool", "", nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.Status)
	assert.Contains(t, string(r.Body), `"breaker":"open"`)
}

// TestOverloadAndBreaker503s: load shedding (ErrPoolExhausted) and the
// circuit breaker (ErrCircuitOpen) are 503s with a Retry-After in seconds.
func TestOverloadAndBreaker503s(t *testing.T) {
	a := &api{log: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		err        error
		retryAfter string
		msg        string
	}{
		{fmt.Errorf("list: %w", supapool.ErrPoolExhausted), "1", "busy"},
		{&supapool.CircuitOpenError{State: "open", RetryAfter: 2500 * time.Millisecond}, "3", "temporarily unavailable"},
		{&supapool.CircuitOpenError{State: "open", RetryAfter: time.Millisecond}, "1", "temporarily unavailable"},
		{&supapool.CircuitOpenError{State: "half-open"}, "1", "temporarily unavailable"},
		{&supapool.Error{Method: "GET", Err: &supapool.CircuitOpenError{State: "open", RetryAfter: 4 * time.Second}}, "4", "temporarily unavailable"},
	} {
		rec := httptest.NewRecorder()
		a.writeError(rec, httptest.NewRequest("GET", "/budgets/b1/categories", nil), tc.err)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "%v", tc.err)
		assert.Equal(t, tc.retryAfter, rec.Header().Get("Retry-After"), "%v", tc.err)
		assert.Contains(t, rec.Body.String(), tc.msg)
	}
}
