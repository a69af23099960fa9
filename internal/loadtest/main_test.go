package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/supapool/supapool/internal/stack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLoadTest runs the five modes briefly against the real stack and
// reads the table the way a user does.
func TestLoadTest(t *testing.T) {
	s := stack.ForTest(t, stack.Options{Replica: true, TLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	id, unseed, err := seed(ctx, s.URL, s.ServiceKey)
	require.NoError(t, err)
	defer func() { assert.NoError(t, unseed(context.Background())) }()
	tg := target{url: s.URL, key: s.ServiceKey, server: s, where: "test stack", budgetID: id,
		replicaURL: s.ReplicaURL, tlsURL: s.TLSURL, tls: s.TLSClientConfig()}
	require.NoError(t, s.WaitReplica(ctx))
	tg.want, err = countCategories(ctx, tg)
	require.NoError(t, err)
	require.Equal(t, len(seedCategories), tg.want)

	var progress bytes.Buffer
	o := options{Concurrency: 8, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, Settle: 50 * time.Millisecond}
	rep, err := runAll(ctx, tg, o, &progress)
	require.NoError(t, err, "progress:\n%s", progress.String())

	var out bytes.Buffer
	require.NoError(t, rep.writeText(&out))
	t.Logf("\n%s", out.String())

	// The table: a header row, then one row per mode, in order, up to
	// an empty line.
	var rows []tableRow
	inTable := false
	for line := range strings.Lines(out.String()) {
		switch {
		case strings.HasPrefix(line, "mode "):
			inTable = true
		case strings.TrimSpace(line) == "":
			inTable = false
		case inTable:
			rows = append(rows, parseRow(t, line))
		}
	}
	require.Len(t, rows, 5, "table:\n%s", out.String())
	for i, prefix := range []string{"(a)", "(b)", "(c)", "(d)", "(e)"} {
		row := rows[i]
		assert.True(t, strings.HasPrefix(row.label, prefix), "row %d is %q", i, row.label)
		rate, err := strconv.ParseFloat(row.values[0], 64)
		require.NoError(t, err, "%s req/s", prefix)
		assert.Positive(t, rate, "%s req/s", prefix)
		assert.Equal(t, "0", row.values[1], "%s errors", prefix)
	}
	peak, err := strconv.Atoi(rows[1].values[5])
	require.NoError(t, err, "(b) peak conns")
	assert.Positive(t, peak)
	assert.LessOrEqual(t, peak, 20, "(b)'s peak connections")

	// The same numbers in the report itself.
	for _, m := range rep.Modes {
		assert.Positive(t, m.Requests, m.Mode)
		assert.Zero(t, m.Errors, "%s: %s", m.Mode, m.FirstError)
		require.NotNil(t, m.PeakConns, m.Mode)
		assert.Positive(t, m.ClientNewConns, m.Mode)
	}
	assert.LessOrEqual(t, *rep.Modes[1].PeakConns, int64(20))
	assert.LessOrEqual(t, rep.Modes[1].NewConns, int64(20))
	// The ceiling's and (d)'s transports allow 20 per host. (Eight workers
	// need eight, but the gateway counts a connection of the mode before
	// as open until its own goroutine sees it close, so a peak of nine
	// happens.)
	assert.LessOrEqual(t, *rep.Modes[2].PeakConns, int64(20))
	// (d) reads at the replica only; (e) multiplexes on few connections.
	assert.Zero(t, rep.Modes[3].GatewayReads["primary"])
	assert.Positive(t, rep.Modes[3].GatewayReads["replica"])
	assert.LessOrEqual(t, *rep.Modes[3].PeakConns, int64(20))
	assert.LessOrEqual(t, rep.Modes[4].NewConns, int64(8))
	assert.Contains(t, out.String(), "(d): 0 reads at the primary's gateway")

	assert.Contains(t, out.String(), "(b) new and peak connections <= MaxConnections (20)")
	assert.Len(t, rep.Goals, 3)

	var js bytes.Buffer
	require.NoError(t, rep.writeJSON(&js))
	var doc struct {
		Modes []struct {
			Requests  int     `json:"requests"`
			PeakConns *int64  `json:"peak_conns"`
			ReqPerSec float64 `json:"req_per_s"`
		} `json:"modes"`
		Goals []goal `json:"goals"`
	}
	require.NoError(t, json.Unmarshal(js.Bytes(), &doc))
	require.Len(t, doc.Modes, 5)
	assert.Equal(t, rep.Modes[1].Requests, doc.Modes[1].Requests)
	assert.Len(t, doc.Goals, 3)
}

// tableRow is a row of the table: the mode's label, then req/s, errors,
// avg, p50, p99, peak conns, new conns and peak heap (without "MiB").
type tableRow struct {
	label  string
	values []string
}

func parseRow(t *testing.T, line string) tableRow {
	t.Helper()
	f := strings.Fields(line)
	const values = 8
	require.Greater(t, len(f), values+1, "row %q", line)
	require.Equal(t, "MiB", f[len(f)-1], "row %q", line)
	n := len(f) - 1 - values
	return tableRow{label: strings.Join(f[:n], " "), values: f[n : len(f)-1]}
}

// TestAdaptiveScenario runs the adaptive scenario briefly against a stack
// with PostgREST's db-pool at 4, as make adaptive does.
func TestAdaptiveScenario(t *testing.T) {
	o := defaultAdaptiveOptions()
	s := stack.ForTest(t, stack.Options{DBPool: o.DBPool, DBPoolAcquisitionTimeout: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o.Workers, o.Sweep = 16, []int{2, 8}
	o.SweepTime, o.Duration, o.Warmup, o.Settle = 300*time.Millisecond, 500*time.Millisecond, 200*time.Millisecond, 50*time.Millisecond
	var progress bytes.Buffer
	rep, err := adaptiveScenario(ctx, s.URL, s.ServiceKey, o, &progress)
	require.NoError(t, err, "progress:\n%s", progress.String())
	var out bytes.Buffer
	require.NoError(t, rep.writeText(&out))
	t.Logf("\n%s", out.String())

	require.Len(t, rep.Sweep, 2)
	require.Len(t, rep.Modes, 3)
	assert.Contains(t, []int{2, 8}, rep.Best)
	for _, m := range append(rep.Sweep, rep.Modes...) {
		assert.Positive(t, m.Requests, m.Label)
		assert.Zero(t, m.Errors, "%s: %s", m.Label, m.FirstError)
		assert.Positive(t, m.NeighbourReqs, m.Label)
		if !m.Adaptive {
			assert.Equal(t, m.MaxConnections, m.LimitMin, m.Label)
			assert.Equal(t, m.MaxConnections, m.LimitMax, m.Label)
		}
	}
	a := rep.Modes[2]
	assert.True(t, a.Adaptive)
	assert.GreaterOrEqual(t, a.LimitMin, 1)
	assert.LessOrEqual(t, a.LimitMax, o.Max)
	assert.Len(t, rep.Goals, 4)
	assert.Contains(t, out.String(), "best fixed size: ")
	assert.Contains(t, out.String(), "AdaptiveLimit, MaxConnections 50")
}
