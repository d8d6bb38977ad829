package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagehand-dev/stagehand/activities/notify"
	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/patchlab"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

// The fault suite (issue #10): the patch runbook survives its worker being
// SIGKILLed at every step boundary and its Temporal server being restarted
// mid-run, and the secrets a run uses never show in its history, the
// worker's log or the CLI's output.
//
// Kills are placed by internal/patchlab/faultworker, the worker built from
// the same worker/app with one interceptor: STAGEHAND_FAULT_KILL_AT=<steps>
// makes it SIGKILL itself when the workflow, live, is about to schedule one
// of those steps' activities (or, for <end>, has returned and not yet
// reported it). That is the boundary itself (the previous step is complete
// in history, this one not yet scheduled), reached every time rather than
// by a poll that races the run, and it costs one workflow task timeout
// (10 s) per kill rather than the killed activity's timeout. The approval
// gate has no activity; the test kills the worker while the run waits
// there, approves while no worker runs, and starts a new one.
//
// The kill points are every step of the loaded patch runbook plus <end>,
// so a step added to it is covered without a new test. They are dealt
// round-robin to faultLabs labs that run at the same time (each a sandbox
// and production namespace, a git remote served over HTTP with a token, a
// webhook receiver); within one lab the worker is killed at each of its
// points in turn, each new worker told the points not reached yet. Two
// failing runs (before the merge: the image crash-loops; after it: CI never
// builds) are killed before every onFailure step that runs, and a fourth
// run has its Temporal server restarted twice under it.
func TestFaults(t *testing.T) {
	localenv.SkipIfShort(t, systemsNeeded)
	began := time.Now()
	t.Cleanup(func() { t.Logf("fault suite took %s", time.Since(began).Round(time.Second)) })
	bin := buildFaultWorker(t)
	points, onFailure := patchKillPoints(t)
	require.NotEmpty(t, points)
	require.NotEmpty(t, onFailure)
	// After the last step: the workflow has returned, its completion is
	// not recorded yet.
	points = append(points, killPoint{step: endOfRun})

	const faultLabs = 3
	groups := make([][]killPoint, faultLabs)
	for i, p := range points {
		groups[i%faultLabs] = append(groups[i%faultLabs], p)
	}
	// t.Run from goroutines: the subtests run at once whatever -parallel
	// says (it defaults to the 2 cores here, and the labs mostly wait).
	var wg sync.WaitGroup
	run := func(name string, fn func(t *testing.T)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, fn)
		}()
	}
	for i, g := range groups {
		names := make([]string, len(g))
		for j, p := range g {
			names[j] = p.step
		}
		t.Logf("lab %d kills before: %s", i+1, strings.Join(names, ", "))
		run(fmt.Sprintf("worker-killed-%d", i+1), func(t *testing.T) { workerKilledAtBoundaries(t, bin, g) })
	}
	run("failed-before-merge", func(t *testing.T) { failingRunKilled(t, bin, false, onFailure) })
	run("failed-after-merge", func(t *testing.T) { failingRunKilled(t, bin, true, onFailure) })
	run("server-restarted", func(t *testing.T) { serverRestarted(t) })
	wg.Wait()
}

// killPoint is a step boundary of the runbook: before an activity step, or
// while the run waits at an approval gate.
type killPoint struct {
	step string
	gate bool
}

// patchKillPoints lists the patch runbook's steps and its onFailure steps
// as the worker loads them.
func patchKillPoints(t *testing.T) (steps, onFailure []killPoint) {
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	src, err := lib.Source("patch")
	require.NoError(t, err)
	rb, err := runbooks.Parse(src.File, src.Data, cat)
	require.NoError(t, err)
	var add func(points *[]killPoint, steps []runbooks.Step)
	add = func(points *[]killPoint, steps []runbooks.Step) {
		for _, s := range steps {
			switch s.Kind() {
			case runbooks.KindApproval:
				*points = append(*points, killPoint{step: s.ID, gate: true})
			case runbooks.KindParallel:
				add(points, s.Parallel)
			default:
				*points = append(*points, killPoint{step: s.ID})
			}
		}
	}
	add(&steps, rb.Steps)
	add(&onFailure, rb.OnFailure)
	return steps, onFailure
}

