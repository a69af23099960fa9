package supapoolprom_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/supapool/supapool"
	supapoolprom "github.com/supapool/supapool/prometheus"
)

// Register a pool's collector and serve /metrics.
func ExampleNewCollector() {
	pool, err := supapool.New(os.Getenv("SUPABASE_URL"), os.Getenv("SUPABASE_SERVICE_ROLE_KEY"), supapool.ProductionConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	reg := prometheus.NewRegistry()
	reg.MustRegister(supapoolprom.NewCollector(pool, "main"))
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}
