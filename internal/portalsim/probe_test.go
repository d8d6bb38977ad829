package portalsim

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagehand-dev/stagehand/internal/podsim"
)

func portalPod(deployment, hash, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "portal", Name: deployment + "-" + hash + "-abcde",
			Labels:          map[string]string{"pod-template-hash": hash},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: deployment + "-" + hash}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "backstage", Image: image}, {Name: "sidecar", Image: image}}},
	}
}

// Probe answers from the image's backend state, only for the portal's
// container of the portal's Deployment.
func TestProbeMapsBackendStates(t *testing.T) {
	s := New(nil, []Portal{{Namespace: "portal", Deployment: "backstage", Container: "backstage", Port: 7007,
		DB: Database{Client: "pg", Host: "127.0.0.1", Port: 5432, User: "postgres"}}}, Options{})
	p := s.portals[0]
	image := "127.0.0.1:5000/portal/backend:v1"
	pod := portalPod("backstage", "7d9f", image)

	if r := s.Probe(pod, pod.Spec.Containers[1]); r.Handled {
		t.Errorf("sidecar handled: %+v", r)
	}
	other := portalPod("backstage-canary", "7d9f", image)
	if r := s.Probe(other, other.Spec.Containers[0]); r.Handled {
		t.Errorf("pod of another Deployment (name prefix) handled: %+v", r)
	}
	if r := s.Probe(pod, pod.Spec.Containers[0]); !r.Handled || r.Ready || r.Exited || r.PullFailed {
		t.Errorf("pod not seen yet: %+v, want handled and not ready", r)
	}

	b := &backend{sim: s, portal: &p.Portal, image: image}
	p.backends[image] = b
	for _, tc := range []struct {
		state State
		code  int
		want  podsim.ProbeResult
	}{
		{StateResolving, 0, podsim.ProbeResult{Handled: true, Message: "m"}},
		{StateStarting, 0, podsim.ProbeResult{Handled: true, Message: "m"}},
		{StateReady, 0, podsim.ProbeResult{Handled: true, Ready: true}},
		{StatePullFailed, 0, podsim.ProbeResult{Handled: true, PullFailed: true, Message: "m"}},
		{StateExited, 2, podsim.ProbeResult{Handled: true, Exited: true, ExitCode: 2, Message: "m"}},
		{StateExited, 0, podsim.ProbeResult{Handled: true, Exited: true, ExitCode: 1, Message: "m"}},
		{StateStopping, 0, podsim.ProbeResult{Handled: true, Message: "m"}},
	} {
		b.state, b.message, b.exitCode = tc.state, "m", tc.code
		if r := s.Probe(pod, pod.Spec.Containers[0]); r != tc.want {
			t.Errorf("%s (exit %d): %+v, want %+v", tc.state, tc.code, r, tc.want)
		}
	}
}

func TestPortalValidate(t *testing.T) {
	ok := Portal{Namespace: "n", Deployment: "d", Container: "c", Port: 7007, DB: Database{Client: "mysql2", Host: "h", Port: 3306, User: "u"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Portal){
		"no container": func(p *Portal) { p.Container = "" },
		"bad port":     func(p *Portal) { p.Port = 70000 },
		"bad client":   func(p *Portal) { p.DB.Client = "sqlite3" },
		"no db host":   func(p *Portal) { p.DB.Host = "" },
	} {
		p := ok
		mutate(&p)
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "portal") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A deleted pod waits for its image's backend to stop, unless another live
// pod keeps that backend.
func TestTerminatingWaitsForTheBackend(t *testing.T) {
	s := New(nil, []Portal{{Namespace: "portal", Deployment: "backstage", Container: "backstage", Port: 7007,
		DB: Database{Client: "pg", Host: "127.0.0.1", Port: 5432, User: "postgres"}}}, Options{})
	p := s.portals[0]
	image := "127.0.0.1:5000/portal/backend:v1"
	pod := portalPod("backstage", "7d9f", image)
	if s.Terminating(pod) {
		t.Error("no backend, yet terminating")
	}
	b := &backend{sim: s, portal: &p.Portal, image: image}
	p.backends[image] = b
	if !s.Terminating(pod) {
		t.Error("backend not stopped yet, but not terminating")
	}
	delete(p.backends, image)
	p.gone = append(p.gone, b)
	if !s.Terminating(pod) {
		t.Error("backend stopping, but not terminating")
	}
	p.gone = nil
	if s.Terminating(pod) {
		t.Error("backend stopped, still terminating")
	}
	if s.Terminating(portalPod("other", "1", image)) {
		t.Error("a pod of another Deployment is held")
	}
}
