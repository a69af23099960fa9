package supapool_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/supapool/supapool"
)

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

// TestHealthCheckTableKeepsTheStatus: with HealthCheckTable set, a failed
// answer's status is reported, as it is without the table.
func TestHealthCheckTableKeepsTheStatus(t *testing.T) {
	for _, rep := range []reply{pgrst000, {status: 503, body: `<html>503 Service Unavailable</html>`}} {
		srv := newFakeREST(t, rep)
		s := newService(t, srv.URL, supapool.Config{HealthCheckTable: "budgets"})
		h := s.HealthCheck(context.Background())
		assert.False(t, h.Healthy)
		assert.Equal(t, 503, h.Details.TestQuery.Status, "%s", rep.body)
		assert.NotEmpty(t, h.Details.TestQuery.Error)
	}
}
