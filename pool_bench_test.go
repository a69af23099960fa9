package supapool_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/puddle/v2"
	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool"
)

// The pool benchmarks run each case on supapool and, in the same run, on
// github.com/jackc/puddle/v2 (the pool under pgxpool), holding the same
// *supabase.Client resources. Compare them with benchstat or by eye:
//
//	go test -run '^$' -bench 'Pool' -benchmem -count 10 . | tee bench.txt
//
// A case is named by its goroutines and pool size; "observed" is supapool
// with an observer attached (Pool.Observe); "adaptive" cases turn on
// Config.AdaptiveLimit for supapool (with no requests sent, its limit
// stays at MinConnections, which is the pool's size here), which adds the
// limit's check to every Acquire. puddle runs them as it runs the others.
var benchCases = []struct {
	name       string
	goroutines int // 1 means a plain loop, uncontended
	size       int
	adaptive   bool
}{
	{"uncontended", 1, 4, false},
	{"g8_pool64", 8, 64, false},
	{"g8_pool1_handoff", 8, 1, false},
	{"g64_pool8", 64, 8, false},
	{"uncontended_adaptive", 1, 4, true},
	{"g8_pool64_adaptive", 8, 64, true},
	{"g64_pool8_adaptive", 64, 8, true},
}

func BenchmarkPool(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name+"/supapool", func(b *testing.B) { benchSupapool(b, bc.goroutines, bc.size, bc.adaptive, false) })
		if !bc.adaptive {
			b.Run(bc.name+"/observed", func(b *testing.B) { benchSupapool(b, bc.goroutines, bc.size, false, true) })
		}
		b.Run(bc.name+"/puddle", func(b *testing.B) {
			p, err := puddle.NewPool(&puddle.Config[*supabase.Client]{
				Constructor: func(context.Context) (*supabase.Client, error) {
					return supabase.NewClient(unusedURL, testKey, nil)
				},
				Destructor: func(*supabase.Client) {},
				MaxSize:    int32(bc.size),
			})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			for range bc.size {
				if err := p.CreateResource(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			run(b, bc.goroutines, func() {
				r, err := p.Acquire(ctx)
				if err != nil {
					b.Fatal(err)
				}
				r.Release()
			})
		})
	}
}

// BenchmarkClock is one reading of the monotonic clock, time.Since, as
// the observed cases and puddle (three readings per Acquire+Release) pay
// it: on a virtual machine it is a large part of a cycle, so it sets the
// floor of what observing costs (see the README's Benchmarks).
func BenchmarkClock(b *testing.B) {
	start := time.Now()
	var d time.Duration
	for range b.N {
		d += time.Since(start)
	}
	if d < 0 {
		b.Fatal("negative duration")
	}
}

// benchSupapool is a case on supapool; with observed, an observer is
// attached that only looks at each event, so the case measures what
// observing costs the pool (two monotonic clock readings and one call per
// event); an exporter adds its own recording (see the prometheus module's
// benchmark).
func benchSupapool(b *testing.B, goroutines, size int, adaptive, observed bool) {
	p, err := supapool.New(unusedURL, testKey, supapool.Config{
		MaxConnections: size, MinConnections: size, AcquireTimeout: time.Minute, AdaptiveLimit: adaptive,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	if observed {
		defer p.Observe(func(e supapool.Event) {
			if e.Duration < 0 {
				panic("negative duration")
			}
		})()
	}
	ctx := context.Background()
	run(b, goroutines, func() {
		c, err := p.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Release(c); err != nil {
			b.Fatal(err)
		}
	})
}

// run calls op b.N times, from one goroutine or spread over g goroutines.
func run(b *testing.B, g int, op func()) {
	b.ReportAllocs()
	b.ResetTimer()
	if g == 1 {
		for range b.N {
			op()
		}
		return
	}
	procs := runtime.GOMAXPROCS(0)
	if g%procs != 0 {
		b.Fatalf("%d goroutines is not a multiple of GOMAXPROCS=%d", g, procs)
	}
	b.SetParallelism(g / procs)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			op()
		}
	})
}
