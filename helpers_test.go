package supapool_test

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/supabase-community/gotrue-go/types"
	supabase "github.com/supabase-community/supabase-go"
	"github.com/supapool/supapool"
	"go.uber.org/goleak"
)

func supabaseSession(token string) types.Session {
	return types.Session{AccessToken: token}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "sb-secret-key-never-printed-0123456789"

// unusedURL is never contacted: acquiring and releasing clients does no I/O.
const unusedURL = "http://127.0.0.1:1"

// newPool makes a pool that the test closes at its end (with a deadline, so
// that a leaked client fails the test instead of hanging it).
func newPool(t testing.TB, cfg supapool.Config) *supapool.Pool {
	t.Helper()
	return newPoolAt(t, unusedURL, cfg)
}

// newPoolAt is newPool on url.
func newPoolAt(t testing.TB, url string, cfg supapool.Config) *supapool.Pool {
	t.Helper()
	p, err := supapool.New(url, testKey, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	return p
}

// acquireN checks out n clients.
func acquireN(t testing.TB, p *supapool.Pool, n int) []*supabase.Client {
	t.Helper()
	var cs []*supabase.Client
	for range n {
		c, err := p.Acquire(context.Background())
		require.NoError(t, err)
		cs = append(cs, c)
	}
	return cs
}

// checkIdentities asserts the Stats identities.
func checkIdentities(t testing.TB, s supapool.Stats) {
	t.Helper()
	checkIdentitiesWithin(t, s, s.MaxConnections)
}

// checkIdentitiesWithin is checkIdentities with a bound on the clients
// other than the MaxConnections in force (which a shrinking pool exceeds
// until its clients come back).
func checkIdentitiesWithin(t testing.TB, s supapool.Stats, bound int) {
	t.Helper()
	require.Equal(t, s.TotalConnections, s.ActiveConnections+s.IdleConnections, "Total = Active + Idle: %+v", s)
	require.EqualValues(t, s.TotalConnections, s.TotalCreated-s.TotalDestroyed, "Created - Destroyed = Total: %+v", s)
	require.EqualValues(t, s.ActiveConnections, s.TotalAcquired-s.TotalReleased, "Acquired - Released = Active: %+v", s)
	require.LessOrEqual(t, s.TotalConnections, bound, "never more than %d clients: %+v", bound, s)
	require.GreaterOrEqual(t, s.IdleConnections, 0, "%+v", s)
	require.LessOrEqual(t, s.Limit, s.MaxConnections, "the limit never exceeds MaxConnections: %+v", s)
	require.GreaterOrEqual(t, s.Limit, max(s.MinConnections, 1), "nor falls below max(MinConnections, 1): %+v", s)
}

// watchIdentities checks the Stats identities in a loop until the returned
// func is called; that func returns once the watcher has stopped.
func watchIdentities(t *testing.T, p *supapool.Pool) (stop func()) {
	return watchIdentitiesWithin(t, p, 0)
}

// watchIdentitiesWithin is watchIdentities with checkIdentitiesWithin's
// bound; 0 means the MaxConnections in force.
func watchIdentitiesWithin(t *testing.T, p *supapool.Pool, bound int) (stop func()) {
	quit, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-quit:
				return
			default:
				s := p.Stats()
				checkIdentitiesWithin(t, s, cmp.Or(bound, s.MaxConnections))
			}
		}
	}()
	return func() { close(quit); <-stopped }
}

// newRand is a stress worker's deterministic source of randomness.
func newRand(worker int) *rand.Rand { return rand.New(rand.NewPCG(uint64(worker), 1)) }

// holdAndReturn is a stress worker's use of client c: it records worker w
// as the owner (failing if another worker owns c), holds c for a random
// time below hold if sleep is set, then releases it, or discards one in 8.
func holdAndReturn(t *testing.T, p *supapool.Pool, owners *sync.Map, w int, c *supabase.Client, r *rand.Rand, hold time.Duration, sleep bool) {
	if prev, loaded := owners.LoadOrStore(c, w); loaded {
		t.Errorf("client handed to worker %d while worker %v holds it", w, prev)
	}
	if sleep {
		time.Sleep(time.Duration(r.Int64N(int64(hold))))
	}
	owners.Delete(c)
	if r.IntN(8) == 0 {
		require.NoError(t, p.Discard(c))
	} else {
		require.NoError(t, p.Release(c))
	}
}

// checkQuiet asserts the state of a pool after a stress run: identities
// hold, nothing is checked out or waiting, and every successful Acquire
// was counted. It returns the final Stats.
func checkQuiet(t *testing.T, p *supapool.Pool, acquired int64) supapool.Stats {
	s := p.Stats()
	checkIdentities(t, s)
	assert.Equal(t, 0, s.ActiveConnections)
	assert.Equal(t, 0, s.WaitingForConnection)
	assert.Equal(t, acquired, s.TotalAcquired)
	return s
}

