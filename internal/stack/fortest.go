package stack

import (
	"context"
	"os"
	"testing"
	"time"
)

// ForTest starts a stack for t and closes it in t.Cleanup. When the binaries
// are missing it skips t with the reason, or fails it when the environment
// variable CI is "true" (so that CI cannot pass by skipping).
func ForTest(t testing.TB, opts Options) *Stack {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stack: close: %v", err)
		}
	})
	return s
}
