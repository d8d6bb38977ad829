package kube

// Integration tests against a real control plane (internal/kubetest): real
// kube-apiserver, etcd, Deployment and ReplicaSet controllers and scheduler,
// with the pod simulator standing in for the kubelet. Steps run as
// activities in Temporal's test activity environment, the way the worker
// runs them, so heartbeats and error conversion are the real ones.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// plane returns the shared control plane, an Activities whose only cluster
// was built from the plane's kubeconfig (as the worker builds it), and a
// fresh namespace for the test.
func plane(t testing.TB) (*kubetest.Env, *Activities, string) {
	t.Helper()
	env := kubetest.Shared(t)
	c, err := NewClusterFromKubeconfig("local", env.Kubeconfig, env.Context)
	if err != nil {
		t.Fatal(err)
	}
	ns := env.TestNamespace(t, "kube-it")
	return env, &Activities{Clusters: map[string]*Cluster{"local": c}, HeartbeatInterval: time.Second}, ns
}

// stepRun is one step executed as an activity.
type stepRun struct {
	outputs    map[string]any
	err        error
	heartbeats []string
}

// runStep runs a step type the way a worker does (see steptest).
// onHeartbeat, if set, sees each heartbeat message as it comes.
func runStep(t testing.TB, a *Activities, name string, with map[string]any, onHeartbeat func(string)) stepRun {
	t.Helper()
	var run stepRun
	listen, messages := progressListener(onHeartbeat)
	res := steptest.RunStep(t, StepTypes(a), name, with, steptest.StepID("it"), steptest.OnHeartbeat(listen))
	run.outputs, run.err, run.heartbeats = res.Outputs, res.Err, messages()
	return run
}

// progressListener decodes heartbeat details into Progress, collecting
// their messages and passing each to onHeartbeat (if set).
func progressListener(onHeartbeat func(string)) (listen func(converter.EncodedValues), messages func() []string) {
	var mu sync.Mutex
	var seen []string
	listen = func(details converter.EncodedValues) {
		var p Progress
		if details.HasValues() && details.Get(&p) == nil {
			mu.Lock()
			seen = append(seen, p.Message)
			mu.Unlock()
			if onHeartbeat != nil {
				onHeartbeat(p.Message)
			}
		}
	}
	messages = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
	return listen, messages
}

// stepWorkflow runs one step as an activity with a heartbeat timeout, the
// way RunbookWorkflow schedules long-running steps: the test environment then
// enforces the timeout, so a step that stops heartbeating fails.
func stepWorkflow(ctx workflow.Context, name string, heartbeatTimeout time.Duration, req activities.StepRequest) (activities.StepResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    heartbeatTimeout,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var res activities.StepResult
	err := workflow.ExecuteActivity(ctx, name, req).Get(ctx, &res)
	return res, err
}

// runStepInWorkflow is runStep with a heartbeat timeout enforced.
func runStepInWorkflow(t testing.TB, a *Activities, name string, with map[string]any, heartbeatTimeout time.Duration, onHeartbeat func(string)) stepRun {
	t.Helper()
	step := steptest.Find(t, StepTypes(a), name)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(10 * time.Minute)
	env.RegisterWorkflow(stepWorkflow)
	env.RegisterActivityWithOptions(step.Handler, activity.RegisterOptions{Name: name})
	listen, messages := progressListener(onHeartbeat)
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) { listen(details) })
	env.ExecuteWorkflow(stepWorkflow, name, heartbeatTimeout, activities.StepRequest{StepID: "it", With: with})
	var run stepRun
	run.heartbeats = messages()
	if run.err = env.GetWorkflowError(); run.err == nil {
		var res activities.StepResult
		if err := env.GetWorkflowResult(&res); err != nil {
			t.Fatal(err)
		}
		run.outputs = res.Outputs
	}
	return run
}

func mustStep(t testing.TB, a *Activities, name string, with map[string]any) map[string]any {
	t.Helper()
	r := runStep(t, a, name, with, nil)
	if r.err != nil {
		t.Fatalf("%s: %v", name, r.err)
	}
	return r.outputs
}