var faultWorker struct {
	once sync.Once
	path string
	err  error
}

// buildFaultWorker builds internal/patchlab/faultworker once per test binary
// (it shares the build cache with the worker TestMain built).
func buildFaultWorker(t *testing.T) string {
	faultWorker.once.Do(func() {
		dir, err := os.MkdirTemp("", "stagehand-faultworker")
		if err != nil {
			faultWorker.err = err
			return
		}
		faultWorker.path = filepath.Join(dir, "faultworker")
		out, err := exec.Command("go", "build", "-o", faultWorker.path, "../internal/patchlab/faultworker").CombinedOutput()
		if err != nil {
			faultWorker.err = fmt.Errorf("build faultworker: %w: %s", err, out)
		}
	})
	require.NoError(t, faultWorker.err)
	return faultWorker.path
}

// plantedSecrets are the values a faultLab's run uses, each distinctive
// enough that finding one anywhere is a leak, never a coincidence.
type plantedSecrets struct {
	gitToken        string // the HTTPS token git.merge sends (tokenRef)
	webhookPassword string // basic-auth password in the webhook URL (urlRef)
	webhookPath     string // the secret path segment of the webhook URL
}

func newPlantedSecrets() plantedSecrets {
	r := func(prefix string) string {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		return prefix + hex.EncodeToString(b)
	}
	return plantedSecrets{
		gitToken:        r("ghp_PLANTEDgitTOKEN_"),
		webhookPassword: r("PLANTEDwebhookPASSWORD_"),
		webhookPath:     r("PLANTEDhookPATH_"),
	}
}

func (s plantedSecrets) values() map[string]string {
	return map[string]string{"git token": s.gitToken, "webhook password": s.webhookPassword, "webhook path": s.webhookPath}
}

// receiver is the notify webhook: it counts what arrives per event.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []notify.GenericPayload
	bad int // requests without the planted password or path
}

func newReceiver(t *testing.T, s plantedSecrets) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, pw, _ := req.BasicAuth()
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		r.mu.Lock()
		defer r.mu.Unlock()
		if pw != s.webhookPassword || req.URL.Path != "/hooks/"+s.webhookPath {
			r.bad++
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		var p notify.GenericPayload
		if err := json.Unmarshal(body, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.got = append(r.got, p)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// url is the webhook address with the planted password and path.
func (r *receiver) url(s plantedSecrets) string {
	return strings.Replace(r.srv.URL, "http://", "http://stagehand:"+s.webhookPassword+"@", 1) + "/hooks/" + s.webhookPath
}

func (r *receiver) events(run string) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[string]int{}
	for _, p := range r.got {
		if p.Run == run {
			n[p.Event]++
		}
	}
	return n
}

// faultLab is a lab whose run uses planted secrets, against a Temporal
// server that may be restarted (srv is read through server()).
type faultLab struct {
	*lab
	t       *testing.T
	secrets plantedSecrets
	git     *patchlab.HTTPRemote
	hooks   *receiver
	env     []string // the worker's environment: the secrets' references
	logs    []string // every worker process's log file
	mu      sync.Mutex
	srv     *devserver.Server
}

const (
	envGitToken = "STAGEHAND_FAULT_GIT_TOKEN"
	envWebhook  = "STAGEHAND_FAULT_WEBHOOK"
)

func newFaultLab(t *testing.T, srv *devserver.Server) *faultLab {
	l := newLab(t, func(spec *patchlab.Lab) {
		spec.TemporalAddress, spec.Namespace = srv.Address, srv.Namespace
	})
	f := &faultLab{lab: l, t: t, secrets: newPlantedSecrets(), srv: srv}
	var err error
	f.git, err = l.remote.ServeHTTP(f.secrets.gitToken)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.git.Close() })
	f.hooks = newReceiver(t, f.secrets)
	f.cfg.Settings["git"] = map[string]any{"provider": "git", "repository": f.git.URL, "targetBranch": "main", "tokenRef": "env:" + envGitToken}
	f.cfg.Settings["notify"] = map[string]any{"webhooks": []any{map[string]any{"urlRef": "env:" + envWebhook}}}
	// The most verbose log is the likeliest to leak.
	f.cfg.Log = config.Log{Level: "debug", Format: "json"}
	f.env = []string{envGitToken + "=" + f.secrets.gitToken, envWebhook + "=" + f.hooks.url(f.secrets)}
	return f
}

