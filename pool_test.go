package supapool_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/clientpatch"
)

func TestNewCreatesMinConnections(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 4, MinConnections: 3})
	s := p.Stats()
	assert.Equal(t, 3, s.TotalConnections)
	assert.Equal(t, 3, s.IdleConnections)
	assert.EqualValues(t, 3, s.TotalCreated)
	assert.Equal(t, 4, s.MaxConnections)
	checkIdentities(t, s)
}

func TestAcquireReusesThenGrowsToMax(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 3, MinConnections: 1})
	ctx := context.Background()
	c1, err := p.Acquire(ctx)
	require.NoError(t, err)
	require.NoError(t, p.Release(c1))
	again, err := p.Acquire(ctx)
	require.NoError(t, err)
	assert.Same(t, c1, again, "an idle client is reused")

	c2, err := p.Acquire(ctx)
	require.NoError(t, err)
	c3, err := p.Acquire(ctx)
	require.NoError(t, err)
	assert.NotSame(t, c2, c3)
	s := p.Stats()
	assert.Equal(t, 3, s.ActiveConnections)
	assert.EqualValues(t, 3, s.TotalCreated)
	checkIdentities(t, s)
	for _, c := range []*supabase.Client{again, c2, c3} {
		require.NoError(t, p.Release(c))
	}
	checkIdentities(t, p.Stats())
}

func TestReleaseAndDiscardMisuse(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 2})
	other := newPool(t, supapool.Config{MaxConnections: 2})
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	require.NoError(t, err)
	foreign, err := other.Acquire(ctx)
	require.NoError(t, err)
	stranger, err := supabase.NewClient(unusedURL, testKey, nil)
	require.NoError(t, err)

	before := p.Stats()
	for _, bad := range []*supabase.Client{nil, foreign, stranger} {
		require.ErrorIs(t, p.Release(bad), supapool.ErrUnknownClient)
		require.ErrorIs(t, p.Discard(bad), supapool.ErrUnknownClient)
	}
	require.Equal(t, before, p.Stats(), "misuse changes nothing")

	require.NoError(t, p.Release(c))
	after := p.Stats()
	require.ErrorIs(t, p.Release(c), supapool.ErrUnknownClient, "second release")
	require.ErrorIs(t, p.Discard(c), supapool.ErrUnknownClient, "discard after release")
	require.Equal(t, after, p.Stats())
	require.NoError(t, other.Release(foreign))
}

func TestDiscardDestroys(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 2})
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	require.NoError(t, err)
	require.NoError(t, p.Discard(c))
	s := p.Stats()
	assert.EqualValues(t, 1, s.TotalReleased)
	assert.EqualValues(t, 1, s.TotalDestroyed)
	assert.EqualValues(t, 1, s.Discarded)
	assert.Equal(t, 0, s.TotalConnections)
	checkIdentities(t, s)
	c2, err := p.Acquire(ctx)
	require.NoError(t, err)
	assert.NotSame(t, c, c2, "a discarded client is never handed out again")
	require.NoError(t, p.Release(c2))
}

func TestChangedAuthStateIsNotReused(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 1})
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	require.NoError(t, err)
	// What SignIn*/RefreshToken do: rewrite the client's shared auth headers.
	c.UpdateAuthSession(supabaseSession("user-jwt"))
	require.NoError(t, p.Release(c))
	s := p.Stats()
	assert.EqualValues(t, 1, s.TotalDestroyed, "a client that carried a user's session is destroyed, not reused")
	c2, err := p.Acquire(ctx)
	require.NoError(t, err)
	assert.NotSame(t, c, c2)
	require.NoError(t, p.Release(c2))
}

// TestBorrowedAuthReleasesItsOwnClient: a client given another pooled
// client's Auth is released as itself (and destroyed, its auth state
// changed); the client whose Auth it borrowed stays checked out.
func TestBorrowedAuthReleasesItsOwnClient(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 2})
	ctx := context.Background()
	a, err := p.Acquire(ctx)
	require.NoError(t, err)
	b, err := p.Acquire(ctx)
	require.NoError(t, err)
	a.Auth = b.Auth
	require.NoError(t, p.Release(a))
	s := p.Stats()
	assert.EqualValues(t, 1, s.Discarded, "a's auth state changed")
	assert.Equal(t, 1, s.ActiveConnections, "b is still out")
	require.NoError(t, p.Release(b), "b was not released through a")
	require.ErrorIs(t, p.Release(a), supapool.ErrUnknownClient)
}

