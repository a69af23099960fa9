package stack

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// api is a plain net/http client of a stack's proxy.
type api struct {
	s  *Stack
	hc *http.Client
}

func newAPI(t *testing.T, s *Stack) *api {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &api{s: s, hc: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

type reply struct {
	Status int
	Body   []byte
	Header http.Header
}

// code is the "code" field of a PostgREST error body.
func (r reply) code() string {
	var e struct{ Code string }
	_ = json.Unmarshal(r.Body, &e)
	return e.Code
}

func (a *api) do(t *testing.T, method, path, token string, body any, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.s.URL+path, rd)
	require.NoError(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("apikey", token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := a.hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{Status: resp.StatusCode, Body: b, Header: resp.Header}
}

type budget struct {
	ID      string `json:"id,omitempty"`
	OwnerID string `json:"owner_id,omitempty"`
	Name    string `json:"name"`
}

type category struct {
	ID        string `json:"id,omitempty"`
	BudgetID  string `json:"budget_id"`
	OwnerID   string `json:"owner_id,omitempty"`
	Name      string `json:"name"`
	GroupName string `json:"group_name,omitempty"`
	SortOrder int    `json:"sort_order"`
	IsIncome  bool   `json:"is_income"`
	UpdatedAt string `json:"updated_at,omitempty"`
}

func decode[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(r.Body, &v), "body: %s", r.Body)
	return v
}

func TestStack(t *testing.T) {
	t.Parallel()
	started := time.Now()
	s := ForTest(t, Options{})
	t.Logf("stack up in %v at %s", time.Since(started), s.URL)
	a := newAPI(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	t.Run("proxy routes only /rest/v1", func(t *testing.T) {
		assert.Equal(t, http.StatusNotFound, a.do(t, "GET", "/budgets", s.ServiceKey, nil).Status)
		assert.Equal(t, http.StatusNotFound, a.do(t, "GET", "/rest/v10/budgets", s.ServiceKey, nil).Status)
		r := a.do(t, "GET", "/rest/v1/", s.ServiceKey, nil)
		assert.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		assert.Contains(t, string(r.Body), "budgets", "OpenAPI root lists the tables")
	})

	// The service key writes rows of two users, bypassing RLS.
	ids := map[string]string{} // owner -> budget id
	for _, owner := range []string{"alice", "bob"} {
		r := a.do(t, "POST", "/rest/v1/budgets", s.ServiceKey, budget{OwnerID: owner, Name: owner + "'s budget"},
			"Prefer", "return=representation")
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		b := decode[[]budget](t, r)
		require.Len(t, b, 1)
		ids[owner] = b[0].ID
		r = a.do(t, "POST", "/rest/v1/categories", s.ServiceKey, []category{
			{BudgetID: b[0].ID, OwnerID: owner, Name: "Salary", GroupName: "Income", IsIncome: true},
			{BudgetID: b[0].ID, OwnerID: owner, Name: "Rent", GroupName: "Housing", SortOrder: 1},
			{BudgetID: b[0].ID, OwnerID: owner, Name: "Food", GroupName: "Living", SortOrder: 2},
		})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	}
	out, err := s.SQL(ctx, "select count(*) from budgets; select count(*) from categories;")
	require.NoError(t, err)
	assert.Equal(t, "2\n6", out)

	t.Run("RLS", func(t *testing.T) {
		for owner, other := range map[string]string{"alice": "bob", "bob": "alice"} {
			tok := s.UserToken(owner)
			bs := decode[[]budget](t, a.do(t, "GET", "/rest/v1/budgets?select=id,owner_id,name", tok, nil))
			require.Len(t, bs, 1)
			assert.Equal(t, owner, bs[0].OwnerID)
			cs := decode[[]category](t, a.do(t, "GET", "/rest/v1/categories?order=sort_order", tok, nil))
			require.Len(t, cs, 3)
			for _, c := range cs {
				assert.Equal(t, owner, c.OwnerID)
			}
			// The other user's budget is invisible, also by id.
			assert.Equal(t, "[]", string(a.do(t, "GET", "/rest/v1/budgets?id=eq."+ids[other], tok, nil).Body))
			// Updating it changes nothing.
			r := a.do(t, "PATCH", "/rest/v1/budgets?id=eq."+ids[other], tok, map[string]string{"name": "hacked"},
				"Prefer", "return=representation")
			assert.Equal(t, http.StatusOK, r.Status)
			assert.Equal(t, "[]", string(r.Body))
			// Writing a row owned by the other user is refused.
			r = a.do(t, "POST", "/rest/v1/budgets", tok, budget{OwnerID: other, Name: "not mine"})
			assert.Equal(t, http.StatusForbidden, r.Status, "%s", r.Body)
			assert.Equal(t, "42501", r.code())
		}
		// A user cannot put a category, even one of their own, into another
		// user's budget: not by insert, and not by moving one there.
		for owner, other := range map[string]string{"alice": "bob", "bob": "alice"} {
			tok := s.UserToken(owner)
			r := a.do(t, "POST", "/rest/v1/categories", tok, category{BudgetID: ids[other], Name: "Intruder"})
			assert.Equal(t, http.StatusForbidden, r.Status, "%s inserts into %s's budget: %s", owner, other, r.Body)
			assert.Equal(t, "42501", r.code())
			r = a.do(t, "POST", "/rest/v1/categories", tok, category{BudgetID: ids[other], OwnerID: owner, Name: "Intruder"})
			assert.Equal(t, http.StatusForbidden, r.Status, "%s inserts into %s's budget: %s", owner, other, r.Body)
			mine := decode[[]category](t, a.do(t, "GET", "/rest/v1/categories?select=id&limit=1", tok, nil))
			require.Len(t, mine, 1)
			r = a.do(t, "PATCH", "/rest/v1/categories?id=eq."+mine[0].ID, tok, map[string]string{"budget_id": ids[other]})
			assert.Equal(t, http.StatusForbidden, r.Status, "%s moves a category into %s's budget: %s", owner, other, r.Body)
			assert.Equal(t, "42501", r.code())
		}
		out, err := s.SQL(ctx, "select count(*) from categories where name = 'Intruder'; "+
			"select count(*) from categories c join budgets b on b.id = c.budget_id where c.owner_id <> b.owner_id;")
		require.NoError(t, err)
		assert.Equal(t, "0\n0", out, "no category landed in a foreign budget")

		// owner_id defaults to the JWT's sub; updated_at is maintained.
		tok := s.UserToken("alice")
		r := a.do(t, "POST", "/rest/v1/categories", tok, category{BudgetID: ids["alice"], Name: "Fun", SortOrder: 3},
			"Prefer", "return=representation")
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		c := decode[[]category](t, r)[0]
		assert.Equal(t, "alice", c.OwnerID)
		r = a.do(t, "PATCH", "/rest/v1/categories?id=eq."+c.ID, tok, map[string]string{"name": "Fun money"},
			"Prefer", "return=representation")
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		c2 := decode[[]category](t, r)[0]
		assert.Equal(t, "Fun money", c2.Name)
		assert.NotEqual(t, c.UpdatedAt, c2.UpdatedAt)
		r = a.do(t, "DELETE", "/rest/v1/categories?id=eq."+c.ID, tok, nil)
		assert.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)

		// The anon key has no table access.
		r = a.do(t, "GET", "/rest/v1/budgets", s.AnonKey, nil)
		assert.Equal(t, http.StatusUnauthorized, r.Status, "%s", r.Body)
		assert.Equal(t, "42501", r.code())
		// A token signed with another secret is rejected.
		bad := signHS256([]byte(strings.Repeat("x", 40)), map[string]any{"role": "service_role"})
		r = a.do(t, "GET", "/rest/v1/budgets", bad, nil)
		assert.Equal(t, http.StatusUnauthorized, r.Status, "%s", r.Body)
	})

	t.Run("rpc", func(t *testing.T) {
		r := a.do(t, "POST", "/rest/v1/rpc/slow", s.UserToken("alice"), map[string]float64{"seconds": 0})
		assert.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		assert.Equal(t, "1", string(r.Body))
		r = a.do(t, "GET", "/rest/v1/rpc/slow_read?seconds=0", s.ServiceKey, nil)
		assert.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		assert.Equal(t, "1", string(r.Body))
		r = a.do(t, "POST", "/rest/v1/rpc/slow", s.AnonKey, map[string]float64{"seconds": 0})
		assert.Equal(t, http.StatusUnauthorized, r.Status, "%s", r.Body)
	})

	t.Run("Conns", func(t *testing.T) {
		c := newAPI(t, s)
		s.ResetConns()
		before := s.Conns()
		for range 5 {
			assert.Equal(t, http.StatusOK, c.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil).Status)
		}
		st := s.Conns()
		assert.Equal(t, int64(1), st.New, "keep-alive reuses one connection")
		assert.Equal(t, before.Open+1, st.Open)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				r := c.do(t, "GET", "/rest/v1/rpc/slow_read?seconds=0.3", s.ServiceKey, nil)
				assert.Equal(t, http.StatusOK, r.Status)
			})
		}
		wg.Wait()
		st = s.Conns()
		assert.GreaterOrEqual(t, st.New, int64(4))
		assert.GreaterOrEqual(t, st.Peak, before.Open+4)
		c.hc.CloseIdleConnections()
		require.Eventually(t, func() bool { return s.Conns().Open == before.Open }, 5*time.Second, 10*time.Millisecond)
		s.ResetConns()
		st = s.Conns()
		assert.Equal(t, int64(0), st.New)
		assert.Equal(t, st.Open, st.Peak)
	})

	t.Run("PostgreSQL restart", func(t *testing.T) {
		require.NoError(t, s.StopPostgres(ctx))
		require.NoError(t, s.StopPostgres(ctx), "stopping twice is fine")
		seen := map[string]bool{}
		for range 3 {
			r := a.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil)
			require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
			_, hasRetryAfter := r.Header["Retry-After"]
			t.Logf("PostgreSQL down: %d code=%s Retry-After present=%v value=%q", r.Status, r.code(), hasRetryAfter, r.Header.Get("Retry-After"))
			seen[r.code()] = true
		}
		for code := range seen {
			assert.Contains(t, []string{"PGRST000", "PGRST001", "57P01"}, code)
		}
		time.Sleep(time.Second) // let PostgREST's reconnect backoff grow a little
		t0 := time.Now()
		require.NoError(t, s.StartPostgres(ctx))
		pgUp := time.Since(t0)
		t1 := time.Now()
		var r reply
		require.Eventually(t, func() bool {
			r = a.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil)
			return r.Status == http.StatusOK
		}, 20*time.Second, 20*time.Millisecond, "last reply: %d %s", r.Status, r.Body)
		t.Logf("PostgreSQL restart took %v; PostgREST served again %v later", pgUp, time.Since(t1))
		assert.Len(t, decode[[]budget](t, r), 2)
	})

	t.Run("PostgREST restart", func(t *testing.T) {
		require.NoError(t, s.KillPostgREST())
		r := a.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil)
		assert.Equal(t, http.StatusBadGateway, r.Status, "%s", r.Body)
		t0 := time.Now()
		require.NoError(t, s.StartPostgREST(ctx))
		t.Logf("PostgREST restart took %v", time.Since(t0))
		r = a.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil)
		assert.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	})

	t.Run("PostgREST start while PostgreSQL is down", func(t *testing.T) {
		require.NoError(t, s.KillPostgREST())
		require.NoError(t, s.StopPostgres(ctx))
		require.NoError(t, s.StartPostgREST(ctx))
		// PostgREST 12.0.2 listens but does not answer before it has reached
		// the database once: a request hangs until then.
		t0 := time.Now()
		hung := make(chan reply, 1)
		go func() {
			hung <- a.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil)
		}()
		time.Sleep(2 * time.Second)
		select {
		case r := <-hung:
			t.Fatalf("expected the request to hang while PostgreSQL is down, got %d %s", r.Status, r.Body)
		default:
		}
		t1 := time.Now()
		require.NoError(t, s.StartPostgres(ctx))
		// It is answered when PostgREST connects (on its reconnect backoff),
		// with 503 PGRST002 while the schema cache is still loading.
		r := <-hung
		t.Logf("request to a PostgREST started without database: answered %d %s after %v, %v after PostgreSQL was started",
			r.Status, r.code(), time.Since(t0), time.Since(t1))
		if r.Status != http.StatusOK {
			assert.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
			assert.Equal(t, "PGRST002", r.code())
		}
		require.Eventually(t, func() bool {
			r = a.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil)
			return r.Status == http.StatusOK
		}, 20*time.Second, 20*time.Millisecond, "last reply: %d %s", r.Status, r.Body)
		t.Logf("it served 200 %v after PostgreSQL was started", time.Since(t1))
	})

	t.Run("proxy stop and start", func(t *testing.T) {
		c := newAPI(t, s)
		require.Equal(t, http.StatusOK, c.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil).Status)
		require.NoError(t, s.StopProxy())
		require.NoError(t, s.StopProxy(), "stopping twice is fine")
		assert.Equal(t, int64(0), s.Conns().Open, "every connection to the proxy is closed")
		_, err := c.hc.Get(s.URL + "/rest/v1/")
		var errno syscall.Errno
		require.ErrorAs(t, err, &errno, "connection refused: %v", err)
		assert.Equal(t, syscall.ECONNREFUSED, errno)
		// PostgREST still runs behind it.
		require.Eventually(t, func() bool { return s.adminOK(ctx, &s.primary, "/ready") }, 5*time.Second, 20*time.Millisecond)

		require.NoError(t, s.StartProxy(ctx))
		require.NoError(t, s.StartProxy(ctx), "starting twice is fine")
		r := c.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil)
		assert.Equal(t, http.StatusOK, r.Status, "same URL after restart: %s", r.Body)
		c.hc.CloseIdleConnections()
	})

	t.Run("Close", func(t *testing.T) {
		s.mu.Lock()
		pids := []int{s.primary.pg.cmd.Process.Pid, s.primary.rest.cmd.Process.Pid}
		s.mu.Unlock()
		a.hc.CloseIdleConnections()
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "Close is idempotent")
		_, err := os.Stat(s.dir)
		assert.True(t, errors.Is(err, os.ErrNotExist), "temp dir removed: %v", err)
		for _, pid := range pids {
			assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "process %d is gone", pid)
		}
		assert.ErrorIs(t, s.StartPostgres(ctx), errClosed)
		_, err = a.hc.Get(s.URL + "/rest/v1/")
		assert.Error(t, err, "proxy is closed")
	})
}

