package supapool

import "testing"

// TestIdleListOrder checks that popOldest gives clients back oldest first
// across wrap-arounds and growth, and that the ring holds no reference to
// a taken one.
func TestIdleListOrder(t *testing.T) {
	l := newIdleList(3)
	conns := make([]*conn, 8)
	for i := range conns {
		conns[i] = &conn{seq: int64(i)}
	}
	var want []*conn
	push := func(c *conn) { l.push(c); want = append(want, c) }
	pop := func() {
		t.Helper()
		got := l.popOldest()
		if len(want) == 0 {
			if got != nil {
				t.Fatalf("pop on an empty list = conn %d, want nil", got.seq)
			}
			return
		}
		if got != want[0] {
			t.Fatalf("pop = conn %d, want conn %d (oldest first)", got.seq, want[0].seq)
		}
		want = want[1:]
	}
	pop() // empty
	push(conns[0])
	push(conns[1])
	pop()
	push(conns[2])
	push(conns[3]) // wraps around
	pop()
	push(conns[4])
	l.grow(6) // grows while wrapped
	if len(l.buf) != 6 {
		t.Fatalf("grow(6): capacity %d", len(l.buf))
	}
	push(conns[5])
	push(conns[6])
	push(conns[7]) // full
	l.grow(4)      // smaller: nothing changes
	if len(l.buf) != 6 || l.len() != 6 {
		t.Fatalf("grow(4) changed the list: capacity %d, len %d", len(l.buf), l.len())
	}
	for len(want) > 0 {
		pop()
	}
	pop()
	for i, c := range l.buf {
		if c != nil {
			t.Fatalf("buf[%d] still holds conn %d after it was taken", i, c.seq)
		}
	}
}

// TestIdleListPopNewest checks that pop takes the most recently added
// client, across a wrap-around, and that the two ends work together.
func TestIdleListPopNewest(t *testing.T) {
	l := newIdleList(3)
	c := []*conn{{seq: 0}, {seq: 1}, {seq: 2}, {seq: 3}}
	l.push(c[0])
	l.push(c[1])
	if got := l.popOldest(); got != c[0] {
		t.Fatalf("popOldest = %v, want c0", got)
	}
	l.push(c[2])
	l.push(c[3]) // wraps around: buf is [c3 c1 c2], head 1
	for _, want := range []*conn{c[3], c[2], c[1], nil} {
		if got := l.pop(); got != want {
			t.Fatalf("pop = %v, want %v (newest first)", got, want)
		}
	}
	for i, x := range l.buf {
		if x != nil {
			t.Fatalf("buf[%d] still holds conn %d after it was taken", i, x.seq)
		}
	}
}

// TestIdleListPushFull checks that a push beyond the capacity grows the
// ring rather than losing a client.
func TestIdleListPushFull(t *testing.T) {
	l := newIdleList(1)
	a, b := &conn{seq: 1}, &conn{seq: 2}
	l.push(a)
	l.push(b)
	if got := l.popOldest(); got != a {
		t.Fatalf("first popOldest = %v, want a", got)
	}
	if got := l.popOldest(); got != b {
		t.Fatalf("second popOldest = %v, want b", got)
	}
}
