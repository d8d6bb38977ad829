package podsim_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/podsim"
)

// probes is the shared plane's Options.Probe: each test sets the answer for
// its own image; every other image gets Handled false (the old behaviour,
// which keeps the other tests of the package unaffected).
var probes = &probeTable{answers: map[string]podsim.ProbeResult{}, asked: map[string]int{}}

type probeTable struct {
	mu      sync.Mutex
	answers map[string]podsim.ProbeResult
	asked   map[string]int
}

func (p *probeTable) probe(_ *corev1.Pod, c corev1.Container) podsim.ProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.answers[c.Image]
	if ok {
		p.asked[c.Image]++
	}
	return r
}

func (p *probeTable) set(image string, r podsim.ProbeResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers[image] = r
}

func (p *probeTable) timesAsked(image string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.asked[image]
}

func containerStatus(p *corev1.Pod) (corev1.ContainerStatus, bool) {
	if len(p.Status.ContainerStatuses) == 0 {
		return corev1.ContainerStatus{}, false
	}
	return p.Status.ContainerStatuses[0], true
}

// The probe decides readiness: not Ready (Running, Unhealthy event with the
// probe's message) until it answers Ready, and the rollout waits for it.
func TestProbeNotReadyThenReady(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t)
	ns := env.TestNamespace(t, "sim-probe-ready")
	image := "registry.local/probe/backend:ready-later"
	probes.set(image, podsim.ProbeResult{Handled: true, Message: "HTTP probe failed with statuscode: 503"})
	if _, err := env.CreateDeployment(ctx, ns, "backstage", image, 1); err != nil {
		t.Fatal(err)
	}
	pod, err := env.WaitForPod(ctx, ns, selector, func(p *corev1.Pod) bool {
		cs, ok := containerStatus(p)
		return ok && cs.State.Running != nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if podReady(pod) || pod.Status.ContainerStatuses[0].Ready {
		t.Fatal("pod is Ready while the probe says not ready")
	}
	ev, err := env.WaitForEvent(ctx, ns, func(e *corev1.Event) bool {
		return e.Reason == "Unhealthy" && e.InvolvedObject.Name == pod.Name
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Message != "Readiness probe failed: HTTP probe failed with statuscode: 503" {
		t.Errorf("Unhealthy event message %q", ev.Message)
	}
	// Still not Ready a few probe periods later: the probe is asked again.
	asked := probes.timesAsked(image)
	time.Sleep(time.Second)
	if probes.timesAsked(image) <= asked {
		t.Errorf("probe not asked again within 1s (interval 200ms): %d then %d", asked, probes.timesAsked(image))
	}
	if p, err := env.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil || podReady(p) {
		t.Fatalf("pod Ready=%v err=%v while the probe says not ready", p != nil && podReady(p), err)
	}
	probes.set(image, podsim.ProbeResult{Handled: true, Ready: true})
	if _, err := env.WaitForRollout(ctx, ns, "backstage"); err != nil {
		t.Fatal(err)
	}
}

// An exit reported by the probe becomes CrashLoopBackOff with the exit code
// and message; the probe is asked again at each simulated restart, and a
// process that then runs brings the container back.
func TestProbeExitedCrashLoopsThenRecovers(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t)
	ns := env.TestNamespace(t, "sim-probe-exit")
	image := "registry.local/probe/backend:exits"
	probes.set(image, podsim.ProbeResult{Handled: true, Exited: true, ExitCode: 3, Message: "Cannot find module"})
	if _, err := env.CreateDeployment(ctx, ns, "backstage", image, 1); err != nil {
		t.Fatal(err)
	}
	pod, err := env.WaitForPod(ctx, ns, selector, func(p *corev1.Pod) bool {
		cs, ok := containerStatus(p)
		return ok && cs.State.Waiting != nil && cs.State.Waiting.Reason == podsim.ReasonCrashLoopBackOff && cs.RestartCount >= 2
	})
	if err != nil {
		t.Fatal(err)
	}
	cs := pod.Status.ContainerStatuses[0]
	term := cs.LastTerminationState.Terminated
	if term == nil || term.ExitCode != 3 || term.Reason != "Error" || term.Message != "Cannot find module" {
		t.Errorf("lastState.terminated = %+v, want exit 3, Error, the probe's message", term)
	}
	if podReady(pod) {
		t.Error("crash-looping pod is Ready")
	}
	if _, ok := faultRecord(env, ns, pod.Name, podsim.ReasonCrashLoopBackOff); !ok {
		t.Error("no CrashLoopBackOff fault record")
	}
	restarts := cs.RestartCount
	probes.set(image, podsim.ProbeResult{Handled: true, Ready: true})
	pod, err = env.WaitForPod(ctx, ns, selector, func(p *corev1.Pod) bool {
		cs, ok := containerStatus(p)
		return ok && cs.State.Running != nil && podReady(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	cs = pod.Status.ContainerStatuses[0]
	if cs.RestartCount < restarts || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 3 {
		t.Errorf("recovered container: restarts %d (was %d), lastState %+v", cs.RestartCount, restarts, cs.LastTerminationState.Terminated)
	}
}

// PullFailed gives ErrImagePull then ImagePullBackOff, with the probe's message.
func TestProbePullFailed(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t)
	ns := env.TestNamespace(t, "sim-probe-pull")
	image := "127.0.0.1:1/probe/backend:missing"
	probes.set(image, podsim.ProbeResult{Handled: true, PullFailed: true, Message: "manifest unknown"})
	if _, err := env.CreateDeployment(ctx, ns, "backstage", image, 1); err != nil {
		t.Fatal(err)
	}
	pod, err := env.WaitForPod(ctx, ns, selector, func(p *corev1.Pod) bool {
		cs, ok := containerStatus(p)
		return ok && cs.State.Waiting != nil && cs.State.Waiting.Reason == podsim.ReasonImagePullBackOff
	})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodPending || !strings.Contains(pod.Status.ContainerStatuses[0].State.Waiting.Message, "manifest unknown") {
		t.Errorf("phase %s, waiting %+v", pod.Status.Phase, pod.Status.ContainerStatuses[0].State.Waiting)
	}
	if _, ok := faultRecord(env, ns, pod.Name, podsim.ReasonErrImagePull); !ok {
		t.Error("ErrImagePull not recorded")
	}
}

// Image-tag faults win over the probe, and Handled false is the old default.
func TestProbeFaultPrecedenceAndUnhandled(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t)
	ns := env.TestNamespace(t, "sim-probe-prec")
	crash := "registry.local/probe/backend:v1-crashloop"
	plain := "registry.local/probe/backend:unhandled"
	probes.set(crash, podsim.ProbeResult{Handled: true, Ready: true})
	probes.set(plain, podsim.ProbeResult{Handled: false, Exited: true})
	if _, err := env.CreateDeployment(ctx, ns, "crash", crash, 1, func(d *appsv1.Deployment) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.CreateDeployment(ctx, ns, "plain", plain, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitForPod(ctx, ns, "app.kubernetes.io/name=crash", func(p *corev1.Pod) bool {
		cs, ok := containerStatus(p)
		return ok && cs.State.Waiting != nil && cs.State.Waiting.Reason == podsim.ReasonCrashLoopBackOff
	}); err != nil {
		t.Fatal(err)
	}
	if probes.timesAsked(crash) != 0 {
		t.Errorf("probe asked %d times about an image with a fault marker", probes.timesAsked(crash))
	}
	if _, err := env.WaitForRollout(ctx, ns, "plain"); err != nil {
		t.Fatal(err)
	}
	if probes.timesAsked(plain) == 0 {
		t.Error("probe never asked about the unmarked image")
	}
}

// holds is the shared plane's Options.Terminating: pods in a held
// namespace are "still stopping".
var holds = &holdTable{ns: map[string]bool{}}

type holdTable struct {
	mu sync.Mutex
	ns map[string]bool
}

func (h *holdTable) terminating(pod *corev1.Pod) bool {
	if f := stillHeld.Load(); f != nil && (*f)(pod) {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ns[pod.Namespace]
}

// stillHeld holds single pods after their namespace is released.
var stillHeld atomic.Pointer[func(*corev1.Pod) bool]

func (h *holdTable) set(ns string, held bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ns[ns] = held
}

// A pod whose containers are still stopping stays (Terminating) until
// Options.Terminating says they are gone, or until its grace period ends.
func TestTerminatingHoldsDeletion(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t)
	ns := env.TestNamespace(t, "sim-terminating")
	grace := int64(4)
	for _, name := range []string{"released", "graceful"} {
		if _, err := env.CreateDeployment(ctx, ns, name, "registry.local/probe/backend:v1", 1, func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.WaitForRollout(ctx, ns, name); err != nil {
			t.Fatal(err)
		}
	}
	holds.set(ns, true)
	list := func(name string) []corev1.Pod {
		pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + name})
		if err != nil {
			t.Fatal(err)
		}
		return pods.Items
	}
	for _, name := range []string{"released", "graceful"} {
		pods := list(name)
		if len(pods) != 1 {
			t.Fatalf("%s: %d pods", name, len(pods))
		}
		if err := env.Client.CoreV1().Pods(ns).Delete(ctx, pods[0].Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deleted := time.Now()
	time.Sleep(time.Second)
	for _, name := range []string{"released", "graceful"} {
		var terminating int
		for _, p := range list(name) {
			if p.DeletionTimestamp != nil {
				terminating++
			}
		}
		if terminating != 1 {
			t.Fatalf("%s: %d terminating pods 1s after the delete while held, want 1", name, terminating)
		}
	}
	// Released: gone at once. Held past the grace period: gone at its end.
	keepGraceful := func(pod *corev1.Pod) bool { return pod.Labels["app.kubernetes.io/name"] == "graceful" }
	holds.mu.Lock()
	delete(holds.ns, ns)
	holds.mu.Unlock()
	stillHeld.Store(&keepGraceful)
	defer stillHeld.Store(nil)
	waitGone := func(name string) time.Duration {
		for {
			gone := true
			for _, p := range list(name) {
				if p.DeletionTimestamp != nil {
					gone = false
				}
			}
			if gone {
				return time.Since(deleted)
			}
			if time.Since(deleted) > 30*time.Second {
				t.Fatalf("%s: terminating pod still there after 30s", name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if d := waitGone("released"); d > 3*time.Second {
		t.Errorf("released pod gone %s after the delete, want soon after the release", d)
	}
	if d := waitGone("graceful"); d < 3*time.Second || d > 8*time.Second {
		t.Errorf("pod held forever gone %s after the delete, want at its 4s grace period", d)
	}
}
