package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/patchlab"
	"github.com/stagehand-dev/stagehand/internal/podsim"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

// The fleet tests (issue #12): several stagehand-worker processes on one
// task queue share runs, and a worker that dies (SIGKILL) or is stopped
// (SIGTERM) loses none of them.
//
// The runs are patch-shaped without git: each sets the PR image on its own
// sandbox Deployment and watches the rollout, pods and events, waits at an
// approval gate, then sets the production image on its own production
// Deployment and checks it the same way. The Deployments' pods are played by
// the pod simulator, so many runs cost little beyond the control plane and
// Temporal.

// fleetRunbook is the runbook both tests run, loaded from the workers'
// runbooksDir. HEARTBEAT_TIMEOUT is the watch steps' heartbeat timeout,
// which decides how soon the work of a killed worker is retried elsewhere.
// The events step allows the readiness failures a held rollout (a slowly
// starting portal) shows; test 1 checks that its runs saw none. The pod
// checks get more attempts than the default 3: a SIGKILL costs one (the
// attempt times out), and on a loaded machine a check right after the
// rollout may still list the old pod (retryable) more than once.
const fleetRunbook = `name: fleet-patch
description: >-
  Patch-shaped, without git: the PR image on the sandbox Deployment (rollout,
  pods, events), an approval gate, then the production image on the
  production Deployment (rollout, pods, events).
params:
  deployment: {type: string, required: true, pattern: '^[a-z0-9-]+$', description: the Deployment (the same name in both environments)}
  image: {type: string, required: true, description: the PR image}
  prodImage: {type: string, required: true, description: the production image}
  sandbox: {type: environment, default: sandbox, description: where the PR image is tried}
  production: {type: environment, default: prod, description: where the production image goes}
  soak: {type: duration, default: 1s, description: how long pods must stay ready}
steps:
  - id: sandbox_before
    uses: kube.getImage
    timeout: 30s
    with: &sandbox
      cluster: '{{ .params.sandbox }}'
      namespace: '{{ (index .environments .params.sandbox).namespace }}'
      deployment: '{{ .params.deployment }}'
  - id: sandbox_apply
    uses: kube.setImage
    timeout: 30s
    with:
      <<: *sandbox
      image: '{{ .params.image }}'
  - id: sandbox_rollout
    uses: kube.waitRollout
    timeout: 10m
    heartbeatTimeout: HEARTBEAT_TIMEOUT
    with: *sandbox
  - id: sandbox_pods
    uses: kube.checkPods
    timeout: 5m
    heartbeatTimeout: HEARTBEAT_TIMEOUT
    retry: {maxAttempts: 5}
    with:
      <<: *sandbox
      image: '{{ .params.image }}'
      soak: '{{ .params.soak }}'
  - id: sandbox_events
    uses: kube.events
    timeout: 30s
    with:
      <<: *sandbox
      since: '{{ .steps.sandbox_before.outputs.readAt }}'
      allow: ['^Readiness probe failed']
  - id: merge
    approval:
      message: '{{ .params.image }} is healthy on {{ .params.sandbox }}: roll {{ .params.prodImage }} to {{ .params.production }}?'
      approvers: [bob]
      timeout: 1h
  - id: prod_apply
    uses: kube.setImage
    timeout: 30s
    with: &production
      cluster: '{{ .params.production }}'
      namespace: '{{ (index .environments .params.production).namespace }}'
      deployment: '{{ .params.deployment }}'
      image: '{{ .params.prodImage }}'
  - id: prod_rollout
    uses: kube.waitRollout
    timeout: 10m
    heartbeatTimeout: HEARTBEAT_TIMEOUT
    with:
      cluster: '{{ .params.production }}'
      namespace: '{{ (index .environments .params.production).namespace }}'
      deployment: '{{ .params.deployment }}'
  - id: prod_pods
    uses: kube.checkPods
    timeout: 5m
    heartbeatTimeout: HEARTBEAT_TIMEOUT
    retry: {maxAttempts: 5}
    with:
      <<: *production
      soak: '{{ .params.soak }}'
  - id: prod_events
    uses: kube.events
    timeout: 30s
    with:
      cluster: '{{ .params.production }}'
      namespace: '{{ (index .environments .params.production).namespace }}'
      deployment: '{{ .params.deployment }}'
      since: '{{ .steps.prod_apply.outputs.changedAt }}'
`

