package flux_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/flux"
	"github.com/stagehand-dev/stagehand/activities/kube"
	"github.com/stagehand-dev/stagehand/internal/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

func TestTag(t *testing.T) {
	for in, want := range map[string]string{
		"registry.local:5000/backstage-portal/backend:prod-0123abcd-1763700000": "prod-0123abcd-1763700000",
		"backend:pr-1@sha256:abc":     "pr-1",
		"registry.local:5000/backend": "",
	} {
		assert.Equal(t, want, flux.Tag(in), in)
	}
}

var nsSeq atomic.Int64

type fixture struct {
	env  *kubetest.Env
	dyn  dynamic.Interface
	acts *flux.Activities
	ns   string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	env := kubetest.Shared(t)
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	require.NoError(t, err)
	installCRD(t, dyn)
	ns := fmt.Sprintf("prod-%d", nsSeq.Add(1))
	require.NoError(t, env.CreateNamespace(ctx, ns))
	cluster, err := kube.NewClusterFromKubeconfig("prod", env.Kubeconfig, env.Context)
	require.NoError(t, err)
	acts := &flux.Activities{Kube: &kube.Activities{Clusters: map[string]*kube.Cluster{"prod": cluster}}, HeartbeatInterval: 200 * time.Millisecond}
	return &fixture{env: env, dyn: dyn, acts: acts, ns: ns}
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func installCRD(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	data, err := os.ReadFile("../../deploy/flux/imagepolicy-crd.yaml")
	require.NoError(t, err)
	var obj unstructured.Unstructured
	require.NoError(t, yaml.Unmarshal(data, &obj.Object))
	ctx := context.Background()
	_, err = dyn.Resource(crdGVR).Apply(ctx, obj.GetName(), &obj, metav1.ApplyOptions{FieldManager: "test", Force: true})
	require.NoError(t, err)
	// The CRD is served once Established; creating a policy proves it.
	require.Eventually(t, func() bool {
		_, err := dyn.Resource(flux.ImagePolicyResource).Namespace("default").List(ctx, metav1.ListOptions{})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond)
}

func (f *fixture) createPolicy(t *testing.T, name, latest string) {
	t.Helper()
	ctx := context.Background()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImagePolicy",
		"metadata": map[string]any{"name": name, "namespace": f.ns},
		"spec":     map[string]any{"imageRepositoryRef": map[string]any{"name": "backend"}, "filterTags": map[string]any{"pattern": "^prod-[a-f0-9]+-(?P<ts>[0-9]+)", "extract": "$ts"}, "policy": map[string]any{"numerical": map[string]any{"order": "asc"}}},
	}}
	_, err := f.dyn.Resource(flux.ImagePolicyResource).Namespace(f.ns).Create(ctx, obj, metav1.CreateOptions{})
	require.NoError(t, err)
	f.setPolicyImage(t, name, latest)
}

func (f *fixture) setPolicyImage(t *testing.T, name, image string) {
	t.Helper()
	require.NoError(t, f.patchPolicyImage(name, image))
}

