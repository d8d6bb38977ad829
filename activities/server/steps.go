package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/stagehand-dev/stagehand/activities"
)

// Start starts the environment's server unless its supervised process
// already runs, and waits until the health URL answers 200.
func (a *Activities) Start(ctx context.Context, in StartInput) (StartOutput, error) {
	c, err := a.config(in.Environment)
	if err != nil {
		return StartOutput{}, err
	}
	timeout, err := parseTimeout(in.Timeout, c.startTimeout(), maxStartTimeout)
	if err != nil {
		return StartOutput{}, err
	}
	unlock, err := a.lock(ctx, in.Environment, c)
	if err != nil {
		return StartOutput{}, err
	}
	defer unlock()
	return a.start(ctx, in.Environment, c, timeout)
}

// Stop stops the environment's supervised process, if it runs.
func (a *Activities) Stop(ctx context.Context, in StopInput) (StopOutput, error) {
	c, err := a.config(in.Environment)
	if err != nil {
		return StopOutput{}, err
	}
	grace, err := parseTimeout(in.Timeout, c.stopTimeout(), maxStopTimeout)
	if err != nil {
		return StopOutput{}, err
	}
	unlock, err := a.lock(ctx, in.Environment, c)
	if err != nil {
		return StopOutput{}, err
	}
	defer unlock()
	return a.stop(ctx, in.Environment, c, grace)
}

// Restart stops and starts the environment's server, holding its lock
// throughout so that no other step starts it in between.
func (a *Activities) Restart(ctx context.Context, in RestartInput) (RestartOutput, error) {
	c, err := a.config(in.Environment)
	if err != nil {
		return RestartOutput{}, err
	}
	timeout, err := parseTimeout(in.Timeout, c.startTimeout(), maxStartTimeout)
	if err != nil {
		return RestartOutput{}, err
	}
	unlock, err := a.lock(ctx, in.Environment, c)
	if err != nil {
		return RestartOutput{}, err
	}
	defer unlock()
	stopped, err := a.stop(ctx, in.Environment, c, c.stopTimeout())
	if err != nil {
		return RestartOutput{}, err
	}
	started, err := a.start(ctx, in.Environment, c, timeout)
	if err != nil {
		return RestartOutput{}, err
	}
	return RestartOutput{
		StoppedPid: stopped.Pid, WasRunning: stopped.WasRunning, StopSignal: stopped.Signal,
		Pid: started.Pid, StartedAt: started.StartedAt, AlreadyRunning: started.AlreadyRunning,
		ReadyAfter: started.ReadyAfter, URL: started.URL,
	}, nil
}

func runID(ctx context.Context) string {
	if activity.IsActivity(ctx) {
		return activity.GetInfo(ctx).WorkflowExecution.ID
	}
	return ""
}