func TestPoolAcquisitionTimeout(t *testing.T) {
	t.Parallel()
	s := ForTest(t, Options{DBPool: 1, DBPoolAcquisitionTimeout: 1})
	a := newAPI(t, s)
	replies := make([]reply, 2)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Go(func() {
			replies[i] = a.do(t, "POST", "/rest/v1/rpc/slow", s.ServiceKey, map[string]float64{"seconds": 3})
		})
	}
	wg.Wait()
	var ok, timedOut int
	for _, r := range replies {
		switch r.Status {
		case http.StatusOK:
			ok++
		case http.StatusGatewayTimeout:
			timedOut++
			assert.Equal(t, "PGRST003", r.code())
			t.Logf("pool exhausted: %d code=%s headers=%v body=%s", r.Status, r.code(), r.Header, r.Body)
		default:
			t.Errorf("unexpected reply %d %s", r.Status, r.Body)
		}
	}
	assert.Equal(t, 1, ok)
	assert.Equal(t, 1, timedOut)
}

func TestSignHS256(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	tok := signHS256(secret, map[string]any{"role": "anon", "n": 1})
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	require.NoError(t, err)
	assert.JSONEq(t, `{"alg":"HS256","typ":"JWT"}`, string(header))
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	assert.JSONEq(t, `{"role":"anon","n":1}`, string(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	assert.Equal(t, base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), parts[2])
}

func TestTailBuffer(t *testing.T) {
	b := newTailBuffer(10)
	_, _ = b.Write([]byte("line1\nline2\n"))
	_, _ = b.Write([]byte("line3\n"))
	assert.Equal(t, "ne2\nline3\n", b.String())
	assert.Equal(t, "line3", b.Tail(1))
	assert.Equal(t, "ne2\nline3", b.Tail(5))
}

func TestAvailableMessage(t *testing.T) {
	t.Setenv("SUPAPOOL_POSTGREST", "/nonexistent/postgrest")
	err := Available()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "scripts/setup-stack.sh")
}