func TestAcquireWithDoneCtx(t *testing.T) {
	p := newPool(t, supapool.Config{MaxConnections: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Acquire(ctx)
	require.ErrorIs(t, err, context.Canceled)
	checkIdentities(t, p.Stats())
	assert.Equal(t, 0, p.Stats().ActiveConnections)
}

// TestAcquireCtxErrorsArePoolErrors: when ctx has ended before Acquire or
// ends while it waits, the error says it is the pool's and still matches
// ctx's error.
func TestAcquireCtxErrorsArePoolErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 1})
		held, err := p.Acquire(context.Background())
		require.NoError(t, err)
		ended, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = p.Acquire(ended)
		require.ErrorIs(t, err, context.Canceled)
		assert.True(t, strings.HasPrefix(err.Error(), "supapool: "), err.Error())

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = p.Acquire(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.True(t, strings.HasPrefix(err.Error(), "supapool: "), err.Error())
		require.NoError(t, p.Release(held))
	})
}

func TestAcquireTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 1, AcquireTimeout: 2 * time.Second})
		c, err := p.Acquire(context.Background())
		require.NoError(t, err)
		start := time.Now()
		_, err = p.Acquire(context.Background())
		require.ErrorIs(t, err, supapool.ErrAcquireTimeout)
		assert.Equal(t, 2*time.Second, time.Since(start), "waits exactly AcquireTimeout")
		var te *supapool.AcquireTimeoutError
		require.ErrorAs(t, err, &te)
		assert.Equal(t, 1, te.Stats.ActiveConnections)
		for _, hint := range []string{"MaxConnections", "AcquireTimeout", "never releases"} {
			assert.Contains(t, err.Error(), hint)
		}
		assert.NotContains(t, err.Error(), testKey)
		s := p.Stats()
		assert.EqualValues(t, 1, s.AcquireTimeouts)
		assert.EqualValues(t, 1, s.WaitCount)
		assert.Equal(t, 2*time.Second, s.WaitDuration)
		assert.Equal(t, 0, s.WaitingForConnection, "a timed-out waiter leaves nothing behind")
		checkIdentities(t, s)
		require.NoError(t, p.Release(c))
	})
}

func TestAcquireCtxDeadlineBeforeTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 1, AcquireTimeout: time.Minute})
		c, err := p.Acquire(context.Background())
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = p.Acquire(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, ctx.Err())
		assert.False(t, errors.Is(err, supapool.ErrAcquireTimeout))
		assert.EqualValues(t, 1, p.Stats().CanceledAcquires)
		require.NoError(t, p.Release(c))
		// The canceled waiter took nothing: the released client is idle.
		s := p.Stats()
		assert.Equal(t, 1, s.IdleConnections)
		checkIdentities(t, s)
	})
}

func TestWaitersAreServedInArrivalOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 1, AcquireTimeout: time.Hour})
		held, err := p.Acquire(context.Background())
		require.NoError(t, err)
		const n = 5
		got := make(chan int, n)
		clients := make(chan *supabase.Client, n)
		for i := range n {
			go func() {
				c, err := p.Acquire(context.Background())
				if err != nil {
					t.Errorf("waiter %d: %v", i, err)
					return
				}
				got <- i
				clients <- c
			}()
			synctest.Wait() // waiter i is blocked before waiter i+1 starts
		}
		require.Equal(t, n, p.Stats().WaitingForConnection)
		// A newcomer arriving now queues behind the earlier waiters too.
		require.NoError(t, p.Release(held))
		for want := range n {
			require.Equal(t, want, <-got)
			require.NoError(t, p.Release(<-clients))
		}
		checkIdentities(t, p.Stats())
	})
}

func TestCanceledWaiterLeavesNothingBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 1, AcquireTimeout: time.Hour})
		held, err := p.Acquire(context.Background())
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := p.Acquire(ctx)
			errc <- err
		}()
		synctest.Wait()
		require.Equal(t, 1, p.Stats().WaitingForConnection)
		cancel()
		require.ErrorIs(t, <-errc, context.Canceled)
		require.Equal(t, 0, p.Stats().WaitingForConnection)
		require.NoError(t, p.Release(held))
		// The client went back to the pool, not to the departed waiter.
		c, err := p.Acquire(context.Background())
		require.NoError(t, err)
		require.Same(t, held, c)
		require.NoError(t, p.Release(c))
		checkIdentities(t, p.Stats())
	})
}

