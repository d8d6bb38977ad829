package kube

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stagehand-dev/stagehand/activities"
)

// MaxScaleReplicas bounds kube.scale's replicas: a portal runs a handful;
// a typo like 300 must not schedule hundreds of Backstage pods.
const MaxScaleReplicas = 100

// ScaleInput is the `with` of kube.scale.
type ScaleInput struct {
	Cluster    string `json:"cluster,omitempty"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	// Replicas is required; a pointer tells 0 from missing.
	Replicas *int64 `json:"replicas"`
	// Wait defaults to true.
	Wait *bool `json:"wait,omitempty"`
	// Timeout bounds the wait; by default the step's own timeout does.
	Timeout string `json:"timeout,omitempty"`
}

// ScaleOutput is what kube.scale reports.
type ScaleOutput struct {
	PreviousReplicas int32  `json:"previousReplicas"`
	Replicas         int32  `json:"replicas"`
	Changed          bool   `json:"changed"`
	Elapsed          string `json:"elapsed"`
}

// Scale sets a Deployment's spec.replicas and waits for the count to be
// reached: for 0, until no pod of the Deployment remains at all (a database
// restore must not race a terminating pod still holding connections); for
// N, until N replicas are available, failing fast on crash-looping pods as
// kube.waitRollout does. Setting a count already set is changed=false.
func (a *Activities) Scale(ctx context.Context, in ScaleInput) (ScaleOutput, error) {
	start := time.Now()
	// Arguments are checked before anything is read or changed.
	if in.Replicas == nil {
		return ScaleOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("replicas is required: the count to set, 0 to %d", MaxScaleReplicas), nil)
	}
	if *in.Replicas < 0 || *in.Replicas > MaxScaleReplicas {
		return ScaleOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("replicas %d is outside 0 to %d", *in.Replicas, MaxScaleReplicas), nil)
	}
	n := int32(*in.Replicas)
	timeout, err := parseDuration("timeout", in.Timeout, 0)
	if err != nil {
		return ScaleOutput{}, err
	}
	wait := in.Wait == nil || *in.Wait
	c, err := a.cluster(in.Cluster)
	if err != nil {
		return ScaleOutput{}, err
	}
	ref := DeploymentRef{Namespace: in.Namespace, Deployment: in.Deployment}
	api := c.Client.AppsV1().Deployments(in.Namespace)
	d, err := api.Get(ctx, in.Deployment, metav1.GetOptions{})
	if err != nil {
		return ScaleOutput{}, classify(fmt.Sprintf("get deployment %s", ref), err)
	}
	current := specReplicas(d)
	out := ScaleOutput{PreviousReplicas: current, Replicas: n}
	// A retry of an attempt that already scaled finds the new count set:
	// report the count before the first attempt, which the runbook scales
	// back to.
	var prev Progress
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &prev) == nil && prev.ScaleFrom != nil {
		out.PreviousReplicas = *prev.ScaleFrom
		out.Changed = *prev.ScaleFrom != n
	}
	from := out.PreviousReplicas
	hb := Progress{ScaleFrom: &from}
	progress := func(msg string) { hb.Message = msg; heartbeat(ctx, hb) }
	if current != n {
		// Recorded before the patch, so an attempt that dies after it
		// still hands the original count to its retry.
		progress(fmt.Sprintf("scaling from %d to %d", current, n))
		patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n)
		if _, err := api.Patch(ctx, in.Deployment, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
			return ScaleOutput{}, classify(fmt.Sprintf("scale deployment %s to %d", ref, n), err)
		}
		out.Changed = true
	}
	if wait {
		if _, err := a.waitFor(ctx, c, ref, timeout, progress, scaleGoal(n)); err != nil {
			return ScaleOutput{}, err
		}
	}
	out.Elapsed = elapsed(start)
	return out, nil
}

func specReplicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1 // the apiserver's default
	}
	return *d.Spec.Replicas
}

// scaleGoal is reached when the Deployment's status shows exactly n
// replicas and, for n > 0, n of them available on the current template;
// for 0, when not one pod of it is left, terminating ones included.
func scaleGoal(n int32) waitGoal {
	return waitGoal{
		stopping: n == 0,
		reached: func(w *rolloutWatch) (bool, string) {
			d := w.dep
			if d.Generation > d.Status.ObservedGeneration {
				return false, "waiting for the scale to be observed"
			}
			if want := specReplicas(d); want != n {
				// Someone else (an autoscaler, a GitOps sync) set it since.
				return false, fmt.Sprintf("spec.replicas is %d, not %d: changed by someone else?", want, n)
			}
			st := d.Status
			if n == 0 {
				if !w.podsListed {
					// status.replicas counts no terminating pod: only
					// the pod list can say none is left.
					return false, "scaling to 0: listing pods"
				}
				if st.Replicas > 0 || len(w.pods) > 0 {
					terminating := 0
					for _, p := range w.pods {
						if p.DeletionTimestamp != nil {
							terminating++
						}
					}
					return false, fmt.Sprintf("scaling to 0: %d replicas in status, %d pods left (%d terminating)", st.Replicas, len(w.pods), terminating)
				}
				return true, ""
			}
			if st.Replicas != n || st.UpdatedReplicas != n || st.AvailableReplicas < n {
				return false, fmt.Sprintf("scaling to %d: %d replicas, %d updated, %d available", n, st.Replicas, st.UpdatedReplicas, st.AvailableReplicas)
			}
			return true, ""
		},
	}
}