func createHealthy(t testing.TB, env *kubetest.Env, ns, name, image string, replicas int32, mutate ...func(*appsv1.Deployment)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.CreateDeployment(ctx, ns, name, image, replicas, mutate...); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitForRollout(ctx, ns, name); err != nil {
		t.Fatal(err)
	}
}

func ownedRevisions(t testing.TB, env *kubetest.Env, ns, name string) []string {
	t.Helper()
	ctx := context.Background()
	d, err := env.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := env.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var revs []string
	for i := range list.Items {
		if ownedBy(&list.Items[i], d) {
			revs = append(revs, list.Items[i].Annotations[RevisionAnnotation])
		}
	}
	return revs
}

func TestIntegrationHappyRollout(t *testing.T) {
	t.Parallel()
	env, a, ns := plane(t)
	createHealthy(t, env, ns, "portal", "registry.local/backstage:pr-1-aaaa", 2)
	dep := map[string]any{"namespace": ns, "deployment": "portal"}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range dep {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}

	set := mustStep(t, a, "kube.setImage", with("image", "registry.local/backstage:pr-2-bbbb"))
	if set["changed"] != true || set["previousImage"] != "registry.local/backstage:pr-1-aaaa" || set["revision"] != "1" {
		t.Errorf("setImage outputs %v", set)
	}
	run := runStep(t, a, "kube.waitRollout", with("timeout", "2m"), nil)
	if run.err != nil {
		t.Fatal(run.err)
	}
	out := run.outputs
	if out["image"] != "registry.local/backstage:pr-2-bbbb" || out["revision"] != "2" ||
		out["updatedReplicas"] != float64(2) || out["availableReplicas"] != float64(2) || out["replicas"] != float64(2) {
		t.Errorf("waitRollout outputs %v", out)
	}
	if len(run.heartbeats) == 0 {
		t.Errorf("waitRollout did not heartbeat")
	}
	t.Logf("rollout took %v; heartbeats: %q", out["elapsed"], run.heartbeats)

	pods := mustStep(t, a, "kube.checkPods", with("soak", "2s"))
	if names, _ := pods["pods"].([]any); len(names) != 2 || pods["image"] != "registry.local/backstage:pr-2-bbbb" {
		t.Errorf("checkPods outputs %v", pods)
	}
	wrong := runStep(t, a, "kube.checkPods", with("image", "registry.local/backstage:pr-9-zzzz"), nil)
	steptest.WantAppError(t, wrong.err, activities.ErrImageMismatch, false, []string{"pr-9-zzzz"})

	events := mustStep(t, a, "kube.events", with("since", set["changedAt"]))
	list, _ := events["events"].([]any)
	if len(list) == 0 || events["warnings"] != float64(0) {
		t.Errorf("events outputs %v", events)
	}
	var reasons []string
	for _, e := range list {
		reasons = append(reasons, e.(map[string]any)["reason"].(string))
	}
	if !strings.Contains(strings.Join(reasons, ","), "ScalingReplicaSet") {
		t.Errorf("no ScalingReplicaSet event among %v", reasons)
	}

	restart := mustStep(t, a, "kube.restart", with())
	if restart["restartedAt"] == "" {
		t.Errorf("restart outputs %v", restart)
	}
	out = mustStep(t, a, "kube.waitRollout", with())
	if out["revision"] != "3" || out["image"] != "registry.local/backstage:pr-2-bbbb" {
		t.Errorf("waitRollout after restart: %v", out)
	}
}

func TestIntegrationSetImageTwiceIsOneChange(t *testing.T) {
	t.Parallel()
	env, a, ns := plane(t)
	createHealthy(t, env, ns, "portal", "backstage:1", 1)
	with := map[string]any{"namespace": ns, "deployment": "portal", "image": "backstage:2"}
	first := mustStep(t, a, "kube.setImage", with)
	second := mustStep(t, a, "kube.setImage", with)
	if first["changed"] != true || second["changed"] != false || second["previousImage"] != "backstage:2" {
		t.Fatalf("first %v second %v", first, second)
	}
	if first["generation"] != second["generation"] {
		t.Errorf("generation moved on the second call: %v -> %v", first["generation"], second["generation"])
	}
	mustStep(t, a, "kube.waitRollout", map[string]any{"namespace": ns, "deployment": "portal"})
	if revs := ownedRevisions(t, env, ns, "portal"); len(revs) != 2 {
		t.Errorf("ReplicaSet revisions %v, want 2 (initial + one change)", revs)
	}
}