// fleetSteps are the steps every fleet run must end with, in order.
var fleetSteps = []string{
	"sandbox_before", "sandbox_apply", "sandbox_rollout", "sandbox_pods", "sandbox_events",
	"merge",
	"prod_apply", "prod_rollout", "prod_pods", "prod_events",
}

const fleetImageRepo = "registry.local/fleet/backstage"

func fleetImage(tag string) string { return fleetImageRepo + ":" + tag }

// fleetLab is one fleet test's world: a sandbox and a production namespace
// with the same n Deployments (one replica each) on the initial image, a
// runbooksDir holding fleetRunbook, and one worker configuration that every
// worker of the test shares (same task queue).
type fleetLab struct {
	t             *testing.T
	sandbox, prod string
	deployments   []string
	taskQueue     string
	cfgPath       string
	prefix        string
}

func newFleetLab(t *testing.T, n int, heartbeatTimeout time.Duration) *fleetLab {
	t.Helper()
	localenv.SkipIfShort(t, systemsNeeded)
	l := &fleetLab{t: t,
		sandbox: kube.TestNamespace(t, "fleet-sbx"), prod: kube.TestNamespace(t, "fleet-prod"),
		taskQueue: fmt.Sprintf("fleet-%d-%d", labSeq.Add(1), time.Now().UnixNano()),
	}
	l.prefix = l.taskQueue
	for i := range n {
		l.deployments = append(l.deployments, fmt.Sprintf("app-%02d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A few at a time: the control plane shares two cores with everything.
	err := forEach(ctx, 6, len(l.deployments)*2, func(ctx context.Context, i int) error {
		ns := []string{l.sandbox, l.prod}[i%2]
		name := l.deployments[i/2]
		// minReadySeconds keeps each rollout in flight for a moment, as a
		// real portal's start does, so a worker dies with watches running.
		if _, err := kube.CreateDeployment(ctx, ns, name, fleetImage("initial"), 1, func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = 2 }); err != nil {
			return err
		}
		_, err := kube.WaitForRollout(ctx, ns, name)
		return err
	})
	require.NoError(t, err, "create the fleet's Deployments")

	dir := t.TempDir()
	rbDir := filepath.Join(dir, "runbooks")
	require.NoError(t, os.Mkdir(rbDir, 0o755))
	rb := strings.ReplaceAll(fleetRunbook, "HEARTBEAT_TIMEOUT", heartbeatTimeout.String())
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "fleet-patch.yaml"), []byte(rb), 0o644))

	cfg := config.Defaults()
	cfg.Temporal = config.Temporal{Address: temporalSrv.Address, Namespace: temporalSrv.Namespace, TaskQueue: l.taskQueue}
	cfg.RunbooksDir = rbDir
	cfg.WorkDir = filepath.Join(dir, "work")
	cfg.Log = config.Log{Level: "info", Format: "text"}
	env := func(ns string) config.Environment {
		return config.Environment{Kubeconfig: kube.Kubeconfig, Context: kube.Context, Namespace: ns, Approvers: []string{"bob"}}
	}
	cfg.Environments = map[string]config.Environment{"sandbox": env(l.sandbox), "prod": env(l.prod)}
	l.cfgPath = filepath.Join(dir, "worker.yaml")
	require.NoError(t, patchlab.WriteConfig(cfg, l.cfgPath))
	return l
}

