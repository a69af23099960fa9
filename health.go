package supapool

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool/internal/clientpatch"
)

// Health is the result of a health check, in the original design's JSON
// shape: {"healthy": true, "details": {"stats": {...}, "testQuery": {...}}}.
// It never contains a key or a token.
type Health struct {
	Healthy bool          `json:"healthy"`
	Details HealthDetails `json:"details"`
}

// HealthDetails holds the pool's statistics and the test request's result.
type HealthDetails struct {
	Stats     Stats           `json:"stats"`
	TestQuery TestQueryResult `json:"testQuery"` // the primary's

	// Endpoints has, with Config.ReadReplicas, the test request of every
	// endpoint, the primary first: a replica whose test failed is down.
	// Nil without read replicas.
	Endpoints []EndpointHealth `json:"endpoints,omitempty"`
}

// TestQueryResult is the outcome of HealthCheck's test request.
type TestQueryResult struct {
	Success   bool    `json:"success"`
	LatencyMs float64 `json:"latencyMs"`        // time to acquire a client and get the answer
	Status    int     `json:"status,omitempty"` // HTTP status, when an answer came
	Error     string  `json:"error,omitempty"`  // why it failed
}

// EndpointHealth is the test request of one endpoint, the primary or a
// read replica.
type EndpointHealth struct {
	URL  string `json:"url"`  // the endpoint's URL, without a password
	Role string `json:"role"` // "primary" or "replica"
	TestQueryResult
}

// HealthCheck sends one cheap request to PostgREST on a pooled client (GET
// /rest/v1/ with the pool's key, or one row of Config.HealthCheckTable)
// and reports the pool healthy when it succeeds and the pool is open. The
// request is bounded by ctx and by Config.HealthCheckTimeout. A pool whose
// clients are all busy for that long reports unhealthy too, and so does a
// pool whose circuit breaker is open (Details.Stats.Breaker).
//
// With Config.ReadReplicas it sends the test request to every endpoint at
// once, each on its own pooled client, and reports each in
// Details.Endpoints; the pool is healthy while the primary is. A replica
// that answers is put back in service at once, even before its cool-down
// has passed; one that does not is ejected.
func (p *Pool) HealthCheck(ctx context.Context) Health {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.HealthCheckTimeout)
	defer cancel()
	var res TestQueryResult
	var endpoints []EndpointHealth
	if p.router == nil {
		res = p.testQuery(ctx)
	} else {
		all := p.router.endpoints()
		endpoints = make([]EndpointHealth, len(all))
		var wg sync.WaitGroup
		for i, e := range all {
			wg.Go(func() {
				endpoints[i] = EndpointHealth{URL: e.label, Role: e.role,
					TestQueryResult: p.testQuery(context.WithValue(ctx, routeKey{}, e))}
			})
		}
		wg.Wait()
		res = endpoints[0].TestQueryResult
	}
	stats := p.Stats()
	return Health{
		Healthy: res.Success && !stats.Closed && stats.Breaker != "open",
		Details: HealthDetails{Stats: stats, TestQuery: res, Endpoints: endpoints},
	}
}

// testQuery runs the test request on a pooled client, with ctx's route.
func (p *Pool) testQuery(ctx context.Context) TestQueryResult {
	start := time.Now()
	var status int
	err := p.WithClient(ctx, func(ctx context.Context, c *supabase.Client) error {
		var err error
		status, err = p.testRequest(ctx, c)
		return err
	})
	res := TestQueryResult{
		Success:   err == nil,
		LatencyMs: float64(time.Since(start).Microseconds()) / 1000,
		Status:    status,
	}
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// testRequest sends the health check's request through c's own transport,
// so that it carries the client's headers and goes through the pool.
func (p *Pool) testRequest(ctx context.Context, c *supabase.Client) (int, error) {
	var fail *Error // the client's transport records a failed answer here
	ctx = context.WithValue(ctx, failSlotKey{}, &fail)
	if t := p.cfg.HealthCheckTable; t != "" {
		_, _, err := c.From(t).Select("*", "", false).Limit(1, "").ExecuteWithContext(ctx)
		switch {
		case fail != nil:
			// postgrest-go's error drops the status; the transport kept it.
			return fail.Status, fail
		case err != nil:
			return 0, err
		}
		return http.StatusOK, nil
	}
	rest, err := clientpatch.REST(c)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(p.url, "/")+supabase.REST_URL+"/", nil)
	if err != nil {
		return 0, err
	}
	resp, err := rest.Transport.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case fail != nil:
		return resp.StatusCode, fail
	case resp.StatusCode >= 300:
		return resp.StatusCode, fmt.Errorf("supapool: health check: PostgREST answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}
