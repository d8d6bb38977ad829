package podsim_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/podsim"
)

// onFault collects OnFault callbacks, to check the hook a benchmark uses.
var onFault struct {
	sync.Mutex
	calls []string // namespace/pod reason
}

func TestMain(m *testing.M) {
	// A short back-off, so restart counts visibly grow within a test.
	kubetest.SharedSimOptions = podsim.Options{
		InitialBackOff: time.Second,
		MaxBackOff:     4 * time.Second,
		OnFault: func(pod *corev1.Pod, reason string, at time.Time) {
			onFault.Lock()
			defer onFault.Unlock()
			onFault.calls = append(onFault.calls, pod.Namespace+"/"+pod.Name+" "+reason)
		},
		Probe:         probes.probe,
		Terminating:   holds.terminating,
		ProbeInterval: 200 * time.Millisecond,
	}
	os.Exit(kubetest.Main(m))
}

const selector = "app.kubernetes.io/name=backstage"

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func waiting(p *corev1.Pod) *corev1.ContainerStateWaiting {
	if len(p.Status.ContainerStatuses) == 0 {
		return nil
	}
	return p.Status.ContainerStatuses[0].State.Waiting
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// faultRecord finds the simulator's record of reason for a pod.
func faultRecord(env *kubetest.Env, ns, pod, reason string) (podsim.FaultRecord, bool) {
	for _, f := range env.Sim.Faults() {
		if f.Namespace == ns && f.Pod == pod && f.Reason == reason {
			return f, true
		}
	}
	return podsim.FaultRecord{}, false
}

// A crash-looping image shows CrashLoopBackOff with a growing restart count,
// the last exit (code 1) and Warning BackOff events on the pod; the simulator
// reports when it wrote the status.
func TestCrashLoopBackOff(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t)
	ns := env.TestNamespace(t, "sim-crashloop")
	image := "registry.local/backstage-portal/backend:pr-42-crashloop-1700000042"
	start := time.Now()
	if _, err := env.CreateDeployment(ctx, ns, "backstage", image, 2); err != nil {
		t.Fatal(err)
	}
	pod, err := env.WaitForPod(ctx, ns, selector, func(p *corev1.Pod) bool {
		w := waiting(p)
		return w != nil && w.Reason == podsim.ReasonCrashLoopBackOff && p.Status.ContainerStatuses[0].RestartCount > 0
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := time.Now()
	cs := pod.Status.ContainerStatuses[0]
	if cs.Ready || podReady(pod) {
		t.Error("crash-looping pod is Ready")
	}
	if term := cs.LastTerminationState.Terminated; term == nil || term.ExitCode != 1 || term.Reason != "Error" {
		t.Errorf("lastState.terminated = %+v, want exit 1 reason Error", term)
	}
	if !strings.HasPrefix(cs.State.Waiting.Message, "back-off 1s restarting failed container=backstage pod="+pod.Name) {
		t.Errorf("waiting message %q", cs.State.Waiting.Message)
	}
	rec, ok := faultRecord(env, ns, pod.Name, podsim.ReasonCrashLoopBackOff)
	if !ok {
		t.Fatalf("no fault record for %s", pod.Name)
	}
	if rec.At.Before(start) || rec.At.After(seen) || rec.Container != "backstage" || rec.Image != image || rec.LastTerminationReason != "Error" {
		t.Errorf("fault record %+v (test started %s, status seen %s)", rec, start, seen)
	}
	t.Logf("CrashLoopBackOff written %s after create, seen by a watch %s after the write",
		rec.At.Sub(start).Round(time.Millisecond), seen.Sub(rec.At).Round(time.Millisecond))

	// The kubelet keeps restarting it: the count grows with each back-off.
	if _, err := env.WaitForPod(ctx, ns, "", func(p *corev1.Pod) bool {
		return p.Name == pod.Name && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].RestartCount >= 3
	}); err != nil {
		t.Fatal(err)
	}
	ev, err := env.WaitForEvent(ctx, ns, func(e *corev1.Event) bool {
		return e.Type == corev1.EventTypeWarning && e.Reason == "BackOff" &&
			e.InvolvedObject.Kind == "Pod" && e.InvolvedObject.Name == pod.Name
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev.Message, "Back-off restarting failed container backstage") || ev.InvolvedObject.FieldPath != "spec.containers{backstage}" {
		t.Errorf("BackOff event %q fieldPath %q", ev.Message, ev.InvolvedObject.FieldPath)
	}

	onFault.Lock()
	defer onFault.Unlock()
	if !containsCall(onFault.calls, ns+"/"+pod.Name+" "+podsim.ReasonCrashLoopBackOff) {
		t.Errorf("OnFault not called for %s; calls %v", pod.Name, onFault.calls)
	}
}

func containsCall(calls []string, want string) bool {
	for _, c := range calls {
		if c == want {
			return true
		}
	}
	return false
}

// An unpullable image shows ErrImagePull, then ImagePullBackOff, stays Pending
// and gets the kubelet's Failed events.
func TestImagePullBackOff(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t)
	ns := env.TestNamespace(t, "sim-imagepull")
	image := "registry.local/backstage-portal/backend:pr-43-imagepull"
	if _, err := env.CreateDeployment(ctx, ns, "backstage", image, 1); err != nil {
		t.Fatal(err)
	}
	pod, err := env.WaitForPod(ctx, ns, selector, func(p *corev1.Pod) bool {
		w := waiting(p)
		return w != nil && w.Reason == podsim.ReasonImagePullBackOff
	})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodPending || pod.Status.ContainerStatuses[0].ImageID != "" {
		t.Errorf("phase %s imageID %q, want Pending and no image", pod.Status.Phase, pod.Status.ContainerStatuses[0].ImageID)
	}
	if _, ok := faultRecord(env, ns, pod.Name, podsim.ReasonErrImagePull); !ok {
		t.Error("ErrImagePull was not written before ImagePullBackOff")
	}
	for _, msg := range []string{"Failed to pull image", "Error: ImagePullBackOff"} {
		if _, err := env.WaitForEvent(ctx, ns, func(e *corev1.Event) bool {
			return e.Type == corev1.EventTypeWarning && e.Reason == "Failed" && e.InvolvedObject.Name == pod.Name && strings.Contains(e.Message, msg)
		}); err != nil {
			t.Fatalf("event %q: %v", msg, err)
		}
	}
}

// The fault annotation selects OOMKilled: exit 137 in lastState, then
// CrashLoopBackOff.
func TestOOMKilledByAnnotation(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t)
	ns := env.TestNamespace(t, "sim-oom")
	_, err := env.CreateDeployment(ctx, ns, "backstage", "registry.local/backstage-portal/backend:prod-2222cccc-1700000200", 1,
		func(d *appsv1.Deployment) {
			d.Spec.Template.Annotations = map[string]string{podsim.FaultAnnotation: string(podsim.FaultOOM)}
		})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := env.WaitForPod(ctx, ns, selector, func(p *corev1.Pod) bool {
		w := waiting(p)
		return w != nil && w.Reason == podsim.ReasonCrashLoopBackOff
	})
	if err != nil {
		t.Fatal(err)
	}
	term := pod.Status.ContainerStatuses[0].LastTerminationState.Terminated
	if term == nil || term.Reason != podsim.ReasonOOMKilled || term.ExitCode != 137 {
		t.Fatalf("lastState.terminated = %+v, want OOMKilled 137", term)
	}
	if rec, ok := faultRecord(env, ns, pod.Name, podsim.ReasonCrashLoopBackOff); !ok || rec.LastTerminationReason != podsim.ReasonOOMKilled {
		t.Errorf("fault record %+v", rec)
	}
}

