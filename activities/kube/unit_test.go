package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/stagehand-dev/stagehand/activities"
)

func ptr[T any](v T) *T { return &v }

func testDeployment(name, image string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Generation: 1,
			Annotations: map[string]string{RevisionAnnotation: "1"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: replicas, AvailableReplicas: replicas},
	}
}

func testReplicaSet(d *appsv1.Deployment, hash string, revision int) *appsv1.ReplicaSet {
	tmpl := d.Spec.Template.DeepCopy()
	tmpl.Labels = map[string]string{"app": d.Name, appsv1.DefaultDeploymentUniqueLabelKey: hash}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: tmpl.Labels,
			Annotations:     map[string]string{RevisionAnnotation: fmt.Sprint(revision)},
			OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: ptr(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Selector: d.Spec.Selector, Template: *tmpl},
	}
}

func testPod(rs *appsv1.ReplicaSet, suffix string, mutate func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-" + suffix, Namespace: rs.Namespace, Labels: rs.Spec.Template.Labels},
		Spec:       *rs.Spec.Template.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
	if mutate != nil {
		mutate(p)
	}
	return p
}

func waiting(reason, msg string, restarts int32) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Conditions[0].Status = corev1.ConditionFalse
		p.Status.ContainerStatuses[0] = corev1.ContainerStatus{Name: "app", RestartCount: restarts,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
	}
}

func appErr(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an ApplicationError", err, err)
	}
	return ae
}

