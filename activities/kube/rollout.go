package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/stagehand-dev/stagehand/activities"
)

// DeploymentRef names a Deployment in a cluster.
type DeploymentRef struct {
	Cluster    string `json:"cluster,omitempty"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
}

func (r DeploymentRef) String() string { return r.Namespace + "/" + r.Deployment }

// SetImageInput is the `with` of kube.setImage.
type SetImageInput struct {
	Cluster    string `json:"cluster,omitempty"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	// Container defaults to the only container of the pod template.
	Container string `json:"container,omitempty"`
	Image     string `json:"image"`
}

// SetImageOutput is what kube.setImage reports.
type SetImageOutput struct {
	Container     string `json:"container"`
	PreviousImage string `json:"previousImage"`
	Image         string `json:"image"`
	// Revision is the Deployment's revision before the change: what a
	// rollback to "before this step" goes back to.
	Revision string `json:"revision"`
	Changed  bool   `json:"changed"`
	// Generation is the Deployment's metadata.generation after the change.
	Generation int64 `json:"generation"`
	// ChangedAt is when the step ran; a later kube.events step can use it
	// as `since`.
	ChangedAt string `json:"changedAt"`
}

// SetImage sets one container's image with a strategic merge patch that
// touches only that container, so it cannot undo a concurrent change to
// anything else. Setting an image that is already set is a success with
// changed=false: a retried step must not start a second rollout.
func (a *Activities) SetImage(ctx context.Context, in SetImageInput) (SetImageOutput, error) {
	c, err := a.cluster(in.Cluster)
	if err != nil {
		return SetImageOutput{}, err
	}
	if in.Image == "" {
		return SetImageOutput{}, nonRetryable(activities.ErrInvalidArguments, "image must not be empty", nil)
	}
	ref := DeploymentRef{Namespace: in.Namespace, Deployment: in.Deployment}
	d, err := c.Client.AppsV1().Deployments(in.Namespace).Get(ctx, in.Deployment, metav1.GetOptions{})
	if err != nil {
		return SetImageOutput{}, classify(fmt.Sprintf("get deployment %s", ref), err)
	}
	container, err := pickContainer(&d.Spec.Template.Spec, in.Container, ref)
	if err != nil {
		return SetImageOutput{}, err
	}
	_, current, _ := containerImage(&d.Spec.Template.Spec, container)
	out := SetImageOutput{
		Container:     container,
		PreviousImage: current,
		Image:         in.Image,
		Revision:      d.Annotations[RevisionAnnotation],
		Generation:    d.Generation,
		ChangedAt:     time.Now().UTC().Format(time.RFC3339),
	}
	if current == in.Image {
		return out, nil
	}
	patch, err := imagePatch(&d.Spec.Template.Spec, container, in.Image)
	if err != nil {
		return SetImageOutput{}, err
	}
	d, err = c.Client.AppsV1().Deployments(in.Namespace).Patch(ctx, in.Deployment, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		return SetImageOutput{}, classify(fmt.Sprintf("set image of deployment %s container %q", ref, container), err)
	}
	out.Changed = true
	out.Generation = d.Generation
	return out, nil
}

func pickContainer(spec *corev1.PodSpec, name string, ref DeploymentRef) (string, error) {
	if name == "" {
		if len(spec.Containers) != 1 {
			return "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf(
				"deployment %s has %d containers (%s): say which one with `container`", ref, len(spec.Containers), containerNames(spec)), nil)
		}
		return spec.Containers[0].Name, nil
	}
	if _, _, ok := containerImage(spec, name); !ok {
		return "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf(
			"deployment %s has no container %q (containers: %s)", ref, name, containerNames(spec)), nil)
	}
	return name, nil
}

func imagePatch(spec *corev1.PodSpec, container, image string) ([]byte, error) {
	key := "containers"
	if isInitContainer(spec, container) {
		key = "initContainers"
	}
	return json.Marshal(map[string]any{
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			key: []map[string]any{{"name": container, "image": image}},
		}}},
	})
}