// TestIntegrationPodFailures rolls out a bad image of each kind, checks that
// waitRollout fails fast naming the pod, container and reason, that the
// events step flags the kubelet's warnings, and that rollback restores the
// previous image.
func TestIntegrationPodFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fault   string
		reasons []string
	}{
		{"crashloop", []string{"CrashLoopBackOff"}},
		{"imagepull", []string{"ErrImagePull", "ImagePullBackOff"}},
		{"oom", []string{"OOMKilled"}},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			t.Parallel()
			env, a, ns := plane(t)
			createHealthy(t, env, ns, "portal", "backstage:good", 2)
			dep := map[string]any{"namespace": ns, "deployment": "portal"}
			bad := "backstage:pr-7-" + tc.fault
			set := mustStep(t, a, "kube.setImage", map[string]any{"namespace": ns, "deployment": "portal", "image": bad})

			start := time.Now()
			run := runStep(t, a, "kube.waitRollout", dep, nil)
			took := time.Since(start)
			steptest.WantAppError(t, run.err, activities.ErrPodFailure, true, []string{"pod portal-", `container "portal"`, "restarts:"})
			matched := false
			for _, r := range tc.reasons {
				matched = matched || strings.Contains(run.err.Error(), ": "+r)
			}
			if !matched {
				t.Errorf("error %q names none of %v", run.err, tc.reasons)
			}
			// The Deployment's progress deadline is 600 s: failing within
			// seconds is the point of watching pods.
			if took > 15*time.Second {
				t.Errorf("detection took %s", took)
			}
			t.Logf("%s detected in %s: %v", tc.fault, took.Round(time.Millisecond), run.err)

			// The simulator, like a kubelet, records its Warning event just
			// after the status write we reacted to.
			wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := env.WaitForEvent(wctx, ns, func(e *corev1.Event) bool {
				return e.Type == corev1.EventTypeWarning && strings.HasPrefix(e.InvolvedObject.Name, "portal-")
			}); err != nil {
				t.Fatal(err)
			}
			ev := runStep(t, a, "kube.events", map[string]any{"namespace": ns, "deployment": "portal", "since": set["changedAt"]}, nil)
			steptest.WantAppError(t, ev.err, activities.ErrWarningEvents, true, []string{"Pod/portal-"})
			allowed := runStep(t, a, "kube.events", map[string]any{"namespace": ns, "deployment": "portal",
				"since": set["changedAt"], "allow": []any{"BackOff|Failed|pull|restarting"}}, nil)
			if allowed.err != nil {
				t.Errorf("events with allow: %v", allowed.err)
			}

			rb := mustStep(t, a, "kube.rollback", dep)
			if rb["fromImage"] != bad || rb["toImage"] != "backstage:good" || rb["changed"] != true {
				t.Errorf("rollback outputs %v", rb)
			}
			d, err := env.Client.AppsV1().Deployments(ns).Get(context.Background(), "portal", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if img := d.Spec.Template.Spec.Containers[0].Image; img != "backstage:good" || !kubetest.RolledOut(d) {
				t.Errorf("after rollback: image %s, rolled out %v", img, kubetest.RolledOut(d))
			}
			// Rolling back again is already-there, not an undo of the undo.
			again := mustStep(t, a, "kube.rollback", map[string]any{"namespace": ns, "deployment": "portal", "toImage": "backstage:good"})
			if again["changed"] != false {
				t.Errorf("second rollback changed the deployment: %v", again)
			}
			mustStep(t, a, "kube.checkPods", map[string]any{"namespace": ns, "deployment": "portal", "image": "backstage:good"})
		})
	}
}