// forEach runs fn(0..n-1) with at most par at once and returns the first
// error.
func forEach(ctx context.Context, par, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

func (l *fleetLab) runID(i int) string { return fmt.Sprintf("%s-%s", l.prefix, l.deployments[i]) }

func (l *fleetLab) prImage(i int) string   { return fleetImage(fmt.Sprintf("pr-%d-0123abcd", i)) }
func (l *fleetLab) prodImage(i int) string { return fleetImage(fmt.Sprintf("prod-%d-4567cdef", i)) }

func (l *fleetLab) startRun(i int) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := temporalSrv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: l.runID(i), TaskQueue: l.taskQueue},
		workflows.WorkflowType, workflows.RunInput{Runbook: "fleet-patch", RequestedBy: "alice", Params: map[string]any{
			"deployment": l.deployments[i], "image": l.prImage(i), "prodImage": l.prodImage(i),
		}})
	require.NoError(l.t, err)
}

// waitingAtGate lists the lab's runs that visibility shows waiting at a
// gate (the interpreter upserts StagehandOutcome when a gate opens), so
// the approver does not query every run.
func (l *fleetLab) waitingAtGate(ctx context.Context) ([]string, error) {
	var ids []string
	var token []byte
	for {
		resp, err := temporalSrv.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         fmt.Sprintf("TaskQueue = '%s' AND StagehandOutcome = '%s' AND ExecutionStatus = 'Running'", l.taskQueue, workflows.RunWaitingApproval),
			NextPageToken: token,
		})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetExecutions() {
			ids = append(ids, e.GetExecution().GetWorkflowId())
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return ids, nil
		}
	}
}

// approver approves every run of the lab that waits at its gate until ctx
// ends; approved counts the runs it approved. A decision that got lost
// (refused because it raced the gate) is sent again after a while.
type approver struct {
	approved atomic.Int64
	done     chan struct{}
}

