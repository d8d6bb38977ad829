// Command upgrade-ci is the upgrade lab's stand-in for CI and Flux on the
// portal's main branch (internal/upgradelab installs it as the remote's
// post-receive hook, detached): for a new main commit it really builds the
// portal's image from that commit and pushes it as
// <repo>:prod-<sha8>-<unix seconds> (the conventions' tag), then does what
// Flux's image automation would — sets the ImagePolicy's
// status.latestImage and the production Deployment's image.
//
// Unlike patchlab's hook (a tag name only), the image is real, because the
// upgrade lab's pods run the Backstage version an image's package.json
// names (internal/portalsim).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/client"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagehand-dev/stagehand/activities/flux"
	"github.com/stagehand-dev/stagehand/internal/patchlab"
	"github.com/stagehand-dev/stagehand/internal/upgradelab"
)

type options struct {
	gitDir, sha, imageRepo, dockerHost       string
	kubeconfig, kubeContext                  string
	namespace, deployment, container, policy string
	delay                                    time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.gitDir, "git-dir", "", "the portal's bare repository")
	flag.StringVar(&o.sha, "sha", "", "the main commit to build")
	flag.StringVar(&o.imageRepo, "image-repo", "", "registry/repo to push to")
	flag.StringVar(&o.dockerHost, "docker-host", "", "the image engine (unix://...)")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster")
	flag.StringVar(&o.kubeContext, "context", "", "kubeconfig context")
	flag.StringVar(&o.namespace, "namespace", "", "production's namespace")
	flag.StringVar(&o.deployment, "deployment", "backstage", "production's Deployment")
	flag.StringVar(&o.container, "container", "backstage", "its container")
	flag.StringVar(&o.policy, "image-policy", "", "the Flux ImagePolicy to update (optional)")
	flag.DurationVar(&o.delay, "delay", time.Second, "simulated CI queue time before the build")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "%s upgrade-ci: %v\n", time.Now().UTC().Format(time.RFC3339), err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.gitDir == "" || o.sha == "" || o.imageRepo == "" || o.dockerHost == "" || o.kubeconfig == "" || o.namespace == "" {
		return fmt.Errorf("--git-dir, --sha, --image-repo, --docker-host, --kubeconfig and --namespace are required")
	}
	// A post-receive hook runs with GIT_DIR (and a quarantine path) set for
	// the remote; inherited, they would point the clone below back at the
	// bare repository.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "GIT_") {
			_ = os.Unsetenv(name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	time.Sleep(o.delay)

	work, err := os.MkdirTemp("", "upgrade-ci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "portal")
	if _, err := patchlab.Git(work, "clone", "--quiet", o.gitDir, tree); err != nil {
		return err
	}
	if _, err := patchlab.Git(tree, "checkout", "--quiet", o.sha); err != nil {
		return err
	}
	image := fmt.Sprintf("%s:prod-%s-%d", o.imageRepo, o.sha[:8], time.Now().Unix())
	fmt.Printf("%s ci-sim: main moved to %s; building %s\n", time.Now().UTC().Format(time.RFC3339), o.sha[:8], image)
	docker, err := client.NewClientWithOpts(client.WithHost(o.dockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer docker.Close()
	digest, err := upgradelab.BuildAndPush(ctx, docker, tree, image)
	if err != nil {
		return err
	}
	fmt.Printf("%s ci-sim: pushed %s (%s)\n", time.Now().UTC().Format(time.RFC3339), image, digest)

	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: o.kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: o.kubeContext}).ClientConfig()
	if err != nil {
		return err
	}
	if o.policy != "" {
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return err
		}
		now := time.Now().UTC().Format(time.RFC3339)
		patch := fmt.Sprintf(`{"status":{"latestImage":%q,"conditions":[{"type":"Ready","status":"True","reason":"Succeeded","message":"Latest image tag resolved","lastTransitionTime":%q}]}}`, image, now)
		if _, err := dyn.Resource(flux.ImagePolicyResource).Namespace(o.namespace).Patch(ctx, o.policy, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
			return fmt.Errorf("update ImagePolicy %s: %w", o.policy, err)
		}
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":%q}]}}}}`, o.container, image)
	if _, err := kube.AppsV1().Deployments(o.namespace).Patch(ctx, o.deployment, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("set image on %s/%s: %w", o.namespace, o.deployment, err)
	}
	fmt.Printf("%s flux-sim: rolled %s to %s/%s\n", time.Now().UTC().Format(time.RFC3339), image, o.namespace, o.deployment)
	return nil
}