func TestDiscardWithWaiterCreatesReplacement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 1, AcquireTimeout: time.Hour})
		held, err := p.Acquire(context.Background())
		require.NoError(t, err)
		got := make(chan *supabase.Client, 1)
		go func() {
			c, err := p.Acquire(context.Background())
			if err != nil {
				t.Error(err)
			}
			got <- c
		}()
		synctest.Wait()
		require.NoError(t, p.Discard(held))
		c := <-got
		require.NotNil(t, c)
		require.NotSame(t, held, c)
		require.NoError(t, p.Release(c))
		s := p.Stats()
		assert.EqualValues(t, 2, s.TotalCreated)
		checkIdentities(t, s)
	})
}

func TestCloseFailsWaitersAndWaitsForClientsInUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := supapool.New(unusedURL, testKey, supapool.Config{MaxConnections: 2, MinConnections: 2, AcquireTimeout: time.Hour})
		require.NoError(t, err)
		a, err := p.Acquire(context.Background())
		require.NoError(t, err)
		b, err := p.Acquire(context.Background())
		require.NoError(t, err)
		waiterErr := make(chan error, 1)
		go func() {
			_, err := p.Acquire(context.Background())
			waiterErr <- err
		}()
		synctest.Wait()

		closeErr := make(chan error, 1)
		go func() { closeErr <- p.Close(context.Background()) }()
		require.ErrorIs(t, <-waiterErr, supapool.ErrPoolClosed, "a waiter fails at once")
		_, err = p.Acquire(context.Background())
		require.ErrorIs(t, err, supapool.ErrPoolClosed, "new Acquires fail at once")
		synctest.Wait()
		select {
		case err := <-closeErr:
			t.Fatalf("Close returned %v with clients still in use", err)
		default:
		}
		require.NoError(t, p.Release(a), "a client in use may still be released")
		require.NoError(t, p.Discard(b))
		require.NoError(t, <-closeErr)
		s := p.Stats()
		assert.True(t, s.Closed)
		assert.Equal(t, 0, s.TotalConnections)
		checkIdentities(t, s)
		require.NoError(t, p.Close(context.Background()), "Close is idempotent")
	})
}

func TestCloseGivesUpAtCtxDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := supapool.New(unusedURL, testKey, supapool.Config{MaxConnections: 2})
		require.NoError(t, err)
		leaked, err := p.Acquire(context.Background())
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		err = p.Close(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "1 client(s) still checked out")
		assert.Equal(t, 3*time.Second, time.Since(start))
		// The reaper is gone already (synctest.Test fails on a leaked
		// goroutine); the late release is still accepted.
		require.NoError(t, p.Release(leaked))
		require.NoError(t, p.Close(context.Background()))
	})
}

// exactly AcquireTimeout after it began to wait.
func TestEachWaiterTimesOutAtItsOwnDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 10 * time.Second
		p := newPool(t, supapool.Config{MaxConnections: 1, AcquireTimeout: timeout})
		held, err := p.Acquire(context.Background())
		require.NoError(t, err)
		start := time.Now()
		type result struct {
			i   int
			c   *supabase.Client
			err error
			at  time.Duration
		}
		results := make(chan result, 3)
		for i, delay := range []time.Duration{0, 3 * time.Second, 4 * time.Second} {
			go func() {
				time.Sleep(delay)
				c, err := p.Acquire(context.Background())
				results <- result{i, c, err, time.Since(start)}
			}()
		}
		next := func() result {
			select {
			case r := <-results:
				return r
			case <-time.After(time.Hour):
				t.Fatal("a waiter is still waiting an hour later")
				return result{}
			}
		}
		time.Sleep(5 * time.Second)
		require.Equal(t, 3, p.Stats().WaitingForConnection)
		require.NoError(t, p.Release(held)) // to waiter 0, which keeps it
		first := next()
		require.Equal(t, 0, first.i)
		require.NoError(t, first.err)
		for _, want := range []result{{i: 1, at: 3*time.Second + timeout}, {i: 2, at: 4*time.Second + timeout}} {
			r := next()
			require.Equal(t, want.i, r.i)
			require.ErrorIs(t, r.err, supapool.ErrAcquireTimeout)
			require.Equal(t, want.at, r.at, "waiter %d times out AcquireTimeout after it began to wait", r.i)
		}
		s := p.Stats()
		assert.EqualValues(t, 2, s.AcquireTimeouts)
		assert.Equal(t, 5*time.Second+2*timeout, s.WaitDuration)
		assert.Equal(t, 0, s.WaitingForConnection)
		checkIdentities(t, s)
		require.NoError(t, p.Release(first.c))
	})
}

