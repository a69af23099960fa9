package supapool_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

// reply is one scripted answer of a fake PostgREST.
type reply struct {
	status     int
	body       string
	retryAfter string
	drop       bool // read the request, then close the connection without answering
}

var (
	ok200       = reply{status: 200, body: `[{"id":1}]`}
	pgrst000    = reply{status: 503, body: `{"code":"PGRST000","message":"Database connection error. Retrying the connection.","details":"connection refused","hint":null}`}
	pgrst000RA  = reply{status: 503, retryAfter: "1", body: pgrst000.body}
	pgrst003    = reply{status: 504, body: `{"code":"PGRST003","message":"Timed out acquiring connection from connection pool.","details":null,"hint":null}`}
	undefCol    = reply{status: 400, body: `{"code":"42703","message":"column categories.nope does not exist","details":null,"hint":"Perhaps you meant to reference the column \"categories.name\"."}`}
	gateway502  = reply{status: 502, body: `<html><body><h1>502 Bad Gateway</h1></body></html>`}
	dropped     = reply{drop: true}
	admin57P01  = reply{status: 503, body: `{"code":"57P01","message":"terminating connection due to administrator command"}`}
	uniqueViol  = reply{status: 409, body: `{"code":"23505","message":"duplicate key value violates unique constraint \"categories_pkey\"","details":"Key (id)=(1) already exists.","hint":null}`}
	gateway504  = reply{status: 504, body: `upstream timed out`}
	noAuthJWT   = reply{status: 401, body: `{"code":"PGRST301","message":"JWT expired"}`}
	missingTbl  = reply{status: 404, body: `{"code":"42P01","message":"relation \"public.nope\" does not exist"}`}
	successPost = reply{status: 201, body: `[{"id":1}]`}
)

// fakeREST is an httptest server that answers from a script (the last
// reply repeats) and counts the requests it read.
type fakeREST struct {
	*httptest.Server
	mu       sync.Mutex
	script   []reply
	requests int
}

func newFakeREST(t *testing.T, script ...reply) *fakeREST {
	f := &fakeREST{script: script}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		f.mu.Lock()
		rep := f.script[min(f.requests, len(f.script)-1)]
		f.requests++
		f.mu.Unlock()
		if rep.drop {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if rep.retryAfter != "" {
			w.Header().Set("Retry-After", rep.retryAfter)
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeREST) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// newService makes a pool on url with fast retries, closed at the test's end.
func newService(t *testing.T, url string, cfg supapool.Config) *supapool.PooledService {
	t.Helper()
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 4
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = time.Millisecond
	}
	p, err := supapool.New(url, testKey, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	return supapool.NewPooledService(p)
}

func read(ctx context.Context, c *supabase.Client) error {
	var out []map[string]any
	_, err := c.From("categories").Select("*", "", false).ExecuteToWithContext(ctx, &out)
	return err
}

func insert(ctx context.Context, c *supabase.Client) error {
	_, _, err := c.From("categories").Insert(map[string]any{"name": "Rent"}, false, "", "representation", "").ExecuteWithContext(ctx)
	return err
}

// TestRetryTable checks, against scripted servers, how many requests
// WithRetry sends for reads and for writes: it is the README's retry table.
func TestRetryTable(t *testing.T) {
	cases := []struct {
		name       string
		script     []reply
		getSent    int // requests the server saw for a GET, MaxRetries 2
		postSent   int // ... for a POST (insert)
		getOK      bool
		postOK     bool
		transient  bool
		wantStatus int
		wantCode   string
	}{
		{"503 PGRST000 then ok", []reply{pgrst000, ok200}, 2, 2, true, true, true, 0, ""},
		{"503 PGRST000 always", []reply{pgrst000}, 3, 3, false, false, true, 503, "PGRST000"},
		{"504 PGRST003 then ok", []reply{pgrst003, ok200}, 2, 2, true, true, true, 0, ""},
		{"503 57P01 always", []reply{admin57P01}, 3, 1, false, false, true, 503, "57P01"},
		{"400 42703", []reply{undefCol}, 1, 1, false, false, false, 400, "42703"},
		{"401 PGRST301", []reply{noAuthJWT}, 1, 1, false, false, false, 401, "PGRST301"},
		{"404 42P01", []reply{missingTbl}, 1, 1, false, false, false, 404, "42P01"},
		{"409 23505", []reply{uniqueViol}, 1, 1, false, false, false, 409, "23505"},
		{"502 html then ok", []reply{gateway502, ok200}, 2, 1, true, false, true, 502, ""},
		{"504 no code then ok", []reply{gateway504, ok200}, 2, 1, true, false, true, 504, ""},
		{"dropped then ok", []reply{dropped, ok200}, 2, 1, true, false, true, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"GET", "POST"} {
				srv := newFakeREST(t, tc.script...)
				s := newService(t, srv.URL, supapool.Config{MaxRetries: 2})
				op, wantSent, wantOK := read, tc.getSent, tc.getOK
				if method == "POST" {
					op, wantSent, wantOK = insert, tc.postSent, tc.postOK
				}
				err := s.WithRetry(context.Background(), op)
				assert.Equal(t, wantSent, srv.count(), "%s: requests the server saw", method)
				if wantOK {
					assert.NoError(t, err, method)
					continue
				}
				require.Error(t, err, method)
				assert.Equal(t, tc.transient, supapool.IsTransient(err), "%s: IsTransient(%v)", method, err)
				var pe *supapool.Error
				require.ErrorAs(t, err, &pe, method)
				assert.Equal(t, method, pe.Method)
				assert.Equal(t, wantSent, pe.Attempts)
				if tc.wantStatus != 0 {
					assert.Equal(t, tc.wantStatus, pe.Status, method)
				}
				assert.Equal(t, tc.wantCode, pe.Code, method)
				assert.NotContains(t, err.Error(), testKey)
			}
		})
	}
}

