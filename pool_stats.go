package supapool

import (
	"log/slog"
	"time"
)

// Stats is a consistent snapshot of a Pool, taken under the pool's lock, in
// the spirit of database/sql's DBStats. In every snapshot:
//
//	TotalConnections = ActiveConnections + IdleConnections
//	TotalCreated - TotalDestroyed = TotalConnections
//	TotalAcquired - TotalReleased = ActiveConnections
//
// "Connections" are pooled clients; since all of a pool's clients share the
// pool's transport, TotalConnections is also the bound on TCP connections.
// The JSON names are those of the original design (camelCase).
type Stats struct {
	TotalConnections     int `json:"totalConnections"`     // clients that exist now
	ActiveConnections    int `json:"activeConnections"`    // clients checked out now
	IdleConnections      int `json:"idleConnections"`      // clients ready to be acquired
	WaitingForConnection int `json:"waitingForConnection"` // Acquire calls blocked now

	TotalAcquired  int64 `json:"totalAcquired"`  // successful Acquires, ever
	TotalReleased  int64 `json:"totalReleased"`  // Releases and Discards, ever
	TotalCreated   int64 `json:"totalCreated"`   // clients created, ever
	TotalDestroyed int64 `json:"totalDestroyed"` // clients destroyed, ever

	MaxConnections int `json:"maxConnections"` // the MaxConnections in force (Config, or SetMaxConnections)
	MinConnections int `json:"minConnections"` // Config.MinConnections in force
	// Limit is how many clients may be checked out at once: with
	// Config.AdaptiveLimit the adaptive limit, between max(MinConnections,
	// 1) and MaxConnections; without it, MaxConnections. ActiveConnections
	// may exceed it for a while after it falls: clients in use are not
	// taken back.
	Limit int `json:"limit"`

	WaitCount        int64         `json:"waitCount"`        // Acquires that had to wait, ever
	WaitDuration     time.Duration `json:"waitDuration"`     // total time spent waiting, ever (nanoseconds in JSON)
	AcquireTimeouts  int64         `json:"acquireTimeouts"`  // waits that ended with ErrAcquireTimeout
	CanceledAcquires int64         `json:"canceledAcquires"` // waits that ended because their ctx ended
	Discarded        int64         `json:"discarded"`        // clients destroyed by Discard, by WithClient after a transport failure, or on Release because their auth state was changed
	IdleClosed       int64         `json:"idleClosed"`       // clients closed by the reaper as surplus
	LifetimeClosed   int64         `json:"lifetimeClosed"`   // clients closed for exceeding MaxLifetime
	Leaks            int64         `json:"leaks"`            // checkouts held longer than Config.LeakThreshold (counted once each)
	RejectedAcquires int64         `json:"rejectedAcquires"` // Acquires refused at once because MaxWaiting callers waited (ErrPoolExhausted)
	Resets           int64         `json:"resets"`           // calls of Reset
	ResetClosed      int64         `json:"resetClosed"`      // clients closed because Reset retired them
	ResizeClosed     int64         `json:"resizeClosed"`     // clients closed because SetMaxConnections shrank the pool
	UseAfterRelease  int64         `json:"useAfterRelease"`  // requests refused because their client was released (ErrClientReleased)
	Closed           bool          `json:"closed"`           // Close has been called

	// Endpoints has, with Config.ReadReplicas, one entry per endpoint, the
	// primary first, then the replicas in Config order: requests,
	// failures, requests in flight, and whether it is ejected. Its
	// counters are read without the pool's lock, so they are not part of
	// the snapshot's identities. Nil without read replicas.
	Endpoints []EndpointStats `json:"endpoints,omitempty"`

	// Breaker is the circuit breaker's state (Config.Breaker): "closed",
	// "open" (requests fail with ErrCircuitOpen) or "half-open" (probes
	// are let through); "" when the pool has no breaker.
	Breaker string `json:"breaker"`
}

// LogValue makes Stats a slog group with the JSON names as keys, so that
// logger.Info("pool", "stats", pool.Stats()) logs its fields one by one.
func (s Stats) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int("totalConnections", s.TotalConnections),
		slog.Int("activeConnections", s.ActiveConnections),
		slog.Int("idleConnections", s.IdleConnections),
		slog.Int("waitingForConnection", s.WaitingForConnection),
		slog.Int64("totalAcquired", s.TotalAcquired),
		slog.Int64("totalReleased", s.TotalReleased),
		slog.Int64("totalCreated", s.TotalCreated),
		slog.Int64("totalDestroyed", s.TotalDestroyed),
		slog.Int("maxConnections", s.MaxConnections),
		slog.Int("minConnections", s.MinConnections),
		slog.Int("limit", s.Limit),
		slog.Int64("waitCount", s.WaitCount),
		slog.Duration("waitDuration", s.WaitDuration),
		slog.Int64("acquireTimeouts", s.AcquireTimeouts),
		slog.Int64("canceledAcquires", s.CanceledAcquires),
		slog.Int64("discarded", s.Discarded),
		slog.Int64("idleClosed", s.IdleClosed),
		slog.Int64("lifetimeClosed", s.LifetimeClosed),
		slog.Int64("leaks", s.Leaks),
		slog.Int64("rejectedAcquires", s.RejectedAcquires),
		slog.Int64("resets", s.Resets),
		slog.Int64("resetClosed", s.ResetClosed),
		slog.Int64("resizeClosed", s.ResizeClosed),
		slog.Int64("useAfterRelease", s.UseAfterRelease),
		slog.String("breaker", s.Breaker),
		slog.Bool("closed", s.Closed),
	)
}