// WaitRolloutInput is the `with` of kube.waitRollout.
type WaitRolloutInput struct {
	Cluster    string `json:"cluster,omitempty"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	// Timeout bounds the wait (e.g. "10m"); by default the step's own
	// timeout does.
	Timeout string `json:"timeout,omitempty"`
}

// WaitRolloutOutput describes the finished rollout.
type WaitRolloutOutput struct {
	Revision          string `json:"revision"`
	Image             string `json:"image"`
	Replicas          int32  `json:"replicas"`
	UpdatedReplicas   int32  `json:"updatedReplicas"`
	AvailableReplicas int32  `json:"availableReplicas"`
	Elapsed           string `json:"elapsed"`
}

// Progress is the heartbeat detail of waiting steps. Rollback also keeps
// its chosen target there so that a retried attempt rolls back to the same
// revision instead of "undoing the undo".
type Progress struct {
	Message        string `json:"message"`
	RollbackTarget string `json:"rollbackTarget,omitempty"`
	RestartedAt    string `json:"restartedAt,omitempty"`
	// ScaleFrom is kube.scale's replica count before its first attempt
	// changed it, so a retry reports that, not its own earlier change.
	ScaleFrom *int32 `json:"scaleFrom,omitempty"`
}

// WaitRollout waits until the Deployment's rollout is complete, with
// `kubectl rollout status` semantics, and fails within seconds when a pod
// of the new ReplicaSet is crash-looping, cannot pull its image or was
// OOM-killed.
func (a *Activities) WaitRollout(ctx context.Context, in WaitRolloutInput) (WaitRolloutOutput, error) {
	c, err := a.cluster(in.Cluster)
	if err != nil {
		return WaitRolloutOutput{}, err
	}
	timeout, err := parseDuration("timeout", in.Timeout, 0)
	if err != nil {
		return WaitRolloutOutput{}, err
	}
	ref := DeploymentRef{Namespace: in.Namespace, Deployment: in.Deployment}
	return a.waitRollout(ctx, c, ref, timeout, func(msg string) { heartbeat(ctx, Progress{Message: msg}) })
}

// rolloutWatch is the waiting loop's view of one Deployment: the latest
// Deployment, its ReplicaSets and its pods, each kept current by a watch.
type rolloutWatch struct {
	// name filters deployment events: field selectors are a server-side
	// feature that fake clientsets ignore.
	name string
	dep  *appsv1.Deployment
	rss  map[string]*appsv1.ReplicaSet
	pods map[string]*corev1.Pod
	// podsListed: pods holds a list's result, not just "nothing seen yet".
	podsListed bool
}

func (w *rolloutWatch) replicaSets() []*appsv1.ReplicaSet {
	out := make([]*appsv1.ReplicaSet, 0, len(w.rss))
	for _, rs := range w.rss {
		out = append(out, rs)
	}
	return out
}

// podsOf returns the live pods of a ReplicaSet, sorted by name so reports
// are stable.
func (w *rolloutWatch) podsOf(rs *appsv1.ReplicaSet) []*corev1.Pod {
	hash := rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	var out []*corev1.Pod
	for _, p := range w.pods {
		if p.DeletionTimestamp == nil && p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == hash {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func deploymentListWatch(c *Cluster, ref DeploymentRef) listWatch {
	byName := fields.OneTermEqualSelector("metadata.name", ref.Deployment).String()
	api := c.Client.AppsV1().Deployments(ref.Namespace)
	return listWatch{
		name: "deployment " + ref.String(),
		list: func(ctx context.Context) (runtime.Object, error) {
			return api.List(ctx, metav1.ListOptions{FieldSelector: byName})
		},
		watch: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = byName
			return api.Watch(ctx, opts)
		},
	}
}

func replicaSetListWatch(c *Cluster, ns, selector string) listWatch {
	api := c.Client.AppsV1().ReplicaSets(ns)
	return listWatch{
		name: "replicasets",
		list: func(ctx context.Context) (runtime.Object, error) {
			return api.List(ctx, metav1.ListOptions{LabelSelector: selector})
		},
		watch: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = selector
			return api.Watch(ctx, opts)
		},
	}
}

func podListWatch(c *Cluster, ns, selector string) listWatch {
	api := c.Client.CoreV1().Pods(ns)
	return listWatch{
		name: "pods",
		list: func(ctx context.Context) (runtime.Object, error) {
			return api.List(ctx, metav1.ListOptions{LabelSelector: selector})
		},
		watch: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = selector
			return api.Watch(ctx, opts)
		},
	}
}

func deploymentSelector(d *appsv1.Deployment) (string, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return "", nonRetryable(activities.ErrKubeInvalid, fmt.Sprintf("deployment %s/%s has an invalid selector", d.Namespace, d.Name), err)
	}
	if sel.Empty() {
		// An empty selector would watch every pod in the namespace.
		return "", nonRetryable(activities.ErrKubeInvalid, fmt.Sprintf("deployment %s/%s has an empty selector", d.Namespace, d.Name), nil)
	}
	return sel.String(), nil
}

// apply folds one stream event into the view.
func (w *rolloutWatch) apply(ev streamEvent) {
	switch {
	case ev.sync && strings.HasPrefix(ev.source, "deployment"):
		w.dep = nil
		for _, o := range ev.items {
			if d, ok := o.(*appsv1.Deployment); ok && d.Name == w.name {
				w.dep = d
			}
		}
	case ev.sync && ev.source == "replicasets":
		w.rss = map[string]*appsv1.ReplicaSet{}
		for _, o := range ev.items {
			if rs, ok := o.(*appsv1.ReplicaSet); ok {
				w.rss[rs.Name] = rs
			}
		}
	case ev.sync && ev.source == "pods":
		w.pods = map[string]*corev1.Pod{}
		w.podsListed = true
		for _, o := range ev.items {
			if p, ok := o.(*corev1.Pod); ok {
				w.pods[p.Name] = p
			}
		}
	default:
		switch o := ev.obj.(type) {
		case *appsv1.Deployment:
			if o.Name != w.name {
				return
			}
			if ev.typ == watch.Deleted {
				w.dep = nil
			} else {
				w.dep = o
			}
		case *appsv1.ReplicaSet:
			if ev.typ == watch.Deleted {
				delete(w.rss, o.Name)
			} else {
				w.rss[o.Name] = o
			}
		case *corev1.Pod:
			if ev.typ == watch.Deleted {
				delete(w.pods, o.Name)
			} else {
				w.pods[o.Name] = o
			}
		}
	}
}

// waitGoal narrows what "done" means for a wait beyond a complete rollout;
// the zero waitGoal is `kubectl rollout status`.
type waitGoal struct {
	// reached, when set, replaces the rollout's own "done" (failures are
	// still checked first); until it holds, its message is the wait's
	// status.
	reached func(w *rolloutWatch) (bool, string)
	// stopping: the wait is for pods to go away (scaling to 0), so failing
	// pods and an exceeded progress deadline are no reason to fail it: they
	// are often why the Deployment is being stopped.
	stopping bool
}

// waitRollout is the watch loop shared by kube.waitRollout and
// kube.rollback. It reacts to watch events rather than polling, so a
// finished or failed rollout is noticed as soon as the apiserver says so.
func (a *Activities) waitRollout(ctx context.Context, c *Cluster, ref DeploymentRef, timeout time.Duration,
	progress func(string)) (WaitRolloutOutput, error) {
	return a.waitFor(ctx, c, ref, timeout, progress, waitGoal{})
}

// waitFor is waitRollout with a goal (kube.scale's).
func (a *Activities) waitFor(ctx context.Context, c *Cluster, ref DeploymentRef, timeout time.Duration,
	progress func(string), goal waitGoal) (WaitRolloutOutput, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	// Cancel stops the stream goroutines when we return.
	defer cancel()
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	events := make(chan streamEvent, 64)
	go runStream(ctx, deploymentListWatch(c, ref), a.maxBackoff(), events)

	w := &rolloutWatch{name: ref.Deployment, rss: map[string]*appsv1.ReplicaSet{}, pods: map[string]*corev1.Pod{}}
	startedChildren := false
	status := "waiting for the deployment"
	problem := ""
	lastReported := ""
	report := func() {
		msg := status
		if problem != "" {
			msg = status + " (retrying: " + problem + ")"
		}
		progress(msg)
		lastReported = msg
	}
	report()
	ticker := time.NewTicker(a.heartbeatInterval())
	defer ticker.Stop()

	for {
		select {
		case <-ctx.Done():
			return WaitRolloutOutput{}, fmt.Errorf("wait for rollout of deployment %s after %s (%s): %w",
				ref, elapsed(start), status, ctx.Err())
		case <-deadline:
			return WaitRolloutOutput{}, nonRetryable(activities.ErrRolloutTimeout, fmt.Sprintf(
				"rollout of deployment %s not complete after %s: %s", ref, elapsed(start), status), nil)
		case <-ticker.C:
			report()
			continue
		case ev := <-events:
			if ev.err != nil {
				if ev.fatal {
					return WaitRolloutOutput{}, classify(fmt.Sprintf("watch rollout of deployment %s", ref), ev.err)
				}
				problem = ev.err.Error()
				report()
				continue
			}
			problem = ""
			w.apply(ev)
		}
		if w.dep == nil {
			if startedChildren {
				return WaitRolloutOutput{}, nonRetryable(activities.ErrKubeNotFound, fmt.Sprintf("deployment %s was deleted during its rollout", ref), nil)
			}
			// The first list said there is no such Deployment.
			return WaitRolloutOutput{}, nonRetryable(activities.ErrKubeNotFound, fmt.Sprintf("deployment %s not found", ref), nil)
		}
		if !startedChildren {
			sel, err := deploymentSelector(w.dep)
			if err != nil {
				return WaitRolloutOutput{}, err
			}
			go runStream(ctx, replicaSetListWatch(c, ref.Namespace, sel), a.maxBackoff(), events)
			go runStream(ctx, podListWatch(c, ref.Namespace, sel), a.maxBackoff(), events)
			startedChildren = true
		}
		out, done, msg, err := a.evaluate(ctx, c, w, start, goal)
		if err != nil {
			return WaitRolloutOutput{}, err
		}
		if done {
			return out, nil
		}
		status = msg
		if status != lastReported && problem == "" {
			report()
		}
	}
}

// evaluate decides whether the rollout has failed, finished or is still
// going, from the current view.
func (a *Activities) evaluate(ctx context.Context, c *Cluster, w *rolloutWatch, start time.Time, goal waitGoal) (WaitRolloutOutput, bool, string, error) {
	d := w.dep
	ref := DeploymentRef{Namespace: d.Namespace, Deployment: d.Name}
	newRS := newReplicaSet(d, w.replicaSets())
	var newPods []*corev1.Pod
	if newRS != nil && !goal.stopping {
		newPods = w.podsOf(newRS)
		for _, p := range newPods {
			if f := classifyPod(p); f != nil {
				f.Logs = a.lastLogLines(ctx, c, p.Namespace, f)
				return WaitRolloutOutput{}, false, "", nonRetryable(activities.ErrPodFailure, fmt.Sprintf(
					"rollout of deployment %s failed after %s: %s", ref, elapsed(start), f.Error()), nil)
			}
		}
	}
	st := evaluateRollout(d)
	if st.DeadlineExceeded && !goal.stopping {
		msg := st.Message
		for _, p := range newPods {
			if !podReady(p) {
				msg += "; " + notReadyText(p)
				break
			}
		}
		return WaitRolloutOutput{}, false, "", nonRetryable(activities.ErrProgressDeadline, fmt.Sprintf(
			"rollout of deployment %s failed after %s: %s", ref, elapsed(start), msg), nil)
	}
	done := st.Done
	if goal.reached != nil {
		// The goal decides alone: an exceeded deadline, ignored when
		// stopping, leaves st.Done false however many pods are gone.
		ok, msg := goal.reached(w)
		if !ok {
			return WaitRolloutOutput{}, false, msg, nil
		}
		done = true
	}
	if done {
		_, image, _ := containerImage(&d.Spec.Template.Spec, "")
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		return WaitRolloutOutput{
			Revision:          d.Annotations[RevisionAnnotation],
			Image:             image,
			Replicas:          replicas,
			UpdatedReplicas:   d.Status.UpdatedReplicas,
			AvailableReplicas: d.Status.AvailableReplicas,
			Elapsed:           elapsed(start),
		}, true, "", nil
	}
	if d.Spec.Paused && d.Generation <= d.Status.ObservedGeneration {
		// A paused Deployment never progresses; waiting for it would only
		// end at the step's timeout.
		return WaitRolloutOutput{}, false, "", nonRetryable(activities.ErrDeploymentPaused, fmt.Sprintf(
			"deployment %s is paused (%s); resume it before waiting for its rollout", ref, st.Message), nil)
	}
	return WaitRolloutOutput{}, false, st.Message, nil
}

// lastLogLines fetches the failing container's last log lines. Errors are
// ignored: logs are a courtesy (the kubelet may be unreachable, RBAC may
// not grant pods/log), and the failure must be reported regardless.
func (a *Activities) lastLogLines(ctx context.Context, c *Cluster, ns string, f *PodFailure) []string {
	ctx, cancel := context.WithTimeout(ctx, a.logTimeout())
	defer cancel()
	lines := a.logLines()
	raw, err := c.Client.CoreV1().Pods(ns).GetLogs(f.Pod, &corev1.PodLogOptions{
		Container: f.Container, TailLines: &lines, Previous: f.previous,
	}).DoRaw(ctx)
	if err != nil || len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	out := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if int64(len(out)) > lines {
		out = out[int64(len(out))-lines:]
	}
	return out
}

func elapsed(start time.Time) string {
	return time.Since(start).Round(time.Millisecond).String()
}

// RollbackInput is the `with` of kube.rollback.
type RollbackInput struct {
	Cluster    string `json:"cluster,omitempty"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	// ToImage, when set, rolls back by setting this image (e.g. the
	// previousImage output of the setImage step) instead of restoring a
	// ReplicaSet's template.
	ToImage   string `json:"toImage,omitempty"`
	Container string `json:"container,omitempty"`
	// ToRevision picks the revision to restore; 0 means the previous one,
	// as `kubectl rollout undo` does.
	ToRevision int64  `json:"toRevision,omitempty"`
	Timeout    string `json:"timeout,omitempty"`
}