func (a *Activities) start(ctx context.Context, name string, c Config, timeout time.Duration) (StartOutput, error) {
	if c.Systemd != nil {
		return a.unitStart(ctx, name, c, timeout)
	}
	p, found, id, err := supervised(name, c)
	if err != nil {
		return StartOutput{}, err
	}
	if found && id.ours {
		// A retry after a crash, or a start of a running server: wait
		// for it rather than starting a second one.
		a.log(ctx, "server already running", "environment", name, "pid", p.Pid)
		_, values, rerr := a.resolveEnv(ctx, name, c)
		return a.waitReady(ctx, name, c, p, timeout, true, newCleaner(values), rerr == nil)
	}
	if found {
		a.log(ctx, "stale server pid file removed", "environment", name, "why", id.why)
		if err := removePidFile(c.pidFile()); err != nil {
			return StartOutput{}, serverErr(name, "%v", err)
		}
	}
	if code, status := a.probe(ctx, c.HealthURL); code != 0 {
		return StartOutput{}, nonRetryable(activities.ErrServerPortInUse, fmt.Sprintf(
			"server environment %q: %s already answers (%s) although no process this worker supervises is running (pid file %s%s); "+
				"a server started outside stagehand, or one whose pid file was removed, holds the port: stop it first; nothing was started",
			name, c.HealthURL, status, c.pidFile(), whyNotRunning(found, id)))
	}
	env, values, err := a.resolveEnv(ctx, name, c)
	if err != nil {
		return StartOutput{}, err
	}
	cl := newCleaner(values)
	path, err := lookPath(c.Command[0])
	if err != nil {
		return StartOutput{}, nonRetryable(activities.ErrServerStartFailed,
			fmt.Sprintf("server environment %q: program %s not found on the worker: %v", name, c.Command[0], err))
	}
	logPath := c.logFile()
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return StartOutput{}, serverErr(name, "log file directory: %v", err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return StartOutput{}, serverErr(name, "open log file: %v", err)
	}
	defer logf.Close()
	now := time.Now()
	if _, err := logf.WriteString(markerLine(now, runID(ctx), c.Command[0])); err != nil {
		return StartOutput{}, serverErr(name, "write log file %s: %v", logPath, err)
	}
	cmd := &exec.Cmd{
		Path: path,
		Args: c.Command,
		Dir:  c.Dir,
		Env:  env,
		// The log file itself, not a pipe: the server must outlive the
		// activity and the worker, and a pipe to a dead worker would
		// kill it with SIGPIPE at its next write. Stdin is /dev/null.
		Stdout: logf,
		Stderr: logf,
		// Its own session (and so its own process group): a signal to the
		// worker's group or the loss of its terminal does not reach it,
		// and stop signals the server and everything it started.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return StartOutput{}, nonRetryable(activities.ErrServerStartFailed,
			cl.text(fmt.Sprintf("server environment %q: could not start %s: %v", name, path, err)))
	}
	pid := cmd.Process.Pid
	ch := a.reap(cmd)
	st, ok := readStat(pid)
	if !ok {
		// The reaper can only have collected it if it already exited.
		<-ch.done
		return StartOutput{}, a.startFailed(ctx, name, c, cl, true, PidFile{Pid: pid, Pgid: pid}, describeExit(ch), time.Since(now))
	}
	p = PidFile{Pid: pid, Pgid: pid, StartTime: st.StartTime, StartedAt: now.UTC(), Command: c.Command, Run: runID(ctx)}
	if err := writePidFile(c.pidFile(), p); err != nil {
		// Unrecorded, no later step could find it: stop it now.
		_, _, _ = a.terminate(ctx, name, p, c.stopTimeout())
		a.forget(pid)
		return StartOutput{}, serverErr(name, "%v; the process was stopped", err)
	}
	a.log(ctx, "server started", "environment", name, "pid", pid, "logFile", logPath)
	return a.waitReady(ctx, name, c, p, timeout, false, cl, true)
}

func whyNotRunning(found bool, id identity) string {
	if !found {
		return ": none"
	}
	return ": " + id.why
}

// reap waits for a process this worker started, so its exit is seen at
// once with its status and it leaves no zombie.
func (a *Activities) reap(cmd *exec.Cmd) *child {
	ch := &child{done: make(chan struct{})}
	a.mu.Lock()
	if a.procs == nil {
		a.procs = map[int]*child{}
	}
	a.procs[cmd.Process.Pid] = ch
	a.mu.Unlock()
	go func() {
		ch.err = cmd.Wait()
		ch.state = cmd.ProcessState
		close(ch.done)
	}()
	return ch
}

func (a *Activities) child(pid int) *child {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.procs[pid]
}

func (a *Activities) forget(pid int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.procs, pid)
}

// describeExit says how a reaped child ended.
func describeExit(ch *child) string {
	if ch == nil || ch.state == nil {
		if ch != nil && ch.err != nil {
			return fmt.Sprintf("ended (%v)", ch.err)
		}
		return "exited (status unknown: an earlier worker started it)"
	}
	if ws, ok := ch.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("was killed by signal %s", ws.Signal())
	}
	return fmt.Sprintf("exited with code %d", ch.state.ExitCode())
}

// startFailed builds the failure of a process that exited during start,
// quoting the log since its start marker. What the process started in its
// group and left behind (a launcher's child) is stopped too: a failed
// start must not leave half a server holding the port.
func (a *Activities) startFailed(ctx context.Context, name string, c Config, cl cleaner, canQuote bool, p PidFile, how string, after time.Duration) error {
	left := ""
	if n := len(groupMembers(p.Pgid)); n > 0 {
		sig, _, err := a.terminate(ctx, name, p, c.stopTimeout())
		left = fmt.Sprintf("; %d process(es) it left in its group were stopped (%s)", n, sig)
		if err != nil {
			left = fmt.Sprintf("; %d process(es) it left in its group could not be stopped: %v", n, err)
		}
	}
	_ = removePidFile(c.pidFile())
	a.forget(p.Pid)
	return nonRetryable(activities.ErrServerStartFailed, fmt.Sprintf(
		"server environment %q: the server (pid %d, %s) %s after %s, before %s answered 200%s%s",
		name, p.Pid, c.Command[0], how, roundDuration(after), c.HealthURL, left, a.quoteLog(c, cl, canQuote, startFailLines)))
}