func (f *faultLab) server() *devserver.Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.srv
}

// faultProcess is one worker process.
type faultProcess struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startWorker starts bin (the fault worker or the real one); killAt names
// the step before which a fault worker kills itself ("" for none).
func (f *faultLab) startWorker(bin, killAt string) *faultProcess {
	t := f.t
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "worker.yaml")
	require.NoError(t, patchlab.WriteConfig(f.cfg, cfgPath))
	logf, err := os.Create(filepath.Join(dir, "worker.log"))
	require.NoError(t, err)
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Env = append(os.Environ(), f.env...)
	if killAt != "" {
		cmd.Env = append(cmd.Env, "STAGEHAND_FAULT_KILL_AT="+killAt)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	p := &faultProcess{cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	f.logs = append(f.logs, p.log)
	t.Cleanup(p.kill)
	return p
}

func (p *faultProcess) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func (p *faultProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// plantedKill returns the step before which the process died of the
// planted kill, or "" when it died of anything else.
func (p *faultProcess) plantedKill() (string, string) {
	log, _ := os.ReadFile(p.log)
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return "", tail(string(log), 15)
	}
	for line := range strings.SplitSeq(string(log), "\n") {
		if rest, found := strings.CutPrefix(line, killedMarker); found {
			step, _, _ := strings.Cut(rest, " (")
			return step, ""
		}
	}
	return "", tail(string(log), 15)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (f *faultLab) startRun(id string, params map[string]any) {
	p := map[string]any{"image": f.prImage, "pr": pr, "soak": "2s", "smokeTimeout": "30s", "prodTimeout": "2m"}
	for k, v := range params {
		p[k] = v
	}
	_, err := f.server().Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: id, TaskQueue: f.taskQueue},
		workflows.WorkflowType, workflows.RunInput{Runbook: "patch", Params: p, RequestedBy: "alice"})
	require.NoError(f.t, err)
}

