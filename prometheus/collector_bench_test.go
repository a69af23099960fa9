package supapoolprom_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/supapool/supapool"
	supapoolprom "github.com/supapool/supapool/prometheus"
)

// BenchmarkAcquireRelease is the root module's BenchmarkPool "uncontended"
// and "g8_pool64" cases with a Collector attached: what a pool exporting
// to Prometheus pays per Acquire+Release (two histogram observations).
//
//	go test -run '^$' -bench . -benchmem ./prometheus
func BenchmarkAcquireRelease(b *testing.B) {
	for _, bc := range []struct {
		name       string
		goroutines int
		size       int
	}{{"uncontended", 1, 4}, {"g8_pool64", 8, 64}} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := supapool.New("http://127.0.0.1:1", testKey, supapool.Config{MaxConnections: bc.size, MinConnections: bc.size, AcquireTimeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(context.Background())
			supapoolprom.NewCollector(p, "bench")
			ctx := context.Background()
			op := func() {
				c, err := p.Acquire(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Release(c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			if bc.goroutines == 1 {
				for b.Loop() {
					op()
				}
				return
			}
			b.SetParallelism(max(1, bc.goroutines/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					op()
				}
			})
		})
	}
}
