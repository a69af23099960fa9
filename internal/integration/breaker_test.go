package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/supapool/supapool"
	"github.com/supapool/supapool/internal/catalog"
	"github.com/supapool/supapool/internal/stack"
)

// transition is one state change of the pool's circuit breaker, as the
// pool logged it, with the requests the gateway had received by then.
type transition struct {
	to   string // "open", "half-open" or "closed"
	at   time.Time
	reqs int64
}

// breakerLog is a slog.Handler that records the breaker's state changes.
// The pool logs them as they happen, under the breaker's lock, so the
// gateway's count read here is the count at the change.
type breakerLog struct {
	s  *stack.Stack
	mu sync.Mutex
	ts []transition
}

func (h *breakerLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *breakerLog) Handle(_ context.Context, r slog.Record) error {
	var to string
	switch {
	case strings.Contains(r.Message, "circuit breaker opened"):
		to = "open"
	case strings.Contains(r.Message, "circuit breaker half-open"):
		to = "half-open"
	case strings.Contains(r.Message, "circuit breaker closed"):
		to = "closed"
	default:
		return nil
	}
	reqs := h.s.Requests()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ts = append(h.ts, transition{to, time.Now(), reqs})
	return nil
}

func (h *breakerLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *breakerLog) WithGroup(string) slog.Handler      { return h }

func (h *breakerLog) transitions() []transition {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]transition(nil), h.ts...)
}

// closedAfter returns the index of the first "closed" after index i, or -1.
func closedAfter(ts []transition, i int) int {
	for j := i + 1; j < len(ts); j++ {
		if ts[j].to == "closed" {
			return j
		}
	}
	return -1
}