func (l *fleetLab) approveAll(ctx context.Context) *approver {
	a := &approver{done: make(chan struct{})}
	sent := map[string]time.Time{}
	go func() {
		defer close(a.done)
		for ctx.Err() == nil {
			ids, err := l.waitingAtGate(ctx)
			if err == nil {
				for _, id := range ids {
					if at, ok := sent[id]; ok && time.Since(at) < 15*time.Second {
						continue
					}
					sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					err := temporalSrv.Client.SignalWorkflow(sctx, id, "", workflows.ApprovalSignal,
						workflows.ApprovalDecision{Gate: "merge", Decision: workflows.DecisionApprove, By: "bob", Comment: "fleet test"})
					cancel()
					if err == nil {
						if _, again := sent[id]; !again {
							a.approved.Add(1)
						}
						sent[id] = time.Now()
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return a
}

// activityStep is the step an activity id belongs to: the interpreter
// names a step's activity after the step, and a step run again after its
// worker's stop interrupted it "<step>~<n>".
func activityStep(activityID string) string {
	step, _, _ := strings.Cut(activityID, "~")
	return step
}

// pendingOn returns the steps of run id whose activities a worker with
// identity has started and not finished (what Temporal knows of them, no
// worker asked).
func pendingOn(ctx context.Context, id, identity string) ([]string, error) {
	d, err := temporalSrv.Client.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return nil, err
	}
	var steps []string
	for _, pa := range d.GetPendingActivities() {
		if pa.GetState() == enums.PENDING_ACTIVITY_STATE_STARTED && pa.GetLastWorkerIdentity() == identity {
			steps = append(steps, activityStep(pa.GetActivityId()))
		}
	}
	return steps, nil
}

// fleetFinal waits for run id to close (or ctx to end) and returns its
// final Status.
func fleetFinal(ctx context.Context, id string) (workflows.Status, error) {
	var st workflows.Status
	err := temporalSrv.Client.GetWorkflow(ctx, id, "").Get(ctx, &st)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.HasDetails() {
			_ = appErr.Details(&st)
		}
	}
	return st, err
}

// fleetWorker is one stagehand-worker process of a fleet test.
type fleetWorker struct {
	identity string
	cmd      *exec.Cmd
	log      string
	done     chan struct{}
	exitedAt time.Time
}

// startFleetWorker runs the worker binary on the lab's config with a known
// identity (and extra flags) until the test ends or a signal ends it.
func (l *fleetLab) startFleetWorker(identity string, extra ...string) *fleetWorker {
	t := l.t
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), identity+".log"))
	require.NoError(t, err)
	args := append([]string{"--config", l.cfgPath, "--identity", identity}, extra...)
	cmd := exec.Command(workerBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	w := &fleetWorker{identity: identity, cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		w.exitedAt = time.Now()
		_ = logf.Close()
		close(w.done)
	}()
	t.Cleanup(func() {
		w.signal(syscall.SIGKILL)
		<-w.done
		if t.Failed() {
			b, _ := os.ReadFile(w.log)
			t.Logf("worker %s log (last lines):\n%s", identity, tail(string(b), 40))
		}
	})
	return w
}

// signal sends sig to the worker (SIGKILL to its whole process group).
func (w *fleetWorker) signal(sig syscall.Signal) {
	if w.exited() {
		return
	}
	if sig == syscall.SIGKILL {
		_ = syscall.Kill(-w.cmd.Process.Pid, sig)
		return
	}
	_ = w.cmd.Process.Signal(sig)
}

func (w *fleetWorker) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// waitPolling waits until Temporal has seen the worker poll the lab's
// activity task queue.
func (l *fleetLab) waitPolling(w *fleetWorker, timeout time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		require.False(l.t, w.exited(), "worker %s exited before polling", w.identity)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := temporalSrv.Client.DescribeTaskQueue(ctx, l.taskQueue, enums.TASK_QUEUE_TYPE_ACTIVITY)
		cancel()
		if err == nil {
			for _, p := range resp.GetPollers() {
				if p.GetIdentity() == w.identity {
					return
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.t.Fatalf("worker %s not polling task queue %s after %s", w.identity, l.taskQueue, timeout)
}

// checkDeployments: every Deployment of the lab had its image set exactly
// once (generation 2: 1 is the creation) and runs want(i), rolled out.
func (l *fleetLab) checkDeployments(ns string, want func(i int) string) {
	t := l.t
	for i, name := range l.deployments {
		d, err := kube.Client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.EqualValues(t, 2, d.Generation, "%s/%s: the image was set once (generation 1 is the creation)", ns, name)
		assert.Equal(t, want(i), d.Spec.Template.Spec.Containers[0].Image, "%s/%s image", ns, name)
		assert.GreaterOrEqual(t, d.Status.ObservedGeneration, d.Generation, "%s/%s observed", ns, name)
	}
}

// checkSteps: the run succeeded with exactly fleetSteps, each succeeded (the
// gate approved), every activity step naming the worker whose attempt
// completed it, as the run's history records it (done: activity id ->
// identity, from completedBy).
func checkSteps(t *testing.T, id string, st workflows.Status, done map[string]string) {
	t.Helper()
	assert.Equal(t, workflows.RunSucceeded, st.State, "%s: %s at %s", id, st.Error, st.FailedStep)
	var ids []string
	for _, s := range st.Steps {
		ids = append(ids, s.ID)
		if s.ID == "merge" {
			assert.Equal(t, workflows.StepApproved, s.State, "%s: gate", id)
			continue
		}
		assert.Equal(t, workflows.StepSucceeded, s.State, "%s: %s: %s", id, s.ID, s.Error)
		assert.NotEmpty(t, done[s.ID], "%s: %s: no completed activity in history", id, s.ID)
		assert.Equal(t, done[s.ID], workerOf(s), "%s: %s: the worker in the status is the one history says completed it", id, s.ID)
	}
	assert.Equal(t, fleetSteps, ids, "%s: the steps, in order, none lost or repeated", id)
}

// workerOf is the worker the run's status names for a step.
func workerOf(s workflows.StepStatus) string { return s.Worker }

// completedBy reads run id's history: for each step whose activity
// completed, the identity of the worker whose attempt completed it (the
// server's record, independent of what the workflow put in its status).
func completedBy(ctx context.Context, id string) (map[string]string, error) {
	it := temporalSrv.Client.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	activityID := map[int64]string{}
	startedBy := map[int64]string{}
	done := map[string]string{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, err
		}
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			activityID[ev.GetEventId()] = activityStep(ev.GetActivityTaskScheduledEventAttributes().GetActivityId())
		case enums.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			startedBy[ev.GetEventId()] = ev.GetActivityTaskStartedEventAttributes().GetIdentity()
		case enums.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			a := ev.GetActivityTaskCompletedEventAttributes()
			done[activityID[a.GetScheduledEventId()]] = startedBy[a.GetStartedEventId()]
		}
	}
	return done, nil
}

func stepOf(st workflows.Status, id string) *workflows.StepStatus {
	for i := range st.Steps {
		if st.Steps[i].ID == id {
			return &st.Steps[i]
		}
	}
	return nil
}

// TestFleetTwoWorkersSurviveKill: two workers share 50 patch-shaped runs on
// one task queue; one of them is SIGKILLed while it runs steps of many of
// them. Every run completes, with every step once, each Deployment's image
// set once per stage, and the steps spread over both workers.
func TestFleetTwoWorkersSurviveKill(t *testing.T) {
	const runs = 50
	began := time.Now()
	l := newFleetLab(t, runs, 15*time.Second)
	t.Logf("fleet of %d Deployments ready in %s", 2*runs, time.Since(began).Round(100*time.Millisecond))
	a := l.startFleetWorker("fleet-a")
	b := l.startFleetWorker("fleet-b")
	l.waitPolling(a, time.Minute)
	l.waitPolling(b, time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	started := time.Now()
	for i := range runs {
		l.startRun(i)
	}
	appr := l.approveAll(ctx)
	defer func() { cancel(); <-appr.done }()

	// Kill fleet-a once half the runs have passed the gate and it is in the
	// middle of several steps (rollout watches, pod checks, image sets of
	// the runs still before or just after the gate).
	victims := map[string][]string{}
	for {
		require.NoError(t, ctx.Err(), "no moment with half the runs past the gate and fleet-a running steps (approved %d)", appr.approved.Load())
		if appr.approved.Load() >= runs/2 {
			n := 0
			for i := range runs {
				steps, err := pendingOn(ctx, l.runID(i), a.identity)
				if err == nil && len(steps) > 0 {
					victims[l.runID(i)] = steps
					n += len(steps)
				}
			}
			if n >= 3 {
				break
			}
			clear(victims)
		}
		time.Sleep(300 * time.Millisecond)
	}
	a.signal(syscall.SIGKILL)
	<-a.done
	killedAt := time.Since(started)
	// What fleet-a still held once dead was cut off (a step may have
	// finished between the look above and the kill).
	var cut []string
	for id := range victims {
		steps, err := pendingOn(ctx, id, a.identity)
		require.NoError(t, err)
		if len(steps) == 0 {
			delete(victims, id)
			continue
		}
		victims[id] = steps
		for _, s := range steps {
			cut = append(cut, strings.TrimPrefix(id, l.prefix+"-")+"/"+s)
		}
	}
	sort.Strings(cut)
	require.NotEmpty(t, cut, "fleet-a was running no step when it was killed")
	t.Logf("SIGKILLed fleet-a %s after the starts, with %d runs approved; it was running %d steps: %s",
		killedAt.Round(100*time.Millisecond), appr.approved.Load(), len(cut), strings.Join(cut, ", "))

	finals := make([]workflows.Status, runs)
	errs := make([]error, runs)
	for i := range runs {
		finals[i], errs[i] = fleetFinal(ctx, l.runID(i))
	}
	t.Logf("all %d runs closed %s after the starts (%s after the kill)", runs,
		time.Since(started).Round(100*time.Millisecond), (time.Since(started) - killedAt).Round(100*time.Millisecond))
	require.False(t, b.exited(), "fleet-b died")

	byWorker := map[string]int{}
	for i := range runs {
		id := l.runID(i)
		if !assert.NoError(t, errs[i], "run %s: %s at %s", id, finals[i].Error, finals[i].FailedStep) {
			continue
		}
		done, err := completedBy(ctx, id)
		require.NoError(t, err)
		checkSteps(t, id, finals[i], done)
		for _, s := range finals[i].Steps {
			if w := workerOf(s); w != "" {
				byWorker[w]++
			}
		}
		assert.EqualValues(t, 0, stepOf(finals[i], "sandbox_events").Outputs["warnings"], "%s: warnings in the sandbox", id)
		// A step the killed worker was running finished on the other one.
		for _, s := range victims[id] {
			if st := stepOf(finals[i], s); assert.NotNil(t, st, "%s: step %s was running on fleet-a and is gone", id, s) {
				assert.Equal(t, b.identity, workerOf(*st), "%s: step %s, cut off on fleet-a, finished on", id, s)
			}
		}
	}
	t.Logf("steps by worker: %v", byWorker)
	assert.Equal(t, []string{a.identity, b.identity}, slices.Sorted(maps.Keys(byWorker)), "steps ran on both workers and no other")

	l.checkDeployments(l.sandbox, l.prImage)
	l.checkDeployments(l.prod, l.prodImage)

	// The CLI names each step's worker: one of the runs fleet-a cut off.
	var id string
	for v := range victims {
		id = v
		break
	}
	out, err := temporalCLIStagehand(ctx, "status", id).CombinedOutput()
	require.NoError(t, err, "stagehand status %s: %s", id, out)
	i := slices.Index(l.runIDs(), id)
	shown := 0
	for _, s := range finals[i].Steps {
		if workerOf(s) == "" {
			continue
		}
		shown++
		line := rowOf(string(out), s.ID)
		assert.Contains(t, line, workerOf(s), "stagehand status shows step %s's worker:\n%s", s.ID, out)
	}
	assert.NotZero(t, shown)
	// So does the audit of the run, from its history.
	out, err = temporalCLIStagehand(ctx, "audit", "show", id).CombinedOutput()
	require.NoError(t, err, "stagehand audit show %s: %s", id, out)
	assert.Contains(t, string(out), "WORKER")
	for _, s := range finals[i].Steps {
		if w := workerOf(s); w != "" {
			assert.Contains(t, lineWith(string(out), s.ID), w, "stagehand audit show names step %s's worker:\n%s", s.ID, out)
		}
	}
	t.Logf("fleet test took %s", time.Since(began).Round(100*time.Millisecond))
}

func (l *fleetLab) runIDs() []string {
	ids := make([]string, len(l.deployments))
	for i := range ids {
		ids[i] = l.runID(i)
	}
	return ids
}

// lineWith returns the first line of out that names step (as a word).
// rowOf returns the row of stagehand status's step table for step.
func rowOf(out, step string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == step {
			return line
		}
	}
	return ""
}

func lineWith(out, step string) string {
	for line := range strings.SplitSeq(out, "\n") {
		for _, f := range strings.Fields(line) {
			if strings.Trim(f, ":,()") == step {
				return line
			}
		}
	}
	return ""
}

// holdProber holds the rollout of one image in a namespace: its pods run
// but are not Ready (a portal still starting) until release.
type holdProber struct {
	image string
	held  atomic.Bool
}

func (h *holdProber) Probe(pod *corev1.Pod, c corev1.Container) podsim.ProbeResult {
	if c.Image == h.image && h.held.Load() {
		return podsim.ProbeResult{Handled: true, Ready: false, Message: "held by the fleet test"}
	}
	return podsim.ProbeResult{Handled: true, Ready: true}
}

func (h *holdProber) Terminating(*corev1.Pod) bool { return false }

// TestFleetSigtermDuringRolloutWatch: a worker stopped (SIGTERM) while it
// watches a rollout exits within its stop timeout, and the watch goes on on
// the other worker at once (not after a heartbeat timeout); the run
// completes with the image set once.
func TestFleetSigtermDuringRolloutWatch(t *testing.T) {
	const stopTimeout = 10 * time.Second
	// A heartbeat timeout far beyond the bound on the handover below: a
	// watch retried only because its heartbeats stopped would fail it.
	const heartbeatTimeout = 60 * time.Second
	const handoverBound = 20 * time.Second
	began := time.Now()
	l := newFleetLab(t, 1, heartbeatTimeout)
	hold := &holdProber{image: l.prImage(0)}
	hold.held.Store(true)
	portals.add(hold, l.sandbox)
	t.Cleanup(func() { portals.remove(l.sandbox) })

	a := l.startFleetWorker("fleet-a", "--stop-timeout", stopTimeout.String())
	l.waitPolling(a, time.Minute)
	id := l.runID(0)
	l.startRun(0)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	waitPending := func(identity string, timeout time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < timeout {
			steps, err := pendingOn(ctx, id, identity)
			if err == nil && slices.Contains(steps, "sandbox_rollout") {
				return time.Since(start)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("sandbox_rollout not running on %s within %s", identity, timeout)
		return 0
	}
	waitPending(a.identity, 2*time.Minute)
	// The status says so too.
	waitFor(t, id, time.Minute, "the rollout watch", func(s workflows.Status) bool {
		return stepState(s, "sandbox_rollout") == workflows.StepRunning
	})
	// And `stagehand status` names the worker running it.
	out, err := temporalCLIStagehand(ctx, "status", id).CombinedOutput()
	require.NoError(t, err, "stagehand status %s: %s", id, out)
	assert.Contains(t, rowOf(string(out), "sandbox_rollout"), a.identity, "status names the running step's worker:\n%s", out)

	b := l.startFleetWorker("fleet-b", "--stop-timeout", stopTimeout.String())
	l.waitPolling(b, time.Minute)

	termAt := time.Now()
	a.signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(stopTimeout + time.Minute):
		t.Fatalf("fleet-a still running %s after SIGTERM (stop timeout %s)", stopTimeout+time.Minute, stopTimeout)
	}
	exit := a.exitedAt.Sub(termAt)
	t.Logf("fleet-a exited %s after SIGTERM (stop timeout %s): %s", exit.Round(10*time.Millisecond), stopTimeout, a.cmd.ProcessState)
	assert.LessOrEqual(t, exit, stopTimeout+3*time.Second, "fleet-a exits within its stop timeout")
	assert.Equal(t, 0, a.cmd.ProcessState.ExitCode(), "a stopped worker exits 0")

	handover := time.Since(termAt) + waitPending(b.identity, handoverBound+heartbeatTimeout)
	t.Logf("sandbox_rollout running on fleet-b %s after the SIGTERM", handover.Round(10*time.Millisecond))
	assert.Less(t, handover, handoverBound, "the watch hands over at once, not after its heartbeat timeout (%s)", heartbeatTimeout)

	// The rollout could not finish while fleet-a watched it.
	d, err := kube.Client.AppsV1().Deployments(l.sandbox).Get(ctx, l.deployments[0], metav1.GetOptions{})
	require.NoError(t, err)
	require.False(t, kubetest.RolledOut(d), "the rollout was still held: %+v", d.Status)
	hold.held.Store(false)

	appr := l.approveAll(ctx)
	defer func() { cancel(); <-appr.done }()
	st, err := fleetFinal(ctx, id)
	require.NoError(t, err, "run failed: %s at %s", st.Error, st.FailedStep)
	done, err := completedBy(ctx, id)
	require.NoError(t, err)
	checkSteps(t, id, st, done)
	rollout := stepOf(st, "sandbox_rollout")
	require.NotNil(t, rollout)
	assert.Equal(t, b.identity, workerOf(*rollout), "the watch finished on fleet-b")
	assert.EqualValues(t, 1, rollout.Attempts, "the interruption cost the watch no attempt")
	t.Logf("sandbox_rollout: attempts %d, worker %s; steps: %s", rollout.Attempts, workerOf(*rollout), stepWorkers(st))
	l.checkDeployments(l.sandbox, l.prImage)
	l.checkDeployments(l.prod, l.prodImage)
	t.Logf("SIGTERM test took %s", time.Since(began).Round(100*time.Millisecond))
}

func stepWorkers(st workflows.Status) string {
	var parts []string
	for _, s := range st.Steps {
		parts = append(parts, s.ID+"="+workerOf(s))
	}
	return strings.Join(parts, " ")
}
