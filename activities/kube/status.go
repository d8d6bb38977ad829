package kube

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

const (
	// RevisionAnnotation is set by the Deployment controller on Deployments
	// and ReplicaSets: the rollout number of the template they carry.
	RevisionAnnotation = "deployment.kubernetes.io/revision"
	// RestartedAtAnnotation is what `kubectl rollout restart` sets.
	RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"
	// progressDeadlineReason is the Progressing condition's reason once a
	// rollout has exceeded spec.progressDeadlineSeconds.
	progressDeadlineReason = "ProgressDeadlineExceeded"
)

// rolloutState is the verdict on a Deployment's status, following
// `kubectl rollout status` (k8s.io/kubectl polymorphichelpers
// DeploymentStatusViewer) so that our "done" means what operators expect.
type rolloutState struct {
	Done    bool
	Message string
	// DeadlineExceeded is set when the controller gave up on the rollout.
	DeadlineExceeded bool
}

func evaluateRollout(d *appsv1.Deployment) rolloutState {
	if d.Generation > d.Status.ObservedGeneration {
		return rolloutState{Message: "waiting for the deployment spec update to be observed"}
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == progressDeadlineReason {
			msg := fmt.Sprintf("deployment %q exceeded its progress deadline", d.Name)
			if c.Message != "" {
				msg += ": " + c.Message
			}
			return rolloutState{DeadlineExceeded: true, Message: msg}
		}
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.UpdatedReplicas < replicas:
		return rolloutState{Message: fmt.Sprintf("%d of %d new replicas updated", st.UpdatedReplicas, replicas)}
	case st.Replicas > st.UpdatedReplicas:
		return rolloutState{Message: fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas)}
	case st.AvailableReplicas < st.UpdatedReplicas:
		return rolloutState{Message: fmt.Sprintf("%d of %d updated replicas available", st.AvailableReplicas, st.UpdatedReplicas)}
	}
	return rolloutState{Done: true, Message: fmt.Sprintf("deployment %q successfully rolled out", d.Name)}
}

// failingWaitingReasons are container waiting reasons from which a pod does
// not recover by itself: the kubelet keeps backing off, and the Deployment
// would only notice at its progress deadline.
var failingWaitingReasons = map[string]bool{
	"CrashLoopBackOff":           true,
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
	"RunContainerError":          true,
}

// PodFailure says why a pod of a rollout cannot become ready.
type PodFailure struct {
	Pod          string   `json:"pod"`
	Container    string   `json:"container"`
	Reason       string   `json:"reason"`
	Message      string   `json:"message,omitempty"`
	RestartCount int32    `json:"restartCount"`
	Init         bool     `json:"init,omitempty"`
	Logs         []string `json:"logs,omitempty"`
	// previous is set when the useful log is the previous (crashed)
	// container's, not the one waiting to start.
	previous bool
}

func (f *PodFailure) Error() string {
	var b strings.Builder
	kind := "container"
	if f.Init {
		kind = "init container"
	}
	fmt.Fprintf(&b, "pod %s %s %q: %s", f.Pod, kind, f.Container, f.Reason)
	if f.Message != "" {
		fmt.Fprintf(&b, ": %s", f.Message)
	}
	fmt.Fprintf(&b, " (restarts: %d)", f.RestartCount)
	if len(f.Logs) > 0 {
		fmt.Fprintf(&b, "; last log lines:\n%s", strings.Join(f.Logs, "\n"))
	}
	return b.String()
}