// reply is one scripted answer of a fake PostgREST.
type reply struct {
	status     int
	body       string
	retryAfter string
	drop       bool // read the request, then close the connection without answering
	hang       bool // read the request and never answer: wait until the client gives up
	cut        bool // answer status and body, but promise 1000 bytes more and close the connection mid-body
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
	lostDB      = reply{status: 400, body: `{"code":"","details":null,"hint":null,"message":""}`} // PostgREST when the database connection dropped mid-statement
	hung        = reply{hang: true}
	cut200      = reply{status: 200, body: `[{"id":1},{"id":`, cut: true}
	// hugeError is a PostgREST error whose body is far beyond any bound a
	// reader of error bodies may set: the code comes first, as PostgREST
	// writes it, then a 100 KiB message.
	hugeError = reply{status: 404, body: `{"code":"42P01","message":"` + hugeMessage + `","details":null,"hint":null}`}
)

var hugeMessage = strings.Repeat("relation does not exist; ", 4<<10)

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
	f.Server = httptest.NewServer(f.handler())
	t.Cleanup(f.Close)
	return f
}

// newFakeRESTTLS is newFakeREST over TLS, with a certificate that no
// client trusts (httptest's own): only clients built from f.Client()
// could talk to it, and pools do not. Its handshake errors are not logged.
func newFakeRESTTLS(t *testing.T, script ...reply) *fakeREST {
	f := &fakeREST{script: script}
	f.Server = httptest.NewUnstartedServer(f.handler())
	f.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.StartTLS()
	t.Cleanup(f.Close)
	return f
}

func (f *fakeREST) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		f.mu.Lock()
		rep := f.script[min(f.requests, len(f.script)-1)]
		f.requests++
		f.mu.Unlock()
		switch {
		case rep.hang:
			<-r.Context().Done() // the client closed the connection
			return
		case rep.drop:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		case rep.cut:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_, _ = fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
					rep.status, http.StatusText(rep.status), len(rep.body)+1000, rep.body)
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
	})
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
	return supapool.NewPooledService(newPoolAt(t, url, cfg))
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

// scriptedRT answers in memory, so that retry timing can be tested on
// synctest's fake clock.
type scriptedRT struct {
	calls  atomic.Int32
	answer func(n int) *http.Response
}

func (s *scriptedRT) RoundTrip(r *http.Request) (*http.Response, error) {
	n := int(s.calls.Add(1))
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	resp := s.answer(n)
	resp.Request = r
	return resp, nil
}

func answer(status int, retryAfter, body string) *http.Response {
	h := http.Header{"Content-Type": {"application/json"}}
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}
}

