package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// fakeUnit plays systemctl and journalctl for one unit: systemd does not
// run where the tests run, so the systemd mode is tested against the
// commands it sends and the answers systemd gives (`systemctl show`'s
// Key=Value lines), with a real HTTP health endpoint.
type fakeUnit struct {
	mu          sync.Mutex
	active      string
	pid         int
	since       time.Time
	result      string
	journal     []string
	calls       []string
	failOnStart bool
	ready       bool
}

func (f *fakeUnit) run(_ context.Context, prog string, args ...string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := prog + " " + strings.Join(args, " ")
	f.calls = append(f.calls, call)
	switch {
	case strings.Contains(call, "systemctl") && strings.Contains(call, " show ") && strings.Contains(call, "-p Result"):
		return "Result=" + f.result + "\n", nil
	case strings.Contains(call, " show "):
		ts := "n/a"
		if !f.since.IsZero() {
			ts = fmt.Sprintf("@%d", f.since.Unix())
		}
		return fmt.Sprintf("LoadState=loaded\nActiveState=%s\nMainPID=%d\nActiveEnterTimestamp=%s\n", f.active, f.pid, ts), nil
	case strings.Contains(call, " start "):
		f.journal = append(f.journal, "Starting backend")
		if f.failOnStart {
			f.active, f.result = "failed", "exit-code"
			f.journal = append(f.journal, "Backend failed to start up", "backstage.service: Main process exited, code=exited, status=1/FAILURE")
			return "", nil
		}
		f.active, f.pid, f.since, f.ready = "active", 4242, time.Now(), true
		f.journal = append(f.journal, "Listening on 127.0.0.1:7007")
		return "", nil
	case strings.Contains(call, " stop "):
		f.active, f.pid, f.ready, f.result = "inactive", 0, false, "success"
		f.journal = append(f.journal, "Stopped backstage.service")
		return "", nil
	case prog == "journalctl":
		return strings.Join(f.journal, "\n") + "\n", nil
	}
	return "", fmt.Errorf("fake systemd: unexpected %s", call)
}

func (f *fakeUnit) isReady() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeUnit) called(sub string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.Contains(c, sub) {
			n++
		}
	}
	return n
}

func systemdEnv(t *testing.T, f *fakeUnit, user bool) *Activities {
	t.Helper()
	// A health endpoint that answers 200 while the unit runs and nothing
	// at all (the connection dropped) while it does not.
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if f.isReady() {
			w.WriteHeader(200)
			return
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(health.Close)
	c := Config{HealthURL: health.URL + "/ready", Systemd: &Systemd{Unit: "backstage.service", User: user}, StartTimeout: 10 * time.Second}
	// Not New: Validate looks for systemctl on PATH, which a test machine
	// need not have.
	return &Activities{Servers: map[string]Config{"portal": c}, RunTool: f.run, PollInterval: 20 * time.Millisecond}
}

func TestSystemdLifecycle(t *testing.T) {
	f := &fakeUnit{active: "inactive"}
	a := systemdEnv(t, f, false)
	types := StepTypes(a)
	start := steptest.MustStep(t, types, "server.start", map[string]any{"environment": "portal"})
	if intOut(t, start.Outputs, "pid") != 4242 || start.Outputs["alreadyRunning"] != false {
		t.Errorf("start %v", start.Outputs)
	}
	if f.called("systemctl start --no-block -- backstage.service") != 1 {
		t.Errorf("calls %q", f.calls)
	}
	again := steptest.MustStep(t, types, "server.start", map[string]any{"environment": "portal"})
	if again.Outputs["alreadyRunning"] != true || f.called(" start ") != 1 {
		t.Errorf("second start %v, calls %q", again.Outputs, f.calls)
	}
	st := steptest.MustStep(t, types, "server.status", map[string]any{"environment": "portal", "expect": "healthy"})
	if intOut(t, st.Outputs, "pid") != 4242 || st.Outputs["startedAt"] == "" {
		t.Errorf("status %v", st.Outputs)
	}
	logs := steptest.MustStep(t, types, "server.logs", map[string]any{"environment": "portal"})
	if tail := fmt.Sprint(logs.Outputs["tail"]); !strings.Contains(tail, "Listening on") || logs.Outputs["file"] != "journal of backstage.service" {
		t.Errorf("logs %v", logs.Outputs)
	}
	if f.called("journalctl -u backstage.service --no-pager -o cat -n 4000 --since @") != 1 {
		t.Errorf("the journal was not read since the unit's start: %q", f.calls)
	}
	stop := steptest.MustStep(t, types, "server.stop", map[string]any{"environment": "portal"})
	if stop.Outputs["wasRunning"] != true || stop.Outputs["signal"] != "SIGTERM" || intOut(t, stop.Outputs, "pid") != 4242 {
		t.Errorf("stop %v", stop.Outputs)
	}
	steptest.MustStep(t, types, "server.status", map[string]any{"environment": "portal", "expect": "stopped"})
	stop = steptest.MustStep(t, types, "server.stop", map[string]any{"environment": "portal"})
	if stop.Outputs["wasRunning"] != false || !strings.Contains(fmt.Sprint(stop.Outputs["note"]), "is inactive") || f.called(" stop ") != 1 {
		t.Errorf("second stop %v, calls %q", stop.Outputs, f.calls)
	}
}

func TestSystemdStartFails(t *testing.T) {
	f := &fakeUnit{active: "inactive", failOnStart: true}
	a := systemdEnv(t, f, true)
	run := steptest.RunStep(t, StepTypes(a), "server.start", map[string]any{"environment": "portal"})
	steptest.WantAppError(t, run.Err, activities.ErrServerStartFailed, true,
		[]string{"unit backstage.service is failed", "Backend failed to start up", "status=1/FAILURE"})
	if f.called("systemctl --user start --no-block -- backstage.service") != 1 || f.called("journalctl --user -u backstage.service") == 0 {
		t.Errorf("calls %q", f.calls)
	}
	run = steptest.RunStep(t, StepTypes(a), "server.logs", map[string]any{"environment": "portal"})
	steptest.WantAppError(t, run.Err, activities.ErrServerLogErrors, true, []string{`pattern "Backend failed to start up"`})
}

func TestSystemdValidate(t *testing.T) {
	c := Config{HealthURL: "http://127.0.0.1:7007/ready", Systemd: &Systemd{Unit: "-bad unit"}, Command: []string{"node"}, LogFile: "/x.log"}
	err := c.Validate("portal")
	for _, want := range []string{`systemd.unit "-bad unit"`, "command, env, inheritEnv, logFile and pidFile must be empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "dir is empty") {
		t.Errorf("dir is optional with systemd: %v", err)
	}
}
