package supapoolotel_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/supapool/supapool"
	supapoolotel "github.com/supapool/supapool/otel"
)

// Report the pool's metrics through the global MeterProvider, and trace
// its requests with otelhttp around the pool's own sized transport, so
// that MaxConnections still bounds the connections.
func ExampleInstrument() {
	cfg := supapool.ProductionConfig()
	cfg.WrapTransport = func(base http.RoundTripper) http.RoundTripper {
		return otelhttp.NewTransport(base)
	}
	pool, err := supapool.New(os.Getenv("SUPABASE_URL"), os.Getenv("SUPABASE_SERVICE_ROLE_KEY"), cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())
	if err := supapoolotel.Instrument(pool, "main", nil); err != nil {
		log.Fatal(err)
	}
}
