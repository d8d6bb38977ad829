package podsim

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestFaultFor(t *testing.T) {
	tests := []struct {
		name       string
		annotation string
		image      string
		want       Fault
	}{
		{"healthy prod tag", "", "registry.local/backstage-portal/backend:prod-0000aaaa-1700000000", FaultNone},
		{"crashloop tag", "", "registry.local/backstage-portal/backend:pr-12-crashloop-1700000000", FaultCrashLoop},
		{"imagepull tag", "", "registry.local:5000/backstage/backend:ImagePull", FaultImagePull},
		{"oom tag", "", "backend:oom", FaultOOM},
		{"notready tag", "", "backend:v1-notready", FaultNotReady},
		{"marker in repository, not tag", "", "registry.local:5000/crashloop/backend:prod-1", FaultNone},
		{"registry port is not a tag", "", "oom.local:5000/backend", FaultNone},
		{"digest only", "", "backend@sha256:0123456789abcdef", FaultNone},
		{"annotation wins over tag", "oom", "backend:pr-1-crashloop", FaultOOM},
		{"annotation on healthy image", "imagepull", "backend:prod-1", FaultImagePull},
		{"unknown annotation falls back to tag", "explode", "backend:crashloop", FaultCrashLoop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
			if tt.annotation != "" {
				pod.Annotations[FaultAnnotation] = tt.annotation
			}
			if got := faultFor(pod, corev1.Container{Image: tt.image}); got != tt.want {
				t.Errorf("faultFor(%q, %q) = %q, want %q", tt.annotation, tt.image, got, tt.want)
			}
		})
	}
}

func TestBackOffDoublesToCap(t *testing.T) {
	s := New(nil, Options{InitialBackOff: 10 * time.Second, MaxBackOff: 5 * time.Minute})
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := s.backOff(int32(i + 1)); got != w {
			t.Errorf("backOff(%d) = %s, want %s", i+1, got, w)
		}
	}
}

func TestImageID(t *testing.T) {
	id := imageID("registry.local:5000/backstage-portal/backend:prod-0000aaaa-1700000000")
	const prefix = "registry.local:5000/backstage-portal/backend@sha256:"
	if len(id) != len(prefix)+64 || id[:len(prefix)] != prefix {
		t.Fatalf("imageID = %q", id)
	}
}
