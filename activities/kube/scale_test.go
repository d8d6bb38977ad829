package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// podsLeft counts every pod of the Deployment's selector, terminating ones
// included: what kube.scale to 0 promises is gone.
func podsLeft(t testing.TB, env *kubetest.Env, ns, name string) int {
	t.Helper()
	ctx := context.Background()
	d, err := env.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sel, err := deploymentSelector(d)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	return len(pods.Items)
}

func TestIntegrationScale(t *testing.T) {
	t.Parallel()
	env, a, ns := plane(t)
	createHealthy(t, env, ns, "portal", "backstage:1", 2)
	with := func(kv ...any) map[string]any {
		m := map[string]any{"namespace": ns, "deployment": "portal"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	get := func() (int32, int64) {
		d, err := env.Client.AppsV1().Deployments(ns).Get(context.Background(), "portal", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return specReplicas(d), d.Generation
	}

	if img := mustStep(t, a, "kube.getImage", with()); img["replicas"] != float64(2) {
		t.Fatalf("getImage outputs %v, want replicas 2", img)
	}

	t.Run("bad replicas refused before any change", func(t *testing.T) {
		_, gen := get()
		for _, r := range []any{-1, 101, 1000} {
			run := runStep(t, a, "kube.scale", with("replicas", r), nil)
			steptest.WantAppError(t, run.err, activities.ErrInvalidArguments, true, []string{"replicas", "0 to 100"})
		}
		run := runStep(t, a, "kube.scale", with(), nil)
		steptest.WantAppError(t, run.err, activities.ErrInvalidArguments, true, []string{"replicas"})
		if n, g := get(); n != 2 || g != gen {
			t.Errorf("refused scale changed the deployment: replicas %d generation %d -> %d", n, gen, g)
		}
	})

	// 2 -> 0 returns only once no pod of the Deployment is left. A
	// finalizer keeps one pod terminating: status.replicas is 0 at once,
	// but the step must not return while that pod exists.
	ctx := context.Background()
	pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=portal"})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("pods before scaling: %v %v", pods, err)
	}
	held := pods.Items[0].Name
	const finalizer = `{"metadata":{"finalizers":["stagehand.dev/test-hold"]}}`
	if _, err := env.Client.CoreV1().Pods(ns).Patch(ctx, held, "application/merge-patch+json", []byte(finalizer), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	run := runStep(t, a, "kube.scale", with("replicas", 0, "timeout", "5s"), nil)
	steptest.WantAppError(t, run.err, activities.ErrRolloutTimeout, true, []string{"1 pods left (1 terminating)"})
	if len(run.heartbeats) == 0 || !strings.Contains(strings.Join(run.heartbeats, "\n"), "scaling from 2 to 0") {
		t.Errorf("heartbeats %q", run.heartbeats)
	}
	t.Logf("held pod: %v; heartbeats %q", run.err, run.heartbeats)
	if _, err := env.Client.CoreV1().Pods(ns).Patch(ctx, held, "application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	// The retry (as the runbook's retry policy would run it): the count is
	// already 0, so nothing changes, but it still waits for the pod to go.
	again := mustStep(t, a, "kube.scale", with("replicas", 0, "timeout", "2m"))
	if again["changed"] != false || again["previousReplicas"] != float64(0) || again["replicas"] != float64(0) {
		t.Errorf("second scale to 0: %v", again)
	}
	if n := podsLeft(t, env, ns, "portal"); n != 0 {
		t.Errorf("scale to 0 returned with %d pods left", n)
	}
	t.Logf("scaled to 0 in %v", again["elapsed"])

	// 0 -> 2 returns once both are available.
	up := mustStep(t, a, "kube.scale", with("replicas", 2))
	if up["previousReplicas"] != float64(0) || up["replicas"] != float64(2) || up["changed"] != true {
		t.Errorf("scale to 2 outputs %v", up)
	}
	d, err := env.Client.AppsV1().Deployments(ns).Get(context.Background(), "portal", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.AvailableReplicas != 2 || d.Status.Replicas != 2 {
		t.Errorf("after scale to 2: status %+v", d.Status)
	}

	// wait: false returns at once, with the change made.
	noWait := mustStep(t, a, "kube.scale", with("replicas", 1, "wait", false))
	if noWait["changed"] != true || noWait["previousReplicas"] != float64(2) {
		t.Errorf("scale without wait: %v", noWait)
	}
	if n, _ := get(); n != 1 {
		t.Errorf("spec.replicas %d after scale to 1", n)
	}
}

// TestIntegrationScaleRetry: a retried attempt (heartbeat details of the
// first) finds its own count already set and still reports the count before
// the first attempt, with changed=true.
func TestIntegrationScaleRetry(t *testing.T) {
	t.Parallel()
	env, a, ns := plane(t)
	createHealthy(t, env, ns, "portal", "backstage:1", 1)
	if _, err := env.Client.AppsV1().Deployments(ns).Patch(context.Background(), "portal", "application/merge-patch+json",
		[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	step := steptest.Find(t, StepTypes(a), "kube.scale")
	var suite testsuite.WorkflowTestSuite
	tenv := suite.NewTestActivityEnvironment()
	tenv.RegisterActivityWithOptions(step.Handler, activity.RegisterOptions{Name: "kube.scale"})
	from := int32(1)
	tenv.SetHeartbeatDetails(Progress{Message: "scaling from 1 to 0", ScaleFrom: &from})
	val, err := tenv.ExecuteActivity("kube.scale", activities.StepRequest{StepID: "it",
		With: map[string]any{"namespace": ns, "deployment": "portal", "replicas": 0}})
	if err != nil {
		t.Fatal(err)
	}
	var res activities.StepResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	if o := res.Outputs; o["previousReplicas"] != float64(1) || o["changed"] != true || o["replicas"] != float64(0) {
		t.Errorf("retried scale outputs %v, want previousReplicas 1, changed", o)
	}
	if n := podsLeft(t, env, ns, "portal"); n != 0 {
		t.Errorf("%d pods left", n)
	}
}

// TestIntegrationScaleFailingDeployment is the restore path of an upgrade
// whose new image crash-loops: scaling it to 0 succeeds (its failing pods
// are what is being stopped), and scaling the bad image up again fails
// within seconds, as kube.waitRollout does, instead of at the timeout.
func TestIntegrationScaleFailingDeployment(t *testing.T) {
	t.Parallel()
	env, a, ns := plane(t)
	createHealthy(t, env, ns, "portal", "backstage:good", 2)
	dep := map[string]any{"namespace": ns, "deployment": "portal"}
	mustStep(t, a, "kube.setImage", map[string]any{"namespace": ns, "deployment": "portal", "image": "backstage:pr-7-crashloop"})
	// waitRollout returns once the new pod crash-loops: the state a failed
	// upgrade leaves.
	failed := runStep(t, a, "kube.waitRollout", dep, nil)
	steptest.WantAppError(t, failed.err, activities.ErrPodFailure, true, []string{"CrashLoopBackOff"})
	down := mustStep(t, a, "kube.scale", map[string]any{"namespace": ns, "deployment": "portal", "replicas": 0, "timeout": "2m"})
	if down["previousReplicas"] != float64(2) {
		t.Errorf("scale to 0 outputs %v", down)
	}
	if n := podsLeft(t, env, ns, "portal"); n != 0 {
		t.Errorf("%d pods left", n)
	}
	start := time.Now()
	run := runStep(t, a, "kube.scale", map[string]any{"namespace": ns, "deployment": "portal", "replicas": 1, "timeout": "5m"}, nil)
	steptest.WantAppError(t, run.err, activities.ErrPodFailure, true, []string{"pod portal-", "CrashLoopBackOff"})
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("crash loop detected after %s", took)
	}
}