// quoteLog is the log's last lines since the start, for an error message.
func (a *Activities) quoteLog(c Config, cl cleaner, canQuote bool, n int) string {
	if !canQuote {
		return fmt.Sprintf("; see %s (not quoted: its secret env values could not be resolved to redact them)", c.logFile())
	}
	lines, err := readTail(c.logFile(), maxTailReadBytes, true)
	if err != nil {
		return fmt.Sprintf("; the log could not be read: %v", err)
	}
	return tailText(cl.lines(lastN(lines, n)))
}

// waitReady waits until the health URL answers 200, the process exits or
// timeout passes (then it stops the process).
func (a *Activities) waitReady(ctx context.Context, name string, c Config, p PidFile, timeout time.Duration, already bool, cl cleaner, canQuote bool) (StartOutput, error) {
	begin := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(a.pollInterval())
	defer tick.Stop()
	lastBeat := time.Time{}
	last := "no answer yet"
	for {
		if ch := a.child(p.Pid); ch != nil {
			select {
			case <-ch.done:
				if identify(p).leaderAlive {
					// A child this worker reaped long ago whose pid the
					// kernel has since given to the server the pid file
					// names (started by another worker): not this one.
					a.forget(p.Pid)
					continue
				}
				return StartOutput{}, a.startFailed(ctx, name, c, cl, canQuote, p, describeExit(ch), time.Since(p.StartedAt))
			default:
			}
		} else if !identify(p).ours {
			return StartOutput{}, a.startFailed(ctx, name, c, cl, canQuote, p, describeExit(nil), time.Since(p.StartedAt))
		}
		code, status := a.probe(ctx, c.HealthURL)
		if code == 200 {
			ready := time.Since(begin)
			a.log(ctx, "server ready", "environment", name, "pid", p.Pid, "readyAfter", ready)
			return StartOutput{
				Pid: p.Pid, StartedAt: p.StartedAt.UTC().Format(time.RFC3339), AlreadyRunning: already,
				ReadyAfter: roundDuration(ready), URL: baseURL(c.HealthURL),
			}, nil
		}
		last = status
		if time.Since(lastBeat) >= a.heartbeatInterval() {
			lastBeat = time.Now()
			a.heartbeat(ctx, Progress{Environment: name, Phase: "waiting for " + c.HealthURL, Pid: p.Pid, ElapsedMs: time.Since(begin).Milliseconds(), Last: last})
		}
		select {
		case <-ctx.Done():
			// The process keeps running and the pid file names it: a
			// retry finds it and waits on.
			return StartOutput{}, fmt.Errorf("server environment %q: waiting for %s: %w", name, c.HealthURL, ctx.Err())
		case <-deadline.C:
			if already {
				// This attempt started nothing: a server that was running
				// before (a slow one, or one answering 503 for a while) is
				// not ours to kill for being slow.
				return StartOutput{}, nonRetryable(activities.ErrServerNotReady, fmt.Sprintf(
					"server environment %q: the running server (pid %d) did not answer 200 on %s within %s (last: %s); it was left running%s",
					name, p.Pid, c.HealthURL, timeout, cl.text(last), a.quoteLog(c, cl, canQuote, startFailLines)))
			}
			sig, _, stopErr := a.terminate(ctx, name, p, c.stopTimeout())
			stopped := fmt.Sprintf("it was stopped (%s)", sig)
			if stopErr != nil {
				stopped = fmt.Sprintf("stopping it failed: %v", stopErr)
			} else {
				_ = removePidFile(c.pidFile())
				a.forget(p.Pid)
			}
			return StartOutput{}, nonRetryable(activities.ErrServerNotReady, fmt.Sprintf(
				"server environment %q: %s did not answer 200 within %s (last: %s); the server (pid %d) %s%s",
				name, c.HealthURL, timeout, cl.text(last), p.Pid, stopped, a.quoteLog(c, cl, canQuote, startFailLines)))
		case <-tick.C:
		}
	}
}