func TestEvaluateRollout(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(*appsv1.Deployment)
		done     bool
		deadline bool
		msg      string
	}{
		{name: "complete", done: true, msg: "successfully rolled out"},
		{name: "spec not observed", mutate: func(d *appsv1.Deployment) { d.Generation = 2 }, msg: "spec update to be observed"},
		{name: "updated < replicas", mutate: func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 1 }, msg: "1 of 3 new replicas updated"},
		{name: "old replicas pending termination", mutate: func(d *appsv1.Deployment) { d.Status.Replicas = 4 }, msg: "1 old replicas pending termination"},
		{name: "available < updated", mutate: func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 2 }, msg: "2 of 3 updated replicas available"},
		{name: "progress deadline exceeded", mutate: func(d *appsv1.Deployment) {
			d.Status.UpdatedReplicas = 1
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
				Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "web-abc" has timed out progressing.`}}
		}, deadline: true, msg: "exceeded its progress deadline"},
		{name: "deadline ignored until observed", mutate: func(d *appsv1.Deployment) {
			d.Generation = 3
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: "ProgressDeadlineExceeded"}}
		}, msg: "spec update to be observed"},
		{name: "progressing is not done", mutate: func(d *appsv1.Deployment) {
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: "ReplicaSetUpdated"}}
			d.Status.AvailableReplicas = 0
		}, msg: "0 of 3 updated replicas available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDeployment("web", "img:1", 3)
			if tt.mutate != nil {
				tt.mutate(d)
			}
			st := evaluateRollout(d)
			if st.Done != tt.done || st.DeadlineExceeded != tt.deadline || !strings.Contains(st.Message, tt.msg) {
				t.Errorf("evaluateRollout = %+v, want done=%v deadline=%v message containing %q", st, tt.done, tt.deadline, tt.msg)
			}
		})
	}
}

func TestClassifyPod(t *testing.T) {
	d := testDeployment("web", "img:1", 1)
	rs := testReplicaSet(d, "abc", 1)
	oom := func(p *corev1.Pod) {
		p.Status.ContainerStatuses[0].RestartCount = 1
		p.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}}
	}
	tests := []struct {
		name     string
		mutate   func(*corev1.Pod)
		reason   string // "" = healthy
		restarts int32
		previous bool
	}{
		{name: "running and ready"},
		{name: "container creating is not a failure", mutate: waiting("ContainerCreating", "", 0)},
		{name: "crash loop", mutate: waiting("CrashLoopBackOff", "back-off 10s restarting failed container", 3), reason: "CrashLoopBackOff", restarts: 3, previous: true},
		{name: "image pull back-off", mutate: waiting("ImagePullBackOff", `Back-off pulling image "x"`, 0), reason: "ImagePullBackOff"},
		{name: "err image pull", mutate: waiting("ErrImagePull", "not found", 0), reason: "ErrImagePull"},
		{name: "invalid image name", mutate: waiting("InvalidImageName", "", 0), reason: "InvalidImageName"},
		{name: "create container config error", mutate: waiting("CreateContainerConfigError", `secret "db" not found`, 0), reason: "CreateContainerConfigError"},
		{name: "oom killed now", mutate: func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}}
		}, reason: "OOMKilled"},
		{name: "oom killed last time", mutate: oom, reason: "OOMKilled", restarts: 1, previous: true},
		{name: "crash loop after oom kill", mutate: func(p *corev1.Pod) {
			waiting("CrashLoopBackOff", "back-off 10s", 2)(p)
			oom(p)
			p.Status.ContainerStatuses[0].RestartCount = 2
		}, reason: "OOMKilled", restarts: 2, previous: true},
		{name: "error exit is not (yet) a failure", mutate: func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1}}
		}},
		{name: "init container crash", mutate: func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "migrate", RestartCount: 2,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
		}, reason: "CrashLoopBackOff", restarts: 2, previous: true},
		{name: "terminating pods are ignored", mutate: func(p *corev1.Pod) {
			waiting("CrashLoopBackOff", "", 1)(p)
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPod(rs, "x1", tt.mutate)
			f := classifyPod(p)
			if tt.reason == "" {
				if f != nil {
					t.Fatalf("classifyPod = %+v, want healthy", f)
				}
				return
			}
			if f == nil {
				t.Fatalf("classifyPod = nil, want %s", tt.reason)
			}
			if f.Reason != tt.reason || f.RestartCount != tt.restarts || f.previous != tt.previous || f.Pod != p.Name {
				t.Errorf("classifyPod = %+v, want reason %s restarts %d previous %v", f, tt.reason, tt.restarts, tt.previous)
			}
			if msg := f.Error(); !strings.Contains(msg, p.Name) || !strings.Contains(msg, tt.reason) || !strings.Contains(msg, f.Container) {
				t.Errorf("message %q lacks pod, container or reason", msg)
			}
		})
	}
}

func TestPodFailureMessageCarriesCrashDetailsAndLogs(t *testing.T) {
	d := testDeployment("web", "img:1", 1)
	p := testPod(testReplicaSet(d, "abc", 1), "x1", func(p *corev1.Pod) {
		waiting("CrashLoopBackOff", "back-off 20s", 4)(p)
		p.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 3}
	})
	f := classifyPod(p)
	f.Logs = []string{"Error: listen EADDRINUSE", "exiting"}
	msg := f.Error()
	for _, want := range []string{"pod web-abc-x1", `container "app"`, "CrashLoopBackOff", "back-off 20s", "exit code 3", "restarts: 4", "EADDRINUSE"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestSortEvents(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	at := func(s int) metav1.Time { return metav1.NewTime(base.Add(time.Duration(s) * time.Second)) }
	events := []corev1.Event{
		{ObjectMeta: metav1.ObjectMeta{Name: "last-ts-30"}, LastTimestamp: at(30), FirstTimestamp: at(1)},
		{ObjectMeta: metav1.ObjectMeta{Name: "series-5"}, LastTimestamp: at(50), Series: &corev1.EventSeries{LastObservedTime: metav1.NewMicroTime(base.Add(5 * time.Second)), Count: 4}},
		{ObjectMeta: metav1.ObjectMeta{Name: "event-time-20"}, EventTime: metav1.NewMicroTime(base.Add(20 * time.Second))},
		{ObjectMeta: metav1.ObjectMeta{Name: "first-ts-10"}, FirstTimestamp: at(10)},
		{ObjectMeta: metav1.ObjectMeta{Name: "last-ts-10-second"}, LastTimestamp: at(10)},
	}
	sortEvents(events)
	var got []string
	for _, e := range events {
		got = append(got, e.Name)
	}
	want := "series-5 first-ts-10 last-ts-10-second event-time-20 last-ts-30"
	if strings.Join(got, " ") != want {
		t.Errorf("order = %v, want %s", got, want)
	}
}

func TestDeploymentScope(t *testing.T) {
	in := deploymentScope("web", map[string]bool{"web-5d8f7": true})
	tests := []struct {
		kind, name string
		want       bool
	}{
		{"Deployment", "web", true},
		{"Deployment", "web-api", false},
		{"ReplicaSet", "web-5d8f7", true},
		{"ReplicaSet", "web-66c9b", true}, // garbage-collected old RS, by name
		{"ReplicaSet", "web-api-66c9b", false},
		{"Pod", "web-5d8f7-x2k4p", true},
		{"Pod", "web-66c9b-abcde", true},
		{"Pod", "web-api-66c9b-abcde", false},
		{"Pod", "webby-66c9b-abcde", false},
		{"Service", "web", false},
	}
	for _, tt := range tests {
		if got := in(corev1.ObjectReference{Kind: tt.kind, Name: tt.name}); got != tt.want {
			t.Errorf("scope(%s/%s) = %v, want %v", tt.kind, tt.name, got, tt.want)
		}
	}
}

func testEvent(name, typ, reason, kind, obj, msg string, at time.Time) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: "ns"},
		InvolvedObject: corev1.ObjectReference{Kind: kind, Name: obj, Namespace: "ns"},
		Type:           typ, Reason: reason, Message: msg, Count: 1,
		FirstTimestamp: metav1.NewTime(at), LastTimestamp: metav1.NewTime(at),
	}
}

func TestEventsWarningFiltering(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	d := testDeployment("web", "img:2", 1)
	rs := testReplicaSet(d, "abc12", 2)
	objects := []runtime.Object{d, rs,
		testEvent("e1", "Normal", "ScalingReplicaSet", "Deployment", "web", "Scaled up replica set web-abc12 to 1", now.Add(-30*time.Second)),
		testEvent("e2", "Warning", "BackOff", "Pod", "web-abc12-xk2p9", "Back-off restarting failed container app", now.Add(-10*time.Second)),
		testEvent("e3", "Warning", "Unhealthy", "Pod", "web-abc12-xk2p9", "Readiness probe failed: connection refused", now.Add(-20*time.Second)),
		testEvent("e4", "Warning", "BackOff", "Pod", "other-77f-abcde", "Back-off restarting failed container", now.Add(-5*time.Second)),
		testEvent("e5", "Warning", "BackOff", "Pod", "web-abc12-old01", "too old to count", now.Add(-2*time.Hour)),
	}
	tests := []struct {
		name       string
		in         EventsInput
		wantErr    bool
		wantEvents []string // reasons in order
		warnings   int
		errHas     []string
	}{
		{
			name:    "warnings about the deployment fail",
			in:      EventsInput{Namespace: "ns", Deployment: "web", Since: "15m"},
			wantErr: true, errHas: []string{"2 warning events", "Pod/web-abc12-xk2p9 BackOff", "Readiness probe failed"},
		},
		{
			name:       "allow by reason and by message",
			in:         EventsInput{Namespace: "ns", Deployment: "web", Since: "15m", Allow: []string{"^Unhealthy$", "restarting failed"}},
			wantEvents: []string{"ScalingReplicaSet", "Unhealthy", "BackOff"}, warnings: 2,
		},
		{
			name:    "partial allow still fails",
			in:      EventsInput{Namespace: "ns", Deployment: "web", Since: "15m", Allow: []string{"Readiness"}},
			wantErr: true, errHas: []string{"1 warning events", "Back-off restarting"},
		},
		{
			name:       "since excludes older events",
			in:         EventsInput{Namespace: "ns", Deployment: "web", Since: now.Add(-25 * time.Second).Format(time.RFC3339), Allow: []string{"."}},
			wantEvents: []string{"Unhealthy", "BackOff"}, warnings: 2,
		},
		{
			name:    "without a deployment the namespace is in scope",
			in:      EventsInput{Namespace: "ns", Since: "15m", Allow: []string{"Readiness", "failed container app"}},
			wantErr: true, errHas: []string{"Pod/other-77f-abcde"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Activities{Clusters: map[string]*Cluster{"default": {Name: "default", Client: fake.NewClientset(objects...)}}}
			out, err := a.Events(context.Background(), tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Events = %+v, want error", out)
				}
				ae := appErr(t, err)
				if ae.Type() != activities.ErrWarningEvents || !ae.NonRetryable() {
					t.Errorf("error type %s nonRetryable=%v", ae.Type(), ae.NonRetryable())
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var reasons []string
			for _, e := range out.Events {
				reasons = append(reasons, e.Reason)
			}
			if strings.Join(reasons, ",") != strings.Join(tt.wantEvents, ",") || out.Warnings != tt.warnings {
				t.Errorf("events %v warnings %d, want %v and %d", reasons, out.Warnings, tt.wantEvents, tt.warnings)
			}
		})
	}
}

func TestEventsBadArguments(t *testing.T) {
	a := &Activities{Clusters: map[string]*Cluster{"default": {Name: "default", Client: fake.NewClientset()}}}
	for _, in := range []EventsInput{{Namespace: "ns", Allow: []string{"("}}, {Namespace: "ns", Since: "yesterday"}} {
		_, err := a.Events(context.Background(), in)
		if ae := appErr(t, err); ae.Type() != activities.ErrInvalidArguments || !ae.NonRetryable() {
			t.Errorf("%+v: error %v, want non-retryable InvalidArguments", in, err)
		}
	}
}

func TestClassifyErrors(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	tests := []struct {
		name      string
		err       error
		wantType  string
		permanent bool
	}{
		{"forbidden", apierrors.NewForbidden(gr, "web", errors.New(`User "system:serviceaccount:a:b" cannot patch`)), activities.ErrKubeForbidden, true},
		{"unauthorized", apierrors.NewUnauthorized("bad token"), activities.ErrKubeUnauthorized, true},
		{"not found", apierrors.NewNotFound(gr, "web"), activities.ErrKubeNotFound, true},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "web", nil), activities.ErrKubeInvalid, true},
		{"bad request", apierrors.NewBadRequest("nope"), activities.ErrKubeInvalid, true},
		{"conflict", apierrors.NewConflict(gr, "web", errors.New("object has been modified")), activities.ErrKubeConflict, false},
		{"apply conflict", &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 409, Reason: metav1.StatusReasonConflict,
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: metav1.CauseTypeFieldManagerConflict}}}}}, activities.ErrKubeApplyConflict, true},
		{"unavailable", apierrors.NewServiceUnavailable("etcd down"), activities.ErrKubeUnavailable, false},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), activities.ErrKubeUnavailable, false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, activities.ErrKubeUnavailable, false},
		{"wrapped refused", fmt.Errorf("list pods: %w", syscall.ECONNREFUSED), activities.ErrKubeUnavailable, false},
		{"other", errors.New("boom"), activities.ErrKubeError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify("patch deployment ns/web", tt.err)
			ae := appErr(t, err)
			if ae.Type() != tt.wantType || ae.NonRetryable() != tt.permanent {
				t.Errorf("classify = type %s nonRetryable %v, want %s %v", ae.Type(), ae.NonRetryable(), tt.wantType, tt.permanent)
			}
			if !strings.HasPrefix(err.Error(), "patch deployment ns/web") {
				t.Errorf("message %q lacks the context", err)
			}
			if !errors.Is(err, tt.err) && !strings.Contains(err.Error(), tt.err.Error()) {
				t.Errorf("cause lost: %v", err)
			}
		})
	}
	if err := classify("x", context.Canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("cancellation must stay a cancellation, got %v", err)
	}
}

func fakeActivities(objs ...runtime.Object) (*Activities, *fake.Clientset) {
	client := fake.NewClientset(objs...)
	return &Activities{Clusters: map[string]*Cluster{"sandbox": {Name: "sandbox", Client: client}},
		HeartbeatInterval: 50 * time.Millisecond, RetryMaxBackoff: 50 * time.Millisecond}, client
}

func TestSetImageIdempotent(t *testing.T) {
	a, client := fakeActivities(testDeployment("web", "img:1", 2))
	ctx := context.Background()
	in := SetImageInput{Namespace: "ns", Deployment: "web", Image: "img:2"}
	out, err := a.SetImage(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Changed || out.PreviousImage != "img:1" || out.Image != "img:2" || out.Revision != "1" || out.Container != "app" {
		t.Errorf("first SetImage = %+v", out)
	}
	patches := 0
	for _, act := range client.Actions() {
		if act.GetVerb() == "patch" {
			patches++
		}
	}
	out, err = a.SetImage(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Changed || out.PreviousImage != "img:2" {
		t.Errorf("second SetImage = %+v, want changed=false", out)
	}
	for _, act := range client.Actions() {
		if act.GetVerb() == "patch" {
			patches--
		}
	}
	if patches != 0 {
		t.Errorf("second SetImage patched again")
	}
	d, _ := client.AppsV1().Deployments("ns").Get(ctx, "web", metav1.GetOptions{})
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "img:2" {
		t.Errorf("image = %s", img)
	}
}

func TestSetImageArguments(t *testing.T) {
	multi := testDeployment("multi", "img:1", 1)
	multi.Spec.Template.Spec.Containers = append(multi.Spec.Template.Spec.Containers, corev1.Container{Name: "sidecar", Image: "proxy:1"})
	a, _ := fakeActivities(multi)
	tests := []struct {
		in       SetImageInput
		wantType string
	}{
		{SetImageInput{Namespace: "ns", Deployment: "multi", Image: "x"}, activities.ErrInvalidArguments},
		{SetImageInput{Namespace: "ns", Deployment: "multi", Container: "nope", Image: "x"}, activities.ErrInvalidArguments},
		{SetImageInput{Namespace: "ns", Deployment: "absent", Image: "x"}, activities.ErrKubeNotFound},
		{SetImageInput{Cluster: "prod", Namespace: "ns", Deployment: "multi", Image: "x"}, "KubeUnknownCluster"},
	}
	for _, tt := range tests {
		_, err := a.SetImage(context.Background(), tt.in)
		if ae := appErr(t, err); ae.Type() != tt.wantType || !ae.NonRetryable() {
			t.Errorf("%+v: %v, want non-retryable %s", tt.in, err, tt.wantType)
		}
	}
	out, err := a.SetImage(context.Background(), SetImageInput{Namespace: "ns", Deployment: "multi", Container: "sidecar", Image: "proxy:2"})
	if err != nil || !out.Changed || out.PreviousImage != "proxy:1" {
		t.Errorf("sidecar SetImage = %+v, %v", out, err)
	}
}

// TestStepForbidden runs kube.setImage the way the worker does, through the
// step adapter in an activity environment, and checks that a Forbidden
// answer reaches the workflow as a non-retryable KubeForbidden.
func TestStepForbidden(t *testing.T) {
	a, client := fakeActivities(testDeployment("web", "img:1", 1))
	client.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web",
			errors.New(`User "system:serviceaccount:ns:stagehand" cannot patch resource "deployments"`))
	})
	var step activities.StepType
	for _, s := range StepTypes(a) {
		if s.Name == "kube.setImage" {
			step = s
		}
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(step.Handler, activityOptions(step.Name))
	_, err := env.ExecuteActivity(step.Name, activities.StepRequest{StepID: "deploy",
		With: map[string]any{"namespace": "ns", "deployment": "web", "image": "img:2"}})
	ae := appErr(t, err)
	if ae.Type() != activities.ErrKubeForbidden || !ae.NonRetryable() || !strings.Contains(err.Error(), "cannot patch") {
		t.Errorf("error %v: type %s nonRetryable %v", err, ae.Type(), ae.NonRetryable())
	}
}

func TestStepTypesDeclareInputs(t *testing.T) {
	types := StepTypes(&Activities{})
	names := map[string]bool{}
	for _, st := range types {
		names[st.Name] = true
	}
	for _, n := range []string{"kube.setImage", "kube.waitRollout", "kube.checkPods", "kube.events", "kube.rollback", "kube.apply", "kube.restart"} {
		if !names[n] {
			t.Errorf("step type %s missing", n)
		}
	}
	for _, st := range types {
		if err := activities.CheckImplements(st.StepSpec, st); err != nil {
			t.Error(err)
		}
		if !slices.Contains(st.ArgNames(), "cluster") {
			t.Errorf("%s has no cluster key", st.Name)
		}
		if st.DefaultTimeout == 0 {
			t.Errorf("%s has no default timeout", st.Name)
		}
	}
}

func TestWaitRolloutFake(t *testing.T) {
	t.Run("completes", func(t *testing.T) {
		d := testDeployment("web", "img:2", 2)
		d.Status.UpdatedReplicas, d.Status.AvailableReplicas = 1, 1
		a, client := fakeActivities(d, testReplicaSet(d, "new", 2))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			// The fake's watch starts after its list with no resourceVersion
			// continuity, so keep writing the final status until seen.
			d := d.DeepCopy()
			d.Status.UpdatedReplicas, d.Status.AvailableReplicas = 2, 2
			for {
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
					_, _ = client.AppsV1().Deployments("ns").UpdateStatus(ctx, d, metav1.UpdateOptions{})
				}
			}
		}()
		out, err := a.WaitRollout(ctx, WaitRolloutInput{Namespace: "ns", Deployment: "web"})
		close(done)
		if err != nil {
			t.Fatal(err)
		}
		if out.UpdatedReplicas != 2 || out.AvailableReplicas != 2 || out.Image != "img:2" || out.Revision != "1" {
			t.Errorf("WaitRollout = %+v", out)
		}
	})
	t.Run("crash loop fails fast", func(t *testing.T) {
		d := testDeployment("web", "img:bad", 2)
		d.Status.UpdatedReplicas, d.Status.AvailableReplicas = 1, 0
		oldD := d.DeepCopy()
		oldD.Spec.Template.Spec.Containers[0].Image = "img:good"
		oldRS := testReplicaSet(oldD, "old", 1)
		newRS := testReplicaSet(d, "new", 2)
		a, _ := fakeActivities(d, oldRS, newRS,
			testPod(oldRS, "aaaaa", waiting("CrashLoopBackOff", "old pods do not count", 9)),
			testPod(newRS, "bbbbb", waiting("CrashLoopBackOff", "back-off 10s restarting failed container", 2)))
		start := time.Now()
		_, err := a.WaitRollout(context.Background(), WaitRolloutInput{Namespace: "ns", Deployment: "web", Timeout: "10s"})
		ae := appErr(t, err)
		if ae.Type() != activities.ErrPodFailure || !ae.NonRetryable() {
			t.Fatalf("error %v type %s", err, ae.Type())
		}
		for _, want := range []string{"web-new-bbbbb", `"app"`, "CrashLoopBackOff", "restarts: 2"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("took %s", time.Since(start))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		d := testDeployment("web", "img:2", 2)
		d.Status.AvailableReplicas = 1
		a, _ := fakeActivities(d)
		_, err := a.WaitRollout(context.Background(), WaitRolloutInput{Namespace: "ns", Deployment: "web", Timeout: "300ms"})
		if ae := appErr(t, err); ae.Type() != activities.ErrRolloutTimeout || !strings.Contains(err.Error(), "1 of 2 updated replicas available") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("missing deployment", func(t *testing.T) {
		a, _ := fakeActivities()
		_, err := a.WaitRollout(context.Background(), WaitRolloutInput{Namespace: "ns", Deployment: "web"})
		if ae := appErr(t, err); ae.Type() != activities.ErrKubeNotFound || !ae.NonRetryable() {
			t.Errorf("error %v", err)
		}
	})
}

func TestRollbackTargetFake(t *testing.T) {
	cur := testDeployment("web", "img:3", 1)
	cur.Annotations[RevisionAnnotation] = "3"
	mk := func(img, hash string, rev int) *appsv1.ReplicaSet {
		d := cur.DeepCopy()
		d.Spec.Template.Spec.Containers[0].Image = img
		return testReplicaSet(d, hash, rev)
	}
	a, _ := fakeActivities(cur, mk("img:1", "r1", 1), mk("img:2", "r2", 2), mk("img:3", "r3", 3))
	c := a.Clusters["sandbox"]
	for _, tt := range []struct {
		rev  int64
		want string
	}{{0, "web-r2"}, {1, "web-r1"}, {3, "web-r3"}} {
		rs, err := a.rollbackTarget(context.Background(), c, cur, tt.rev)
		if err != nil || rs.Name != tt.want {
			t.Errorf("toRevision %d: %v %v, want %s", tt.rev, rs, err, tt.want)
		}
	}
	if _, err := a.rollbackTarget(context.Background(), c, cur, 9); appErr(t, err).Type() != activities.ErrNoRollbackTarget {
		t.Errorf("missing revision: %v", err)
	}
}

func TestCheckPodsFake(t *testing.T) {
	d := testDeployment("web", "img:2", 2)
	rs := testReplicaSet(d, "abc", 2)
	oldD := d.DeepCopy()
	oldD.Spec.Template.Spec.Containers[0].Image = "img:bad"
	retired := testReplicaSet(oldD, "old", 1)
	retired.Spec.Replicas = ptr(int32(0))
	leftover := testPod(retired, "zzz", waiting("CrashLoopBackOff", "", 3))
	leftover.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: retired.Name, Controller: ptr(true)}}
	tests := []struct {
		name     string
		pods     []runtime.Object
		in       CheckPodsInput
		wantType string
		retry    bool
	}{
		{name: "healthy", pods: []runtime.Object{testPod(rs, "a", nil), testPod(rs, "b", nil)}},
		{name: "pods of a ReplicaSet scaled to zero do not count", pods: []runtime.Object{retired, leftover, testPod(rs, "a", nil), testPod(rs, "b", nil)}},
		{name: "not ready", pods: []runtime.Object{testPod(rs, "a", nil), testPod(rs, "b", func(p *corev1.Pod) {
			p.Status.Conditions[0].Status = corev1.ConditionFalse
		})}, wantType: activities.ErrPodsNotReady, retry: true},
		{name: "too few", pods: []runtime.Object{testPod(rs, "a", nil)}, wantType: activities.ErrPodsNotReady, retry: true},
		{name: "wrong image", pods: []runtime.Object{testPod(rs, "a", nil), testPod(rs, "b", nil)},
			in: CheckPodsInput{Image: "img:3"}, wantType: activities.ErrImageMismatch, retry: true},
		{name: "crash loop", pods: []runtime.Object{testPod(rs, "a", nil), testPod(rs, "b", waiting("CrashLoopBackOff", "", 1))},
			wantType: activities.ErrPodFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := fakeActivities(append([]runtime.Object{d, rs}, tt.pods...)...)
			in := tt.in
			in.Namespace, in.Deployment = "ns", "web"
			out, err := a.CheckPods(context.Background(), in)
			if tt.wantType == "" {
				if err != nil || len(out.Pods) != 2 || out.Image != "img:2" {
					t.Errorf("CheckPods = %+v, %v", out, err)
				}
				return
			}
			if ae := appErr(t, err); ae.Type() != tt.wantType || ae.NonRetryable() == tt.retry {
				t.Errorf("error %v: type %s nonRetryable %v", err, ae.Type(), ae.NonRetryable())
			}
		})
	}
}

func TestCheckPodsSoakDetectsRestart(t *testing.T) {
	d := testDeployment("web", "img:2", 1)
	rs := testReplicaSet(d, "abc", 1)
	pod := testPod(rs, "a", nil)
	a, client := fakeActivities(d, rs, pod)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		p := pod.DeepCopy()
		p.Status.ContainerStatuses[0].RestartCount = 1
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
				_, _ = client.CoreV1().Pods("ns").UpdateStatus(ctx, p, metav1.UpdateOptions{})
			}
		}
	}()
	_, err := a.CheckPods(ctx, CheckPodsInput{Namespace: "ns", Deployment: "web", Soak: "5s"})
	close(done)
	if ae := appErr(t, err); ae.Type() != activities.ErrPodRestarted || !ae.NonRetryable() || !strings.Contains(err.Error(), "restarts 0 -> 1") {
		t.Errorf("error %v", err)
	}
}

func TestDecodeManifests(t *testing.T) {
	objs, err := decodeManifests(`
---
# comment only
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
data: {k: v}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}
- {apiVersion: v1, kind: Secret, metadata: {name: c}}
`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
	}
	if strings.Join(got, ",") != "ConfigMap/a,ConfigMap/b,Secret/c" {
		t.Errorf("decoded %v", got)
	}
	for _, bad := range []string{"", "kind: ConfigMap\nmetadata: {name: x}", "apiVersion: v1\nkind: [", "---\n"} {
		if _, err := decodeManifests(bad); err == nil || appErr(t, err).Type() != activities.ErrInvalidArguments {
			t.Errorf("decodeManifests(%q) = %v, want InvalidArguments", bad, err)
		}
	}
}

func TestResolveSince(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 800, time.UTC)
	tests := map[string]time.Time{
		"2026-03-04T05:00:00Z":        time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC),
		"2026-03-04T05:00:00.9+00:00": time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC),
		"10m":                         time.Date(2026, 3, 4, 4, 56, 7, 0, time.UTC),
		"2026-03-04T07:00:00+02:00":   time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC),
		"":                            time.Date(2026, 3, 4, 4, 6, 7, 0, time.UTC),
	}
	for in, want := range tests {
		got, err := resolveSince(context.Background(), in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("resolveSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestClusterSelection(t *testing.T) {
	one := &Activities{Clusters: map[string]*Cluster{"sandbox": {Name: "sandbox", Client: fake.NewClientset()}}}
	if c, err := one.cluster(""); err != nil || c.Name != "sandbox" {
		t.Errorf("single cluster: %v %v", c, err)
	}
	two := &Activities{Clusters: map[string]*Cluster{
		"default": {Name: "default", Client: fake.NewClientset()}, "prod": {Name: "prod", Client: fake.NewClientset()}}}
	if c, err := two.cluster(""); err != nil || c.Name != "default" {
		t.Errorf("default cluster: %v %v", c, err)
	}
	if _, err := two.cluster("staging"); err == nil || !strings.Contains(err.Error(), "default, prod") {
		t.Errorf("unknown cluster: %v", err)
	}
	if _, err := (&Activities{}).cluster(""); appErr(t, err).Type() != "KubeNoCluster" {
		t.Errorf("no clusters: %v", err)
	}
}

func activityOptions(name string) activity.RegisterOptions {
	return activity.RegisterOptions{Name: name}
}

// TestRollbackRetryKeepsTarget simulates a retry of kube.rollback whose first
// attempt already patched the Deployment back: without the target recorded
// in the heartbeat, "the previous revision" would now be the bad one and the
// retry would undo the rollback.
func TestRollbackRetryKeepsTarget(t *testing.T) {
	cur := testDeployment("web", "img:good", 1)
	cur.Annotations[RevisionAnnotation] = "3"
	mk := func(img, hash string, rev int) *appsv1.ReplicaSet {
		d := cur.DeepCopy()
		d.Spec.Template.Spec.Containers[0].Image = img
		return testReplicaSet(d, hash, rev)
	}
	run := func(details *Progress) (map[string]any, error) {
		a, _ := fakeActivities(cur, mk("img:good", "good", 3), mk("img:bad", "bad", 2))
		var step activities.StepType
		for _, s := range StepTypes(a) {
			if s.Name == "kube.rollback" {
				step = s
			}
		}
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		if details != nil {
			env.SetHeartbeatDetails(*details)
		}
		env.RegisterActivityWithOptions(step.Handler, activityOptions(step.Name))
		val, err := env.ExecuteActivity(step.Name, activities.StepRequest{StepID: "rb",
			With: map[string]any{"cluster": "sandbox", "namespace": "ns", "deployment": "web", "timeout": "5s"}})
		if err != nil {
			return nil, err
		}
		var res activities.StepResult
		if err := val.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res.Outputs, nil
	}
	out, err := run(&Progress{Message: "rolling back to revision 1", RollbackTarget: "good"})
	if err != nil {
		t.Fatal(err)
	}
	if out["changed"] != false || out["toImage"] != "img:good" {
		t.Errorf("retried rollback = %v, want no change and img:good", out)
	}
	// A first attempt (no heartbeat) goes to the previous revision, as
	// `kubectl rollout undo` would.
	out, err = run(nil)
	if err != nil {
		t.Fatal(err)
	}
	if out["changed"] != true || out["toImage"] != "img:bad" {
		t.Errorf("first rollback = %v, want a change to the previous revision", out)
	}
}

// A cluster without a dynamic client is the worker's configuration, not the
// runbook's arguments: it has its own error type (it was InvalidArguments).
func TestApplyWithoutDynamicClient(t *testing.T) {
	a, _ := fakeActivities()
	_, err := a.Apply(context.Background(), ApplyInput{Manifests: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
	if ae := appErr(t, err); ae.Type() != activities.ErrKubeNoDynamicClient || !ae.NonRetryable() {
		t.Errorf("error %v: type %s nonRetryable %v", err, ae.Type(), ae.NonRetryable())
	}
}