// connCountingServer answers like PostgREST after ~1ms of "work" and
// counts the TCP connections its clients opened.
func connCountingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var newConns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond) // simulated query time, not synchronisation
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[]`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &newConns
}

// load sends workers*perWorker requests, pausing 1ms between requests as
// a service does between the queries of its handlers (think time, not
// synchronisation): the pauses are what lets idle connections pile up.
func load(t *testing.T, workers, perWorker int, do func(ctx context.Context) error) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				if err := do(context.Background()); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// connTracker counts a test server's open TCP connections and their peak.
type connTracker struct {
	mu         sync.Mutex
	open, peak int
	opened     int
}

func (ct *connTracker) state(_ net.Conn, s http.ConnState) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	switch s {
	case http.StateNew:
		ct.open++
		ct.opened++
		ct.peak = max(ct.peak, ct.open)
	case http.StateClosed, http.StateHijacked:
		ct.open--
	}
}

func (ct *connTracker) snapshot() (open, peak, opened int) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.open, ct.peak, ct.opened
}

func (ct *connTracker) resetPeak() {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	ct.peak = ct.open
}

// waitOpen waits until the server has closed its side of every connection
// but want (closes are reported by the server's own goroutines).
func (ct *connTracker) waitOpen(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		open, _, _ := ct.snapshot()
		if open <= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server still has %d open connections, want at most %d", open, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// startWaiters starts n Acquires in a synctest bubble and returns once all
// of them wait; each sends the client it gets on the returned channel.
func startWaiters(t *testing.T, p *supapool.Pool, n int) <-chan *supabase.Client {
	got := make(chan *supabase.Client, n)
	for range n {
		go func() {
			c, err := p.Acquire(context.Background())
			assert.NoError(t, err)
			got <- c
		}()
	}
	synctest.Wait()
	return got
}

// upstreamRT is an in-memory upstream for the circuit breaker's tests, so
// that they can run on synctest's fake clock: every request gets the
// current answer (set), and while a gate is set (hold) requests wait for
// it to open. A zero reply hangs until the request's ctx ends; dropped
// fails as a connection reset after the request was sent.
type upstreamRT struct {
	mu     sync.Mutex
	answer reply
	gate   chan struct{}
	calls  int
	posts  int // POSTs answered below 400: rows stored
}

func (u *upstreamRT) set(r reply) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.answer = r
}

// hold makes requests wait until release is called.
func (u *upstreamRT) hold() (release func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	gate := make(chan struct{})
	u.gate = gate
	return func() {
		u.mu.Lock()
		u.gate = nil
		u.mu.Unlock()
		close(gate)
	}
}

func (u *upstreamRT) count() (calls, posts int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls, u.posts
}

func (u *upstreamRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	u.mu.Lock()
	u.calls++
	gate := u.gate
	u.mu.Unlock()
	ctx := r.Context()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	u.mu.Lock()
	a := u.answer
	if r.Method == http.MethodPost && a.status > 0 && a.status < 400 {
		u.posts++
	}
	u.mu.Unlock()
	switch {
	case a.drop:
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	case a.status == 0:
		<-ctx.Done()
		return nil, ctx.Err()
	}
	resp := answer(a.status, a.retryAfter, a.body)
	resp.Request = r
	return resp, nil
}

// logRecorder is a slog.Handler that keeps every record at Info and above
// (the pool's Debug events are left out) as one line:
// "LEVEL message key=value ...".
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo
}

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, b.String())
	return nil
}

func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// logged returns the lines so far.
func (l *logRecorder) logged() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// endpointServer is a fake PostgREST endpoint, a primary or a read
// replica: it counts the requests it served by kind, those that came over
// HTTP/2, its TCP connections and the most requests it had in flight at
// once, checks that each carries the pool's apikey, and answers reads
// with [{"id":1,"from":NAME}], writes with 201, or with fail while set.
type endpointServer struct {
	*httptest.Server
	name                 string
	reads, writes, http2 atomic.Int64
	inFlight             *gauge // requests in flight; tests may share one between servers
	conns                connTracker
	fail                 atomic.Pointer[reply] // answer every request with this while set
	failTimes            atomic.Int64          // if positive, fail is cleared after that many answers
	gate                 chan struct{}         // if not nil, requests report on arrived (if it has room) and wait for gate to close
	arrived              chan struct{}

	mu    sync.Mutex
	paths []string // the paths of the requests served
	auth  []string // their Authorization headers
}

// newEndpointServer starts an endpoint; with h2 it serves TLS with HTTP/2.
func newEndpointServer(t *testing.T, name string, h2 bool) *endpointServer {
	e := &endpointServer{name: name, inFlight: new(gauge)}
	e.Server = httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	e.Config.ConnState = e.conns.state
	if h2 {
		e.EnableHTTP2 = true
		e.StartTLS()
	} else {
		e.Start()
	}
	t.Cleanup(e.Close)
	return e
}

func (e *endpointServer) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	e.inFlight.enter()
	defer e.inFlight.leave()
	if r.ProtoMajor == 2 {
		e.http2.Add(1)
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		e.reads.Add(1)
	} else {
		e.writes.Add(1)
	}
	e.mu.Lock()
	e.paths = append(e.paths, r.Method+" "+r.URL.Path)
	e.auth = append(e.auth, r.Header.Get("Authorization"))
	e.mu.Unlock()
	if e.gate != nil {
		select {
		case e.arrived <- struct{}{}:
		default:
		}
		<-e.gate
	}
	w.Header().Set("Content-Type", "application/json")
	if rep := e.fail.Load(); rep != nil {
		if e.failTimes.Load() > 0 && e.failTimes.Add(-1) == 0 {
			e.fail.Store(nil)
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
		return
	}
	if r.Header.Get("apikey") != testKey {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, noAuthJWT.body)
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		_, _ = io.WriteString(w, `[{"id":1,"from":"`+e.name+`"}]`)
		return
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, `[{"id":1}]`)
}

// served returns the method and path of each request served, and their
// Authorization headers.
func (e *endpointServer) served() (paths, auth []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.paths), slices.Clone(e.auth)
}

// total is the requests served.
func (e *endpointServer) total() int64 { return e.reads.Load() + e.writes.Load() }

// gauge counts something in progress and its peak.
type gauge struct{ cur, peak atomic.Int64 }

func (g *gauge) enter() {
	n := g.cur.Add(1)
	for {
		peak := g.peak.Load()
		if n <= peak || g.peak.CompareAndSwap(peak, n) {
			return
		}
	}
}

func (g *gauge) leave() { g.cur.Add(-1) }

// refusedURL returns the URL of a loopback port that refuses connections:
// a listener that was opened and closed again.
func refusedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	u := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	return u
}
