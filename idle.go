package supapool

// idleList holds the idle clients in the order they came back: a ring
// buffer, so that adding one and taking the newest or the oldest move no
// other element and never allocate while its capacity holds every client
// (Pool keeps it at least the MaxConnections in force; see grow).
//
// Acquire takes the newest (pop): the client most recently used, whose
// memory is most likely still in the CPU's cache, so a busy pool keeps
// reusing a few clients and those it does not need stay at the old end,
// where the reaper finds them (popOldest) and closes them when they are
// surplus. (puddle and database/sql reuse the newest too.) Guarded by Pool.mu, like the rest
// of the bookkeeping: Acquire and Release touch it in the same critical
// section as their counters, so a checkout costs one lock and unlock of mu
// and nothing else.
type idleList struct {
	buf  []*conn
	head int // index of the oldest client
	n    int // how many are idle
}

func newIdleList(capacity int) idleList { return idleList{buf: make([]*conn, capacity)} }

func (l *idleList) len() int { return l.n }

// push adds c as the newest idle client.
func (l *idleList) push(c *conn) {
	if l.n == len(l.buf) {
		l.grow(2*l.n + 1) // not expected: Pool keeps the capacity above its clients
	}
	i := l.head + l.n
	if i >= len(l.buf) {
		i -= len(l.buf)
	}
	l.buf[i] = c
	l.n++
}

// pop takes the newest idle client, or returns nil if none is idle.
func (l *idleList) pop() *conn {
	if l.n == 0 {
		return nil
	}
	l.n--
	i := l.head + l.n
	if i >= len(l.buf) {
		i -= len(l.buf)
	}
	c := l.buf[i]
	l.buf[i] = nil
	return c
}

// popOldest takes the oldest idle client, or returns nil if none is idle.
func (l *idleList) popOldest() *conn {
	if l.n == 0 {
		return nil
	}
	c := l.buf[l.head]
	l.buf[l.head] = nil
	l.head++
	if l.head == len(l.buf) {
		l.head = 0
	}
	l.n--
	return c
}

// grow makes room for capacity clients, keeping their order. It does
// nothing if there is room already.
func (l *idleList) grow(capacity int) {
	if capacity <= len(l.buf) {
		return
	}
	buf := make([]*conn, capacity)
	for i := range l.n {
		j := l.head + i
		if j >= len(l.buf) {
			j -= len(l.buf)
		}
		buf[i] = l.buf[j]
	}
	l.buf, l.head = buf, 0
}
