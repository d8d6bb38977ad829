package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/backstagetest"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// workerEnv makes the test binary play a worker (see runWorker).
const (
	workerEnv       = "STAGEHAND_SERVER_TEST_WORKER"
	workerConfigEnv = "STAGEHAND_SERVER_TEST_CONFIG"
)

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		os.Exit(runWorker())
	}
	pgtest.Main(m)
}

// runWorker is the worker of TestWorkerKilledWhileServerRuns: it starts
// the server through the Activities, prints the result as one JSON line,
// and keeps running until the test SIGKILLs it.
func runWorker() int {
	var c Config
	if err := json.Unmarshal([]byte(os.Getenv(workerConfigEnv)), &c); err != nil {
		fmt.Fprintln(os.Stderr, "worker: config:", err)
		return 2
	}
	a, err := New(map[string]Config{"portal": c}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	out, err := a.Start(context.Background(), StartInput{Environment: "portal"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker: start:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return 1
	}
	select {}
}

// backstageEnv is a server environment running the real Backstage backend
// (tools/backstage) on the package's shared PostgreSQL, with its log and
// pid file in a temporary directory.
func backstageEnv(t *testing.T, opts backstagetest.Options) Config {
	t.Helper()
	opts.PG = pgtest.Shared(t) // skips under -short
	prep, err := backstagetest.Prepare(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prep.Cleanup)
	state := t.TempDir()
	return Config{
		Dir:          prep.Dir,
		Command:      prep.Argv,
		Env:          prep.Env,
		HealthURL:    prep.HealthURL,
		LogFile:      filepath.Join(state, "server.log"),
		PidFile:      filepath.Join(state, "run", "server.pid"),
		StartTimeout: 4 * time.Minute,
		StopTimeout:  30 * time.Second,
	}
}

// The real backend through every step: start, status, logs, restart,
// stop, and start twice.
func TestBackstageLifecycle(t *testing.T) {
	c := backstageEnv(t, backstagetest.Options{})
	a := newActs(t, map[string]Config{"portal": c})
	types := StepTypes(a)

	begin := time.Now()
	start := steptest.MustStep(t, types, "server.start", map[string]any{"environment": "portal"})
	t.Logf("started in %s: %v", time.Since(begin).Round(time.Millisecond), start.Outputs)
	pid := intOut(t, start.Outputs, "pid")
	if start.Outputs["alreadyRunning"] != false {
		t.Errorf("start %v", start.Outputs)
	}
	if len(start.Heartbeats) == 0 {
		t.Error("start did not heartbeat while waiting for readiness")
	}

	st := steptest.MustStep(t, types, "server.status", map[string]any{"environment": "portal", "expect": "healthy"})
	if intOut(t, st.Outputs, "pid") != pid || intOut(t, st.Outputs, "httpStatus") != 200 {
		t.Errorf("status %v", st.Outputs)
	}
	logs := steptest.MustStep(t, types, "server.logs", map[string]any{"environment": "portal", "lines": 1000})
	tail := fmt.Sprint(logs.Outputs["tail"])
	for _, want := range []string{"Listening on 127.0.0.1:", "catalog"} {
		if !strings.Contains(tail, want) {
			t.Errorf("log tail has no %q: %s", want, tail)
		}
	}

	restart := steptest.MustStep(t, types, "server.restart", map[string]any{"environment": "portal"})
	t.Logf("restart: %v", restart.Outputs)
	newPid := intOut(t, restart.Outputs, "pid")
	if intOut(t, restart.Outputs, "stoppedPid") != pid || restart.Outputs["stopSignal"] != "SIGTERM" || newPid == pid || restart.Outputs["wasRunning"] != true {
		t.Errorf("restart %v", restart.Outputs)
	}
	waitGone(t, pid)
	steptest.MustStep(t, types, "server.status", map[string]any{"environment": "portal", "expect": "healthy"})
	// Since the restart, the log holds one start only.
	logs = steptest.MustStep(t, types, "server.logs", map[string]any{"environment": "portal", "lines": 1000})
	if n := strings.Count(fmt.Sprint(logs.Outputs["tail"]), "Listening on"); n != 1 {
		t.Errorf("%d starts in the log since the restart", n)
	}

	stop := steptest.MustStep(t, types, "server.stop", map[string]any{"environment": "portal"})
	t.Logf("stop: %v", stop.Outputs)
	if intOut(t, stop.Outputs, "pid") != newPid || stop.Outputs["signal"] != "SIGTERM" {
		t.Errorf("stop %v: Backstage should exit on SIGTERM within the stop timeout", stop.Outputs)
	}
	if len(groupMembers(newPid)) != 0 || alive(newPid) {
		t.Errorf("process group %d still has members after stop", newPid)
	}
	if _, err := os.Stat(c.PidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
	steptest.MustStep(t, types, "server.status", map[string]any{"environment": "portal", "expect": "stopped"})

	first := steptest.MustStep(t, types, "server.start", map[string]any{"environment": "portal"})
	second := steptest.MustStep(t, types, "server.start", map[string]any{"environment": "portal"})
	if second.Outputs["alreadyRunning"] != true || intOut(t, second.Outputs, "pid") != intOut(t, first.Outputs, "pid") {
		t.Errorf("second start %v after %v", second.Outputs, first.Outputs)
	}
	steptest.MustStep(t, types, "server.stop", map[string]any{"environment": "portal"})
}

// A worker SIGKILLed while the server runs leaves the server running; a
// new worker stops that same process through the pid file.
func TestWorkerKilledWhileServerRuns(t *testing.T) {
	c := backstageEnv(t, backstagetest.Options{})
	cfg, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	worker := exec.Command(os.Args[0])
	worker.Env = append(os.Environ(), workerEnv+"=1", workerConfigEnv+"="+string(cfg))
	var stderr bytes.Buffer
	worker.Stderr = &stderr
	stdout, err := worker.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = worker.Process.Kill(); _ = worker.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var started StartOutput
	select {
	case line, ok := <-lines:
		if !ok {
			_ = worker.Wait()
			t.Fatalf("the worker ended without starting the server: %s", stderr.String())
		}
		if err := json.Unmarshal([]byte(line), &started); err != nil || started.Pid == 0 {
			t.Fatalf("worker printed %q: %v", line, err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("the worker did not start the server in 5 minutes: %s", stderr.String())
	}
	t.Logf("worker %d started the server: %+v", worker.Process.Pid, started)

	if err := worker.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = worker.Wait()
	// The server outlives its worker and still serves.
	a := newActs(t, map[string]Config{"portal": c})
	st := steptest.MustStep(t, StepTypes(a), "server.status", map[string]any{"environment": "portal", "expect": "healthy"})
	if intOut(t, st.Outputs, "pid") != started.Pid {
		t.Fatalf("status after the worker died: %v, want pid %d", st.Outputs, started.Pid)
	}
	p, found, err := readPidFile(c.PidFile)
	if err != nil || !found || p.Pid != started.Pid {
		t.Fatalf("pid file %+v %v %v, want pid %d", p, found, err, started.Pid)
	}
	// A start by the new worker does not start a second server.
	again := steptest.MustStep(t, StepTypes(a), "server.start", map[string]any{"environment": "portal"})
	if again.Outputs["alreadyRunning"] != true || intOut(t, again.Outputs, "pid") != started.Pid {
		t.Errorf("start by the new worker %v", again.Outputs)
	}

	stop := steptest.MustStep(t, StepTypes(a), "server.stop", map[string]any{"environment": "portal"})
	if stop.Outputs["wasRunning"] != true || intOut(t, stop.Outputs, "pid") != started.Pid {
		t.Errorf("stop %v, want pid %d", stop.Outputs, started.Pid)
	}
	if alive(started.Pid) || len(groupMembers(started.Pid)) != 0 {
		t.Errorf("pid %d still runs after stop", started.Pid)
	}
	steptest.MustStep(t, StepTypes(a), "server.status", map[string]any{"environment": "portal", "expect": "stopped"})
}

// The real backend failing at start: the step reports its exit status and
// its own last words.
func TestBackstageStartFailure(t *testing.T) {
	// A catalog version that is not installed: the backend exits 1 before
	// it opens the database, as a portal built without the package would.
	c := backstageEnv(t, backstagetest.Options{CatalogVersion: "9.9.9"})
	a := newActs(t, map[string]Config{"portal": c})
	run := steptest.RunStep(t, StepTypes(a), "server.start", map[string]any{"environment": "portal"})
	steptest.WantAppError(t, run.Err, activities.ErrServerStartFailed, true, []string{
		"exited with code 1", "Cannot find module @backstage/plugin-catalog-backend@9.9.9", "last log lines",
	})
}