// terminate sends SIGTERM to the process group, SIGKILL after grace, and
// waits until no member is left. It returns the last signal sent.
func (a *Activities) terminate(ctx context.Context, name string, p PidFile, grace time.Duration) (string, time.Duration, error) {
	begin := time.Now()
	if err := syscall.Kill(-p.Pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return "", 0, retryable(activities.ErrServerStopFailed, fmt.Sprintf("server environment %q: SIGTERM to process group %d: %v", name, p.Pgid, err))
	}
	sig := "SIGTERM"
	gone := func() bool { return len(groupMembers(p.Pgid)) == 0 }
	wait := func(until time.Time) bool {
		lastBeat := time.Now()
		for time.Now().Before(until) {
			if gone() {
				return true
			}
			if time.Since(lastBeat) >= a.heartbeatInterval() {
				lastBeat = time.Now()
				a.heartbeat(ctx, Progress{Environment: name, Phase: "stopping (" + sig + ")", Pid: p.Pid, ElapsedMs: time.Since(begin).Milliseconds()})
			}
			time.Sleep(50 * time.Millisecond)
		}
		return gone()
	}
	if wait(begin.Add(grace)) {
		return sig, time.Since(begin), nil
	}
	sig = "SIGKILL"
	if err := syscall.Kill(-p.Pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return sig, 0, retryable(activities.ErrServerStopFailed, fmt.Sprintf("server environment %q: SIGKILL to process group %d: %v", name, p.Pgid, err))
	}
	// SIGKILL cannot be ignored; a member still there after this is stuck
	// in the kernel (uninterruptible I/O).
	if !wait(time.Now().Add(30 * time.Second)) {
		return sig, time.Since(begin), retryable(activities.ErrServerStopFailed, fmt.Sprintf(
			"server environment %q: process group %d still has live members 30s after SIGKILL", name, p.Pgid))
	}
	return sig, time.Since(begin), nil
}

func (a *Activities) stop(ctx context.Context, name string, c Config, grace time.Duration) (StopOutput, error) {
	if c.Systemd != nil {
		// The unit's TimeoutStopSec, not grace, bounds the stop.
		return a.unitStop(ctx, name, c)
	}
	p, found, id, err := supervised(name, c)
	if err != nil {
		return StopOutput{}, err
	}
	if !found || !id.ours {
		note := "no pid file at " + c.pidFile() + ": no supervised server"
		if found {
			note = "stale pid file " + c.pidFile() + ": " + id.why + "; nothing was signalled and the pid file was removed"
			if err := removePidFile(c.pidFile()); err != nil {
				return StopOutput{}, serverErr(name, "%v", err)
			}
		}
		if code, status := a.probe(ctx, c.HealthURL); code != 0 {
			// Reporting "stopped" here would let a runbook back up a live
			// database and reinstall packages under a running server (one
			// started by hand, or whose pid file was removed).
			return StopOutput{}, nonRetryable(activities.ErrServerPortInUse, fmt.Sprintf(
				"server environment %q: %s; but %s still answers (%s): a process this worker did not start serves there and was left alone — stop it by hand, then start it with server.start so the worker supervises it",
				name, note, c.HealthURL, status))
		}
		return StopOutput{Note: note}, nil
	}
	sig, after, err := a.terminate(ctx, name, p, grace)
	if err != nil {
		return StopOutput{}, err
	}
	if err := removePidFile(c.pidFile()); err != nil {
		return StopOutput{}, serverErr(name, "%v", err)
	}
	a.forget(p.Pid)
	a.log(ctx, "server stopped", "environment", name, "pid", p.Pid, "signal", sig, "after", after)
	return StopOutput{WasRunning: true, Pid: p.Pid, Signal: sig, StoppedAfter: roundDuration(after)}, nil
}

// Status reports the supervised process and the health URL.
func (a *Activities) Status(ctx context.Context, in StatusInput) (StatusOutput, error) {
	c, err := a.config(in.Environment)
	if err != nil {
		return StatusOutput{}, err
	}
	switch in.Expect {
	case "", "healthy", "stopped":
	default:
		return StatusOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("expect %q: want healthy, stopped or nothing", in.Expect))
	}
	out, code, status, err := a.status(ctx, in.Environment, c)
	if err != nil {
		return StatusOutput{}, err
	}
	describe := func() string {
		s := fmt.Sprintf("running %v", out.Running)
		if out.Running {
			s += fmt.Sprintf(" (pid %d, up %s)", out.Pid, out.Uptime)
		}
		if code == 0 {
			s += fmt.Sprintf(", %s: no answer (%s)", c.HealthURL, status)
		} else {
			s += fmt.Sprintf(", %s: %s", c.HealthURL, status)
		}
		if out.Note != "" {
			s += "; " + out.Note
		}
		return s
	}
	switch {
	case in.Expect == "healthy" && !(out.Running && out.Healthy):
		return StatusOutput{}, retryable(activities.ErrServerStatusMismatch,
			fmt.Sprintf("server environment %q is not healthy: %s", in.Environment, describe()))
	case in.Expect == "stopped" && (out.Running || code != 0):
		return StatusOutput{}, retryable(activities.ErrServerStatusMismatch,
			fmt.Sprintf("server environment %q is not stopped: %s", in.Environment, describe()))
	}
	return out, nil
}

