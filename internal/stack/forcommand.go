package stack

import (
	"context"
	"fmt"
	"io"
	"time"
)

// ForCommand starts a stack with opts for a command, such as the load test
// or the launcher of make example: it says so on progress, after the
// command's name, and gives Start two minutes. The caller closes the stack.
func ForCommand(ctx context.Context, name string, progress io.Writer, opts Options) (*Stack, error) {
	what := "PostgreSQL 15 + PostgREST 12 + gateway proxy"
	if opts.Replica {
		what += ", a streaming read replica with its own PostgREST and gateway"
	}
	if opts.TLS {
		what += ", TLS gateways (HTTP/2)"
	}
	fmt.Fprintf(progress, "%s: starting %s on loopback\n", name, what)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start the stack: %w", err)
	}
	return s, nil
}
