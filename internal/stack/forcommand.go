package stack

import (
	"context"
	"fmt"
	"io"
	"time"
)

// ForCommand starts a stack for a command, such as the load test or the
// launcher of make example: it says so on progress, after the command's
// name, and gives Start two minutes. The caller closes the stack.
func ForCommand(ctx context.Context, name string, progress io.Writer) (*Stack, error) {
	return ForCommandWith(ctx, name, Options{}, progress)
}

// ForCommandWith is ForCommand with opts.
func ForCommandWith(ctx context.Context, name string, opts Options, progress io.Writer) (*Stack, error) {
	fmt.Fprintf(progress, "%s: starting PostgreSQL 15 + PostgREST 12 + gateway proxy on loopback\n", name)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start the stack: %w", err)
	}
	return s, nil
}
