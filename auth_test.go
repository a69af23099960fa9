package supapool_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"
	"github.com/supapool/supapool"
)

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
