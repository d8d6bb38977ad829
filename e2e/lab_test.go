package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/stagehand-dev/stagehand/activities/flux"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/patchlab"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

const (
	initialImage = patchlab.ImageRepo + ":prod-aaaaaaaa-1763600000"
	pr           = 42
)

var labSeq atomic.Int64

// lab is one test's world: sandbox and production namespaces with a
// Backstage Deployment, a git remote with PR branch pr-42 and the CI + Flux
// hook, and a worker configuration pointing at all of it.
type lab struct {
	t         *testing.T
	sandbox   string
	prod      string
	remote    *patchlab.Remote
	taskQueue string
	cfg       config.Config
	prImage   string
}

type labOption func(*patchlab.Lab)

func newLab(t *testing.T, opts ...labOption) *lab {
	t.Helper()
	localenv.SkipIfShort(t, systemsNeeded)
	ctx := context.Background()
	n := labSeq.Add(1)
	l := &lab{t: t, sandbox: fmt.Sprintf("sandbox-%d", n), prod: fmt.Sprintf("prod-%d", n), taskQueue: fmt.Sprintf("e2e-%d-%d", n, time.Now().UnixNano())}
	for _, ns := range []string{l.sandbox, l.prod} {
		// minReadySeconds keeps a rollout in progress long enough to be
		// observed (and interrupted) mid-watch, as real pods starting do.
		_, err := kube.CreateDeployment(ctx, ns, "backstage", initialImage, 2, func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = 3 })
		require.NoError(t, err)
	}
	for _, ns := range []string{l.sandbox, l.prod} {
		_, err := kube.WaitForRollout(ctx, ns, "backstage")
		require.NoError(t, err)
	}
	createPolicy(t, l.prod, initialImage)

	remote, err := patchlab.NewRemote(t.TempDir(), pr)
	require.NoError(t, err)
	l.remote = remote
	require.NoError(t, remote.InstallCIHook(patchlab.CIHook{
		Kubeconfig: kube.Kubeconfig, Context: kube.Context, Namespace: l.prod, Deployment: "backstage", Container: "backstage",
		ImagePolicy: "backstage", Delay: 3 * time.Second,
	}))
	l.prImage = patchlab.PRImage(patchlab.ImageRepo, pr, remote.PRHead, time.Now())

	spec := patchlab.Lab{
		TemporalAddress: temporalSrv.Address, Namespace: temporalSrv.Namespace, TaskQueue: l.taskQueue,
		Kubeconfig: kube.Kubeconfig, Context: kube.Context,
		SandboxNamespace: l.sandbox, ProdNamespace: l.prod, Deployment: "backstage", Container: "backstage",
		SandboxURL: backstage.URL, ProdURL: backstage.URL, ImagePolicy: "backstage",
		Remote: remote.Dir, Approvers: []string{"bob", "carol"}, SmokeChecks: patchlab.DefaultSmokeChecks(),
	}
	for _, o := range opts {
		o(&spec)
	}
	l.cfg = spec.WorkerConfig()
	return l
}

var policyGVR = flux.ImagePolicyResource

func dyn(t *testing.T) dynamic.Interface {
	d, err := dynamic.NewForConfig(kube.RESTConfig)
	require.NoError(t, err)
	return d
}

func installCRD(ctx context.Context) error {
	data, err := os.ReadFile("../deploy/flux/imagepolicy-crd.yaml")
	if err != nil {
		return err
	}
	var obj unstructured.Unstructured
	if err := yaml.Unmarshal(data, &obj.Object); err != nil {
		return err
	}
	d, err := dynamic.NewForConfig(kube.RESTConfig)
	if err != nil {
		return err
	}
	crds := d.Resource(crdGVR)
	if _, err := crds.Apply(ctx, obj.GetName(), &obj, metav1.ApplyOptions{FieldManager: "e2e", Force: true}); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := d.Resource(policyGVR).Namespace("default").List(ctx, metav1.ListOptions{}); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("ImagePolicy CRD not served after a minute")
}

func createPolicy(t *testing.T, ns, image string) {
	t.Helper()
	ctx := context.Background()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImagePolicy",
		"metadata": map[string]any{"name": "backstage", "namespace": ns},
		"spec":     map[string]any{"imageRepositoryRef": map[string]any{"name": "backstage"}, "filterTags": map[string]any{"pattern": `^prod-[a-f0-9]+-(?P<ts>[0-9]+)`, "extract": "$ts"}, "policy": map[string]any{"numerical": map[string]any{"order": "asc"}}},
	}}
	_, err := dyn(t).Resource(policyGVR).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{})
	require.NoError(t, err)
	patch := fmt.Sprintf(`{"status":{"latestImage":%q}}`, image)
	_, err = dyn(t).Resource(policyGVR).Namespace(ns).Patch(ctx, "backstage", types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	require.NoError(t, err)
}

