package supapool_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
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
)

// principalServer answers every PostgREST and Storage request with an
// empty JSON array and checks that it carries exactly the principal named
// at the end of its path (".../t_alice", ".../rpc/fn_svc"): one
// Authorization header with that user's token, or with the pool's key for
// "svc", and apikey always the pool's key.
func principalServer(t *testing.T) (srv *httptest.Server, seen, wrong *atomic.Int64) {
	seen, wrong = new(atomic.Int64), new(atomic.Int64)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		seen.Add(1)
		base := path.Base(r.URL.Path)
		who := base[strings.LastIndexByte(base, '_')+1:]
		want := "Bearer jwt-" + who
		if who == "svc" {
			want = "Bearer " + testKey
		}
		auth := r.Header.Values("Authorization")
		if len(auth) != 1 || auth[0] != want || r.Header.Get("apikey") != testKey {
			wrong.Add(1)
			t.Errorf("%s %s: Authorization %d header(s), right principal %v, apikey ok %v",
				r.Method, r.URL.Path, len(auth), len(auth) == 1 && auth[0] == want, r.Header.Get("apikey") == testKey)
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.URL.Path, "/storage/") {
			_, _ = io.WriteString(w, `{}`)
		} else {
			_, _ = io.WriteString(w, `[]`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, seen, wrong
}

// TestEveryCallSpeaksForTheCheckoutsPrincipal interleaves four users and
// the pool's key on a pool of 4 from 32 goroutines, each closure using a
// random mix of the ways supabase-go sends a request, with and without a
// ctx: every request carries exactly its checkout's principal.
func TestEveryCallSpeaksForTheCheckoutsPrincipal(t *testing.T) {
	srv, seen, wrong := principalServer(t)
	// A generous AcquireTimeout: this test is about principals, not speed,
	// and Storage's requests open a TCP connection each (storage-go uses
	// http.DefaultTransport).
	s := newService(t, srv.URL, supapool.Config{MaxConnections: 4, AcquireTimeout: time.Minute})
	users := []string{"svc", "alice", "bob", "carol", "dave"}
	calls := []func(ctx context.Context, c *supabase.Client, who string) error{
		func(_ context.Context, c *supabase.Client, who string) error {
			_, _, err := c.From("t_"+who).Select("*", "", false).Execute()
			return err
		},
		func(_ context.Context, c *supabase.Client, who string) error {
			var out []any
			_, err := c.From("t_"+who).Select("*", "", false).ExecuteTo(&out)
			return err
		},
		func(ctx context.Context, c *supabase.Client, who string) error {
			_, _, err := c.From("t_"+who).Select("*", "", false).ExecuteWithContext(ctx)
			return err
		},
		func(_ context.Context, c *supabase.Client, who string) error {
			c.Rpc("fn_"+who, "", map[string]any{"a": 1})
			return nil
		},
		func(ctx context.Context, c *supabase.Client, who string) error {
			return supapool.RPC(ctx, c, "fn_"+who, map[string]any{"a": 1}, nil)
		},
		func(_ context.Context, c *supabase.Client, who string) error {
			_, err := c.Storage.GetBucket("b_" + who)
			return err
		},
		func(_ context.Context, c *supabase.Client, _ string) error {
			// functions-go (as pinned by supabase-go) has no exported call
			// that sends a request; TokenAuth only derives a client.
			_ = c.Functions.TokenAuth("ignored")
			return nil
		},
	}
	const workers, rounds = 32, 30
	var sent atomic.Int64
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 8))
			for range rounds {
				who := users[r.IntN(len(users))]
				ctx := context.Background()
				if who != "svc" {
					ctx = supapool.WithAuthToken(ctx, "jwt-"+who)
				}
				err := s.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
					for range 1 + r.IntN(4) {
						i := r.IntN(len(calls))
						if i != len(calls)-1 {
							sent.Add(1)
						}
						if err := calls[i](ctx, c, who); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Zero(t, wrong.Load(), "requests with the wrong principal")
	assert.Equal(t, sent.Load(), seen.Load(), "every call reached the server")
	t.Logf("%d requests checked", seen.Load())
}

// TestAcquireBindsTheTokenButNotTheDeadline: a client taken with Acquire
// speaks for the user of Acquire's ctx, also in calls without a ctx, and
// ending Acquire's ctx does not cancel its requests.
func TestAcquireBindsTheTokenButNotTheDeadline(t *testing.T) {
	srv, seen, wrong := principalServer(t)
	p := newService(t, srv.URL, supapool.Config{MaxConnections: 1}).Pool()
	ctx, cancel := context.WithTimeout(supapool.WithAuthToken(context.Background(), "jwt-alice"), time.Minute)
	c, err := p.Acquire(ctx)
	require.NoError(t, err)
	cancel()
	_, _, err = c.From("t_alice").Select("*", "", false).Execute()
	require.NoError(t, err)
	c.Rpc("fn_alice", "", nil)
	_, err = c.Storage.GetBucket("b_alice")
	require.NoError(t, err)
	require.NoError(t, p.Release(c))

	// The next checkout, with the pool's key, does not inherit alice.
	c, err = p.Acquire(context.Background())
	require.NoError(t, err)
	_, _, err = c.From("t_svc").Select("*", "", false).Execute()
	require.NoError(t, err)
	_, err = c.Storage.GetBucket("b_svc")
	require.NoError(t, err)
	// A request may narrow the pool's key to a user...
	_, _, err = c.From("t_bob").Select("*", "", false).ExecuteWithContext(supapool.WithAuthToken(context.Background(), "jwt-bob"))
	require.NoError(t, err)
	require.NoError(t, p.Release(c))
	assert.EqualValues(t, 6, seen.Load())
	assert.Zero(t, wrong.Load())

	// ...but never switch a user's checkout to another user.
	c, err = p.Acquire(supapool.WithAuthToken(context.Background(), "jwt-alice"))
	require.NoError(t, err)
	_, _, err = c.From("t_bob").Select("*", "", false).ExecuteWithContext(supapool.WithAuthToken(context.Background(), "jwt-bob"))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "jwt-")
	require.NoError(t, p.Release(c))
	assert.EqualValues(t, 6, seen.Load(), "the request for another user did not leave")
}

// TestRequestWithoutCtxInheritsTheClosures: Execute() has no ctx of its
// own; inside a closure whose ctx ends after 50ms it must not wait for a
// server that answers after 2s.
func TestRequestWithoutCtxInheritsTheClosures(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(2 * time.Second):
		}
		_, _ = io.WriteString(w, `[]`)
	}))
	defer srv.Close()
	defer close(release)
	s := newService(t, srv.URL, supapool.Config{MaxConnections: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		_, _, err := c.From("slow").Select("*", "", false).Execute()
		return err
	})
	took := time.Since(start)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, took, 200*time.Millisecond)
	st := s.PoolStats()
	assert.Zero(t, st.Discarded, "a request ended by the closure's own ctx keeps the client")
}

