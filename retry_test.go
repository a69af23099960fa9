package supapool_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/supapool/supapool"
)

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
