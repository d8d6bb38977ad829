package server

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

// Systemd drives a systemd unit instead of a process the worker supervises:
// systemctl starts and stops it (systemd sends SIGTERM, then SIGKILL after
// the unit's TimeoutStopSec), the health URL says when it is ready, and
// journalctl has its logs. The unit defines the command, directory and
// environment, so a Config with Systemd sets none of them.
type Systemd struct {
	// Unit is the unit's name, e.g. backstage.service.
	Unit string `yaml:"unit" json:"unit"`
	// User drives a user unit (systemctl --user, journalctl --user).
	User bool `yaml:"user,omitempty" json:"user,omitempty"`
}

var unitRE = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+$`)

func (s Systemd) validate(c Config, bad func(string, ...any)) {
	if !unitRE.MatchString(s.Unit) || strings.HasPrefix(s.Unit, "-") {
		bad("systemd.unit %q: want a unit name such as backstage.service", s.Unit)
	}
	if len(c.Command) > 0 || len(c.Env) > 0 || len(c.InheritEnv) > 0 || c.LogFile != "" || c.PidFile != "" {
		bad("with systemd, the unit defines the process: command, env, inheritEnv, logFile and pidFile must be empty")
	}
	for _, prog := range []string{"systemctl", "journalctl"} {
		if _, err := exec.LookPath(prog); err != nil {
			bad("systemd: %s not found on the worker: %v", prog, err)
		}
	}
}

// ToolRunner runs systemctl or journalctl and returns its standard output;
// an exit status other than 0 is an error holding standard error. Tests
// inject one; nil runs the programs.
type ToolRunner func(ctx context.Context, prog string, args ...string) (string, error)

func runTool(ctx context.Context, prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// Both keep only their newest bytes: journalctl's last lines are the
	// ones that matter, and neither may grow without bound.
	stdout, stderr := &tailBuffer{max: maxTailReadBytes}, &tailBuffer{max: 2000}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", prog, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// tailBuffer is a writer that keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		// Compact only when the slack is large, so a stream of small
		// writes stays linear.
		if over > t.max {
			t.buf = append([]byte(nil), t.buf[over:]...)
		} else {
			t.buf = t.buf[over:]
		}
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (a *Activities) tool(ctx context.Context, s *Systemd, prog string, args ...string) (string, error) {
	if s.User {
		args = append([]string{"--user"}, args...)
	}
	run := a.RunTool
	if run == nil {
		run = runTool
	}
	return run(ctx, prog, args...)
}

// unitState is what `systemctl show` says about the unit.
type unitState struct {
	load, active string
	pid          int
	since        time.Time
}

func (u unitState) running() bool {
	switch u.active {
	case "active", "activating", "reloading", "deactivating":
		return true
	}
	return false
}

func (a *Activities) unitState(ctx context.Context, name string, s *Systemd) (unitState, error) {
	out, err := a.tool(ctx, s, "systemctl", "show", "--timestamp=unix", "-p", "LoadState", "-p", "ActiveState", "-p", "MainPID", "-p", "ActiveEnterTimestamp", "--", s.Unit)
	if err != nil {
		return unitState{}, serverErr(name, "%v", err)
	}
	var u unitState
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "LoadState":
			u.load = v
		case "ActiveState":
			u.active = v
		case "MainPID":
			u.pid, _ = strconv.Atoi(v)
		case "ActiveEnterTimestamp":
			if sec, err := strconv.ParseInt(strings.TrimPrefix(v, "@"), 10, 64); err == nil && sec > 0 {
				u.since = time.Unix(sec, 0).UTC()
			}
		}
	}
	if u.load == "not-found" {
		return u, serverErr(name, "systemd has no unit %s", s.Unit)
	}
	return u, nil
}

// journal returns the unit's last log lines, since t when it is set.
func (a *Activities) journal(ctx context.Context, s *Systemd, since time.Time, n int) ([]string, error) {
	args := []string{"-u", s.Unit, "--no-pager", "-o", "cat", "-n", strconv.Itoa(n)}
	if !since.IsZero() {
		args = append(args, "--since", "@"+strconv.FormatInt(since.Unix(), 10))
	}
	out, err := a.tool(ctx, s, "journalctl", args...)
	if err != nil {
		return nil, err
	}
	text := strings.TrimRight(out, "\n")
	if text == "" {
		return nil, nil
	}
	return strings.Split(text, "\n"), nil
}

func (a *Activities) journalText(ctx context.Context, s *Systemd, since time.Time, n int) string {
	lines, err := a.journal(ctx, s, since, n)
	if err != nil {
		return fmt.Sprintf("; the journal could not be read: %v", err)
	}
	return tailText(newCleaner(nil).lines(lines))
}

func (a *Activities) unitStart(ctx context.Context, name string, c Config, timeout time.Duration) (StartOutput, error) {
	s := c.Systemd
	u, err := a.unitState(ctx, name, s)
	if err != nil {
		return StartOutput{}, err
	}
	already := u.running()
	begin := time.Now()
	if !already {
		if code, status := a.probe(ctx, c.HealthURL); code != 0 {
			return StartOutput{}, nonRetryable(activities.ErrServerPortInUse, fmt.Sprintf(
				"server environment %q: %s already answers (%s) although unit %s is %s; nothing was started",
				name, c.HealthURL, status, s.Unit, u.active))
		}
		// --no-block: readiness is the health URL's to say, waited for here.
		// A unit left "failed" by an earlier start would read as this
		// start's failure until the queued job runs.
		_, _ = a.tool(ctx, s, "systemctl", "reset-failed", "--", s.Unit)
		if _, err := a.tool(ctx, s, "systemctl", "start", "--no-block", "--", s.Unit); err != nil {
			return StartOutput{}, nonRetryable(activities.ErrServerStartFailed, fmt.Sprintf("server environment %q: %v", name, err))
		}
		a.log(ctx, "systemd unit started", "environment", name, "unit", s.Unit)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(a.pollInterval())
	defer tick.Stop()
	lastBeat, last := time.Time{}, "no answer yet"
	// The start marker of a unit: when we asked systemd to start it (or
	// when it last became active, for one already running).
	since := begin.Add(-time.Second)
	if already && !u.since.IsZero() {
		since = u.since
	}
	for {
		u, err := a.unitState(ctx, name, s)
		if err != nil {
			return StartOutput{}, err
		}
		if u.active == "failed" || (u.active == "inactive" && time.Since(begin) > 2*time.Second) {
			return StartOutput{}, nonRetryable(activities.ErrServerStartFailed, fmt.Sprintf(
				"server environment %q: unit %s is %s after %s, before %s answered 200%s",
				name, s.Unit, u.active, roundDuration(time.Since(begin)), c.HealthURL, a.journalText(ctx, s, since, startFailLines)))
		}
		code, status := a.probe(ctx, c.HealthURL)
		if code == 200 && u.running() {
			startedAt := u.since
			if startedAt.IsZero() {
				startedAt = begin.UTC()
			}
			return StartOutput{Pid: u.pid, StartedAt: startedAt.Format(time.RFC3339), AlreadyRunning: already,
				ReadyAfter: roundDuration(time.Since(begin)), URL: baseURL(c.HealthURL)}, nil
		}
		last = status
		if time.Since(lastBeat) >= a.heartbeatInterval() {
			lastBeat = time.Now()
			a.heartbeat(ctx, Progress{Environment: name, Phase: "waiting for " + c.HealthURL, Pid: u.pid, ElapsedMs: time.Since(begin).Milliseconds(), Last: last})
		}
		select {
		case <-ctx.Done():
			return StartOutput{}, fmt.Errorf("server environment %q: waiting for %s: %w", name, c.HealthURL, ctx.Err())
		case <-deadline.C:
			stopped := "it was stopped"
			if _, err := a.tool(ctx, s, "systemctl", "stop", "--", s.Unit); err != nil {
				stopped = fmt.Sprintf("stopping it failed: %v", err)
			}
			return StartOutput{}, nonRetryable(activities.ErrServerNotReady, fmt.Sprintf(
				"server environment %q: %s did not answer 200 within %s (last: %s); unit %s: %s%s",
				name, c.HealthURL, timeout, last, s.Unit, stopped, a.journalText(ctx, s, since, startFailLines)))
		case <-tick.C:
		}
	}
}

func (a *Activities) unitStop(ctx context.Context, name string, c Config) (StopOutput, error) {
	s := c.Systemd
	u, err := a.unitState(ctx, name, s)
	if err != nil {
		return StopOutput{}, err
	}
	if !u.running() {
		note := fmt.Sprintf("unit %s is %s", s.Unit, u.active)
		if code, status := a.probe(ctx, c.HealthURL); code != 0 {
			note += fmt.Sprintf("; but %s answers (%s): a process the unit does not run listens there and was left alone", c.HealthURL, status)
		}
		return StopOutput{Note: note}, nil
	}
	begin := time.Now()
	// systemctl stop waits for the unit to stop, escalating to SIGKILL
	// after the unit's TimeoutStopSec.
	if _, err := a.tool(ctx, s, "systemctl", "stop", "--", s.Unit); err != nil {
		return StopOutput{}, retryable(activities.ErrServerStopFailed, fmt.Sprintf("server environment %q: %v", name, err))
	}
	after := time.Since(begin)
	sig := "SIGTERM"
	if out, err := a.tool(ctx, s, "systemctl", "show", "-p", "Result", "--", s.Unit); err == nil && strings.TrimSpace(out) == "Result=timeout" {
		sig = "SIGKILL"
	}
	a.log(ctx, "systemd unit stopped", "environment", name, "unit", s.Unit, "signal", sig)
	return StopOutput{WasRunning: true, Pid: u.pid, Signal: sig, StoppedAfter: roundDuration(after)}, nil
}

func (a *Activities) unitStatus(ctx context.Context, name string, c Config) (StatusOutput, int, string, error) {
	u, err := a.unitState(ctx, name, c.Systemd)
	if err != nil {
		return StatusOutput{}, 0, "", err
	}
	code, status := a.probe(ctx, c.HealthURL)
	out := StatusOutput{HTTPStatus: code, Healthy: code == 200, Running: u.running()}
	if out.Running {
		out.Pid = u.pid
		if !u.since.IsZero() {
			out.StartedAt = u.since.Format(time.RFC3339)
			out.Uptime = roundDuration(time.Since(u.since))
		}
	} else {
		out.Note = fmt.Sprintf("unit %s is %s", c.Systemd.Unit, u.active)
		if code != 0 {
			out.Note += fmt.Sprintf("; %s answers (%s) but the unit does not run: something else listens there", c.HealthURL, status)
		}
	}
	return out, code, status, nil
}

// unitLogs reads the journal: since the unit last became active, or its
// last maxLogLines*4 lines otherwise.
func (a *Activities) unitLogs(ctx context.Context, name string, c Config, sinceStart bool) ([]string, []string, error) {
	s := c.Systemd
	var since time.Time
	u, err := a.unitState(ctx, name, s)
	if err != nil {
		return nil, nil, err
	}
	since = u.since
	all, err := a.journal(ctx, s, time.Time{}, 4*maxLogLines)
	if err != nil {
		return nil, nil, serverErr(name, "%v", err)
	}
	fromStart := all
	if !since.IsZero() {
		if fromStart, err = a.journal(ctx, s, since, 4*maxLogLines); err != nil {
			return nil, nil, serverErr(name, "%v", err)
		}
	}
	if sinceStart {
		return fromStart, fromStart, nil
	}
	return all, fromStart, nil
}