// TestCanceledWaiterInTheMiddle cancels a waiter between two others: the
// others are still served in order and the canceled one gets nothing.
func TestCanceledWaiterInTheMiddle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, supapool.Config{MaxConnections: 1, AcquireTimeout: time.Hour})
		held, err := p.Acquire(context.Background())
		require.NoError(t, err)
		ctxs := make([]context.Context, 3)
		cancels := make([]context.CancelFunc, 3)
		got := make(chan int, 3)
		errs := make(chan error, 3)
		clients := make(chan *supabase.Client, 3)
		for i := range 3 {
			ctxs[i], cancels[i] = context.WithCancel(context.Background())
			defer cancels[i]()
			go func() {
				c, err := p.Acquire(ctxs[i])
				if err != nil {
					errs <- err
					return
				}
				got <- i
				clients <- c
			}()
			synctest.Wait()
		}
		cancels[1]()
		require.ErrorIs(t, <-errs, context.Canceled)
		require.Equal(t, 2, p.Stats().WaitingForConnection)
		require.NoError(t, p.Release(held))
		require.Equal(t, 0, <-got)
		require.NoError(t, p.Release(<-clients))
		require.Equal(t, 2, <-got)
		require.NoError(t, p.Release(<-clients))
		s := p.Stats()
		assert.EqualValues(t, 1, s.CanceledAcquires)
		assert.EqualValues(t, 3, s.TotalAcquired)
		assert.Equal(t, 1, s.IdleConnections)
		checkIdentities(t, s)
	})
}

// TestCloseFailsEveryWaiter closes a pool with several waiters: all fail
// with ErrPoolClosed, and none is left counted.
func TestCloseFailsEveryWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := supapool.New(unusedURL, testKey, supapool.Config{MaxConnections: 1, AcquireTimeout: time.Hour})
		require.NoError(t, err)
		held, err := p.Acquire(context.Background())
		require.NoError(t, err)
		const n = 4
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := p.Acquire(context.Background())
				errs <- err
			}()
		}
		synctest.Wait()
		require.Equal(t, n, p.Stats().WaitingForConnection)
		closeErr := make(chan error, 1)
		go func() { closeErr <- p.Close(context.Background()) }()
		for range n {
			require.ErrorIs(t, <-errs, supapool.ErrPoolClosed)
		}
		s := p.Stats()
		assert.Equal(t, 0, s.WaitingForConnection)
		assert.EqualValues(t, 0, s.CanceledAcquires+s.AcquireTimeouts)
		require.NoError(t, p.Release(held))
		require.NoError(t, <-closeErr)
		checkIdentities(t, p.Stats())
	})
}