func TestRetryKeepsPostgRESTDetails(t *testing.T) {
	srv := newFakeREST(t, uniqueViol)
	s := newService(t, srv.URL, supapool.Config{MaxRetries: 2})
	err := s.WithRetry(context.Background(), insert)
	var pe *supapool.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 409, pe.Status)
	assert.Equal(t, "23505", pe.Code)
	assert.Contains(t, pe.Message, "duplicate key")
	assert.Equal(t, "Key (id)=(1) already exists.", pe.Details)
	assert.Equal(t, "", pe.Hint)
	assert.Contains(t, err.Error(), "supapool: POST: 409 23505: duplicate key")
	// The closure's own error (postgrest-go's) is still reachable.
	require.NotNil(t, errors.Unwrap(err))
	assert.Contains(t, errors.Unwrap(err).Error(), "(23505)")
}

func TestRetryIdempotentWriteAfterAmbiguousFailure(t *testing.T) {
	srv := newFakeREST(t, dropped, successPost)
	s := newService(t, srv.URL, supapool.Config{MaxRetries: 2})
	upsert := func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("categories").Upsert(map[string]any{"id": 1, "name": "Rent"}, "id", "representation", "").ExecuteWithContext(ctx)
		return err
	}
	require.NoError(t, s.WithRetry(context.Background(), upsert, supapool.Idempotent()))
	assert.Equal(t, 2, srv.count())
}

func TestRetryAfterIsHonoured(t *testing.T) {
	srv := newFakeREST(t, pgrst000RA, ok200)
	s := newService(t, srv.URL, supapool.Config{MaxRetries: 2})
	start := time.Now()
	require.NoError(t, s.WithRetry(context.Background(), insert))
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "waited the server's Retry-After: 1")
	assert.Equal(t, 2, srv.count())
}

func TestRetryAfterBeyondCapEndsRetries(t *testing.T) {
	srv := newFakeREST(t, reply{status: 503, retryAfter: "30", body: pgrst000.body})
	s := newService(t, srv.URL, supapool.Config{MaxRetries: 3, MaxRetryDelay: time.Second})
	err := s.WithRetry(context.Background(), read)
	var pe *supapool.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 30*time.Second, pe.RetryAfter, "callers can pass the server's Retry-After on")
	assert.Equal(t, 1, srv.count())
}