// RollbackOutput reports what the rollback did.
type RollbackOutput struct {
	FromImage string `json:"fromImage"`
	ToImage   string `json:"toImage"`
	// Revision is the Deployment's revision once rolled back.
	Revision string `json:"revision"`
	Changed  bool   `json:"changed"`
	Elapsed  string `json:"elapsed"`
}

// Rollback restores a previous pod template (or sets an explicit image) and
// waits for that rollout. Already being on the target is a success.
func (a *Activities) Rollback(ctx context.Context, in RollbackInput) (RollbackOutput, error) {
	c, err := a.cluster(in.Cluster)
	if err != nil {
		return RollbackOutput{}, err
	}
	timeout, err := parseDuration("timeout", in.Timeout, 0)
	if err != nil {
		return RollbackOutput{}, err
	}
	ref := DeploymentRef{Namespace: in.Namespace, Deployment: in.Deployment}
	api := c.Client.AppsV1().Deployments(in.Namespace)
	d, err := api.Get(ctx, in.Deployment, metav1.GetOptions{})
	if err != nil {
		return RollbackOutput{}, classify(fmt.Sprintf("get deployment %s", ref), err)
	}
	if d.Spec.Paused {
		return RollbackOutput{}, nonRetryable(activities.ErrDeploymentPaused, fmt.Sprintf("deployment %s is paused; resume it before rolling back", ref), nil)
	}
	container := in.Container
	if in.ToImage != "" || container != "" {
		if container, err = pickContainer(&d.Spec.Template.Spec, in.Container, ref); err != nil {
			return RollbackOutput{}, err
		}
	}
	_, fromImage, _ := containerImage(&d.Spec.Template.Spec, container)
	out := RollbackOutput{FromImage: fromImage}
	hb := Progress{}
	progress := func(msg string) { hb.Message = msg; heartbeat(ctx, hb) }

	if in.ToImage != "" {
		out.ToImage = in.ToImage
		if fromImage != in.ToImage {
			patch, err := imagePatch(&d.Spec.Template.Spec, container, in.ToImage)
			if err != nil {
				return RollbackOutput{}, err
			}
			if _, err := api.Patch(ctx, in.Deployment, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
				return RollbackOutput{}, classify(fmt.Sprintf("roll back deployment %s to image %s", ref, in.ToImage), err)
			}
			out.Changed = true
		}
	} else {
		target, err := a.rollbackTarget(ctx, c, d, in.ToRevision)
		if err != nil {
			return RollbackOutput{}, err
		}
		hb.RollbackTarget = target.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		// Record the target before the patch: if this attempt dies after
		// patching, the retry must aim at the same ReplicaSet, which by then
		// has become the newest revision.
		progress(fmt.Sprintf("rolling back to revision %s", target.Annotations[RevisionAnnotation]))
		_, out.ToImage, _ = containerImage(&target.Spec.Template.Spec, container)
		if !templatesEqual(&target.Spec.Template, &d.Spec.Template) {
			tmpl := target.Spec.Template.DeepCopy()
			delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
			// No resourceVersion precondition: the controller rewrites the
			// status (and so the resourceVersion) every few seconds while a
			// rollout is failing, which is exactly when rollbacks happen;
			// replacing only spec.template cannot undo anyone's status.
			patch, err := json.Marshal([]map[string]any{
				{"op": "replace", "path": "/spec/template", "value": tmpl},
			})
			if err != nil {
				return RollbackOutput{}, fmt.Errorf("encode rollback patch: %w", err)
			}
			if _, err := api.Patch(ctx, in.Deployment, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
				return RollbackOutput{}, classify(fmt.Sprintf("roll back deployment %s to revision %s", ref, target.Annotations[RevisionAnnotation]), err)
			}
			out.Changed = true
		}
	}
	w, err := a.waitRollout(ctx, c, ref, timeout, progress)
	if err != nil {
		return RollbackOutput{}, err
	}
	out.Revision = w.Revision
	out.Elapsed = w.Elapsed
	return out, nil
}

