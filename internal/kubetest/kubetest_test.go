package kubetest_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"

	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/localenv"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

const baseImage = "registry.local/backstage-portal/backend:prod-0000aaaa-1700000000"

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func podsOf(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, name string) []corev1.Pod {
	t.Helper()
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// A Deployment of two replicas rolls out through the real Deployment and
// ReplicaSet controllers and scheduler, and the simulator reports its pods
// Running and Ready on the image in the spec, as a kubelet would.
func TestDeploymentRollsOutReady(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t, 2*time.Minute)
	ns := env.TestNamespace(t, "rollout-ready")

	start := time.Now()
	if _, err := env.CreateDeployment(ctx, ns, "backstage", baseImage, 2); err != nil {
		t.Fatal(err)
	}
	d, err := env.WaitForRollout(ctx, ns, "backstage")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rolled out in %s", time.Since(start).Round(time.Millisecond))
	if d.Status.ReadyReplicas != 2 {
		t.Fatalf("ready replicas = %d, want 2", d.Status.ReadyReplicas)
	}
	pods := podsOf(t, ctx, env.Client, ns, "backstage")
	if len(pods) != 2 {
		t.Fatalf("got %d pods, want 2", len(pods))
	}
	for _, p := range pods {
		if p.Spec.NodeName != env.Sim.NodeName() {
			t.Errorf("pod %s on node %q, want %q", p.Name, p.Spec.NodeName, env.Sim.NodeName())
		}
		if p.Status.Phase != corev1.PodRunning || !podReady(&p) {
			t.Errorf("pod %s: phase %s ready %v, want Running and Ready", p.Name, p.Status.Phase, podReady(&p))
		}
		if len(p.Status.ContainerStatuses) != 1 {
			t.Fatalf("pod %s: %d container statuses", p.Name, len(p.Status.ContainerStatuses))
		}
		cs := p.Status.ContainerStatuses[0]
		if cs.Image != baseImage || !strings.Contains(cs.ImageID, "@sha256:") || !cs.Ready ||
			cs.Started == nil || !*cs.Started || cs.RestartCount != 0 || cs.State.Running == nil {
			t.Errorf("pod %s: unexpected container status %+v", p.Name, cs)
		}
		for _, want := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			found := false
			for _, c := range p.Status.Conditions {
				found = found || (c.Type == want && c.Status == corev1.ConditionTrue)
			}
			if !found {
				t.Errorf("pod %s: condition %s not True", p.Name, want)
			}
		}
	}
	// Once everything is Ready the simulator must go quiet: a status it keeps
	// rewriting (say, a field the apiserver normalises) would hammer the plane.
	writes := env.Sim.StatusWrites()
	time.Sleep(time.Second)
	if now := env.Sim.StatusWrites(); now != writes {
		t.Errorf("simulator wrote %d statuses while idle", now-writes)
	}

	// The kubelet-style events the kube.events step reads.
	if _, err := env.WaitForEvent(ctx, ns, func(e *corev1.Event) bool {
		return e.Reason == "Started" && e.InvolvedObject.Kind == "Pod" && e.Source.Component == "kubelet"
	}); err != nil {
		t.Fatal(err)
	}
}