// TestBreakerWhilePostgresStopped stops PostgreSQL for 3 s under 20
// writers and 20 readers on a pool with the circuit breaker on: while the
// breaker is open the gateway sees no request, and at most
// HalfOpenRequests per half-open; after the restart the breaker closes
// within OpenTimeout and one request of its last failed probe; no insert
// is stored twice, and none refused by the breaker is stored at all.
func TestBreakerWhilePostgresStopped(t *testing.T) {
	s := stack.ForTest(t, stack.Options{})
	ctx := testCtx(t, 90*time.Second)
	budget := insertBudget(ctx, t, s, "user-a")
	const (
		readers, writers = 20, 20
		openTimeout      = 500 * time.Millisecond
		halfOpen         = 1
		downFor          = 3 * time.Second
	)
	log := &breakerLog{s: s}
	cfg := testConfig(20)
	cfg.MaxRetries, cfg.RetryDelay, cfg.MaxRetryDelay = 3, 20*time.Millisecond, 200*time.Millisecond
	cfg.Breaker = supapool.BreakerConfig{Enabled: true, ConsecutiveFailures: 5, OpenTimeout: openTimeout, HalfOpenRequests: halfOpen}
	cfg.Logger = slog.New(log)
	svc, pool := newService(t, s, cfg)

	var (
		mu                   sync.Mutex
		inserts              []insertResult
		fails                failures
		readsOK, insertsOK   atomic.Int64
		refusedRd, refusedWr atomic.Int64
	)
	// A caller answered 503 comes back a little later: think time after a
	// failure, not synchronisation.
	pause := func(err error) {
		if err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	ws := newWorkers()
	for range readers {
		ws.goLoop(func(int) {
			_, err := svc.List(ctx, budget)
			switch {
			case err == nil:
				readsOK.Add(1)
			case errors.Is(err, supapool.ErrCircuitOpen):
				refusedRd.Add(1)
			default:
				fails.add("read", err)
			}
			pause(err)
		})
	}
	for w := range writers {
		ws.goLoop(func(i int) {
			marker := fmt.Sprintf("brk-%d-%d", w, i)
			_, err := svc.Create(ctx, catalog.NewCategory{BudgetID: budget, OwnerID: "user-a", Name: marker})
			switch {
			case err == nil:
				insertsOK.Add(1)
			case errors.Is(err, supapool.ErrCircuitOpen):
				refusedWr.Add(1)
			default:
				fails.add("insert", err)
			}
			mu.Lock()
			inserts = append(inserts, insertResult{marker, err})
			mu.Unlock()
			pause(err)
		})
	}
	defer ws.stop()

	eventually(t, 20*time.Second, func() bool { return insertsOK.Load() >= 40 && readsOK.Load() >= 40 }, "workers are running")
	require.Empty(t, log.transitions(), "the breaker stayed closed while the database was up")

	t0 := time.Now()
	require.NoError(t, s.StopPostgres(ctx))
	stopTook := time.Since(t0)
	eventually(t, 10*time.Second, func() bool { return len(log.transitions()) > 0 }, "the breaker opens:\n%v", &fails)
	// The outage lasts downFor.
	time.Sleep(time.Until(t0.Add(downFor)))
	t1 := time.Now()
	require.NoError(t, s.StartPostgres(ctx))
	pgUp := time.Now()
	var ts []transition
	first := 0
	eventually(t, 30*time.Second, func() bool {
		ts = log.transitions()
		return closedAfter(ts, first) > 0
	}, "the breaker closes after the restart")
	last := closedAfter(ts, first)
	closedAt := ts[last].at
	rb, ib := readsOK.Load(), insertsOK.Load()
	eventually(t, 20*time.Second, func() bool { return readsOK.Load() >= rb+40 && insertsOK.Load() >= ib+40 },
		"workers keep going after recovery:\n%v", &fails)
	ws.stop()
	ts = log.transitions()

	// While open, the gateway sees nothing but the requests already on
	// their way when it opened; while half-open, at most HalfOpenRequests.
	require.Equal(t, "open", ts[first].to)
	stragglers := ts[first+1].reqs - ts[first].reqs
	assert.LessOrEqual(t, stragglers, int64(cfg.MaxConnections), "requests sent before the breaker opened")
	var probes, openPeriods int
	for k := first; k < last; k++ {
		d, dur := ts[k+1].reqs-ts[k].reqs, ts[k+1].at.Sub(ts[k].at)
		switch ts[k].to {
		case "open":
			openPeriods++
			assert.GreaterOrEqual(t, dur, openTimeout-time.Millisecond, "open period %d", openPeriods)
			if k > first {
				assert.Zero(t, d, "requests at the gateway in open period %d (%v)", openPeriods, dur)
			}
		case "half-open":
			probes++
			assert.LessOrEqual(t, d, int64(halfOpen), "requests at the gateway while half-open")
		}
	}
	window := closedAt.Sub(ts[first].at)
	sent := ts[last].reqs - ts[first].reqs
	allowed := stragglers + int64(halfOpen)*int64(window/openTimeout+1)
	assert.LessOrEqual(t, sent, allowed, "at most HalfOpenRequests per OpenTimeout, besides the stragglers")

	// It closes within OpenTimeout and one request of its last failed
	// probe, so within that of the database answering again.
	require.Equal(t, "half-open", ts[last-1].to)
	require.Equal(t, "open", ts[last-2].to)
	closeLag := closedAt.Sub(ts[last-2].at)
	probeTook := closedAt.Sub(ts[last-1].at)
	assert.LessOrEqual(t, closeLag, openTimeout+time.Second, "from the last opening to closed: OpenTimeout plus one request")
	reopened := 0
	for _, tr := range ts[last+1:] {
		if tr.to == "open" {
			reopened++
		}
	}
	assert.Equal(t, "closed", pool.Stats().Breaker)

	// No insert is stored twice, and none refused by the breaker at all.
	n := checkInserts(ctx, t, s, "brk-", inserts)
	checkStats(t, pool.Stats())

	t.Logf("PostgreSQL stopped in %v and down for %v; the breaker opened %v after the stop began; StartPostgres took %v",
		stopTook.Round(time.Millisecond), pgUp.Sub(t0).Round(time.Millisecond), ts[first].at.Sub(t0).Round(time.Millisecond), pgUp.Sub(t1).Round(time.Millisecond))
	t.Logf("from the first opening to closed (%v): %d open periods, %d probes, %d requests at the gateway (%d of them sent before it opened; bound %d); "+
		"refused by the breaker: %d reads, %d inserts",
		window.Round(time.Millisecond), openPeriods, probes, sent, stragglers, allowed, refusedRd.Load(), refusedWr.Load())
	t.Logf("closed %v after PostgreSQL was back, %v after its last opening (OpenTimeout %v; the closing probe took %v); reopened %d times afterwards",
		closedAt.Sub(pgUp).Round(time.Millisecond), closeLag.Round(time.Millisecond), openTimeout, probeTook.Round(time.Millisecond), reopened)
	t.Logf("inserts: %d returned nil, %d refused by the breaker, %d failed otherwise (%d applied nonetheless); rows: %d; reads ok: %d",
		n.ok, n.refused, n.failed, n.failedButApplied, n.rows, readsOK.Load())
	t.Logf("other failures:\n%v", &fails)
	var trace []string
	for _, tr := range ts {
		trace = append(trace, fmt.Sprintf("%s@+%v(%d)", tr.to, tr.at.Sub(t0).Round(time.Millisecond), tr.reqs))
	}
	t.Logf("transitions (time after the stop, gateway requests): %s", strings.Join(trace, " "))
}