// rollbackTarget picks the ReplicaSet whose template to restore.
func (a *Activities) rollbackTarget(ctx context.Context, c *Cluster, d *appsv1.Deployment, toRevision int64) (*appsv1.ReplicaSet, error) {
	ref := DeploymentRef{Namespace: d.Namespace, Deployment: d.Name}
	sel, err := deploymentSelector(d)
	if err != nil {
		return nil, err
	}
	list, err := c.Client.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, classify(fmt.Sprintf("list replicasets of deployment %s", ref), err)
	}
	all := make([]*appsv1.ReplicaSet, 0, len(list.Items))
	for i := range list.Items {
		all = append(all, &list.Items[i])
	}
	owned := ownedReplicaSets(d, all)

	var prev Progress
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &prev) == nil && prev.RollbackTarget != "" {
		for _, rs := range owned {
			if rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == prev.RollbackTarget {
				return rs, nil
			}
		}
	}
	if toRevision > 0 {
		for _, rs := range owned {
			if revisionOf(rs.Annotations) == toRevision {
				return rs, nil
			}
		}
		return nil, nonRetryable(activities.ErrNoRollbackTarget, fmt.Sprintf("deployment %s has no revision %d", ref, toRevision), nil)
	}
	// The previous revision is the newest one whose template differs from
	// the current one (like `kubectl rollout undo`, which takes the second
	// newest, but robust to the newest ReplicaSet not existing yet).
	for _, rs := range owned {
		if !templatesEqual(&rs.Spec.Template, &d.Spec.Template) {
			return rs, nil
		}
	}
	return nil, nonRetryable(activities.ErrNoRollbackTarget, fmt.Sprintf("deployment %s has no previous revision to roll back to", ref), nil)
}