// Setting a new image rolls the Deployment through a new ReplicaSet to
// completion, the old one scaled to zero, with every pod on the new image.
func TestDeploymentRollsToNewImage(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t, 2*time.Minute)
	ns := env.TestNamespace(t, "rollout-new-image")
	if _, err := env.CreateDeployment(ctx, ns, "backstage", baseImage, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitForRollout(ctx, ns, "backstage"); err != nil {
		t.Fatal(err)
	}

	const next = "registry.local/backstage-portal/backend:prod-1111bbbb-1700000100"
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"backstage","image":"` + next + `"}]}}}}`
	start := time.Now()
	if _, err := env.Client.AppsV1().Deployments(ns).Patch(ctx, "backstage", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := env.WaitForRollout(ctx, ns, "backstage")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rolled to the new image in %s", time.Since(start).Round(time.Millisecond))
	if d.Spec.Template.Spec.Containers[0].Image != next {
		t.Fatalf("deployment image %s", d.Spec.Template.Spec.Containers[0].Image)
	}
	// Old pods may still be finishing deletion right after the rollout; the
	// simulator deletes them at once, so they go quickly.
	if _, err := env.WaitForPod(ctx, ns, "app.kubernetes.io/name=backstage", func(*corev1.Pod) bool {
		pods := podsOf(t, ctx, env.Client, ns, "backstage")
		if len(pods) != 2 {
			return false
		}
		for _, p := range pods {
			if p.Spec.Containers[0].Image != next || !podReady(&p) || p.DeletionTimestamp != nil {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	rss, err := env.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=backstage"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rss.Items) != 2 {
		t.Fatalf("got %d ReplicaSets, want 2 (old and new)", len(rss.Items))
	}
	for _, rs := range rss.Items {
		want := int32(0)
		if rs.Spec.Template.Spec.Containers[0].Image == next {
			want = 2
		}
		if *rs.Spec.Replicas != want {
			t.Errorf("ReplicaSet %s (%s) replicas %d, want %d", rs.Name, rs.Spec.Template.Spec.Containers[0].Image, *rs.Spec.Replicas, want)
		}
	}
}

// A private plane survives an apiserver outage: with kube-apiserver stopped
// requests fail, and after StartAPIServer the same clients and an informer
// started before the outage work again. Stop leaves no process behind.
func TestAPIServerStopStartAndCleanStop(t *testing.T) {
	localenv.SkipIfShort(t, "a Kubernetes control plane (bin/kube)")
	ctx := testContext(t, 4*time.Minute)
	env, err := kubetest.Start(ctx, kubetest.Options{Logf: t.Logf, Namespaces: []string{"outage"}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = env.Stop()
		}
	})
	if env.Context != kubetest.DefaultContext {
		t.Errorf("context %q", env.Context)
	}
	if _, err := os.Stat(env.Kubeconfig); err != nil {
		t.Fatal(err)
	}

	// An informer started before the outage must see objects made after it.
	factory := informers.NewSharedInformerFactoryWithOptions(env.Client, 0, informers.WithNamespace("outage"))
	seen := make(chan string, 16)
	if _, err := factory.Apps().V1().Deployments().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { seen <- obj.(*appsv1.Deployment).Name },
	}); err != nil {
		t.Fatal(err)
	}
	infCtx, stopInformers := context.WithCancel(ctx)
	factory.Start(infCtx.Done())
	defer func() { stopInformers(); factory.Shutdown() }()
	factory.WaitForCacheSync(ctx.Done())

	stopAt := time.Now()
	if err := env.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("apiserver stopped in %s", time.Since(stopAt).Round(time.Millisecond))
	if env.APIServerRunning() {
		t.Fatal("apiserver still running after StopAPIServer")
	}
	reqCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = env.Client.CoreV1().Namespaces().Get(reqCtx, "outage", metav1.GetOptions{})
	cancel()
	if err == nil {
		t.Fatal("request succeeded with the apiserver stopped")
	}
	t.Logf("during the outage: %v", err)
	time.Sleep(3 * time.Second) // a short outage: long enough for watches to break and retry

	start := time.Now()
	if err := env.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("apiserver back in %s", time.Since(start).Round(time.Millisecond))
	if _, err := env.CreateDeployment(ctx, "outage", "after-outage", baseImage, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitForRollout(ctx, "outage", "after-outage"); err != nil {
		t.Fatalf("controllers/scheduler/simulator did not recover: %v", err)
	}
	t.Logf("rolled out after the outage in %s", time.Since(start).Round(time.Millisecond))
	select {
	case name := <-seen:
		if name != "after-outage" {
			t.Fatalf("informer saw %q", name)
		}
	case <-ctx.Done():
		t.Fatal("informer did not reconnect after the outage")
	}

	pids := componentPIDs(t, env)
	stateDir := env.StateDir
	stopInformers()
	stopStart := time.Now()
	if err := env.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	t.Logf("stopped in %s", time.Since(stopStart).Round(time.Millisecond))
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Stop (kill -0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Errorf("state dir %s not removed: %v", stateDir, err)
	}
}

// componentPIDs finds the plane's processes by their state dir in the command
// line, so the test checks the OS, not the harness's own bookkeeping.
func componentPIDs(t *testing.T, env *kubetest.Env) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(env.StateDir)) {
			pids = append(pids, pid)
		}
	}
	if len(pids) < 4 {
		t.Fatalf("found %d component processes for %s, want 4", len(pids), env.StateDir)
	}
	return pids
}

// The worker's ServiceAccount, bound by the shipped deploy/kubernetes RBAC,
// can do what the kube activities need in the managed namespaces and is
// Forbidden everywhere else.
func TestServiceAccountRBACFromManifests(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := testContext(t, 2*time.Minute)

	objs := decodeManifests(t, "namespace.yaml", "serviceaccount.yaml", "rbac.yaml")
	var roles int
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Namespace:
			if err := env.CreateNamespace(ctx, o.Name); err != nil {
				t.Fatal(err)
			}
		case *corev1.ServiceAccount:
			if _, err := env.Client.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		case *rbacv1.Role:
			roles++
			if err := env.CreateNamespace(ctx, o.Namespace); err != nil {
				t.Fatal(err)
			}
			if _, err := env.Client.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		case *rbacv1.RoleBinding:
			if _, err := env.Client.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected manifest object %T", obj)
		}
	}
	if roles != 3 {
		t.Fatalf("rbac.yaml has %d Roles, want one per managed namespace (2) and one for the worker's own Secrets", roles)
	}
	workerSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "portal-db"}, Data: map[string][]byte{"password": []byte("x")}}
	if _, err := env.Client.CoreV1().Secrets("stagehand").Create(ctx, workerSecret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, ns := range []string{"backstage-sandbox", "backstage-prod"} {
		if _, err := env.CreateDeployment(ctx, ns, "backstage", baseImage, 2); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	unmanaged := env.TestNamespace(t, "unmanaged")
	if _, err := env.CreateDeployment(ctx, unmanaged, "backstage", baseImage, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitForRollout(ctx, "backstage-sandbox", "backstage"); err != nil {
		t.Fatal(err)
	}

	sa, _, err := env.ServiceAccountClient(ctx, "stagehand", "stagehand-worker")
	if err != nil {
		t.Fatal(err)
	}
	const ns = "backstage-sandbox"
	allowed := map[string]func() error{
		"get deployment": func() error {
			_, err := sa.AppsV1().Deployments(ns).Get(ctx, "backstage", metav1.GetOptions{})
			return err
		},
		"patch deployment image": func() error {
			patch := `{"spec":{"template":{"spec":{"containers":[{"name":"backstage","image":"` + baseImage + `"}]}}}}`
			_, err := sa.AppsV1().Deployments(ns).Patch(ctx, "backstage", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
			return err
		},
		"watch deployments": func() error {
			w, err := sa.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		},
		"list replicasets": func() error {
			_, err := sa.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"list pods": func() error {
			_, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"list events": func() error {
			_, err := sa.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"list events in prod": func() error {
			_, err := sa.CoreV1().Events("backstage-prod").List(ctx, metav1.ListOptions{})
			return err
		},
		"get a Secret in the worker's namespace (secret:NAME/KEY)": func() error {
			_, err := sa.CoreV1().Secrets("stagehand").Get(ctx, "portal-db", metav1.GetOptions{})
			return err
		},
	}
	for name, call := range allowed {
		if err := call(); err != nil {
			t.Errorf("%s: %v, want allowed", name, err)
		}
	}
	// pods/log is allowed by RBAC; with no real kubelet behind the node the
	// apiserver then fails to reach it, which is not a Forbidden.
	pods := podsOf(t, ctx, env.Client, ns, "backstage")
	if len(pods) > 0 {
		logCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := sa.CoreV1().Pods(ns).GetLogs(pods[0].Name, &corev1.PodLogOptions{}).Do(logCtx).Raw()
		cancel()
		if apierrors.IsForbidden(err) {
			t.Errorf("pods/log: %v, want allowed by RBAC", err)
		}
	}

	forbidden := map[string]func() error{
		"delete deployment": func() error {
			return sa.AppsV1().Deployments(ns).Delete(ctx, "backstage", metav1.DeleteOptions{})
		},
		"create deployment": func() error {
			_, err := sa.AppsV1().Deployments(ns).Create(ctx, kubetest.BackstageDeployment(ns, "other", baseImage, 1), metav1.CreateOptions{})
			return err
		},
		"delete pod": func() error {
			return sa.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		},
		"list secrets": func() error {
			_, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"get a Secret in a managed namespace": func() error {
			_, err := sa.CoreV1().Secrets(ns).Get(ctx, "portal-db", metav1.GetOptions{})
			return err
		},
		"list the worker's Secrets": func() error {
			_, err := sa.CoreV1().Secrets("stagehand").List(ctx, metav1.ListOptions{})
			return err
		},
		"get deployment outside managed namespaces": func() error {
			_, err := sa.AppsV1().Deployments(unmanaged).Get(ctx, "backstage", metav1.GetOptions{})
			return err
		},
		"list pods cluster-wide": func() error {
			_, err := sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			return err
		},
		"rollback subresource": func() error {
			return sa.AppsV1().RESTClient().Post().Namespace(ns).Resource("deployments").Name("backstage").SubResource("rollback").Body([]byte(`{}`)).Do(ctx).Error()
		},
	}
	for name, call := range forbidden {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", name, err)
		}
	}
}

// decodeManifests reads YAML documents from deploy/kubernetes.
func decodeManifests(t *testing.T, files ...string) []runtime.Object {
	t.Helper()
	dir := filepath.Join("..", "..", "deploy", "kubernetes")
	var objs []runtime.Object
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

// stripComments drops comment lines, so a document of only comments is empty.
func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