func TestIntegrationProgressDeadline(t *testing.T) {
	t.Parallel()
	env, a, ns := plane(t)
	createHealthy(t, env, ns, "portal", "backstage:good", 1, func(d *appsv1.Deployment) {
		deadline := int32(5)
		d.Spec.ProgressDeadlineSeconds = &deadline
	})
	mustStep(t, a, "kube.setImage", map[string]any{"namespace": ns, "deployment": "portal", "image": "backstage:pr-8-notready"})
	start := time.Now()
	run := runStep(t, a, "kube.waitRollout", map[string]any{"namespace": ns, "deployment": "portal", "timeout": "1m"}, nil)
	steptest.WantAppError(t, run.err, activities.ErrProgressDeadline, true, []string{"exceeded its progress deadline", "not ready"})
	if took := time.Since(start); took < 4*time.Second || took > 30*time.Second {
		t.Errorf("deadline reported after %s, want about 5s", took)
	}
	t.Logf("%v", run.err)
}

// TestIntegrationAPIServerOutage stops kube-apiserver for 20 s in the middle
// of a waitRollout. The step must keep heartbeating, re-establish its
// watches when the apiserver returns and then complete. It does not run in
// parallel: the outage would disturb every other test on the shared plane.
func TestIntegrationAPIServerOutage(t *testing.T) {
	env, a, ns := plane(t)
	createHealthy(t, env, ns, "portal", "backstage:good", 1)
	ctx := context.Background()
	// New pods need a node label nobody has yet: the rollout is stuck with a
	// Pending pod (not a failure) until the test labels the node, after the
	// outage.
	label := "stagehand.dev/outage-" + ns
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"nodeSelector":{%q:"yes"},"containers":[{"name":"portal","image":"backstage:new"}]}}}}`, label)
	if _, err := env.Client.AppsV1().Deployments(ns).Patch(ctx, "portal", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	var once sync.Once
	done := make(chan stepRun, 1)
	go func() {
		// A 10 s heartbeat timeout, enforced by the test environment, proves
		// the step keeps heartbeating through the 20 s outage.
		done <- runStepInWorkflow(t, a, "kube.waitRollout", map[string]any{"namespace": ns, "deployment": "portal", "timeout": "9m"}, 10*time.Second, func(msg string) {
			if strings.Contains(msg, "old replicas pending termination") {
				once.Do(func() { close(waiting) })
			}
		})
	}()
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("waitRollout ended before the outage: %v %v", r.outputs, r.err)
	case <-time.After(time.Minute):
		t.Fatal("waitRollout never reported a stuck rollout")
	}
	if err := env.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	select {
	case r := <-done:
		_ = env.StartAPIServer()
		t.Fatalf("waitRollout ended during the outage: %v", r.err)
	case <-time.After(20 * time.Second):
	}
	if err := env.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("apiserver was down for %s", time.Since(stopped).Round(time.Millisecond))
	node, err := env.Client.CoreV1().Nodes().Get(ctx, env.Sim.NodeName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Labels[label] = "yes"
	if _, err := env.Client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	labelled := time.Now()
	observed := make(chan time.Time, 1)
	go func() {
		octx, cancel := context.WithTimeout(ctx, 7*time.Minute)
		defer cancel()
		if _, err := env.WaitForRollout(octx, ns, "portal"); err == nil {
			observed <- time.Now()
		}
	}()
	select {
	case r := <-done:
		returned := time.Now()
		if r.err != nil {
			t.Fatalf("waitRollout failed after the outage: %v", r.err)
		}
		select {
		case at := <-observed:
			t.Logf("node labelled; rollout complete %s later (independent watch); step returned %s after that",
				at.Sub(labelled).Round(time.Millisecond), returned.Sub(at).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			t.Errorf("independent watch did not see the rollout complete")
		}
		if r.outputs["image"] != "backstage:new" || r.outputs["revision"] != "2" {
			t.Errorf("outputs %v", r.outputs)
		}
		retrying := 0
		for _, h := range r.heartbeats {
			if strings.Contains(h, "retrying") {
				retrying++
			}
		}
		if retrying == 0 {
			t.Errorf("no heartbeat reported the outage: %q", r.heartbeats)
		}
		t.Logf("completed in %v with %d heartbeats (%d during the outage)", r.outputs["elapsed"], len(r.heartbeats), retrying)
	case <-time.After(6 * time.Minute):
		// The controllers and scheduler need up to a minute after an
		// outage (their reflectors back off); give a loaded CI machine more.
		t.Fatal("waitRollout did not complete after the apiserver came back")
	}
}

// TestIntegrationRBAC applies the worker's Role from deploy/kubernetes into
// one namespace (with kube.apply) and checks, as that ServiceAccount, that the
// steps work there and fail with a clear non-retryable KubeForbidden in a
// namespace the Role does not cover.
func TestIntegrationRBAC(t *testing.T) {
	t.Parallel()
	env, admin, ns := plane(t)
	_, _, other := plane(t)
	ctx := context.Background()
	createHealthy(t, env, ns, "portal", "backstage:1", 1)
	createHealthy(t, env, other, "portal", "backstage:1", 1)
	if err := env.CreateNamespace(ctx, "stagehand"); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The file grants the sandbox and prod namespaces; point its first Role
	// and RoleBinding at this test's namespace and drop the rest.
	docs := strings.Split(string(raw), "\n---\n")
	var manifests []string
	for _, doc := range docs {
		if strings.Contains(doc, "namespace: backstage-sandbox") {
			manifests = append(manifests, strings.ReplaceAll(doc, "namespace: backstage-sandbox", "namespace: "+ns))
		}
	}
	if len(manifests) != 2 {
		t.Fatalf("expected a Role and a RoleBinding for backstage-sandbox in rbac.yaml, found %d documents", len(manifests))
	}
	applyWith := map[string]any{"manifests": strings.Join(manifests, "\n---\n")}
	applied := mustStep(t, admin, "kube.apply", applyWith)
	want := fmt.Sprintf("[Role/%s/stagehand-worker RoleBinding/%s/stagehand-worker]", ns, ns)
	if fmt.Sprint(applied["applied"]) != want {
		t.Errorf("applied %v, want %s", applied["applied"], want)
	}
	// Server-side apply again: same result, no error.
	if again := mustStep(t, admin, "kube.apply", applyWith); fmt.Sprint(again["applied"]) != want {
		t.Errorf("second apply %v", again["applied"])
	}

	_, cfg, err := env.ServiceAccountClient(ctx, "stagehand", "stagehand-worker")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClusterFromConfig("sa", cfg)
	if err != nil {
		t.Fatal(err)
	}
	sa := &Activities{Clusters: map[string]*Cluster{"sa": c}, HeartbeatInterval: time.Second}

	mustStep(t, sa, "kube.setImage", map[string]any{"namespace": ns, "deployment": "portal", "image": "backstage:2"})
	if out := mustStep(t, sa, "kube.waitRollout", map[string]any{"namespace": ns, "deployment": "portal"}); out["image"] != "backstage:2" {
		t.Errorf("waitRollout as the ServiceAccount: %v", out)
	}
	mustStep(t, sa, "kube.checkPods", map[string]any{"namespace": ns, "deployment": "portal"})
	mustStep(t, sa, "kube.events", map[string]any{"namespace": ns, "deployment": "portal", "since": "10m"})
	if out := mustStep(t, sa, "kube.rollback", map[string]any{"namespace": ns, "deployment": "portal"}); out["toImage"] != "backstage:1" {
		t.Errorf("rollback as the ServiceAccount: %v", out)
	}

	denied := runStep(t, sa, "kube.setImage", map[string]any{"namespace": other, "deployment": "portal", "image": "backstage:2"}, nil)
	steptest.WantAppError(t, denied.err, activities.ErrKubeForbidden, true, []string{"forbidden", "system:serviceaccount:stagehand:stagehand-worker", other})
	deniedWait := runStep(t, sa, "kube.waitRollout", map[string]any{"namespace": other, "deployment": "portal"}, nil)
	steptest.WantAppError(t, deniedWait.err, activities.ErrKubeForbidden, true, []string{"forbidden"})
	// The Role grants no create: applying as the worker is refused too.
	deniedApply := runStep(t, sa, "kube.apply", map[string]any{"namespace": ns,
		"manifests": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"}, nil)
	steptest.WantAppError(t, deniedApply.err, activities.ErrKubeForbidden, true, []string{"ConfigMap/" + ns + "/x"})
	t.Logf("forbidden as reported: %v", denied.err)
}