// TestStress hammers a small pool from many goroutines with random
// cancellation and discards, and checks that no client ever has two owners,
// that the Stats identities hold in every snapshot, that there are never
// more than MaxConnections clients, and that every failed Acquire is
// counted. The second case adds tiny acquire timeouts, an IdleTimeout that
// keeps the reaper busy and clients that expire while in use; the third
// an adaptive limit that moves at random.
func TestStress(t *testing.T) {
	for _, tc := range []struct {
		name           string
		cfg            supapool.Config
		workers, round int
		cancelWithin   time.Duration // a quarter of the Acquires are canceled within this
		hold           time.Duration // upper bound of a random hold
		holdOneIn      int           // hold (sleep) in one round of this many; 1: always
		moveLimit      bool          // move the adaptive limit at random meanwhile
	}{
		{"invariants", supapool.Config{MaxConnections: 4, MinConnections: 1, AcquireTimeout: time.Second},
			32, 400, 50 * time.Microsecond, 20 * time.Microsecond, 3, false},
		{"timeouts, reaper and lifetime", supapool.Config{
			MaxConnections: 3, MinConnections: 1, AcquireTimeout: 200 * time.Microsecond,
			IdleTimeout: time.Millisecond, MaxLifetime: 300 * time.Microsecond, MaxLifetimeJitter: 100 * time.Microsecond,
		}, 16, 300, 100 * time.Microsecond, 50 * time.Microsecond, 1, false},
		{"adaptive limit", supapool.Config{
			MaxConnections: 5, MinConnections: 1, AcquireTimeout: 5 * time.Millisecond, AdaptiveLimit: true,
			IdleTimeout: time.Millisecond, MaxLifetime: 300 * time.Microsecond,
		}, 32, 300, 50 * time.Microsecond, 20 * time.Microsecond, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, tc.cfg)
			var owners sync.Map // *supabase.Client -> worker id
			var acquired, timedOut, canceled atomic.Int64
			stopWatching := watchIdentities(t, p)
			stopMoving := func() {}
			if tc.moveLimit {
				stopMoving = moveLimit(p)
			}
			var wg sync.WaitGroup
			for w := range tc.workers {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(w), 1))
					for range tc.round {
						ctx, cancel := context.WithCancel(context.Background())
						if r.IntN(4) == 0 {
							time.AfterFunc(time.Duration(r.Int64N(int64(tc.cancelWithin))), cancel)
						}
						c, err := p.Acquire(ctx)
						cancel()
						switch {
						case errors.Is(err, supapool.ErrAcquireTimeout):
							timedOut.Add(1)
							continue
						case errors.Is(err, context.Canceled):
							canceled.Add(1)
							continue
						case err != nil:
							t.Errorf("unexpected error: %v", err)
							return
						}
						acquired.Add(1)
						holdAndReturn(t, p, &owners, w, c, r, tc.hold, r.IntN(tc.holdOneIn) == 0)
					}
				})
			}
			wg.Wait()
			stopMoving()
			stopWatching()
			s := checkQuiet(t, p, acquired.Load())
			assert.Equal(t, timedOut.Load(), s.AcquireTimeouts)
			assert.LessOrEqual(t, s.CanceledAcquires, canceled.Load(), "a canceled ctx can also end an Acquire before it waits")
			t.Logf("acquired %d, timed out %d, canceled %d, stats %+v", acquired.Load(), timedOut.Load(), canceled.Load(), s)
		})
	}
}

func TestCloseWithEndedCtxSucceedsWhenNothingIsOut(t *testing.T) {
	p, err := supapool.New(unusedURL, testKey, supapool.Config{MinConnections: 3})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, p.Close(ctx), "an idle pool closes at once even with an ended ctx (like t.Context() in cleanups)")
	assert.Equal(t, 0, p.Stats().TotalConnections)
}

func TestNewRejectsBadInputWithoutLeakingTheKey(t *testing.T) {
	cases := []struct {
		name, url, key string
		cfg            supapool.Config
		want           string
	}{
		{"empty url", "", testKey, supapool.DefaultConfig(), "url is empty"},
		{"empty key", "http://127.0.0.1:1", "", supapool.DefaultConfig(), "key is empty"},
		{"unparsable url", "http://[::1", testKey, supapool.DefaultConfig(), "does not parse"},
		{"relative url", "example.supabase.co", testKey, supapool.DefaultConfig(), "not an absolute http(s) URL"},
		{"bad config", "http://127.0.0.1:1", testKey, supapool.Config{MaxConnections: -1}, "MaxConnections"},
		{"key with a trailing newline", "http://127.0.0.1:1", testKey + "\n", supapool.DefaultConfig(), "key cannot be sent"},
		{"key with a NUL", "http://127.0.0.1:1", testKey[:8] + "\x00" + testKey[8:], supapool.DefaultConfig(), "key cannot be sent"},
		{"key with a leading space", "http://127.0.0.1:1", " " + testKey, supapool.DefaultConfig(), "key cannot be sent"},
		{"key with DEL", "http://127.0.0.1:1", testKey + "\x7f", supapool.DefaultConfig(), "key cannot be sent"},
		{"url host not sendable", `http://exa"mple.supabase.co`, testKey, supapool.DefaultConfig(), "host"},
		{"url path with an escaped NUL", "http://127.0.0.1:1/%00", testKey, supapool.DefaultConfig(), "escaped or control character"},
		{"url path with an escaped slash", "http://127.0.0.1:1/a%2Fb", testKey, supapool.DefaultConfig(), "escaped or control character"},
		{"url with a query", "http://127.0.0.1:1?x=1", testKey, supapool.DefaultConfig(), "has a query"},
		{"url with an empty fragment", "http://127.0.0.1:1#", testKey, supapool.DefaultConfig(), "a fragment"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := supapool.New(tc.url, tc.key, tc.cfg)
			require.Nil(t, p)
			require.ErrorIs(t, err, supapool.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "supapool: "), err.Error())
			assert.NotContains(t, err.Error(), testKey)
			assert.False(t, errors.Is(err, supapool.ErrPoolClosed))
		})
	}
}