func TestRetryStopsWhenCtxEndsDuringWait(t *testing.T) {
	srv := newFakeREST(t, pgrst000)
	s := newService(t, srv.URL, supapool.Config{MaxRetries: 5, RetryDelay: time.Hour, MaxRetryDelay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.WithRetry(ctx, read, supapool.RetryBackoff(time.Hour, time.Hour)) }()
	// Wait until the first attempt is over (its client is back in the
	// pool): WithRetry is then in its backoff, which is up to an hour.
	require.Eventually(t, func() bool { return s.PoolStats().TotalReleased >= 1 }, 5*time.Second, time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
		var pe *supapool.Error
		require.ErrorAs(t, err, &pe, "the last attempt's error is kept")
		assert.Equal(t, "PGRST000", pe.Code)
	case <-time.After(5 * time.Second):
		t.Fatal("WithRetry did not return promptly after ctx was canceled")
	}
}

func TestRetryConnectionRefusedRetriesWrites(t *testing.T) {
	// A listener that is closed at once gives a port that refuses.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	s := newService(t, url, supapool.Config{MaxRetries: 2})
	var attempts atomic.Int32
	err = s.WithRetry(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		attempts.Add(1)
		return insert(ctx, c)
	})
	require.Error(t, err)
	assert.EqualValues(t, 3, attempts.Load(), "a write that never left is retried")
	assert.True(t, supapool.IsTransient(err))
	var pe *supapool.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 0, pe.Status)
}

func TestRetryDoesNotRepeatAnAttemptWhoseWriteSucceeded(t *testing.T) {
	srv := newFakeREST(t, successPost, pgrst000, ok200)
	s := newService(t, srv.URL, supapool.Config{MaxRetries: 3})
	err := s.WithRetry(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		if err := insert(ctx, c); err != nil {
			return err
		}
		return read(ctx, c)
	})
	require.Error(t, err, "re-running the closure would insert the row twice")
	assert.Equal(t, 2, srv.count())
}

func TestRetryMaxOption(t *testing.T) {
	srv := newFakeREST(t, pgrst000)
	s := newService(t, srv.URL, supapool.Config{MaxRetries: 5})
	require.Error(t, s.WithRetry(context.Background(), read, supapool.RetryMax(1)))
	assert.Equal(t, 2, srv.count())
	srv2 := newFakeREST(t, pgrst000)
	s2 := newService(t, srv2.URL, supapool.Config{MaxRetries: 5})
	require.Error(t, s2.WithRetry(context.Background(), read, supapool.RetryMax(0)))
	assert.Equal(t, 1, srv2.count())
}

func TestRetryDoesNotRetryNonWireErrors(t *testing.T) {
	srv := newFakeREST(t, ok200)
	s := newService(t, srv.URL, supapool.Config{MaxRetries: 3})
	mine := errors.New("validation failed")
	calls := 0
	err := s.WithRetry(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		calls++
		return mine
	})
	require.Same(t, mine, err, "an error that did not come from the wire is returned as is")
	assert.Equal(t, 1, calls)
}

func TestWithClientReturnsErrorsUnchangedOrWrapped(t *testing.T) {
	srv := newFakeREST(t, undefCol)
	s := newService(t, srv.URL, supapool.Config{})
	mine := errors.New("mine")
	require.Same(t, mine, s.WithClient(context.Background(), func(context.Context, *supabase.Client) error { return mine }))

	var inner error
	err := s.WithClient(context.Background(), func(ctx context.Context, c *supabase.Client) error {
		inner = read(ctx, c)
		return fmt.Errorf("listing: %w", inner)
	})
	require.ErrorIs(t, err, inner, "errors.Is reaches the closure's error")
	var pe *supapool.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 400, pe.Status)
	assert.Equal(t, "42703", pe.Code)
	assert.Equal(t, 1, pe.Attempts)
	assert.Equal(t, 1, srv.count(), "WithClient never retries")
}

func TestWithClientDiscardsAfterTransportFailure(t *testing.T) {
	srv := newFakeREST(t, dropped)
	s := newService(t, srv.URL, supapool.Config{})
	require.Error(t, s.WithClient(context.Background(), read))
	st := s.PoolStats()
	assert.EqualValues(t, 1, st.Discarded, "a client whose request broke is not reused")
	assert.Equal(t, 0, st.ActiveConnections)
	checkIdentities(t, st)

	ok := newFakeREST(t, undefCol)
	s2 := newService(t, ok.URL, supapool.Config{})
	require.Error(t, s2.WithClient(context.Background(), read))
	assert.EqualValues(t, 0, s2.PoolStats().Discarded, "an HTTP error answer leaves the client healthy")
}

func TestWithClientPanicDiscardsAndRepanics(t *testing.T) {
	s := newService(t, unusedURL, supapool.Config{})
	require.PanicsWithValue(t, "boom", func() {
		_ = s.WithClient(context.Background(), func(context.Context, *supabase.Client) error { panic("boom") })
	})
	st := s.PoolStats()
	assert.Equal(t, 0, st.ActiveConnections)
	assert.EqualValues(t, 1, st.Discarded)
	checkIdentities(t, st)
	require.Panics(t, func() {
		_ = s.WithRetry(context.Background(), func(context.Context, *supabase.Client) error { panic("again") })
	})
	assert.Equal(t, 0, s.PoolStats().ActiveConnections)
}

