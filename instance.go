package supapool

import (
	"slices"
	"sync"
)

// registry holds the pools made by Instance, one per (url, key). A closed
// pool stays until the next Instance call for its (url, key) drops it; the
// pool itself knows nothing of the registry.
var registry struct {
	mu    sync.Mutex
	pools map[instanceKey]*Pool
}

type instanceKey struct{ url, key string }

// Instance returns the process's open pool for (url, key), creating it with
// cfg on first use, so that code in different places shares one pool per
// database, as the original design's getInstance does. Instance never
// returns a pool that was closed before the call: once the registry's pool
// for (url, key) is closed, the next Instance call creates a fresh one.
//
// cfg is used only when a pool is created. If a pool for (url, key) is
// already open, Instance returns it unchanged, even if cfg differs, and
// logs a warning naming the differing fields; it does not resize it.
func Instance(url, key string, cfg Config) (*Pool, error) {
	k := instanceKey{url, key}
	registry.mu.Lock()
	p := registry.pools[k]
	if p != nil && p.isClosed() {
		// Closed pools are dropped here, under the registry's lock, so
		// that a pool closed before this call is never returned.
		delete(registry.pools, k)
		p = nil
	}
	if p == nil {
		var err error
		if p, err = New(url, key, cfg); err != nil {
			registry.mu.Unlock()
			return nil, err
		}
		if registry.pools == nil {
			registry.pools = make(map[instanceKey]*Pool)
		}
		registry.pools[k] = p
		registry.mu.Unlock()
		return p, nil
	}
	registry.mu.Unlock()
	if diff := configDiff(p.cfg, cfg); len(diff) > 0 {
		p.log.Warn("supapool: Instance returned the existing pool; its Config differs from the one passed, which is ignored",
			"pool", p.String(), "fields", diff)
	}
	return p, nil
}

// configDiff names the fields of want (with defaults applied) that differ
// from the pool's have.
func configDiff(have, want Config) []string {
	if want.Validate() != nil {
		return []string{"(invalid Config)"}
	}
	want = want.withDefaults()
	var diff []string
	add := func(name string, differ bool) {
		if differ {
			diff = append(diff, name)
		}
	}
	add("MaxConnections", have.MaxConnections != want.MaxConnections)
	add("MinConnections", have.MinConnections != want.MinConnections)
	add("MaxWaiting", have.MaxWaiting != want.MaxWaiting)
	add("IdleTimeout", have.IdleTimeout != want.IdleTimeout)
	add("AcquireTimeout", have.AcquireTimeout != want.AcquireTimeout)
	add("MaxLifetime", have.MaxLifetime != want.MaxLifetime || have.MaxLifetimeJitter != want.MaxLifetimeJitter)
	add("MaxRetries", have.MaxRetries != want.MaxRetries)
	add("RetryDelay", have.RetryDelay != want.RetryDelay || have.MaxRetryDelay != want.MaxRetryDelay)
	add("ClientOptions", have.ClientOptions != want.ClientOptions)
	add("LeakThreshold", have.LeakThreshold != want.LeakThreshold)
	add("Breaker", have.Breaker != want.Breaker)
	add("TLSClientConfig", have.TLSClientConfig != want.TLSClientConfig)
	add("ReadReplicas", !slices.Equal(have.ReadReplicas, want.ReadReplicas) || have.ReplicaCoolDown != want.ReplicaCoolDown)
	return diff
}