func (f *faultLab) status(id string) (workflows.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var st workflows.Status
	v, err := f.server().Client.QueryWorkflow(ctx, id, "", workflows.StatusQuery)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

func (f *faultLab) closed(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d, err := f.server().Client.DescribeWorkflowExecution(ctx, id, "")
	return err == nil && d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING
}

func (f *faultLab) approve(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := f.server().Client.SignalWorkflow(ctx, id, "", workflows.ApprovalSignal,
		workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob", Comment: "fault suite"})
	require.NoError(f.t, err)
}

func (f *faultLab) final(id string) (workflows.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var st workflows.Status
	err := f.server().Client.GetWorkflow(ctx, id, "").Get(ctx, &st)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.HasDetails() {
			_ = appErr.Details(&st)
		}
	}
	return st, err
}

// waitStatus polls the status query until cond holds.
func (f *faultLab) waitStatus(id string, timeout time.Duration, what string, cond func(workflows.Status) bool) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if st, err := f.status(id); err == nil {
			if cond(st) {
				return
			}
			if st.State.Terminal() {
				f.t.Fatalf("run %s ended (%s) before %s: %s", id, st.State, what, st.Error)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.t.Fatalf("run %s: %s not reached within %s", id, what, timeout)
}

func faultRunID(t *testing.T) string {
	return fmt.Sprintf("patch-faults-%d-%s", time.Now().Unix(), strings.ReplaceAll(t.Name(), "/", "-"))
}

// What internal/patchlab/faultworker prints before its kill, and its
// pseudo step for the boundary after the last step.
const (
	killedMarker = "faultworker: SIGKILL before step "
	endOfRun     = "<end>"
)

// driveWithKills starts the run and, until it ends, kills its worker at
// each of points it reaches (each worker is told all points not reached
// yet; the gate is killed from here while the run waits there) and approves
// the merge gate. It returns the points in the order they were killed.
func (f *faultLab) driveWithKills(bin, id string, params map[string]any, points []killPoint) []string {
	t := f.t
	left := map[string]bool{}
	gate := ""
	for _, p := range points {
		if p.gate {
			gate = p.step
		} else {
			left[p.step] = true
		}
	}
	killAt := func() string {
		var at []string
		for step := range left {
			at = append(at, step)
		}
		sort.Strings(at)
		return strings.Join(at, ",")
	}
	w := f.startWorker(bin, killAt())
	f.startRun(id, params)
	var kills []string
	approved := false
	deadline := time.Now().Add(5 * time.Minute)
	for !f.closed(id) {
		require.True(t, time.Now().Before(deadline), "run %s not done after 5 minutes; kills so far %v", id, kills)
		if w.exited() {
			step, log := w.plantedKill()
			require.True(t, left[step], "worker died, but not of a planted kill (%q; planted %s):\n%s", step, killAt(), log)
			delete(left, step)
			kills = append(kills, step)
			w = f.startWorker(bin, killAt())
			continue
		}
		if !approved {
			if st, err := f.status(id); err == nil && st.State == workflows.RunWaitingApproval {
				if gate != "" {
					// Nobody runs the workflow while the decision arrives.
					w.kill()
					kills = append(kills, gate)
					f.approve(id)
					w = f.startWorker(bin, killAt())
				} else {
					f.approve(id)
				}
				approved = true
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("killed before %v", kills)
	return kills
}

func stepIDs(points []killPoint) []string {
	ids := make([]string, len(points))
	for i, p := range points {
		ids[i] = p.step
	}
	return ids
}

// workerKilledAtBoundaries runs one patch run and kills its worker at each
// of points in turn.
func workerKilledAtBoundaries(t *testing.T, bin string, points []killPoint) {
	f := newFaultLab(t, temporalSrv)
	id := faultRunID(t)
	kills := f.driveWithKills(bin, id, nil, points)
	assert.Equal(t, stepIDs(points), kills, "every planted kill happened, in step order (a kill point the run never reached means a step was skipped)")
	final, err := f.final(id)
	require.NoError(t, err, "run failed: %s at %s", final.Error, final.FailedStep)
	f.checkOutcome(id, final)
	f.checkSecrets(id)
}

// failingRunKilled runs a patch run that fails, before the merge (the PR
// image crash-loops in the sandbox) or after it (CI never builds the
// production image), and kills its worker before every onFailure step that
// runs and after the last. The run fails with the step and reason it would
// have failed with undisturbed, and compensates once.
func failingRunKilled(t *testing.T, bin string, afterMerge bool, onFailure []killPoint) {
	f := newFaultLab(t, temporalSrv)
	id := faultRunID(t)
	params := map[string]any{"image": f.prImage + "-crashloop"}
	if afterMerge {
		// No CI: the merge lands and no production image ever comes.
		require.NoError(t, os.Remove(filepath.Join(f.remote.Dir, "hooks", "post-receive")))
		params = map[string]any{"prodTimeout": "5s"}
	}
	points := append(append([]killPoint{}, onFailure...), killPoint{step: endOfRun})
	kills := f.driveWithKills(bin, id, params, points)
	final, err := f.final(id)
	require.Error(t, err)
	assert.Equal(t, workflows.RunFailed, final.State)
	assert.Equal(t, append(append([]string{}, final.Compensated...), endOfRun), kills,
		"killed before every onFailure step that ran, and at the end")
	assert.NotEmpty(t, final.Compensated)
	events := f.hooks.events(id)
	if afterMerge {
		assert.Equal(t, "prod_image", final.FailedStep, final.Error)
		assert.Equal(t, 1, f.merges(), "merged exactly once")
		assert.Contains(t, final.Compensated, "production_evidence")
		assert.NotContains(t, final.Compensated, "rollback_sandbox", "after the merge the sandbox is not rolled back")
		assert.Equal(t, initialImage, f.deploymentImage(f.prod), "production untouched")
		assert.Equal(t, map[string]int{"gate_opened": 1, "run_failed": 1}, events, "notifications, once each")
	} else {
		assert.Equal(t, "sandbox_rollout", final.FailedStep, final.Error)
		assert.Contains(t, final.Error, "CrashLoopBackOff")
		assert.Equal(t, 0, f.merges(), "nothing merged")
		assert.Contains(t, final.Compensated, "rollback_sandbox")
		assert.Equal(t, initialImage, f.deploymentImage(f.sandbox), "sandbox rolled back")
		assert.Equal(t, map[string]int{"run_failed": 1}, events, "notifications, once each")
	}
	f.checkSecrets(id)
}

// serverRestarted runs one patch run on a Temporal server of its own (a
// SQLite file) and restarts that server twice under it: while the sandbox
// pods soak, and while the run waits for CI and Flux after the merge.
func serverRestarted(t *testing.T) {
	ctx := context.Background()
	port, err := localenv.FreePort()
	require.NoError(t, err)
	opts := devserver.Options{DBFilename: filepath.Join(t.TempDir(), "temporal.db"), Port: port}
	srv, err := devserver.StartWith(ctx, opts)
	require.NoError(t, err)
	f := newFaultLab(t, srv)
	t.Cleanup(func() { _ = f.server().Stop() })
	restart := func(when string) {
		t.Helper()
		old := f.server()
		require.NoError(t, old.Stop(), "stop the server %s", when)
		started := time.Now()
		srv, err := devserver.StartWith(ctx, opts)
		require.NoError(t, err, "restart the server %s", when)
		f.mu.Lock()
		f.srv = srv
		f.mu.Unlock()
		t.Logf("server restarted %s (down %s)", when, time.Since(started).Round(100*time.Millisecond))
	}

	id := faultRunID(t)
	f.startWorker(workerBin, "")
	f.startRun(id, nil)
	f.waitStatus(id, 2*time.Minute, "the sandbox soak", func(s workflows.Status) bool {
		return stepState(s, "sandbox_pods") == workflows.StepRunning
	})
	restart("during the sandbox soak")
	f.waitStatus(id, 3*time.Minute, "the merge gate", func(s workflows.Status) bool { return s.State == workflows.RunWaitingApproval })
	f.approve(id)
	f.waitStatus(id, 2*time.Minute, "the wait for the production image", func(s workflows.Status) bool {
		return stepState(s, "merge_pr") == workflows.StepSucceeded
	})
	restart("while waiting for CI and Flux")
	final, err := f.final(id)
	require.NoError(t, err, "run failed: %s at %s", final.Error, final.FailedStep)
	f.checkOutcome(id, final)
	f.checkSecrets(id)
}

// checkOutcome: the run succeeded with every effect exactly once.
func (f *faultLab) checkOutcome(id string, final workflows.Status) {
	t := f.t
	assert.Equal(t, workflows.RunSucceeded, final.State)
	for _, s := range final.Steps {
		assert.Contains(t, []workflows.StepState{workflows.StepSucceeded, workflows.StepApproved}, s.State, "%s: %s", s.ID, s.Error)
	}
	assert.Equal(t, 1, f.merges(), "the PR is merged exactly once")
	head, err := f.remote.MainHead()
	require.NoError(t, err)
	prodImage := f.deploymentImage(f.prod)
	assert.True(t, hasPrefixTag(prodImage, "prod-"+head[:8]+"-"), "production runs %s, want the merge %s", prodImage, head[:8])
	assert.Equal(t, f.prImage, f.deploymentImage(f.sandbox))
	// Each Deployment's spec changed once: the sandbox by the run's
	// kube.setImage, production by the CI stand-in the one merge triggered.
	for _, ns := range []string{f.sandbox, f.prod} {
		d, err := kube.Client.AppsV1().Deployments(ns).Get(context.Background(), "backstage", metav1.GetOptions{})
		require.NoError(t, err)
		assert.EqualValues(t, 2, d.Generation, "%s/backstage: the image was set once (generation 1 is the creation)", ns)
	}
	ci, err := os.ReadFile(filepath.Join(f.remote.Dir, "ci-sim.log"))
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(ci), "ci-sim: pushed"), "one production build: %s", ci)
	assert.Equal(t, map[string]int{"gate_opened": 1, "run_succeeded": 1}, f.hooks.events(id), "notifications, once each")
	f.hooks.mu.Lock()
	assert.Zero(t, f.hooks.bad, "webhook requests without the planted credentials")
	f.hooks.mu.Unlock()
	assert.Zero(t, f.git.Refused.Load(), "git requests without the planted token")
}

// checkSecrets looks for the planted values in the run's history as the
// temporal CLI prints it, every worker log, and the stagehand CLI's views.
func (f *faultLab) checkSecrets(id string) {
	t := f.t
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := f.server()
	places := map[string]string{}
	hist, err := srv.Command(ctx, "workflow", "show", "--workflow-id", id, "--output", "json").Output()
	require.NoError(t, err)
	// Payloads are base64 in the CLI's JSON: search the text and every
	// payload decoded.
	decoded := decodedPayloads(t, hist)
	places["history JSON"] = string(hist)
	places["history payloads"] = decoded
	// The references are in history (the run used them), not the values.
	assert.True(t, strings.Contains(decoded, "env:"+envGitToken) && strings.Contains(decoded, "env:"+envWebhook),
		"the history's payloads name the secret references (else the search below proves nothing)")
	for _, p := range f.logs {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		places["worker log "+p] = string(b)
	}
	for _, args := range [][]string{
		{"status", id}, {"status", id, "--output", "json"}, {"audit", "show", id}, {"audit", "show", id, "--output", "json"},
	} {
		cmd := exec.CommandContext(ctx, cliBin, append([]string{"--address", srv.Address, "--namespace", srv.Namespace}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "stagehand %s: %s", strings.Join(args, " "), out)
		places["stagehand "+strings.Join(args, " ")] = string(out)
	}
	for _, leak := range findLeaks(places, f.secrets.values()) {
		t.Error(leak)
	}
}

// findLeaks says where any of the secret values occurs in places, with a
// little context.
func findLeaks(places, secrets map[string]string) []string {
	var leaks []string
	for where, text := range places {
		for what, v := range secrets {
			if i := strings.Index(text, v); i >= 0 {
				leaks = append(leaks, fmt.Sprintf("the planted %s is in the %s: ...%s...", what, where, text[max(0, i-200):min(len(text), i+len(v)+50)]))
			}
		}
	}
	sort.Strings(leaks)
	return leaks
}

// decodedPayloads returns every base64 string in a history's JSON decoded,
// one a line.
func decodedPayloads(t *testing.T, hist []byte) string {
	var doc any
	require.NoError(t, json.Unmarshal(hist, &doc))
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		case string:
			if raw, err := base64.StdEncoding.DecodeString(v); err == nil {
				b.Write(raw)
				b.WriteByte('\n')
			}
		}
	}
	walk(doc)
	return b.String()
}
