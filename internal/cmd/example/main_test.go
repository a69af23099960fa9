package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/supapool/supapool/internal/stack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun starts the example as `make example` does, sends the request of
// the printed curl command, then cancels run as a Ctrl-C does and checks
// that the example shut down and that run stopped everything cleanly.
func TestRun(t *testing.T) {
	if err := stack.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, logs lockedBuffer
	ready := make(chan demo, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, addr, &out, &logs, func(d demo) { ready <- d }) }()
	var d demo
	select {
	case d = <-ready:
	case err := <-done:
		t.Fatalf("run returned before the example was ready: %v\nprogress:\n%s\nlogs:\n%s", err, out.String(), logs.String())
	}

	var printed strings.Builder
	d.print(&printed)
	list := d.URL + "/budgets/" + d.Budget + "/categories"
	assert.Contains(t, printed.String(), "curl -s -H 'Authorization: Bearer "+d.Token+"' "+list+"\n")

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, list, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+d.Token)
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	var cats []struct {
		Name    string `json:"name"`
		OwnerID string `json:"owner_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&cats)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, cats, 3)
	assert.Equal(t, []string{"Salary", "Rent", "Groceries"}, []string{cats[0].Name, cats[1].Name, cats[2].Name})
	assert.Equal(t, demoUser, cats[0].OwnerID)
	tr.CloseIdleConnections() // before the example shuts down, so that it need not wait for them

	cancel() // as SIGINT does
	require.NoError(t, <-done, "logs:\n%s", logs.String())
	assert.Contains(t, logs.String(), `msg="shutting down"`, "the example shut down gracefully")
	assert.True(t, strings.HasSuffix(out.String(), "example: stopping examples/categories\nexample: stopped the stack\n"), out.String())
	if c, err := net.Dial("tcp", addr); !assert.Error(t, err, "the example no longer listens") {
		c.Close()
	}
}

// lockedBuffer is a bytes.Buffer that the example's output goroutines and
// the test may use at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
