package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// fakeEnv is a server environment running testdata/fakeserver.js under
// Node with the given extra environment.
func fakeEnv(t *testing.T, env map[string]string) Config {
	t.Helper()
	localenv.SkipIfShort(t, "Node (a stand-in server process)")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found on PATH (Node 20+ is needed, as for tools/backstage): %v", err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "fakeserver.js"))
	if err != nil {
		t.Fatal(err)
	}
	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e := map[string]string{"PORT": strconv.Itoa(port)}
	for k, v := range env {
		e[k] = v
	}
	return Config{
		Dir:          t.TempDir(),
		Command:      []string{node, script},
		Env:          e,
		HealthURL:    fmt.Sprintf("http://127.0.0.1:%d/healthz", port),
		StopTimeout:  5 * time.Second,
		StartTimeout: time.Minute,
	}
}

func newActs(t *testing.T, envs map[string]Config) *Activities {
	t.Helper()
	a, err := New(envs, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.PollInterval = 50 * time.Millisecond
	// Whatever a failed test leaves running is stopped.
	t.Cleanup(func() {
		for name, c := range envs {
			if p, found, _ := readPidFile(c.pidFile()); found && identify(p).ours {
				_, _, _ = a.terminate(t.Context(), name, p, time.Second)
			}
		}
	})
	return a
}

// alive reports whether pid runs (zombies do not).
func alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.live()
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 200 && alive(pid); i++ {
		time.Sleep(25 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("pid %d still runs", pid)
	}
}

func intOut(t *testing.T, outs map[string]any, key string) int {
	t.Helper()
	f, ok := outs[key].(float64)
	if !ok {
		t.Fatalf("output %s = %#v, want a number", key, outs[key])
	}
	return int(f)
}

// The whole lifecycle on a stand-in process: start (and again: already
// running), status, logs (secret redacted), stop by SIGTERM (its child in
// the group too), status stopped.
func TestLifecycleFake(t *testing.T) {
	t.Setenv("STAGEHAND_TEST_SERVER_SECRET", "hunter2-value")
	c := fakeEnv(t, map[string]string{"CHILD": "1", "PRINT": "env:STAGEHAND_TEST_SERVER_SECRET"})
	// PRINT is given as a reference: the process prints the resolved value.
	a := newActs(t, map[string]Config{"portal": c})
	types := StepTypes(a)

	run := steptest.MustStep(t, types, "server.start", map[string]any{"environment": "portal"})
	pid := intOut(t, run.Outputs, "pid")
	if run.Outputs["alreadyRunning"] != false || run.Outputs["url"] != baseURL(c.HealthURL) || run.Outputs["readyAfter"] == "" {
		t.Errorf("start outputs %v", run.Outputs)
	}
	p, found, err := readPidFile(c.pidFile())
	if err != nil || !found || p.Pid != pid || p.Pgid != pid {
		t.Fatalf("pid file %+v %v %v", p, found, err)
	}
	again := steptest.MustStep(t, types, "server.start", map[string]any{"environment": "portal"})
	if again.Outputs["alreadyRunning"] != true || intOut(t, again.Outputs, "pid") != pid {
		t.Errorf("second start %v", again.Outputs)
	}

	st := steptest.MustStep(t, types, "server.status", map[string]any{"environment": "portal", "expect": "healthy"})
	if st.Outputs["running"] != true || st.Outputs["healthy"] != true || intOut(t, st.Outputs, "httpStatus") != 200 || intOut(t, st.Outputs, "pid") != pid {
		t.Errorf("status %v", st.Outputs)
	}
	run = steptest.RunStep(t, types, "server.status", map[string]any{"environment": "portal", "expect": "stopped"})
	steptest.WantAppError(t, run.Err, activities.ErrServerStatusMismatch, false, []string{"is not stopped", fmt.Sprintf("pid %d", pid)})

	logs := steptest.MustStep(t, types, "server.logs", map[string]any{"environment": "portal"})
	tail := fmt.Sprint(logs.Outputs["tail"])
	if !strings.Contains(tail, "listening on") {
		t.Errorf("tail %s", tail)
	}
	if strings.Contains(tail, "hunter2-value") || !strings.Contains(tail, "***") {
		t.Errorf("the secret value is not redacted from the tail: %s", tail)
	}
	if strings.Contains(tail, markerPrefix) {
		t.Errorf("since start, the tail holds the marker: %s", tail)
	}
	childPid := 0
	if m := regexp.MustCompile(`child sleep pid (\d+)`).FindStringSubmatch(tail); m != nil {
		childPid, _ = strconv.Atoi(m[1])
	}
	if childPid == 0 || !alive(childPid) {
		t.Fatalf("no live child in %s", tail)
	}

	stop := steptest.MustStep(t, types, "server.stop", map[string]any{"environment": "portal"})
	if stop.Outputs["wasRunning"] != true || intOut(t, stop.Outputs, "pid") != pid || stop.Outputs["signal"] != "SIGTERM" {
		t.Errorf("stop outputs %v", stop.Outputs)
	}
	if alive(pid) || alive(childPid) {
		t.Errorf("after stop: server alive %v, its child alive %v", alive(pid), alive(childPid))
	}
	if _, err := os.Stat(c.pidFile()); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
	steptest.MustStep(t, types, "server.status", map[string]any{"environment": "portal", "expect": "stopped"})
	again = steptest.MustStep(t, types, "server.stop", map[string]any{"environment": "portal"})
	if again.Outputs["wasRunning"] != false || again.Outputs["signal"] != "" || !strings.Contains(fmt.Sprint(again.Outputs["note"]), "no pid file") {
		t.Errorf("second stop %v", again.Outputs)
	}
}

// A process that exits during start fails the step with its exit status
// and its last log lines (since this start, not an earlier one's).
func TestStartFailsWhenTheProcessExits(t *testing.T) {
	// CHILD: a sleep it leaves behind in its group must be stopped too.
	c := fakeEnv(t, map[string]string{"EXIT_CODE": "3", "CHILD": "1"})
	if err := os.MkdirAll(filepath.Dir(c.logFile()), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.logFile(), []byte("an earlier run's line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := newActs(t, map[string]Config{"portal": c})
	run := steptest.RunStep(t, StepTypes(a), "server.start", map[string]any{"environment": "portal"})
	msg := steptest.WantAppError(t, run.Err, activities.ErrServerStartFailed, true,
		[]string{"exited with code 3", "startup problem line 25", "Backend failed to start up", "startup problem line 7"},
		"an earlier run's line", "startup problem line 6\n")
	t.Log(msg)
	log, _ := os.ReadFile(c.logFile())
	m := regexp.MustCompile(`child sleep pid (\d+)`).FindSubmatch(log)
	if m == nil {
		t.Fatalf("no child in the log: %s", log)
	}
	childPid, _ := strconv.Atoi(string(m[1]))
	if alive(childPid) {
		t.Errorf("the child %d the failed server left in its group still runs", childPid)
	}
	if !strings.Contains(msg, "it left in its group were stopped") {
		t.Errorf("the message does not say the leftovers were stopped: %s", msg)
	}
	if _, err := os.Stat(c.pidFile()); !os.IsNotExist(err) {
		t.Errorf("pid file left after a failed start: %v", err)
	}
	// The log step fails on the default pattern, quoting the line.
	run = steptest.RunStep(t, StepTypes(a), "server.logs", map[string]any{"environment": "portal"})
	steptest.WantAppError(t, run.Err, activities.ErrServerLogErrors, true,
		[]string{`pattern "Backend failed to start up"`, "  Backend failed to start up"})
}

// A pid file naming a live process with another start time (the pid was
// reused) is not ours: stop signals nothing and says so.
func TestStaleProcessIsNotKilled(t *testing.T) {
	c := fakeEnv(t, nil)
	a := newActs(t, map[string]Config{"portal": c})
	sleep := exec.Command("sleep", "300")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	st, ok := readStat(sleep.Process.Pid)
	if !ok {
		t.Fatal("no stat for sleep")
	}
	stale := PidFile{Pid: sleep.Process.Pid, Pgid: st.Pgrp, StartTime: st.StartTime - 1, StartedAt: time.Now(), Command: c.Command}
	if err := writePidFile(c.pidFile(), stale); err != nil {
		t.Fatal(err)
	}
	status := steptest.MustStep(t, StepTypes(a), "server.status", map[string]any{"environment": "portal"})
	if status.Outputs["running"] != false || !strings.Contains(fmt.Sprint(status.Outputs["note"]), "now another process") {
		t.Errorf("status %v", status.Outputs)
	}
	stop := steptest.MustStep(t, StepTypes(a), "server.stop", map[string]any{"environment": "portal"})
	if stop.Outputs["wasRunning"] != false || stop.Outputs["signal"] != "" || !strings.Contains(fmt.Sprint(stop.Outputs["note"]), "stale pid file") {
		t.Errorf("stop outputs %v", stop.Outputs)
	}
	time.Sleep(200 * time.Millisecond)
	if !alive(sleep.Process.Pid) {
		t.Fatal("stop killed an unrelated process")
	}
	if _, err := os.Stat(c.pidFile()); !os.IsNotExist(err) {
		t.Errorf("stale pid file not removed: %v", err)
	}
	// And start does not take the unrelated process for the server.
	run := steptest.MustStep(t, StepTypes(a), "server.start", map[string]any{"environment": "portal"})
	if run.Outputs["alreadyRunning"] != false || intOut(t, run.Outputs, "pid") == sleep.Process.Pid {
		t.Errorf("start %v", run.Outputs)
	}
}

// A process that ignores SIGTERM is killed after the stop timeout.
func TestStopKillsAfterTimeout(t *testing.T) {
	c := fakeEnv(t, map[string]string{"IGNORE_TERM": "1"})
	c.StopTimeout = time.Second
	a := newActs(t, map[string]Config{"portal": c})
	pid := intOut(t, steptest.MustStep(t, StepTypes(a), "server.start", map[string]any{"environment": "portal"}).Outputs, "pid")
	begin := time.Now()
	stop := steptest.MustStep(t, StepTypes(a), "server.stop", map[string]any{"environment": "portal"})
	if stop.Outputs["signal"] != "SIGKILL" || time.Since(begin) < time.Second {
		t.Errorf("stop outputs %v after %s", stop.Outputs, time.Since(begin))
	}
	waitGone(t, pid)
	logs := steptest.MustStep(t, StepTypes(a), "server.logs", map[string]any{"environment": "portal", "sinceStart": false, "lines": 3})
	if tail := fmt.Sprint(logs.Outputs["tail"]); !strings.Contains(tail, "ignoring SIGTERM") {
		t.Errorf("tail %s", tail)
	}
}

// server.logs fails on a pattern the step gives, naming it.
func TestLogsErrorPattern(t *testing.T) {
	c := fakeEnv(t, nil)
	a := newActs(t, map[string]Config{"portal": c})
	steptest.MustStep(t, StepTypes(a), "server.start", map[string]any{"environment": "portal"})
	ok := steptest.MustStep(t, StepTypes(a), "server.logs", map[string]any{"environment": "portal", "lines": 1})
	if tail, _ := ok.Outputs["tail"].([]any); len(tail) != 1 {
		t.Errorf("lines 1: tail %v", ok.Outputs["tail"])
	}
	run := steptest.RunStep(t, StepTypes(a), "server.logs", map[string]any{"environment": "portal", "errorPatterns": []any{`listening on \d+`}})
	steptest.WantAppError(t, run.Err, activities.ErrServerLogErrors, true, []string{`pattern "listening on \\d+"`, "  listening on "})
}

// A health URL that never answers 200 fails the start with ServerNotReady
// and the process stopped.
func TestStartNotReady(t *testing.T) {
	c := fakeEnv(t, map[string]string{"NEVER_READY": "1"})
	a := newActs(t, map[string]Config{"portal": c})
	run := steptest.RunStep(t, StepTypes(a), "server.start", map[string]any{"environment": "portal", "timeout": "2s"})
	steptest.WantAppError(t, run.Err, activities.ErrServerNotReady, true, []string{"did not answer 200 within 2s", "503", "SIGTERM", "listening on"})
	steptest.MustStep(t, StepTypes(a), "server.status", map[string]any{"environment": "portal", "expect": "stopped"})
}

// Something the worker did not start answering on the health URL is not
// taken for the server: start refuses, stop leaves it alone.
func TestPortTaken(t *testing.T) {
	c := fakeEnv(t, nil)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
	defer other.Close()
	c.HealthURL = other.URL + "/healthz"
	a := newActs(t, map[string]Config{"portal": c})
	run := steptest.RunStep(t, StepTypes(a), "server.start", map[string]any{"environment": "portal"})
	steptest.WantAppError(t, run.Err, activities.ErrServerPortInUse, true, []string{"already answers (200 OK)", "nothing was started"})
	if _, err := os.Stat(c.logFile()); !os.IsNotExist(err) {
		t.Errorf("a log file was written: %v", err)
	}
	// Stop must not report "stopped" while something serves there: a
	// runbook would go on to back up a live database.
	run = steptest.RunStep(t, StepTypes(a), "server.stop", map[string]any{"environment": "portal"})
	steptest.WantAppError(t, run.Err, activities.ErrServerPortInUse, true, []string{"no supervised server", "still answers (200 OK)", "left alone"})
	run = steptest.RunStep(t, StepTypes(a), "server.status", map[string]any{"environment": "portal", "expect": "healthy"})
	steptest.WantAppError(t, run.Err, activities.ErrServerStatusMismatch, false, []string{"running false", "something else listens there"})
}