func (f *fixture) patchPolicyImage(name, image string) error {
	patch := fmt.Sprintf(`{"status":{"latestImage":%q,"conditions":[{"type":"Ready","status":"True","reason":"Succeeded","message":"Latest image tag resolved to %s"}]}}`, image, flux.Tag(image))
	_, err := f.dyn.Resource(flux.ImagePolicyResource).Namespace(f.ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	return err
}

func (f *fixture) patchImage(image string) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"backstage","image":%q}]}}}}`, image)
	_, err := f.env.Client.AppsV1().Deployments(f.ns).Patch(context.Background(), "backstage", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// waitBeat waits for a heartbeat containing want.
func waitBeat(beats <-chan string, want string) error {
	timeout := time.After(20 * time.Second)
	for {
		select {
		case msg := <-beats:
			if strings.Contains(msg, want) {
				return nil
			}
		case <-timeout:
			return fmt.Errorf("no heartbeat mentioning %q", want)
		}
	}
}

const repo = "registry.local/backstage-portal/backend"

func TestWaitImageMatchesMergeCommit(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	_, err := f.env.CreateDeployment(ctx, f.ns, "backstage", repo+":prod-aaaaaaaa-1763700000", 1)
	require.NoError(t, err)
	f.createPolicy(t, "backend", repo+":prod-aaaaaaaa-1763700000")
	merge := "0123abcd9999888877776666555544443333aaaa"

	// The wait runs in the background. Once it reports (first heartbeat)
	// that production runs the old image, production moves to a newer prod
	// tag from some other commit: the wait must still be waiting a second
	// later (a window, not a sleep: the assertion is that nothing happens).
	// Then the merge's image arrives and the wait returns it.
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	beats := make(chan string, 100)
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
		var msg string
		if d.HasValues() && d.Get(&msg) == nil {
			select {
			case beats <- msg:
			default:
			}
		}
	})
	env.RegisterActivity(f.acts.WaitImage)
	type result struct {
		val converter.EncodedValue
		err error
	}
	done := make(chan result, 1)
	go func() {
		val, err := env.ExecuteActivity(f.acts.WaitImage, flux.WaitImageInput{
			Cluster: "prod", Namespace: f.ns, Deployment: "backstage", Container: "backstage",
			CommitSHA: merge, ImagePolicy: "backend", Timeout: "30s",
		})
		done <- result{val, err}
	}()
	require.NoError(t, waitBeat(beats, "runs "+repo+":prod-aaaaaaaa-"))
	require.NoError(t, f.patchImage(repo+":prod-bbbbbbbb-1763700100"))
	select {
	case r := <-done:
		t.Fatalf("the wait ended on another commit's image: %v", r.err)
	case <-time.After(time.Second):
	}
	require.NoError(t, f.patchPolicyImage("backend", repo+":prod-0123abcd-1763700200"))
	require.NoError(t, f.patchImage(repo+":prod-0123abcd-1763700200"))
	r := <-done
	val, err := r.val, r.err
	require.NoError(t, err)
	var out flux.WaitImageOutput
	require.NoError(t, val.Get(&out))
	assert.Equal(t, "prod-0123abcd-1763700200", out.Tag)
	assert.Equal(t, repo+":prod-0123abcd-1763700200", out.PolicyImage)
}

func TestWaitImageTimeoutGivesEvidence(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	_, err := f.env.CreateDeployment(ctx, f.ns, "backstage", repo+":prod-aaaaaaaa-1763700000", 1)
	require.NoError(t, err)
	f.createPolicy(t, "backend", repo+":prod-aaaaaaaa-1763700000")
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(f.acts.WaitImage)
	_, err = env.ExecuteActivity(f.acts.WaitImage, flux.WaitImageInput{
		Cluster: "prod", Namespace: f.ns, Deployment: "backstage", CommitSHA: "0123abcd", ImagePolicy: "backend", Timeout: "1s",
	})
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr))
	assert.Equal(t, activities.ErrProdImageNotRolled, appErr.Type())
	for _, want := range []string{"want tag prod-0123abcd-*", "runs " + repo + ":prod-aaaaaaaa-1763700000", "ImagePolicy " + f.ns + "/backend latest image", "Production was not changed", "flux get image policy backend"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestWaitImageBadInput(t *testing.T) {
	f := setup(t)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(f.acts.WaitImage)
	_, err := env.ExecuteActivity(f.acts.WaitImage, flux.WaitImageInput{Cluster: "prod", Namespace: f.ns, Deployment: "backstage", CommitSHA: "xyz"})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), `commitSha "xyz"`), err.Error())
	_, err = env.ExecuteActivity(f.acts.WaitImage, flux.WaitImageInput{Cluster: "prod", Namespace: f.ns, Deployment: "missing", CommitSHA: "0123abcd"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not found")
}
