package supapool

// SetLimitForTest moves the adaptive limit of p, a pool with AdaptiveLimit,
// to n (within its bounds), as the limiter itself would, so that tests
// without traffic can move it.
func SetLimitForTest(p *Pool, n int) {
	l := p.lim
	l.mu.Lock()
	l.limit = max(l.floor, min(float64(n), l.max))
	rose := l.publishLocked()
	l.mu.Unlock()
	if rose {
		l.raised()
	}
}