// startWorker runs the worker in-process until the test ends.
func (l *lab) startWorker() {
	l.t.Helper()
	a, err := app.New(context.Background(), l.cfg, app.Options{Client: temporalSrv.Client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(l.t, err)
	require.NoError(l.t, a.Start())
	l.t.Cleanup(a.Stop)
}

// workerProcess is the worker as a separate OS process.
type workerProcess struct {
	cmd *exec.Cmd
	log *os.File
}

func (l *lab) startWorkerProcess() *workerProcess {
	l.t.Helper()
	return startWorkerBinary(l.t, l.cfg)
}

// scenario is one end-to-end run of a built-in runbook; id is its workflow id.
type scenario struct {
	name string
	fn   func(t *testing.T, id string)
}

// runScenarios runs the scenarios as parallel subtests, each under the
// workflow id <runbook>-e2e-<unix>-<name>, and then audit, which checks
// what all of them left in visibility.
func runScenarios(t *testing.T, runbook string, scenarios []scenario, audit func(t *testing.T, prefix string, ids map[string]string)) {
	localenv.SkipIfShort(t, systemsNeeded)
	prefix := fmt.Sprintf("%s-e2e-%d", runbook, time.Now().Unix())
	ids := map[string]string{}
	t.Run("scenarios", func(t *testing.T) {
		for _, sc := range scenarios {
			id := prefix + "-" + sc.name
			ids[sc.name] = id
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				sc.fn(t, id)
			})
		}
	})
	t.Run("audit", func(t *testing.T) { audit(t, prefix, ids) })
}

// startWorkerBinary runs the worker binary with cfg until the test ends
// (or a kill).
func startWorkerBinary(t *testing.T, cfg config.Config) *workerProcess {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "worker.yaml")
	require.NoError(t, patchlab.WriteConfig(cfg, cfgPath))
	logf, err := os.CreateTemp(dir, "worker-*.log")
	require.NoError(t, err)
	cmd := exec.Command(workerBin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	w := &workerProcess{cmd: cmd, log: logf}
	t.Cleanup(func() { w.kill() })
	return w
}

// kill sends SIGKILL: no graceful shutdown, no chance to report anything.
func (w *workerProcess) kill() {
	if w.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	_ = w.cmd.Wait()
}

func (l *lab) start(id string, params map[string]any) client.WorkflowRun {
	l.t.Helper()
	p := map[string]any{"image": l.prImage, "pr": pr, "soak": "2s", "smokeTimeout": "30s", "prodTimeout": "2m"}
	for k, v := range params {
		p[k] = v
	}
	run, err := temporalSrv.Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: id, TaskQueue: l.taskQueue},
		workflows.WorkflowType, workflows.RunInput{Runbook: "patch", Params: p, RequestedBy: "alice"})
	require.NoError(l.t, err)
	return run
}

func status(t *testing.T, id string) (workflows.Status, error) {
	var st workflows.Status
	v, err := temporalSrv.Client.QueryWorkflow(context.Background(), id, "", workflows.StatusQuery)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

// waitFor polls the status query until cond holds (the CLI's watch does the
// same; workflow code never polls).
func waitFor(t *testing.T, id string, timeout time.Duration, what string, cond func(workflows.Status) bool) workflows.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last workflows.Status
	for time.Now().Before(deadline) {
		st, err := status(t, id)
		if err == nil {
			last = st
			if cond(st) {
				return st
			}
			if st.State.Terminal() {
				t.Fatalf("run %s ended (%s) before %s: %s", id, st.State, what, st.Error)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("run %s: %s not reached within %s (state %s, current step %q)", id, what, timeout, last.State, last.CurrentStep)
	return last
}

func (l *lab) deploymentImage(ns string) string {
	d, err := kube.Client.AppsV1().Deployments(ns).Get(context.Background(), "backstage", metav1.GetOptions{})
	require.NoError(l.t, err)
	return d.Spec.Template.Spec.Containers[0].Image
}

func (l *lab) merges() int {
	n, err := l.remote.Merges()
	require.NoError(l.t, err)
	return n
}

func signal(t *testing.T, id, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := temporalSrv.Command(ctx, "workflow", "signal", "--workflow-id", id, "--name", workflows.ApprovalSignal, "--input", payload).CombinedOutput()
	require.NoError(t, err, "temporal workflow signal: %s", out)
}

func stepState(st workflows.Status, id string) workflows.StepState {
	for _, s := range st.Steps {
		if s.ID == id {
			return s.State
		}
	}
	return ""
}

func hasPrefixTag(image, prefix string) bool { return strings.HasPrefix(flux.Tag(image), prefix) }

// temporalCLIStagehand runs the stagehand CLI against the test server.
func temporalCLIStagehand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, cliBin, append([]string{"--address", temporalSrv.Address, "--namespace", temporalSrv.Namespace}, args...)...)
	return cmd
}