// TestClientUsedAfterReleaseSendsNothing: a caller that keeps a client
// after Release gets ErrClientReleased, and the server sees nothing.
func TestClientUsedAfterReleaseSendsNothing(t *testing.T) {
	srv, seen, _ := principalServer(t)
	p := newService(t, srv.URL, supapool.Config{MaxConnections: 2}).Pool()
	var kept *supabase.Client
	require.NoError(t, p.WithClient(supapool.WithAuthToken(context.Background(), "jwt-alice"), func(ctx context.Context, c *supabase.Client) error {
		kept = c
		return nil
	}))
	_, _, err := kept.From("t_alice").Select("*", "", false).Execute()
	require.ErrorIs(t, err, supapool.ErrClientReleased)
	err = supapool.RPC(context.Background(), kept, "fn_alice", nil, nil)
	require.ErrorIs(t, err, supapool.ErrClientReleased)

	c, err := p.Acquire(context.Background())
	require.NoError(t, err)
	require.NoError(t, p.Discard(c))
	_, _, err = c.From("t_svc").Select("*", "", false).Execute()
	require.ErrorIs(t, err, supapool.ErrClientReleased)

	_, err = kept.Storage.GetBucket("b_alice")
	require.Error(t, err, "Storage of a released client sends nothing")
	_, err = c.Storage.ListBuckets()
	require.Error(t, err)

	assert.Zero(t, seen.Load(), "nothing reached the server")
	assert.EqualValues(t, 3, p.Stats().UseAfterRelease)
}

