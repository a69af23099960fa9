package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/supapool/supapool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startApp serves the app's handler on a pool for url and key, and closes
// the server, the pool and the client's connections when t ends.
func startApp(t *testing.T, url, key string, cfg supapool.Config) (*apiClient, *supapool.Pool) {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	pool, err := supapool.New(url, key, cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(newHandler(pool, cfg.Logger))
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
		// Not t.Context(): it is canceled before cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, pool.Close(ctx))
	})
	return &apiClient{t: t, base: srv.URL, hc: &http.Client{Transport: tr}}, pool
}

// apiClient sends requests to the app.
type apiClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// errMsg is the "error" field of an error body.
func (r reply) errMsg() string {
	var e errorBody
	_ = json.Unmarshal(r.Body, &e)
	return e.Error
}

// do sends a request with token as bearer token (none if empty) and body
// as JSON (a string is sent as is), plus header name/value pairs.
func (c *apiClient) do(method, path, token string, body any, headers ...string) reply {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(c.t, err)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	require.NoError(c.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.hc.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	if token != "" {
		assert.NotContains(c.t, string(b), token, "the response must not echo the token")
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func decode[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(r.Body, &v), "body: %s", r.Body)
	return v
}

func TestShowPoolHeaders(t *testing.T) {
	for _, tc := range []struct {
		remote string
		debug  string
		want   bool
	}{
		{"127.0.0.1:5555", "", true},
		{"[::1]:5555", "", true},
		{"203.0.113.7:5555", "", false},
		{"203.0.113.7:5555", "1", true},
		{"203.0.113.7:5555", "yes", false},
		{"garbage", "", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		if tc.debug != "" {
			r.Header.Set("X-Debug-Pool", tc.debug)
		}
		assert.Equal(t, tc.want, showPoolHeaders(r), "remote %s, X-Debug-Pool %q", tc.remote, tc.debug)
	}
}