func TestRetryPorts(t *testing.T) {
	n := 0
	err := retryPorts(func() error {
		n++
		if n < 3 {
			return errors.New("stack: postgrest did not become ready: process exited; last output:\npostgrest: Network.Socket.bind: resource busy (Address in use)")
		}
		return nil
	})
	assert.NoError(t, err)
	assert.Equal(t, 3, n)
	n = 0
	err = retryPorts(func() error { n++; return errors.New("other") })
	assert.EqualError(t, err, "other")
	assert.Equal(t, 1, n)
}

// TestReplicaAndTLS starts a stack with a streaming read replica and TLS
// gateways: a row written on the primary reaches the replica, a write
// sent to the replica fails with PostgreSQL's read-only error, both
// gateways speak HTTP/2 over TLS, and the replica's gateway and
// PostgreSQL stop and start on their own.
func TestReplicaAndTLS(t *testing.T) {
	t.Parallel()
	started := time.Now()
	s := ForTest(t, Options{Replica: true, TLS: true})
	t.Logf("stack with replica and TLS up in %v: primary %s %s, replica %s %s", time.Since(started), s.URL, s.TLSURL, s.ReplicaURL, s.ReplicaTLSURL)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	a := newAPI(t, s)
	replica := &api{s: &Stack{URL: s.ReplicaURL}, hc: a.hc}

	r := a.do(t, "POST", "/rest/v1/budgets", s.ServiceKey, budget{OwnerID: "alice", Name: "replicated"}, "Prefer", "return=representation")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	id := decode[[]budget](t, r)[0].ID
	require.NoError(t, s.WaitReplica(ctx))
	got := decode[[]budget](t, replica.do(t, "GET", "/rest/v1/budgets?id=eq."+id, s.ServiceKey, nil))
	require.Len(t, got, 1, "the replica has the row")
	out, err := s.ReplicaSQL(ctx, "select pg_is_in_recovery()")
	require.NoError(t, err)
	assert.Equal(t, "t", out)

	r = replica.do(t, "POST", "/rest/v1/budgets", s.ServiceKey, budget{OwnerID: "alice", Name: "misrouted"})
	// PostgREST opens a write's transaction READ WRITE, which a standby
	// refuses (a statement in a read-only transaction would fail 25006).
	t.Logf("a write sent to the replica: %d %s", r.Status, r.Body)
	assert.Equal(t, http.StatusBadRequest, r.Status)
	assert.Equal(t, "0A000", r.code(), "cannot set transaction read-write mode during recovery")

	s.ResetConns()
	tr := &http.Transport{TLSClientConfig: s.TLSClientConfig(), ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	for _, u := range []string{s.TLSURL, s.ReplicaTLSURL} {
		req, err := http.NewRequest("GET", u+"/rest/v1/budgets?select=id", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+s.ServiceKey)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, 2, resp.ProtoMajor, "HTTP/2 over TLS")
	}
	for _, c := range []ConnStats{s.Conns(), s.ReplicaConns()} {
		// Open counts the plain connection of a too.
		assert.Equal(t, ConnStats{Open: c.Open, Peak: c.Peak, New: 1, Reads: 1, HTTP2: 1, PeakInFlight: 1}, c)
	}

	require.NoError(t, s.StopReplicaProxy())
	_, err = a.hc.Get(s.ReplicaURL + "/rest/v1/")
	var errno syscall.Errno
	require.ErrorAs(t, err, &errno, "connection refused: %v", err)
	assert.Equal(t, http.StatusOK, a.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil).Status, "the primary serves on")
	require.NoError(t, s.StartReplicaProxy(ctx))
	assert.Equal(t, http.StatusOK, replica.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil).Status)

	require.NoError(t, s.StopReplica(ctx))
	r = replica.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
	require.NoError(t, s.StartReplica(ctx))
	require.Eventually(t, func() bool {
		return replica.do(t, "GET", "/rest/v1/budgets", s.ServiceKey, nil).Status == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond)

	s.mu.Lock()
	pids := []int{s.replica.pg.cmd.Process.Pid, s.replica.rest.cmd.Process.Pid}
	s.mu.Unlock()
	a.hc.CloseIdleConnections()
	require.NoError(t, s.Close())
	for _, pid := range pids {
		assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "process %d is gone", pid)
	}
}
