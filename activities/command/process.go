package command

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// Progress is the heartbeat detail of a running command.
type Progress struct {
	Command   string `json:"command"`
	Lines     int    `json:"lines"`
	LastLine  string `json:"lastLine,omitempty"`
	ElapsedMs int64  `json:"elapsedMs"`
}

// run starts the plan's process and waits for it, the timeout or the
// activity's cancellation, whichever comes first.
func (a *Activities) run(ctx context.Context, p plan) (RunOutput, error) {
	out := newOutput(a.tailLines(), p.secrets)
	step := ""
	if activity.IsActivity(ctx) {
		step = activity.GetInfo(ctx).ActivityID
	}
	if a.Logger != nil {
		log := a.Logger.With(activities.LogAttrs(ctx)...).With("step", step, "command", p.name)
		out.log = func(line string) { log.Info("command output", "line", line) }
	}

	// One pipe for both streams keeps their lines in the order the program
	// wrote them.
	pr, pw, err := os.Pipe()
	if err != nil {
		return RunOutput{}, fmt.Errorf("command %q: make output pipe: %w", p.name, err)
	}
	cmd := &exec.Cmd{
		Path:   p.path,
		Args:   p.argv,
		Dir:    p.dir,
		Env:    p.env,
		Stdout: pw,
		Stderr: pw,
		// Its own process group: a timeout signals the command and
		// everything it started, and nothing of the worker's.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		return RunOutput{}, nonRetryable(activities.ErrCommandFailed,
			out.scrub(fmt.Sprintf("command %q could not start %s: %v", p.name, p.path, err)))
	}
	// The child holds its own copy; ours must go so the reader sees EOF
	// once every process of the group has exited.
	pw.Close()
	pgid := cmd.Process.Pid

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		out.read(pr)
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()

	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	ticker := time.NewTicker(a.heartbeatInterval())
	defer ticker.Stop()
	var (
		reason  string // "timeout" or "cancelled" once we kill it
		killed  chan struct{}
		waitErr error
		ctxDone = ctx.Done()
		kill    = func(why string) {
			reason = why
			killed = make(chan struct{})
			go func() {
				defer close(killed)
				a.terminate(pgid)
			}()
		}
	)
loop:
	for {
		select {
		case waitErr = <-waitDone:
			break loop
		case <-timer.C:
			if reason == "" {
				kill("timeout")
			}
		case <-ctxDone:
			ctxDone = nil
			if reason == "" {
				kill("cancelled")
			}
		case <-ticker.C:
			lines, last := out.progress()
			a.heartbeat(ctx, Progress{Command: p.name, Lines: lines, LastLine: last, ElapsedMs: time.Since(start).Milliseconds()})
		}
	}
	elapsed := time.Since(start)
	if killed != nil {
		<-killed
	} else if groupAlive(pgid) {
		// The command exited but left processes behind in its group
		// (a daemon, a watcher); they would hold the pipe open and
		// outlive the step.
		a.terminate(pgid)
	}
	// A process that left the group (setsid) can still hold the pipe;
	// do not wait for it forever.
	select {
	case <-readDone:
	case <-time.After(2 * time.Second):
		pr.Close()
		<-readDone
	}
	pr.Close()

	res := RunOutput{Command: p.name, ExitCode: cmd.ProcessState.ExitCode(), Tail: out.tail(), DurationMs: elapsed.Milliseconds()}
	if a.Logger != nil {
		a.Logger.With(activities.LogAttrs(ctx)...).Info("command finished", "step", step, "command", p.name,
			"exitCode", res.ExitCode, "durationMs", res.DurationMs, "killed", reason)
	}
	switch reason {
	case "timeout":
		return RunOutput{}, nonRetryable(activities.ErrCommandTimeout,
			fmt.Sprintf("command %q timed out after %s; its process group was killed%s", p.name, p.timeout, tailSuffix(res.Tail)))
	case "cancelled":
		return RunOutput{}, fmt.Errorf("command %q cancelled after %s; its process group was killed: %w",
			p.name, elapsed.Round(time.Millisecond), ctx.Err())
	}
	if waitErr != nil {
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) {
			return RunOutput{}, nonRetryable(activities.ErrCommandFailed,
				out.scrub(fmt.Sprintf("command %q: %v%s", p.name, waitErr, tailSuffix(res.Tail))))
		}
		how := fmt.Sprintf("exited with code %d", res.ExitCode)
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			how = fmt.Sprintf("was killed by signal %s", ws.Signal())
		}
		return RunOutput{}, nonRetryable(activities.ErrCommandFailed,
			fmt.Sprintf("command %q %s after %s%s", p.name, how, elapsed.Round(time.Millisecond), tailSuffix(res.Tail)))
	}
	return res, nil
}