func TestPoolPrintsNoKey(t *testing.T) {
	p := newPool(t, supapool.DefaultConfig())
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p), fmt.Sprintf("%+v", p.Stats())} {
		assert.NotContains(t, s, testKey)
	}
	assert.Contains(t, p.String(), "supapool.Pool(http://127.0.0.1:1")
}

func TestDiscardAfterCloseIsCounted(t *testing.T) {
	p, err := supapool.New(unusedURL, testKey, supapool.Config{MaxConnections: 2})
	require.NoError(t, err)
	c, err := p.Acquire(context.Background())
	require.NoError(t, err)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, p.Close(ended), context.Canceled, "a client is still out")
	require.NoError(t, p.Discard(c))
	s := p.Stats()
	assert.EqualValues(t, 1, s.Discarded)
	assert.Equal(t, 0, s.TotalConnections)
	checkIdentities(t, s)
	require.NoError(t, p.Close(context.Background()))
}

// FuzzNew: New accepts a URL and key only if a client made from them can
// send its requests with net/http, the key arriving intact in apikey and
// Authorization; and its error for those it refuses never quotes the key.
// Every dial goes to a local server, whatever the URL's host.
func FuzzNew(f *testing.F) {
	for _, s := range [][2]string{
		{"http://127.0.0.1:1", testKey}, {"https://abcdefgh.supabase.co", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"},
		{"http://[::1]:8080/base", "key\twith\ttabs"}, {"https://user:pass@host.example", "ключ-非ASCII"},
		{"http://host", testKey + "\n"}, {"http://host", " " + testKey}, {"http://host", testKey + "\r\nX: y"},
		{"http://exa\"mple.com", testKey}, {"http://host:", testKey}, {"http://host?q=1", testKey}, {"http://host#f", testKey},
		{"http://xn--nxasmq6b.example", testKey}, {"http://ünïcode.example", testKey}, {"ftp://host", testKey}, {"", ""},
		{"http://0/%00", testKey}, {"http://host/a%2Fb", testKey}, {"http://host/%3Fq", testKey}, {"http://host/a%20b/", testKey},
		{"http://host?", testKey}, {"http://host#", testKey}, {"http://host/base/", testKey},
	} {
		f.Add(s[0], s[1])
	}
	type sent struct{ host, path, apikey, auth string }
	got := make(chan sent, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- sent{r.Host, r.URL.Path, r.Header.Get("apikey"), r.Header.Get("Authorization")}:
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[]`)
	})
	plain, secure := httptest.NewServer(handler), httptest.NewTLSServer(handler)
	f.Cleanup(plain.Close)
	f.Cleanup(secure.Close)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, network, plain.Listener.Addr().String())
		},
		DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}}
			return d.DialContext(ctx, network, secure.Listener.Addr().String())
		},
	}
	f.Cleanup(tr.CloseIdleConnections)
	f.Fuzz(func(t *testing.T, rawURL, key string) {
		p, err := supapool.New(rawURL, key, supapool.Config{Transport: tr})
		if err != nil {
			require.ErrorIs(t, err, supapool.ErrInvalidConfig)
			require.True(t, strings.HasPrefix(err.Error(), "supapool: "), err.Error())
			if len(key) >= 4 && !strings.Contains(rawURL, key) {
				require.NotContains(t, err.Error(), key, "the error quotes the key")
			}
			return
		}
		defer func() { require.NoError(t, p.Close(context.Background())) }()
		err = p.WithClient(context.Background(), func(ctx context.Context, c *supabase.Client) error {
			// A client not bound to the pool's transport would reach the network.
			if rt, err := clientpatch.Transport(c); err != nil || rt == nil {
				t.Fatalf("client of an accepted URL is not bound to the pool: %v", err)
			}
			return read(ctx, c)
		})
		require.NoError(t, err, "New accepted url %q and a key that net/http cannot send", rawURL)
		s := <-got
		assert.Equal(t, key, s.apikey)
		assert.Equal(t, "Bearer "+key, s.auth)
		assert.NotEmpty(t, s.host, "net/http sent no Host: it refused url %q's host", rawURL)
		u, err := url.Parse(rawURL)
		require.NoError(t, err)
		assert.Equal(t, path.Join("/", u.Path, "rest/v1/categories"), s.path, "url %q sent the read elsewhere", rawURL)
	})
}