func TestWithClientOnClosedPool(t *testing.T) {
	p, err := supapool.New(unusedURL, testKey, supapool.Config{})
	require.NoError(t, err)
	require.NoError(t, p.Close(context.Background()))
	called := false
	err = p.WithClient(context.Background(), func(context.Context, *supabase.Client) error { called = true; return nil })
	require.ErrorIs(t, err, supapool.ErrPoolClosed)
	assert.False(t, called)
}

// TestRequestScopedAuth interleaves users and the service key on a small
// pool: every request must carry exactly the caller's identity.
func TestRequestScopedAuth(t *testing.T) {
	var bad atomic.Int64
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		who := strings.TrimPrefix(r.URL.Query().Get("who"), "eq.")
		want := "Bearer " + testKey
		if who != "service" {
			want = "Bearer jwt-" + who
		}
		auth := r.Header.Values("Authorization")
		if len(auth) != 1 || auth[0] != want || r.Header.Get("apikey") != testKey {
			bad.Add(1)
			t.Errorf("caller %q sent Authorization %q, apikey ok=%v", who, auth, r.Header.Get("apikey") == testKey)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[]`)
	}))
	defer srv.Close()
	s := newService(t, srv.URL, supapool.Config{MaxConnections: 3})
	users := []string{"service", "alice", "bob", "carol"}
	var wg sync.WaitGroup
	for g := range 24 {
		wg.Go(func() {
			for i := range 40 {
				who := users[(g+i)%len(users)]
				ctx := context.Background()
				if who != "service" {
					ctx = supapool.WithAuthToken(ctx, "jwt-"+who)
				}
				err := s.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
					var out []any
					_, err := c.From("categories").Select("*", "", false).Eq("who", who).ExecuteToWithContext(ctx, &out)
					return err
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 24*40, seen.Load())
	assert.Zero(t, bad.Load())
	assert.NotContains(t, fmt.Sprint(supapool.WithAuthToken(context.Background(), "jwt-secret-token")), "jwt-secret-token", "a ctx prints no token")
}

func TestHealthCheckAndHandler(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var paths sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths.Store(r.URL.Path+"?"+r.URL.RawQuery, true)
		w.Header().Set("Content-Type", "application/json")
		if s := int(status.Load()); s != 200 {
			w.WriteHeader(s)
			_, _ = io.WriteString(w, pgrst000.body)
			return
		}
		_, _ = io.WriteString(w, `{"swagger":"2.0"}`)
	}))
	defer srv.Close()
	s := newService(t, srv.URL, supapool.Config{})
	h := s.HealthCheck(context.Background())
	assert.True(t, h.Healthy)
	assert.True(t, h.Details.TestQuery.Success)
	assert.Equal(t, 200, h.Details.TestQuery.Status)
	_, rootHit := paths.Load("/rest/v1/?")
	assert.True(t, rootHit, "GET /rest/v1/")

	rec := httptest.NewRecorder()
	s.Pool().HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/health/pool", nil))
	assert.Equal(t, 200, rec.Code)
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, true, body["healthy"])
	details := body["details"].(map[string]any)
	assert.Equal(t, true, details["testQuery"].(map[string]any)["success"])
	for _, k := range []string{"totalConnections", "activeConnections", "idleConnections", "waitingForConnection",
		"totalAcquired", "totalReleased", "totalCreated", "totalDestroyed"} {
		assert.Contains(t, details["stats"], k)
	}

	status.Store(503)
	h = s.HealthCheck(context.Background())
	assert.False(t, h.Healthy)
	assert.Equal(t, 503, h.Details.TestQuery.Status)
	assert.Contains(t, h.Details.TestQuery.Error, "PGRST000")
	rec = httptest.NewRecorder()
	s.Pool().HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/health/pool", nil))
	assert.Equal(t, 503, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.NotContains(t, rec.Body.String(), testKey)
	assert.Contains(t, rec.Body.String(), `"healthy":false`)
}

func TestHealthCheckTableAndClosedPool(t *testing.T) {
	srv := newFakeREST(t, ok200)
	p, err := supapool.New(srv.URL, testKey, supapool.Config{HealthCheckTable: "budgets"})
	require.NoError(t, err)
	h := p.HealthCheck(context.Background())
	require.True(t, h.Healthy, "%+v", h)
	require.NoError(t, p.Close(context.Background()))
	h = p.HealthCheck(context.Background())
	assert.False(t, h.Healthy)
	assert.Contains(t, h.Details.TestQuery.Error, "closed")
}

func TestHealthCheckUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	s := newService(t, url, supapool.Config{})
	h := s.HealthCheck(context.Background())
	assert.False(t, h.Healthy)
	assert.Contains(t, h.Details.TestQuery.Error, "refused")
	assert.NotContains(t, h.Details.TestQuery.Error, testKey)
}

func TestMiddlewareHeaders(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 5, MinConnections: 2})
	held, err := p.Acquire(context.Background())
	require.NoError(t, err)
	defer p.Release(held)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	rec := httptest.NewRecorder()
	p.Middleware(next).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	assert.Equal(t, http.StatusTeapot, rec.Code)
	assert.Equal(t, "2", rec.Header().Get("X-Pool-Total-Connections"))
	assert.Equal(t, "1", rec.Header().Get("X-Pool-Active-Connections"))
	assert.Equal(t, "1", rec.Header().Get("X-Pool-Idle-Connections"))
	assert.Equal(t, "0", rec.Header().Get("X-Pool-Waiting-Requests"))

	onlyDebug := p.MiddlewareFor(func(r *http.Request) bool { return r.Header.Get("X-Debug-Pool") == "1" })(next)
	rec = httptest.NewRecorder()
	onlyDebug.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	assert.Empty(t, rec.Header().Get("X-Pool-Total-Connections"))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Debug-Pool", "1")
	rec = httptest.NewRecorder()
	onlyDebug.ServeHTTP(rec, req)
	assert.Equal(t, "2", rec.Header().Get("X-Pool-Total-Connections"))
}

func TestEmptyAuthTokenIsRefusedNotEscalated(t *testing.T) {
	srv := newFakeREST(t, ok200)
	s := newService(t, srv.URL, supapool.Config{MaxRetries: 3})
	ctx := supapool.WithAuthToken(context.Background(), "")
	err := s.WithRetry(ctx, read)
	require.ErrorIs(t, err, supapool.ErrEmptyAuthToken)
	assert.False(t, supapool.IsTransient(err))
	assert.Equal(t, 0, srv.count(), "nothing was sent with the service key")
	assert.EqualValues(t, 0, s.PoolStats().Discarded, "the client is fine")
}

func TestErrorNeverRan(t *testing.T) {
	for _, tc := range []struct {
		rep  reply
		want bool
	}{{pgrst000, true}, {pgrst003, true}, {gateway502, false}, {admin57P01, false}, {uniqueViol, false}} {
		srv := newFakeREST(t, tc.rep)
		s := newService(t, srv.URL, supapool.Config{})
		var pe *supapool.Error
		require.ErrorAs(t, s.WithClient(context.Background(), insert), &pe)
		assert.Equal(t, tc.want, pe.NeverRan(), "%d %s", pe.Status, pe.Code)
	}
}

func TestPoolWithRetryAndAcquireTimeoutIsTransient(t *testing.T) {
	srv := newFakeREST(t, pgrst000, ok200)
	p, err := supapool.New(srv.URL, testKey, supapool.Config{MaxConnections: 1, RetryDelay: time.Millisecond, MaxRetries: 1, AcquireTimeout: 10 * time.Millisecond})
	require.NoError(t, err)
	defer p.Close(context.Background())
	require.NoError(t, p.WithRetry(context.Background(), read))
	assert.Equal(t, 2, srv.count())

	held, err := p.Acquire(context.Background())
	require.NoError(t, err)
	calls := 0
	err = p.WithRetry(context.Background(), func(context.Context, *supabase.Client) error { calls++; return nil })
	require.ErrorIs(t, err, supapool.ErrAcquireTimeout)
	assert.True(t, supapool.IsTransient(err), "a saturated pool is worth a later retry by the caller")
	assert.Equal(t, 0, calls)
	assert.EqualValues(t, 1, p.Stats().AcquireTimeouts, "WithRetry waited once, it did not retry the acquire")
	require.NoError(t, p.Release(held))
}

func TestWithClientKeepsClientWhenOwnCtxEnds(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	s := newService(t, srv.URL, supapool.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.WithClient(ctx, read)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.EqualValues(t, 0, s.PoolStats().Discarded, "the caller's deadline is not the client's fault")
	assert.False(t, supapool.IsTransient(err))
}
