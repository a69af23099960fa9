// Command example runs examples/categories against the local stack, so
// that a newcomer sees the example answer without a Supabase project:
//
//	make example
//
// It starts PostgreSQL 15, PostgREST 12 and the gateway proxy on loopback
// (internal/stack; scripts/setup-stack.sh installs them), seeds a budget
// with three categories for the user "demo-user", builds examples/categories
// and starts it with SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY set to the
// stack's, waits until it answers, and prints curl commands that carry a JWT
// for that user, signed with the stack's secret and valid for an hour. The
// example listens on $ADDR, or 127.0.0.1:8080.
//
// SIGINT (Ctrl-C) or SIGTERM stops the example, which shuts down
// gracefully, and then the stack; nothing it started keeps running.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/supapool/supapool/internal/stack"
)

const (
	demoUser    = "demo-user"
	defaultAddr = "127.0.0.1:8080"
	exampleDir  = "examples/categories"
	// stopGrace bounds the example's shutdown, which gives itself 10 s.
	stopGrace    = 15 * time.Second
	pollInterval = 50 * time.Millisecond
)

func main() {
	// Signals stay caught until run returns, so that a second Ctrl-C does
	// not cut the stack's shutdown short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addr := cmp.Or(os.Getenv("ADDR"), defaultAddr)
	err := run(ctx, addr, os.Stdout, os.Stderr, func(d demo) { d.print(os.Stdout) })
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "example: interrupted before it was ready; everything it started is stopped")
		stop()
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "example: "+err.Error())
		stop()
		os.Exit(1)
	}
}

// demo is what run has set up once the example answers.
type demo struct {
	URL    string        // the example's base URL
	Budget string        // the seeded budget's id
	Token  string        // a JWT for demoUser
	Took   time.Duration // from start to ready
}

// print writes the curl commands to try the example with.
func (d demo) print(w io.Writer) {
	auth := "-H 'Authorization: Bearer " + d.Token + "'"
	list := d.URL + "/budgets/" + d.Budget + "/categories"
	fmt.Fprintf(w, "example: ready in %.1fs. The budget %s of user %q has 3 categories; list them\n"+
		"(the token is valid for an hour):\n\n"+
		"curl -s %s %s\n\n"+
		"example: add one:\n\n"+
		"curl -s %s -d '{\"name\":\"Books\",\"group_name\":\"Fun\",\"sort_order\":4}' %s\n\n"+
		"example: Ctrl-C stops the example and the stack.\n",
		d.Took.Seconds(), d.Budget, demoUser, auth, list, auth, list)
}

// run starts the stack, seeds it, builds and starts examples/categories on
// addr, calls ready once the example answers, and then waits until ctx is
// done or the example exits. It writes its progress to out and the output
// of go build and of the example to logs. Whatever it started is stopped
// when it returns: the example first, then the stack.
func run(ctx context.Context, addr string, out, logs io.Writer, ready func(demo)) (err error) {
	began := time.Now()
	s, err := stack.ForCommand(ctx, "example", out, stack.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("stop the stack: %w", cerr))
		}
		fmt.Fprintln(out, "example: stopped the stack")
	}()

	budget, err := seed(ctx, s)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "supapool-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "categories")
	fmt.Fprintln(out, "example: building examples/categories")
	// examples/categories is a module of its own (it needs client_golang,
	// which the supapool module must not): build it from its folder.
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return fmt.Errorf("find the supapool module's folder: %w", err)
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(strings.TrimSpace(string(root)), exampleDir)
	build.Stdout, build.Stderr = logs, logs
	if err := build.Run(); err != nil {
		return fmt.Errorf("build examples/categories: %w", err)
	}

	fmt.Fprintf(out, "example: starting examples/categories on %s\n", addr)
	app, err := startApp(bin, logs,
		"SUPABASE_URL="+s.URL, "SUPABASE_SERVICE_ROLE_KEY="+s.ServiceKey, "ADDR="+addr)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(out, "example: stopping examples/categories")
		if serr := app.stop(stopGrace); serr != nil {
			err = errors.Join(err, fmt.Errorf("examples/categories: %w", serr))
		}
	}()

	url := "http://" + addr
	if err := app.waitReady(ctx, url+"/health/pool"); err != nil {
		return err
	}
	ready(demo{URL: url, Budget: budget, Token: s.UserToken(demoUser), Took: time.Since(began)})

	select {
	case <-ctx.Done():
		return nil // a signal: the deferred calls stop everything
	case <-app.done:
		return fmt.Errorf("examples/categories exited on its own: %v", app.err)
	}
}

// seed inserts demoUser's budget with three categories and returns its id.
// (Data-modifying statements in WITH run whether or not the query reads
// them.)
func seed(ctx context.Context, s *stack.Stack) (string, error) {
	id, err := s.SQL(ctx, `
with b as (
  insert into budgets (owner_id, name) values ('`+demoUser+`', 'Demo budget') returning id
), c as (
  insert into categories (budget_id, owner_id, name, group_name, sort_order, is_income)
  select b.id, '`+demoUser+`', v.name, v.grp, v.ord, v.inc
  from b, (values ('Salary', 'Income', 1, true), ('Rent', 'Home', 2, false),
                  ('Groceries', 'Living', 3, false)) as v(name, grp, ord, inc)
)
select id from b`)
	if err != nil {
		return "", fmt.Errorf("seed the demo budget: %w", err)
	}
	return id, nil
}

// app is the running example.
type app struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited and been reaped
	err  error         // its exit status, valid after done is closed
}

// startApp starts bin with env added to this process's environment, in a
// process group of its own so that a Ctrl-C at the terminal reaches only
// this command, which then stops the example once; it is killed if this
// command dies.
func startApp(bin string, logs io.Writer, env ...string) (*app, error) {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...) // later entries win
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start examples/categories: %w", err)
	}
	a := &app{cmd: cmd, done: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		close(a.done)
	}()
	return a, nil
}

// waitReady polls url every pollInterval until it answers 200, the example
// exits, or ctx is done.
func (a *app) waitReady(ctx context.Context, url string) error {
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-a.done:
			return fmt.Errorf("examples/categories exited before it answered (%v); if the address is taken, set ADDR", a.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// stop sends SIGTERM, waits up to grace for the example to shut down, then
// kills it. It returns the exit status, nil after a clean shutdown.
func (a *app) stop(grace time.Duration) error {
	select {
	case <-a.done:
		return nil // already exited; run reported why
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-a.done:
		return a.err
	case <-t.C:
		_ = a.cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("killed after %v without shutting down: %v", grace, a.err)
	}
}