// A never-ready container runs but fails its readiness probe, so the
// Deployment never becomes available.
func TestNotReady(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t)
	ns := env.TestNamespace(t, "sim-notready")
	if _, err := env.CreateDeployment(ctx, ns, "backstage", "registry.local/backstage-portal/backend:pr-44-notready", 1); err != nil {
		t.Fatal(err)
	}
	pod, err := env.WaitForPod(ctx, ns, selector, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})
	if err != nil {
		t.Fatal(err)
	}
	cs := pod.Status.ContainerStatuses[0]
	if podReady(pod) || cs.Ready || cs.State.Running == nil || cs.Started == nil || !*cs.Started {
		t.Errorf("want Running, started and not Ready; got ready=%v status %+v", podReady(pod), cs)
	}
	if _, err := env.WaitForEvent(ctx, ns, func(e *corev1.Event) bool {
		return e.Type == corev1.EventTypeWarning && e.Reason == "Unhealthy" && e.InvolvedObject.Name == pod.Name &&
			strings.Contains(e.Message, "/.backstage/health/v1/readiness")
	}); err != nil {
		t.Fatal(err)
	}
	d, err := env.Client.AppsV1().Deployments(ns).Get(ctx, "backstage", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.AvailableReplicas != 0 {
		t.Errorf("available replicas %d, want 0", d.Status.AvailableReplicas)
	}
}

// A deleted pod disappears at once (no 30 s grace period), as it does on a
// real node once its containers are stopped.
func TestDeletedPodIsRemovedAtOnce(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t)
	ns := env.TestNamespace(t, "sim-delete")
	if _, err := env.CreateDeployment(ctx, ns, "backstage", "registry.local/backstage-portal/backend:prod-3333dddd-1700000300", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitForRollout(ctx, ns, "backstage"); err != nil {
		t.Fatal(err)
	}
	pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods: %v %v", pods, err)
	}
	victim := pods.Items[0]
	w, err := env.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector:   "metadata.name=" + victim.Name,
		ResourceVersion: pods.ResourceVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	if err := env.Client.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for gone := false; !gone; {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed before the pod was deleted")
			}
			gone = ev.Type == watch.Deleted
		case <-timeout:
			t.Fatalf("pod %s still present %s after delete", victim.Name, time.Since(start))
		}
	}
	t.Logf("pod gone %s after delete", time.Since(start).Round(time.Millisecond))
	// The ReplicaSet replaces it and the Deployment is whole again.
	if _, err := env.WaitForRollout(ctx, ns, "backstage"); err != nil {
		t.Fatal(err)
	}
}