func tailSuffix(tail string) string {
	if tail == "" {
		return " (no output)"
	}
	return "; last output:\n" + tail
}

func (a *Activities) heartbeat(ctx context.Context, p Progress) {
	if a.onHeartbeat != nil {
		a.onHeartbeat(p)
	}
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, p)
	}
}

// terminate asks the process group to stop, then kills what is left after
// the grace period: a program that ignores SIGTERM, and its children too.
func (a *Activities) terminate(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(a.killGrace())
	for time.Now().Before(deadline) {
		if !groupAlive(pgid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	// SIGKILL cannot be ignored; wait briefly so that the caller sees the
	// group gone (its members are reaped by their parents or init).
	for i := 0; i < 100 && groupAlive(pgid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// groupAlive reports whether any live process is left in the group.
// Zombies do not count: in a container whose init does not reap orphans,
// killed members stay zombies forever, and waiting for them would turn
// every kill into a full grace period.
func groupAlive(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, pgrp, ok := procStat(pid)
		if ok && pgrp == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}

// procStat reads a process's state and process group from /proc.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid pgrp ...; comm may contain spaces and parens.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pgrp, err = strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pgrp, true
}

// output collects a command's lines: each goes to the log, the last n stay
// in a ring for the result, and secret values are replaced in both.
type output struct {
	red     *secrets.Redactor
	log     func(string)
	bufSize int

	mu    sync.Mutex
	ring  []string
	next  int
	full  bool
	lines int
	last  string
}

// minSecretLineBytes is the shortest line of a multi-line secret that is
// scrubbed on its own.
const minSecretLineBytes = 8

func newOutput(n int, secretValues []string) *output {
	// Every non-empty value counts: the command's environment is the
	// operator's choice, and a short value echoed is still a leak.
	red := secrets.NewRedactor("***", 1)
	red.Add(secretValues...)
	// Output is scrubbed a line at a time, so a value of several lines
	// (a PEM key, a kubeconfig) echoed whole would match nowhere: each of
	// its lines is a value too. Short ones (a blank line, "}") are left
	// out; masking every "}" would leave nothing readable.
	for _, v := range secretValues {
		if !strings.Contains(v, "\n") {
			continue
		}
		for l := range strings.SplitSeq(v, "\n") {
			if l = strings.TrimRight(l, "\r"); len(l) >= minSecretLineBytes {
				red.Add(l)
			}
		}
	}
	// A line is cut at maxLineBytes only after scrubbing, so the buffer
	// must also hold a secret that starts just before the cut.
	return &output{ring: make([]string, n), red: red, bufSize: maxLineBytes + min(red.Longest(), 64<<10) + 1}
}

func (o *output) scrub(s string) string { return o.red.Clean(s) }

// read consumes the pipe line by line until EOF. A very long line is cut
// (the rest of it dropped) so one minified bundle on stdout cannot make
// the step hold megabytes.
func (o *output) read(r io.Reader) {
	br := bufio.NewReaderSize(r, o.bufSize)
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			o.add(chunk, true)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return
			}
			continue
		}
		if len(chunk) > 0 {
			o.add(chunk, false)
		}
		if err != nil {
			return
		}
	}
}

func (o *output) add(b []byte, cut bool) {
	line := o.scrub(strings.TrimRight(string(b), "\r\n"))
	if cut {
		// The rest of the line is dropped unread, so its last bytes may
		// be the start of a secret; replacements before them (*** is
		// shorter) can have moved them inside what is kept. They were
		// not part of a replacement, so they are the scrubbed line's
		// last bytes still: drop them.
		line = line[:max(0, len(line)-max(0, o.red.Longest()-1))]
	}
	if len(line) > maxLineBytes {
		line, cut = line[:maxLineBytes], true
	}
	line = strings.ToValidUTF8(line, "\uFFFD")
	if cut {
		line += " …[line truncated]"
	}
	if o.log != nil {
		o.log(line)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ring[o.next] = line
	o.next = (o.next + 1) % len(o.ring)
	if o.next == 0 {
		o.full = true
	}
	o.lines++
	o.last = line
}

func (o *output) progress() (int, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lines, o.last
}

// tail is the ring's lines, oldest first.
func (o *output) tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var lines []string
	if o.full {
		lines = append(lines, o.ring[o.next:]...)
	}
	lines = append(lines, o.ring[:o.next]...)
	return strings.Join(lines, "\n")
}
