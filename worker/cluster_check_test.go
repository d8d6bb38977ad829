package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/stagehand-dev/stagehand/activities/kube"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/internal/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// applyManifests server-side applies every document of deploy/kubernetes's
// kustomization (what `kubectl apply -k` applies), so the real apiserver
// validates them, and returns them.
func applyManifests(t *testing.T, ctx context.Context, env *kubetest.Env) []*unstructured.Unstructured {
	t.Helper()
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	data, err := os.ReadFile(filepath.Join(manifestsDir, "kustomization.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &kust))
	return applyFiles(t, ctx, env, kust.Resources...)
}

var manifestsDir = filepath.Join("..", "deploy", "kubernetes")

// applyFiles server-side applies the files (relative to deploy/kubernetes).
func applyFiles(t *testing.T, ctx context.Context, env *kubetest.Env, files ...string) []*unstructured.Unstructured {
	t.Helper()
	dir := manifestsDir
	cluster, err := kube.NewClusterFromConfig("admin", env.RESTConfig)
	require.NoError(t, err)
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, f)
			obj := &unstructured.Unstructured{}
			if err := utilyaml.Unmarshal(doc, &obj.Object); err != nil || len(obj.Object) == 0 {
				require.NoError(t, err, f)
				continue
			}
			if ns := obj.GetNamespace(); ns != "" {
				require.NoError(t, env.CreateNamespace(ctx, ns))
			}
			gvk := obj.GroupVersionKind()
			mapping, err := cluster.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			require.NoError(t, err, "%s: %s", f, gvk)
			_, err = cluster.Dynamic.Resource(mapping.Resource).Namespace(obj.GetNamespace()).
				Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: "stagehand-test", Force: true})
			require.NoError(t, err, "apply %s %s/%s from %s", gvk.Kind, obj.GetNamespace(), obj.GetName(), f)
			objs = append(objs, obj)
		}
	}
	return objs
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as the
// ServiceAccount with a TokenRequest token, pointing at server.
func serviceAccountKubeconfig(t *testing.T, ctx context.Context, env *kubetest.Env, server string) string {
	t.Helper()
	expiry := int64(3600)
	tr, err := env.Client.CoreV1().ServiceAccounts("stagehand").CreateToken(ctx, "stagehand-worker",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	require.NoError(t, err)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["plane"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: env.RESTConfig.CAData}
	cfg.AuthInfos["worker"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["worker"] = &clientcmdapi.Context{Cluster: "plane", AuthInfo: "worker"}
	cfg.CurrentContext = "worker"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

// TestCheckContactsClustersWithShippedRBAC applies deploy/kubernetes to a
// real control plane and runs `--check` as the worker's ServiceAccount:
// each environment's cluster is reached (version, namespace, Deployment)
// and every permission the built-in runbooks' kube steps need is reviewed
// (SelfSubjectAccessReview); the sandbox may write, production is read-only
// and says which steps would be refused. An environment whose API server
// does not answer fails the check by name.
func TestCheckContactsClustersWithShippedRBAC(t *testing.T) {
	env := kubetest.Shared(t)
	srv := devserver.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	objs := applyManifests(t, ctx, env)

	// The manifests themselves: the work dir is a writable emptyDir under a
	// read-only root filesystem, and the NetworkPolicy covers the worker.
	var workDir string
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()] = true
		if o.GetKind() == "ConfigMap" {
			data, _, _ := unstructured.NestedStringMap(o.Object, "data")
			var c struct {
				WorkDir string `yaml:"workDir"`
				Metrics struct {
					Listen string `yaml:"listen"`
				} `yaml:"metrics"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(data["config.yaml"]), &c))
			workDir = c.WorkDir
			assert.Equal(t, ":9090", c.Metrics.Listen)
		}
	}
	assert.True(t, kinds["NetworkPolicy"], "kustomization applies a NetworkPolicy")
	require.NotEmpty(t, workDir, "configmap sets workDir")
	d, err := env.Client.AppsV1().Deployments("stagehand").Get(ctx, "stagehand-worker", metav1.GetOptions{})
	require.NoError(t, err)
	c := d.Spec.Template.Spec.Containers[0]
	require.NotNil(t, c.SecurityContext)
	assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	volumes := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	var workMounted bool
	for _, m := range c.VolumeMounts {
		if m.MountPath == workDir {
			workMounted = volumes[m.Name].EmptyDir != nil && !m.ReadOnly
		}
	}
	assert.True(t, workMounted, "workDir %s is a writable emptyDir mount", workDir)
	np, err := env.Client.NetworkingV1().NetworkPolicies("stagehand").Get(ctx, "stagehand-worker", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "stagehand-worker", np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"])
	assert.Len(t, np.Spec.PolicyTypes, 2, "ingress and egress both restricted")

	for _, ns := range []string{"backstage-sandbox", "backstage-prod"} {
		_, err := env.CreateDeployment(ctx, ns, "backstage", "registry.local/backstage-portal/backend:prod-0000aaaa-1700000000", 1)
		if err != nil && !strings.Contains(err.Error(), "already exists") {
			require.NoError(t, err)
		}
	}
	kubeconfig := serviceAccountKubeconfig(t, ctx, env, env.Server)
	cfgPath := filepath.Join(t.TempDir(), "worker.yaml")
	writeConfig := func(prodKubeconfig string) {
		body := fmt.Sprintf(`workDir: %s
environments:
  sandbox: {kubeconfig: %s, namespace: backstage-sandbox, deployment: backstage}
  prod: {kubeconfig: %s, namespace: backstage-prod, deployment: backstage, imagePolicy: backstage-prod/backstage}
`, t.TempDir(), kubeconfig, prodKubeconfig)
		require.NoError(t, os.WriteFile(cfgPath, []byte(body), 0o600))
	}
	writeConfig(kubeconfig)
	code, out := runReturns(t, "--config", cfgPath, "--address", srv.Address, "--check")
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `cluster sandbox: OK, Kubernetes v1\.\d+.*, namespace backstage-sandbox \(not readable cluster-wide\), deployment backstage`, out)
	assert.Regexp(t, `cluster prod: OK, Kubernetes v1\.\d+`, out)
	sandboxPerms := linesAfter(out, "stagehand-worker: cluster sandbox permissions: ")
	require.Len(t, sandboxPerms, 1, out)
	assert.Regexp(t, `^OK, \d+ permissions of flux.waitImage, kube.checkPods, kube.events, kube.getImage, kube.rollback, kube.scale, kube.setImage, kube.waitRollout allowed$`, sandboxPerms[0])
	prodPerms := linesAfter(out, "stagehand-worker: cluster prod permissions: ")
	require.Len(t, prodPerms, 1, out)
	assert.Contains(t, prodPerms[0], "read-only: may not patch deployments.apps in backstage-prod, so kube.rollback, kube.scale, kube.setImage will be Forbidden here")

	// The optional grant for direct upgrades makes production writable.
	applyFiles(t, ctx, env, filepath.Join("optional", "production-write.yaml"))
	t.Cleanup(func() {
		_ = env.Client.RbacV1().RoleBindings("backstage-prod").Delete(context.Background(), "stagehand-worker-write", metav1.DeleteOptions{})
	})
	code, out = runReturns(t, "--config", cfgPath, "--address", srv.Address, "--check")
	require.Equal(t, 0, code, out)
	prodPerms = linesAfter(out, "stagehand-worker: cluster prod permissions: ")
	require.Len(t, prodPerms, 1, out)
	assert.Regexp(t, `^OK, \d+ permissions of .* allowed$`, prodPerms[0])

	// An API server that does not answer: a port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "https://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	writeConfig(serviceAccountKubeconfig(t, ctx, env, dead))
	code, out = runReturns(t, "--config", cfgPath, "--address", srv.Address, "--check")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "stagehand-worker: cluster prod: FAILED: server version: ")
	assert.Contains(t, out, "connection refused")
	assert.Contains(t, out, "cluster sandbox: OK")
	assert.NotContains(t, out, "cluster prod permissions")
}
