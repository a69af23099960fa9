package supapool_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

func TestBackoffIsExponentialWithFullJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := &scriptedRT{answer: func(int) *http.Response { return answer(503, "", pgrst000.body) }}
		p, err := supapool.New(unusedURL, testKey, supapool.Config{
			Transport: rt, MaxRetries: 4, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 250 * time.Millisecond,
		})
		require.NoError(t, err)
		defer p.Close(context.Background())
		s := supapool.NewPooledService(p)
		start := time.Now()
		require.Error(t, s.WithRetry(context.Background(), read))
		assert.EqualValues(t, 5, rt.calls.Load())
		// Windows of 100, 200, 250 (capped), 250 ms: each wait is drawn in [0, window).
		assert.Less(t, time.Since(start), 800*time.Millisecond)
	})
}

func TestRetryAfterHTTPDate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := &scriptedRT{answer: func(n int) *http.Response {
			if n == 1 {
				return answer(503, time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat), pgrst000.body)
			}
			return answer(200, "", `[]`)
		}}
		p, err := supapool.New(unusedURL, testKey, supapool.Config{Transport: rt, MaxRetries: 1, RetryDelay: time.Millisecond})
		require.NoError(t, err)
		defer p.Close(context.Background())
		start := time.Now()
		require.NoError(t, supapool.NewPooledService(p).WithRetry(context.Background(), insert))
		// HTTP dates have whole seconds: the wait is between 2 and 3 seconds.
		assert.GreaterOrEqual(t, time.Since(start), 2*time.Second)
		assert.LessOrEqual(t, time.Since(start), 3*time.Second)
		assert.EqualValues(t, 2, rt.calls.Load())
	})
}

func TestRetryGivesUpWhenWaitWouldOutlastDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := &scriptedRT{answer: func(int) *http.Response { return answer(503, "2", pgrst000.body) }}
		p, err := supapool.New(unusedURL, testKey, supapool.Config{Transport: rt, MaxRetries: 3})
		require.NoError(t, err)
		defer p.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		err = supapool.NewPooledService(p).WithRetry(ctx, read)
		var pe *supapool.Error
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, 2*time.Second, pe.RetryAfter)
		assert.Equal(t, time.Duration(0), time.Since(start), "no pointless wait")
		assert.EqualValues(t, 1, rt.calls.Load())
	})
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
		{"no headers within ResponseHeaderTimeout then ok", []reply{hung, ok200}, 2, 1, true, false, true, 0, ""},
		{"200 body cut mid-stream then ok", []reply{cut200, ok200}, 2, 1, true, false, true, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"GET", "POST"} {
				srv := newFakeREST(t, tc.script...)
				s := newService(t, srv.URL, supapool.Config{MaxRetries: 2, ResponseHeaderTimeout: 300 * time.Millisecond})
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

// TestHugeRetryAfterEndsRetries: a Retry-After too large for a
// time.Duration (or for an int) saturates instead of wrapping around, so
// it ends the retries like any Retry-After beyond MaxRetryDelay.
func TestHugeRetryAfterEndsRetries(t *testing.T) {
	for _, ra := range []string{"10000000000", "18446744074", "99999999999999999999"} {
		t.Run(ra, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rt := &scriptedRT{answer: func(int) *http.Response { return answer(503, ra, pgrst000.body) }}
				p, err := supapool.New(unusedURL, testKey, supapool.Config{Transport: rt, MaxRetries: 3, MaxRetryDelay: 5 * time.Second})
				require.NoError(t, err)
				defer p.Close(context.Background())
				err = p.WithRetry(context.Background(), read)
				var pe *supapool.Error
				require.ErrorAs(t, err, &pe)
				assert.Greater(t, pe.RetryAfter, 5*time.Second)
				assert.EqualValues(t, 1, rt.calls.Load(), "the server asked for more than MaxRetryDelay")
			})
		})
	}
}

// TestRetryCtxEndDuringWaitIsAPoolError: when ctx ends while WithRetry
// waits to retry, its error is a supapool error that matches both ctx's
// error and the last attempt's.
func TestRetryCtxEndDuringWaitIsAPoolError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := &scriptedRT{answer: func(int) *http.Response { return answer(503, "", pgrst000.body) }}
		p, err := supapool.New(unusedURL, testKey, supapool.Config{Transport: rt, MaxRetries: 3, RetryDelay: time.Hour, MaxRetryDelay: time.Hour})
		require.NoError(t, err)
		defer p.Close(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- p.WithRetry(ctx, read) }()
		synctest.Wait() // the first attempt failed; WithRetry waits to retry
		cancel()
		err = <-errc
		assert.True(t, strings.HasPrefix(err.Error(), "supapool: "), err.Error())
		require.ErrorIs(t, err, context.Canceled)
		var pe *supapool.Error
		require.ErrorAs(t, err, &pe, "the last attempt's error is kept")
		assert.Equal(t, "PGRST000", pe.Code)
		assert.False(t, supapool.IsTransient(err), "the caller's call is over")
		assert.EqualValues(t, 1, rt.calls.Load())
	})
}
