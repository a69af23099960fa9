package supapool_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/supapool/supapool"
)

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
