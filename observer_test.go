package supapool_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/supapool/supapool"
)

// recorder collects the events of a pool.
type recorder struct {
	mu     sync.Mutex
	events []supapool.Event
}

func (r *recorder) observe(e supapool.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// take returns the events so far and forgets them.
func (r *recorder) take() []supapool.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// logBuffer is a log destination that tests can read while the pool writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// takeKind returns the events of kind k so far and forgets all events.
func (r *recorder) takeKind(k supapool.EventKind) []supapool.Event {
	var out []supapool.Event
	for _, e := range r.take() {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the lines logged so far that contain all of subs.
func (l *logBuffer) lines(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger(level slog.Level) (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level})), buf
}

func TestObserverSeesThePoolsEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, logs := newLogger(slog.LevelDebug)
		p := newPool(t, supapool.Config{MaxConnections: 1, AcquireTimeout: time.Second, Logger: log})
		var r recorder
		p.Observe(r.observe)
		kinds := func(es []supapool.Event) (out []supapool.EventKind) {
			for _, e := range es {
				out = append(out, e.Kind)
			}
			return out
		}

		c, err := p.Acquire(context.Background())
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond)
		require.NoError(t, p.Release(c))
		es := r.take()
		require.Equal(t, []supapool.EventKind{supapool.EventCreate, supapool.EventAcquire, supapool.EventRelease}, kinds(es))
		assert.Zero(t, es[1].Duration, "did not wait")
		assert.Equal(t, 100*time.Millisecond, es[2].Duration, "held")

		// A waiter served after 300ms; then its client is discarded.
		c = acquireN(t, p, 1)[0]
		got := make(chan error)
		go func() {
			c2, err := p.Acquire(context.Background())
			if err == nil {
				err = p.Discard(c2)
			}
			got <- err
		}()
		time.Sleep(300 * time.Millisecond)
		require.NoError(t, p.Release(c))
		require.NoError(t, <-got)
		// The waiter's events and the releaser's interleave.
		byKind := map[supapool.EventKind][]supapool.Event{}
		for _, e := range r.take() {
			byKind[e.Kind] = append(byKind[e.Kind], e)
		}
		require.Len(t, byKind, 3, "%v", byKind)
		require.Len(t, byKind[supapool.EventAcquire], 2)
		assert.Equal(t, 300*time.Millisecond, byKind[supapool.EventAcquire][1].Duration, "waited")
		require.Len(t, byKind[supapool.EventRelease], 2)
		assert.ElementsMatch(t, []time.Duration{300 * time.Millisecond, 0}, // the waiter discarded at once
			[]time.Duration{byKind[supapool.EventRelease][0].Duration, byKind[supapool.EventRelease][1].Duration})
		require.Len(t, byKind[supapool.EventDestroy], 1)
		assert.Equal(t, supapool.CloseDiscarded, byKind[supapool.EventDestroy][0].Reason)

		// A timeout and a cancel.
		c = acquireN(t, p, 1)[0]
		_, err = p.Acquire(context.Background())
		require.ErrorIs(t, err, supapool.ErrAcquireTimeout)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err = p.Acquire(ctx)
		cancel()
		require.Error(t, err)
		es = r.take()
		require.Equal(t, []supapool.EventKind{supapool.EventCreate, supapool.EventAcquire, supapool.EventTimeout, supapool.EventCancel}, kinds(es))
		assert.Equal(t, time.Second, es[2].Duration)
		assert.Equal(t, 200*time.Millisecond, es[3].Duration)
		require.NoError(t, p.Release(c))
		r.take()

		// Close: the idle client goes, then EventClose, then nothing.
		require.NoError(t, p.Close(context.Background()))
		es = r.take()
		require.Equal(t, []supapool.EventKind{supapool.EventDestroy, supapool.EventClose}, kinds(es))
		assert.Equal(t, supapool.ClosePool, es[0].Reason)

		// Observing a closed pool says so at once.
		var late recorder
		p.Observe(late.observe)()
		assert.Equal(t, []supapool.EventKind{supapool.EventClose}, kinds(late.take()))

		// The Debug lines: structured, no key.
		assert.Len(t, logs.lines("level=DEBUG", "client created"), 2)
		assert.Len(t, logs.lines("level=DEBUG", "client closed", "reason=discarded"), 1)
		assert.Len(t, logs.lines("level=DEBUG", "client closed", "reason=closed"), 1)
		assert.Len(t, logs.lines("level=DEBUG", "acquire timed out", "waited=1s"), 1)
		assert.NotContains(t, logs.String(), testKey)
	})
}

