package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailBuffer is an io.Writer that keeps only the last max bytes written to
// it. It captures a child's stdout and stderr for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

// Tail returns the last n lines written.
func (b *tailBuffer) Tail(n int) string {
	b.mu.Lock()
	s := strings.TrimRight(string(b.buf), "\n")
	b.mu.Unlock()
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// proc is a child process owned by the harness.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     *tailBuffer
	done    chan struct{} // closed when the process has exited and been reaped
	waitErr error         // valid after done is closed
}

// sysProcAttr returns the attributes every child gets: it is killed when the
// test binary dies (Pdeathsig), and runs as cred when cred is not nil.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
}

// spawn starts path with args and env, its output going to out.
func spawn(name, path string, args, env []string, dir string, cred *syscall.Credential, out *tailBuffer) (*proc, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr(cred)
	// Grandchildren (postgres backends) may hold the output pipe for a
	// moment after the main process died; do not wait for them forever.
	cmd.WaitDelay = 3 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("stack: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to grace (or until ctx is done) for the process
// to exit, then kills it and waits for it to be reaped.
func (p *proc) stop(ctx context.Context, sig os.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	if sig != syscall.SIGKILL && grace > 0 {
		_ = p.cmd.Process.Signal(sig)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
			return
		case <-t.C:
		case <-ctx.Done():
		}
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// failure builds an error for a process that did not come up, with the last
// lines of its output.
func (p *proc) failure(what string, cause error) error {
	state := "still running"
	if p.exited() {
		state = fmt.Sprintf("exited: %v", p.waitErr)
	}
	return fmt.Errorf("stack: %s %s: %w (%s); last output:\n%s", p.name, what, cause, state, p.out.Tail(20))
}

// waitReady polls check every interval until it returns true, the process
// exits, or ctx is done.
func (p *proc) waitReady(ctx context.Context, interval time.Duration, check func(context.Context) bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if check(ctx) {
			return nil
		}
		select {
		case <-p.done:
			return p.failure("did not become ready", errExited)
		case <-ctx.Done():
			return p.failure("did not become ready", ctx.Err())
		case <-t.C:
		}
	}
}

var errExited = fmt.Errorf("process exited")