// TestChangedStorageIsNotReused: a holder that swaps a checkout's Storage
// or Functions client for its own changes the client's auth state, on a
// user's checkout and on one with the pool's key alike.
func TestChangedStorageIsNotReused(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  context.Context
		swap func(c *supabase.Client)
	}{
		{"user, Storage", supapool.WithAuthToken(context.Background(), "jwt-alice"), func(c *supabase.Client) { c.Storage = nil }},
		{"user, Functions", supapool.WithAuthToken(context.Background(), "jwt-alice"), func(c *supabase.Client) { c.Functions = nil }},
		{"pool's key, Storage", context.Background(), func(c *supabase.Client) { c.Storage = nil }},
		{"pool's key, Functions", context.Background(), func(c *supabase.Client) { c.Functions = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, supapool.Config{MaxConnections: 1})
			c, err := p.Acquire(tc.ctx)
			require.NoError(t, err)
			tc.swap(c)
			require.NoError(t, p.Release(c))
			assert.EqualValues(t, 1, p.Stats().Discarded)
		})
	}
}

// TestHandOffSpeaksForTheWaiter: a client released while an Acquire waits
// goes straight to the waiter, and from then on speaks for the waiter,
// whoever held it before: a checkout with the pool's key may pass its
// binding on to a waiter with the pool's key, a user's never. Once the
// waiter releases it too, the idle client refuses to send.
func TestHandOffSpeaksForTheWaiter(t *testing.T) {
	ctxFor := func(who string) context.Context {
		if who == "svc" {
			return context.Background()
		}
		return supapool.WithAuthToken(context.Background(), "jwt-"+who)
	}
	for _, tc := range []struct{ holder, waiter string }{
		{"svc", "svc"}, {"svc", "alice"}, {"alice", "svc"}, {"alice", "bob"},
	} {
		t.Run(tc.holder+"_to_"+tc.waiter, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var sent []string // the principal of every request
				p := newPool(t, supapool.Config{MaxConnections: 1, Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
					mu.Lock()
					defer mu.Unlock()
					sent = append(sent, strings.Join(r.Header.Values("Authorization"), ", "))
					return answer(http.StatusOK, "", `[]`), nil
				})})
				c, err := p.Acquire(context.Background())
				require.NoError(t, err)
				poolStorage := c.Storage
				require.NoError(t, p.Release(c))

				held, err := p.Acquire(ctxFor(tc.holder))
				require.NoError(t, err)
				heldStorage := held.Storage
				got := make(chan *supabase.Client, 1)
				go func() {
					c, err := p.Acquire(ctxFor(tc.waiter))
					assert.NoError(t, err)
					got <- c
				}()
				synctest.Wait()
				require.Equal(t, 1, p.Stats().WaitingForConnection)
				require.NoError(t, p.Release(held))
				c = <-got
				require.Same(t, held, c, "the waiter got the released client")

				_, _, err = c.From("t").Select("*", "", false).Execute()
				require.NoError(t, err)
				want := "Bearer jwt-" + tc.waiter
				if tc.waiter == "svc" {
					want = "Bearer " + testKey
					assert.Same(t, poolStorage, c.Storage, "the pool's Storage client")
				} else {
					assert.NotSame(t, poolStorage, c.Storage, "a user's Storage client")
					assert.NotSame(t, heldStorage, c.Storage, "not the holder's")
				}
				require.NoError(t, p.Release(c))
				_, _, err = c.From("t").Select("*", "", false).Execute()
				require.ErrorIs(t, err, supapool.ErrClientReleased)
				assert.Equal(t, []string{want}, sent)
				assert.EqualValues(t, 1, p.Stats().UseAfterRelease)
			})
		})
	}
}