func TestObserverDetach(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 2})
	var a, b recorder
	detachA := p.Observe(a.observe)
	detachB := p.Observe(b.observe)
	require.NoError(t, p.Release(acquireN(t, p, 1)[0]))
	detachA()
	require.NoError(t, p.Release(acquireN(t, p, 1)[0]))
	assert.Len(t, a.take(), 3, "create, acquire, release")
	assert.Len(t, b.take(), 5, "and acquire, release after a's detach")
	detachB()
	detachB() // idempotent
	require.NoError(t, p.Release(acquireN(t, p, 1)[0]))
	assert.Empty(t, b.take())
}

func TestObserverSeesRequests(t *testing.T) {
	f := newFakeREST(t, pgrst000, ok200)
	s := newService(t, f.URL, supapool.Config{})
	var r recorder
	s.Pool().Observe(r.observe)
	ctx := context.Background()
	require.Error(t, s.WithClient(ctx, read))
	require.NoError(t, s.WithClient(ctx, read))

	reqs := r.takeKind(supapool.EventRequest)
	require.Len(t, reqs, 2)
	assert.Equal(t, http.MethodGet, reqs[0].Method)
	assert.Equal(t, 503, reqs[0].Status)
	assert.Equal(t, 200, reqs[1].Status)
	assert.Positive(t, reqs[1].Duration)

	// No response: Err, and no status.
	refused := newService(t, unusedURL, supapool.Config{})
	refused.Pool().Observe(r.observe)
	require.Error(t, refused.WithClient(ctx, read))
	failed := r.takeKind(supapool.EventRequest)
	require.Len(t, failed, 1)
	assert.Error(t, failed[0].Err)
	assert.Zero(t, failed[0].Status)
}

func TestWrapTransport(t *testing.T) {
	f := newFakeREST(t, ok200)
	var wrapped http.RoundTripper
	var sent int
	s := newService(t, f.URL, supapool.Config{WrapTransport: func(base http.RoundTripper) http.RoundTripper {
		wrapped = base
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			sent++
			return base.RoundTrip(r)
		})
	}})
	require.NoError(t, s.WithClient(context.Background(), read))
	assert.Equal(t, 1, sent)
	require.NotNil(t, wrapped)
	assert.NotEqual(t, http.DefaultTransport, wrapped, "WrapTransport gets the pool's own sized transport")
	_, closes := wrapped.(interface{ CloseIdleConnections() })
	assert.True(t, closes, "the pool's own transport, %T", wrapped)

	_, err := supapool.New(unusedURL, testKey, supapool.Config{WrapTransport: func(http.RoundTripper) http.RoundTripper { return nil }})
	require.ErrorIs(t, err, supapool.ErrInvalidConfig)
}

// TestAcquireReleaseAllocateNothing checks the hot path without and with
// an observer, and without leak detection.
func TestAcquireReleaseAllocateNothing(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 2, MinConnections: 2})
	ctx := context.Background()
	cycle := func() {
		c, err := p.Acquire(ctx)
		if err != nil {
			panic(err)
		}
		if err := p.Release(c); err != nil {
			panic(err)
		}
	}
	assert.Zero(t, testing.AllocsPerRun(1000, cycle), "nothing attached")
	var n int
	detach := p.Observe(func(supapool.Event) { n++ })
	assert.Zero(t, testing.AllocsPerRun(1000, cycle), "an observer attached")
	detach()
	assert.Positive(t, n)
}

func TestStatsAsLogValue(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 3, MinConnections: 1})
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("pool", "stats", p.Stats())
	var line struct {
		Stats map[string]any `json:"stats"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
	assert.EqualValues(t, 1, line.Stats["totalConnections"])
	assert.EqualValues(t, 3, line.Stats["maxConnections"])
	assert.EqualValues(t, 0, line.Stats["leaks"])
	assert.Equal(t, false, line.Stats["closed"])
	// The same keys as Stats' JSON.
	js, err := json.Marshal(p.Stats())
	require.NoError(t, err)
	var asJSON map[string]any
	require.NoError(t, json.Unmarshal(js, &asJSON))
	for k := range asJSON {
		assert.Contains(t, line.Stats, k)
	}
	assert.Len(t, line.Stats, len(asJSON))
}
