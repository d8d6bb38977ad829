package localenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one server a harness runs (etcd, kube-apiserver, podman's
// service, a registry) in its own process group, so stopping it reaches
// every helper it forks (conmon, runc), with its output appended to a log
// file that failures quote. It can be started again after it stopped (a
// test restarting the API server).
type Process struct {
	// Name names the process in errors.
	Name string
	// Path and Args are the program and its arguments.
	Path string
	Args []string
	// Env is added to the test binary's environment.
	Env []string
	// Dir is the working directory; empty is the test binary's.
	Dir string
	// LogPath receives the output, appended, after a line marking each start.
	LogPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// Every child is started from one goroutine locked to its OS thread for the
// life of the test binary: Pdeathsig fires when the *thread* that forked a
// child exits, and a thread the Go runtime retires would take the server
// with it. Pinned, children die exactly when the test binary does (also on a
// panic or `go test -timeout`) and never outlive it as orphans.
var (
	spawnOnce     sync.Once
	spawnRequests = make(chan spawnRequest)
)

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

// Spawn starts cmd from the one OS thread that lives as long as the test
// binary, so a Pdeathsig set on cmd fires when the binary exits and not
// when the Go runtime retires the thread that happened to fork it.
func Spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must live on
			for r := range spawnRequests {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawnRequests <- spawnRequest{cmd: cmd, done: done}
	return <-done
}

// Start launches the process; it fails if the process is running already.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("%s is already running", p.Name)
		}
	}
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logFile, "---- %s starting at %s\n", p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := Spawn(cmd); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.err = cmd, exited, nil
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Running reports whether the process has been started and not exited.
func (p *Process) Running() bool {
	select {
	case <-p.Exited():
		return false
	default:
		return true
	}
}

// Exited is closed when the current run of the process ends (at once if it
// never started).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.exited
}

// ExitErr describes how the process ended, if it has.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	return errors.New("exited")
}

// Pid is the process's id, 0 before it started (to read its /proc entry).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stop ends the process group (StopGroup) and waits for the exit, so its
// ports are free when it returns. A process never started is no error.
func (p *Process) Stop(grace time.Duration) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_, err := StopGroup(p.Name, cmd.Process.Pid, exited, grace)
	return err
}

// StopGroup stops the process group led by pid, whose exit closes exited:
// SIGTERM, then SIGKILL if it has not exited within grace (killed reports
// that), and an error if even that does not end it within 10 s. A last
// SIGKILL reaches helpers that left the group's leader behind (conmon
// double-forks) and still carry the group id.
func StopGroup(name string, pid int, exited <-chan struct{}, grace time.Duration) (killed bool, err error) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		killed = true
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			return killed, fmt.Errorf("%s (pid %d) did not exit after SIGKILL", name, pid)
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return killed, nil
}

// LogTail returns the last n lines of the process's log, for error messages.
func (p *Process) LogTail(n int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// Tail returns the last n bytes of a program's output, trimmed and marked
// "…" where cut, for error messages that must stay readable.
func Tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
