package kubetest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/podsim"
)

// ServiceAccountClient returns a clientset that acts as the ServiceAccount
// namespace/name — creating the ServiceAccount if it is missing — with a token
// from the TokenRequest API, so a test can check exactly what RBAC lets the
// worker's own identity do. The token is valid for an hour.
func (e *Env) ServiceAccountClient(ctx context.Context, namespace, name string) (kubernetes.Interface, *rest.Config, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := e.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, nil, fmt.Errorf("kubetest: create serviceaccount %s/%s: %w", namespace, name, err)
	}
	expiry := int64(3600)
	tr, err := e.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("kubetest: token for serviceaccount %s/%s: %w", namespace, name, err)
	}
	cfg := rest.AnonymousClientConfig(e.RESTConfig)
	cfg.BearerToken = tr.Status.Token
	cfg.UserAgent = "stagehand-kubetest-sa"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubetest: serviceaccount client: %w", err)
	}
	return client, cfg, nil
}

// CreateDeployment creates a Backstage-like Deployment: one container named
// after the deployment, an HTTP readiness probe, a rolling-update strategy and
// progressDeadlineSeconds 600, as the portal's real manifest has. mutate
// functions run before the create, to change anything else. The namespace is
// created if needed.
func (e *Env) CreateDeployment(ctx context.Context, ns, name, image string, replicas int32, mutate ...func(*appsv1.Deployment)) (*appsv1.Deployment, error) {
	if err := e.CreateNamespace(ctx, ns); err != nil {
		return nil, err
	}
	d := BackstageDeployment(ns, name, image, replicas)
	for _, m := range mutate {
		m(d)
	}
	created, err := e.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubetest: create deployment %s/%s: %w", ns, name, err)
	}
	return created, nil
}

// BackstageDeployment returns the Deployment CreateDeployment creates, for
// callers that apply it themselves.
func BackstageDeployment(ns, name, image string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app.kubernetes.io/name": name}
	progressDeadline := int32(600)
	maxUnavailable := intstr.FromInt32(0)
	maxSurge := intstr.FromString("25%")
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas:                &replicas,
			Selector:                &metav1.LabelSelector{MatchLabels: labels},
			ProgressDeadlineSeconds: &progressDeadline,
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable, MaxSurge: &maxSurge},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  name,
						Image: image,
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 7007}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
								Path: "/.backstage/health/v1/readiness", Port: intstr.FromString("http"),
							}},
							InitialDelaySeconds: 5,
							PeriodSeconds:       10,
							FailureThreshold:    3,
						},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU:    resource.MustParse("100m"),
							corev1.ResourceMemory: resource.MustParse("256Mi"),
						}},
					}},
				},
			},
		},
	}
}

// WaitForRollout waits until the Deployment has rolled out its current
// generation — updated, ready and available replicas all equal to spec — the
// condition `kubectl rollout status` waits for. It watches rather than polls.
func (e *Env) WaitForRollout(ctx context.Context, ns, name string) (*appsv1.Deployment, error) {
	lw := cache.NewFilteredListWatchFromClient(e.Client.AppsV1().RESTClient(), "deployments", ns, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	})
	ev, err := watchtools.UntilWithSync(ctx, lw, &appsv1.Deployment{}, nil, func(ev watch.Event) (bool, error) {
		d, ok := ev.Object.(*appsv1.Deployment)
		if !ok {
			return false, nil
		}
		return RolledOut(d), nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubetest: wait for rollout of %s/%s: %w", ns, name, err)
	}
	return ev.Object.(*appsv1.Deployment), nil
}

// RolledOut reports whether d's current generation is fully rolled out.
func RolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation &&
		s.UpdatedReplicas == want && s.Replicas == want &&
		s.ReadyReplicas == want && s.AvailableReplicas == want
}

var shared = localenv.Shared[*Env]{
	Name:    "the Kubernetes control plane",
	Needs:   "a Kubernetes control plane (bin/kube)",
	Timeout: 3 * time.Minute,
	Start: func(ctx context.Context) (*Env, error) {
		logf := func(string, ...any) {}
		if testing.Verbose() {
			logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
		}
		return Start(ctx, Options{Logf: logf, Sim: SharedSimOptions})
	},
	Stop: (*Env).Stop,
	// The ~10 s start-up is paid once per binary, not per test.
	WithoutMain: localenv.LeaveRunning,
	// Components that cannot be stopped would outlive the tests.
	StopFailsMain: true,
}

// Shared returns the package's shared control plane, starting it on first use.
// Every test of a package gets the same Env, so the ~10 s start-up is paid
// once. Pair it with Main in TestMain, which stops the plane after the tests;
// without Main the components still die with the test binary (they are
// started with a parent-death signal) but the temporary state is left behind.
// If the plane cannot start — for example bin/kube was never built — the test
// fails (never skips) with the reason; only under -short (the unit tier) it
// skips before starting anything.
func Shared(t testing.TB) *Env {
	t.Helper()
	return shared.Shared(t)
}

// SharedSimOptions configures the simulator of the plane Shared starts; set it
// in TestMain before the first Shared call (e.g. a shorter InitialBackOff).
var SharedSimOptions podsim.Options

// Main runs the package's tests and then stops the shared control plane, if
// one was started. Use it as `os.Exit(kubetest.Main(m))` in TestMain.
func Main(m *testing.M) int { return shared.Main(m) }

// WaitForPod watches the pods in ns matching labelSelector until one satisfies
// cond, and returns it.
func (e *Env) WaitForPod(ctx context.Context, ns, labelSelector string, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	lw := cache.NewFilteredListWatchFromClient(e.Client.CoreV1().RESTClient(), "pods", ns, func(o *metav1.ListOptions) {
		o.LabelSelector = labelSelector
	})
	ev, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		return ok && ev.Type != watch.Deleted && cond(p), nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubetest: wait for pod in %s (%s): %w", ns, labelSelector, err)
	}
	return ev.Object.(*corev1.Pod), nil
}

// WaitForEvent watches the core/v1 Events in ns until one satisfies cond, and
// returns it. Events written before the call count too.
func (e *Env) WaitForEvent(ctx context.Context, ns string, cond func(*corev1.Event) bool) (*corev1.Event, error) {
	lw := cache.NewFilteredListWatchFromClient(e.Client.CoreV1().RESTClient(), "events", ns, func(*metav1.ListOptions) {})
	ev, err := watchtools.UntilWithSync(ctx, lw, &corev1.Event{}, nil, func(ev watch.Event) (bool, error) {
		x, ok := ev.Object.(*corev1.Event)
		return ok && ev.Type != watch.Deleted && cond(x), nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubetest: wait for event in %s: %w", ns, err)
	}
	return ev.Object.(*corev1.Event), nil
}

// TestNamespace creates a namespace named prefix-<random> for one test and
// deletes it when the test ends, so tests sharing a plane (and reruns with
// -count) never collide.
func (e *Env) TestNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := fmt.Sprintf("%s-%s", prefix, randomToken()[:6])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The namespace controller removes what is inside; not waited for.
		if err := e.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})
	return ns
}