// classifyPod returns the first container of the pod that is stuck in a
// failing state, or nil.
func classifyPod(pod *corev1.Pod) *PodFailure {
	if pod.DeletionTimestamp != nil {
		return nil
	}
	check := func(statuses []corev1.ContainerStatus, init bool) *PodFailure {
		for _, cs := range statuses {
			f := &PodFailure{Pod: pod.Name, Container: cs.Name, RestartCount: cs.RestartCount, Init: init}
			switch {
			case cs.State.Waiting != nil && failingWaitingReasons[cs.State.Waiting.Reason]:
				f.Reason, f.Message = cs.State.Waiting.Reason, cs.State.Waiting.Message
				f.previous = cs.RestartCount > 0
				if t := cs.LastTerminationState.Terminated; cs.State.Waiting.Reason == "CrashLoopBackOff" && t != nil {
					// The back-off message says nothing about the crash;
					// the last termination does. An OOM kill is the root
					// cause operators act on (raise the limit), so it
					// becomes the reason.
					if t.Reason == "OOMKilled" {
						f.Reason = "OOMKilled"
						f.Message = joinNonEmpty(": ", "CrashLoopBackOff", f.Message)
					}
					f.Message = joinNonEmpty("; ", f.Message, terminatedText(t))
				}
				return f
			case cs.State.Terminated != nil && cs.State.Terminated.Reason == "OOMKilled":
				f.Reason, f.Message = "OOMKilled", terminatedText(cs.State.Terminated)
				return f
			case cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.Reason == "OOMKilled":
				f.Reason, f.Message = "OOMKilled", terminatedText(cs.LastTerminationState.Terminated)
				f.previous = true
				return f
			}
		}
		return nil
	}
	if f := check(pod.Status.InitContainerStatuses, true); f != nil {
		return f
	}
	return check(pod.Status.ContainerStatuses, false)
}

func terminatedText(t *corev1.ContainerStateTerminated) string {
	s := fmt.Sprintf("last terminated: %s, exit code %d", t.Reason, t.ExitCode)
	if t.Message != "" {
		s += ": " + t.Message
	}
	return s
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// notReadyText explains why a pod is not ready, for the progress deadline
// message: the deadline alone does not say which pod is stuck.
func notReadyText(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
			return joinNonEmpty(": ", fmt.Sprintf("pod %s not ready (%s)", pod.Name, c.Reason), c.Message)
		}
	}
	return fmt.Sprintf("pod %s not ready (phase %s)", pod.Name, pod.Status.Phase)
}

func revisionOf(annotations map[string]string) int64 {
	v, err := strconv.ParseInt(annotations[RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// templatesEqual compares pod templates ignoring the pod-template-hash
// label, which the controller adds to a ReplicaSet's copy (the same rule as
// the controller's EqualIgnoreHash).
func templatesEqual(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return equality.Semantic.DeepEqual(a, b)
}

func ownedBy(rs *appsv1.ReplicaSet, d *appsv1.Deployment) bool {
	for _, ref := range rs.OwnerReferences {
		if ref.UID == d.UID && ref.Controller != nil && *ref.Controller {
			return true
		}
	}
	return false
}

// ownedReplicaSets returns d's ReplicaSets, newest revision first.
func ownedReplicaSets(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range rss {
		if ownedBy(rs, d) {
			out = append(out, rs)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := revisionOf(out[i].Annotations), revisionOf(out[j].Annotations)
		if ri != rj {
			return ri > rj
		}
		return out[i].CreationTimestamp.After(out[j].CreationTimestamp.Time)
	})
	return out
}

// newReplicaSet finds the ReplicaSet that carries d's current template.
func newReplicaSet(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	for _, rs := range ownedReplicaSets(d, rss) {
		if templatesEqual(&rs.Spec.Template, &d.Spec.Template) {
			return rs
		}
	}
	return nil
}

// containerImage returns the image of the named container (or of the first
// container when name is empty) in a pod spec.
func containerImage(spec *corev1.PodSpec, name string) (container, image string, ok bool) {
	if name == "" {
		if len(spec.Containers) == 0 {
			return "", "", false
		}
		return spec.Containers[0].Name, spec.Containers[0].Image, true
	}
	for _, c := range spec.Containers {
		if c.Name == name {
			return c.Name, c.Image, true
		}
	}
	for _, c := range spec.InitContainers {
		if c.Name == name {
			return c.Name, c.Image, true
		}
	}
	return "", "", false
}

func isInitContainer(spec *corev1.PodSpec, name string) bool {
	for _, c := range spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func containerNames(spec *corev1.PodSpec) string {
	var names []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}