func (a *Activities) status(ctx context.Context, name string, c Config) (StatusOutput, int, string, error) {
	if c.Systemd != nil {
		return a.unitStatus(ctx, name, c)
	}
	p, found, id, err := supervised(name, c)
	if err != nil {
		return StatusOutput{}, 0, "", err
	}
	code, status := a.probe(ctx, c.HealthURL)
	out := StatusOutput{HTTPStatus: code, Healthy: code == 200}
	var notes []string
	switch {
	case found && id.ours:
		out.Running, out.Pid = true, p.Pid
		out.StartedAt = p.StartedAt.UTC().Format(time.RFC3339)
		out.Uptime = roundDuration(time.Since(p.StartedAt))
	case found:
		notes = append(notes, "stale pid file "+c.pidFile()+": "+id.why)
	}
	if !out.Running && code != 0 {
		notes = append(notes, fmt.Sprintf("%s answers (%s) but no process this worker supervises runs: something else listens there", c.HealthURL, status))
	}
	out.Note = strings.Join(notes, "; ")
	return out, code, status, nil
}

// Logs returns the end of the log file and fails on error patterns.
func (a *Activities) Logs(ctx context.Context, in LogsInput) (LogsOutput, error) {
	c, err := a.config(in.Environment)
	if err != nil {
		return LogsOutput{}, err
	}
	n := in.Lines
	switch {
	case n == 0:
		n = DefaultLogLines
	case n < 0 || n > maxLogLines:
		return LogsOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("lines %d: want 1 to %d", n, maxLogLines))
	}
	if len(in.ErrorPatterns) > maxPatterns {
		return LogsOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("errorPatterns: %d patterns, at most %d", len(in.ErrorPatterns), maxPatterns))
	}
	for i, p := range in.ErrorPatterns {
		if len(p) > maxPatternBytes {
			return LogsOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("errorPatterns[%d] is %d bytes long, at most %d", i, len(p), maxPatternBytes))
		}
	}
	res, err := compilePatterns(append(append([]string(nil), c.errorPatterns()...), in.ErrorPatterns...))
	if err != nil {
		return LogsOutput{}, nonRetryable(activities.ErrInvalidArguments, err.Error())
	}
	sinceStart := in.SinceStart == nil || *in.SinceStart
	// The values are needed to redact them from what is returned.
	_, values, err := a.resolveEnv(ctx, in.Environment, c)
	if err != nil {
		return LogsOutput{}, err
	}
	cl := newCleaner(values)
	var raw, rawSince []string
	file := ""
	if c.Systemd != nil {
		file = "journal of " + c.Systemd.Unit
		raw, rawSince, err = a.unitLogs(ctx, in.Environment, c, sinceStart)
		if err != nil {
			return LogsOutput{}, err
		}
	} else {
		file = c.logFile()
		raw, err = readTail(file, maxTailReadBytes, sinceStart)
		if err != nil {
			return LogsOutput{}, serverErr(in.Environment, "%v", err)
		}
		rawSince = raw
		if !sinceStart {
			if rawSince, err = readTail(file, maxTailReadBytes, true); err != nil {
				return LogsOutput{}, serverErr(in.Environment, "%v", err)
			}
		}
	}
	lines := cl.lines(raw)
	since := cl.lines(rawSince)
	// Patterns see cleaned lines only: a pattern from a run must not be
	// able to probe a secret value by matching or not.
	found := matchPatterns(res, since)
	out := LogsOutput{Tail: lastN(lines, n), Matches: []string{}, File: file}
	if out.Tail == nil {
		out.Tail = []string{}
	}
	if len(found) == 0 {
		return out, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "server environment %q: error patterns matched the log %s since the last start:", in.Environment, file)
	for _, m := range found {
		fmt.Fprintf(&b, "\npattern %q, %d line(s):", m.pattern, len(m.lines))
		for _, l := range m.lines {
			b.WriteString("\n  " + l)
		}
	}
	return LogsOutput{}, nonRetryable(activities.ErrServerLogErrors, b.String())
}