// RestartInput is the `with` of kube.restart.
type RestartInput struct {
	Cluster    string `json:"cluster,omitempty"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
}

// RestartOutput reports the restart.
type RestartOutput struct {
	RestartedAt string `json:"restartedAt"`
	Generation  int64  `json:"generation"`
}

// Restart triggers a rolling restart the way `kubectl rollout restart`
// does: a new value of the restartedAt template annotation.
func (a *Activities) Restart(ctx context.Context, in RestartInput) (RestartOutput, error) {
	c, err := a.cluster(in.Cluster)
	if err != nil {
		return RestartOutput{}, err
	}
	ref := DeploymentRef{Namespace: in.Namespace, Deployment: in.Deployment}
	api := c.Client.AppsV1().Deployments(in.Namespace)
	d, err := api.Get(ctx, in.Deployment, metav1.GetOptions{})
	if err != nil {
		return RestartOutput{}, classify(fmt.Sprintf("get deployment %s", ref), err)
	}
	// A retry of an attempt that already restarted must not restart again.
	var prev Progress
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &prev) == nil &&
		prev.RestartedAt != "" && d.Spec.Template.Annotations[RestartedAtAnnotation] == prev.RestartedAt {
		return RestartOutput{RestartedAt: prev.RestartedAt, Generation: d.Generation}, nil
	}
	at := time.Now().UTC().Format(time.RFC3339)
	if d.Spec.Template.Annotations[RestartedAtAnnotation] == at {
		// Same second as an earlier restart: kubectl would make no change
		// either; use a finer time so the restart really happens.
		at = time.Now().UTC().Format(time.RFC3339Nano)
	}
	heartbeat(ctx, Progress{Message: "restarting", RestartedAt: at})
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{RestartedAtAnnotation: at}}}}})
	d, err = api.Patch(ctx, in.Deployment, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		return RestartOutput{}, classify(fmt.Sprintf("restart deployment %s", ref), err)
	}
	return RestartOutput{RestartedAt: at, Generation: d.Generation}, nil
}
