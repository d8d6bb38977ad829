package kube

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/stagehand-dev/stagehand/activities"
)

// CheckPodsInput is the `with` of kube.checkPods.
type CheckPodsInput struct {
	Cluster    string `json:"cluster,omitempty"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	// Image is the expected image; by default the Deployment's current one.
	Image string `json:"image,omitempty"`
	// Container whose image is checked; by default the first container.
	Container string `json:"container,omitempty"`
	// Soak is how long the pods must stay ready without restarting
	// ("30s"); empty or "0s" checks once.
	Soak string `json:"soak,omitempty"`
}

// CheckPodsOutput lists the healthy pods.
type CheckPodsOutput struct {
	Pods  []string `json:"pods"`
	Image string   `json:"image"`
	Soak  string   `json:"soak,omitempty"`
}

// podCheck holds the expectations and the baseline taken at the start of
// the soak.
type podCheck struct {
	ref       DeploymentRef
	container string
	image     string
	replicas  int32
	// restarts is the per-container restart count at the start of the
	// soak; any increase is a crash during the soak.
	restarts map[string]map[string]int32
	// retiring names ReplicaSets scaled to zero: right after a rollout (or a
	// rollback) their pods may still be listed for a moment before the
	// controller's deletes land, and they are not what the Deployment runs.
	retiring map[string]bool
}

func (pc *podCheck) counts(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "ReplicaSet" && pc.retiring[ref.Name] {
		return false
	}
	return true
}

// initial checks the pods once: every live pod ready, on the image, and as
// many as the Deployment wants. Mismatches here are retryable because they
// are also what a rollout that is still finishing looks like.
func (pc *podCheck) initial(pods []*corev1.Pod) ([]string, error) {
	var live []*corev1.Pod
	for _, p := range pods {
		if pc.counts(p) {
			live = append(live, p)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Name < live[j].Name })
	var names []string
	for _, p := range live {
		if f := classifyPod(p); f != nil {
			return nil, nonRetryable(activities.ErrPodFailure, fmt.Sprintf("pods of deployment %s: %s", pc.ref, f.Error()), nil)
		}
	}
	for _, p := range live {
		_, img, ok := containerImage(&p.Spec, pc.container)
		if !ok || img != pc.image {
			return nil, retryable(activities.ErrImageMismatch, fmt.Sprintf(
				"pod %s of deployment %s runs %q in container %q, expected %q", p.Name, pc.ref, img, pc.container, pc.image), nil)
		}
		if !podReady(p) {
			return nil, retryable(activities.ErrPodsNotReady, fmt.Sprintf("deployment %s: %s", pc.ref, notReadyText(p)), nil)
		}
		names = append(names, p.Name)
	}
	if int32(len(live)) != pc.replicas {
		return nil, retryable(activities.ErrPodsNotReady, fmt.Sprintf(
			"deployment %s has %d pods, wants %d", pc.ref, len(live), pc.replicas), nil)
	}
	pc.restarts = map[string]map[string]int32{}
	for _, p := range live {
		pc.restarts[p.Name] = restartCounts(p)
	}
	return names, nil
}

// during checks one pod seen during the soak: pods from the baseline must
// stay ready and not restart; any pod must not be failing.
func (pc *podCheck) during(p *corev1.Pod) error {
	if !pc.counts(p) {
		return nil
	}
	if f := classifyPod(p); f != nil {
		return nonRetryable(activities.ErrPodFailure, fmt.Sprintf("pods of deployment %s during soak: %s", pc.ref, f.Error()), nil)
	}
	base, known := pc.restarts[p.Name]
	if !known {
		return nil
	}
	for name, n := range restartCounts(p) {
		if n > base[name] {
			return nonRetryable(activities.ErrPodRestarted, fmt.Sprintf(
				"pod %s container %q of deployment %s restarted during soak (restarts %d -> %d)", p.Name, name, pc.ref, base[name], n), nil)
		}
	}
	if !podReady(p) {
		return nonRetryable(activities.ErrPodNotReady, fmt.Sprintf("deployment %s during soak: %s", pc.ref, notReadyText(p)), nil)
	}
	return nil
}

func restartCounts(p *corev1.Pod) map[string]int32 {
	m := map[string]int32{}
	for _, cs := range p.Status.InitContainerStatuses {
		m[cs.Name] = cs.RestartCount
	}
	for _, cs := range p.Status.ContainerStatuses {
		m[cs.Name] = cs.RestartCount
	}
	return m
}

// CheckPods verifies that all pods of the Deployment are Ready on the
// expected image, then watches them for the soak window and fails at once
// on a restart, a failing container or a pod that stops being ready.
func (a *Activities) CheckPods(ctx context.Context, in CheckPodsInput) (CheckPodsOutput, error) {
	c, err := a.cluster(in.Cluster)
	if err != nil {
		return CheckPodsOutput{}, err
	}
	soak, err := parseDuration("soak", in.Soak, 0)
	if err != nil {
		return CheckPodsOutput{}, err
	}
	ref := DeploymentRef{Namespace: in.Namespace, Deployment: in.Deployment}
	d, err := c.Client.AppsV1().Deployments(in.Namespace).Get(ctx, in.Deployment, metav1.GetOptions{})
	if err != nil {
		return CheckPodsOutput{}, classify(fmt.Sprintf("get deployment %s", ref), err)
	}
	container, image, ok := containerImage(&d.Spec.Template.Spec, in.Container)
	if !ok {
		return CheckPodsOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf(
			"deployment %s has no container %q (containers: %s)", ref, in.Container, containerNames(&d.Spec.Template.Spec)), nil)
	}
	if in.Image != "" {
		image = in.Image
	}
	sel, err := deploymentSelector(d)
	if err != nil {
		return CheckPodsOutput{}, err
	}
	pc := &podCheck{ref: ref, container: container, image: image, replicas: 1, retiring: map[string]bool{}}
	rsList, err := c.Client.AppsV1().ReplicaSets(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return CheckPodsOutput{}, classify(fmt.Sprintf("list replicasets of deployment %s", ref), err)
	}
	for i := range rsList.Items {
		rs := &rsList.Items[i]
		if ownedBy(rs, d) && rs.Spec.Replicas != nil && *rs.Spec.Replicas == 0 {
			pc.retiring[rs.Name] = true
		}
	}
	if d.Spec.Replicas != nil {
		pc.replicas = *d.Spec.Replicas
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan streamEvent, 64)
	go runStream(ctx, podListWatch(c, in.Namespace, sel), a.maxBackoff(), events)

	var names []string
	var soakEnd <-chan time.Time
	problem := ""
	ticker := time.NewTicker(a.heartbeatInterval())
	defer ticker.Stop()
	started := time.Now()
	for {
		select {
		case <-ctx.Done():
			return CheckPodsOutput{}, fmt.Errorf("check pods of deployment %s: %w", ref, ctx.Err())
		case <-ticker.C:
			msg := fmt.Sprintf("soaking %d pods for %s (%s elapsed)", len(names), soak, elapsed(started))
			if problem != "" {
				msg += " (retrying: " + problem + ")"
			}
			heartbeat(ctx, Progress{Message: msg})
		case <-soakEnd:
			if problem != "" {
				// The watch was down when the soak ended: look once more
				// so that a crash during the outage is not missed.
				if err := a.recheck(ctx, c, pc, sel); err != nil {
					return CheckPodsOutput{}, err
				}
			}
			return CheckPodsOutput{Pods: names, Image: image, Soak: soak.String()}, nil
		case ev := <-events:
			if ev.err != nil {
				if ev.fatal {
					return CheckPodsOutput{}, classify(fmt.Sprintf("watch pods of deployment %s", ref), ev.err)
				}
				problem = ev.err.Error()
				continue
			}
			problem = ""
			var pods []*corev1.Pod
			if ev.sync {
				for _, o := range ev.items {
					if p, ok := o.(*corev1.Pod); ok {
						pods = append(pods, p)
					}
				}
			} else if p, ok := ev.obj.(*corev1.Pod); ok && ev.typ != watch.Deleted {
				pods = append(pods, p)
			}
			if names == nil {
				if !ev.sync {
					continue
				}
				if names, err = pc.initial(pods); err != nil {
					return CheckPodsOutput{}, err
				}
				if soak <= 0 {
					return CheckPodsOutput{Pods: names, Image: image}, nil
				}
				t := time.NewTimer(soak)
				defer t.Stop()
				soakEnd = t.C
				heartbeat(ctx, Progress{Message: fmt.Sprintf("soaking %d pods for %s", len(names), soak)})
				continue
			}
			for _, p := range pods {
				if err := pc.during(p); err != nil {
					return CheckPodsOutput{}, err
				}
			}
		}
	}
}

func (a *Activities) recheck(ctx context.Context, c *Cluster, pc *podCheck, sel string) error {
	list, err := c.Client.CoreV1().Pods(pc.ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return classify(fmt.Sprintf("list pods of deployment %s after soak", pc.ref), err)
	}
	for i := range list.Items {
		if err := pc.during(&list.Items[i]); err != nil {
			return err
		}
	}
	return nil
}
