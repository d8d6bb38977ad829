package app

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	"github.com/stagehand-dev/stagehand/activities/kube"
	"github.com/stagehand-dev/stagehand/runbooks"
)

// kubeAccess is one permission a step type needs in the namespace it acts on.
type kubeAccess struct {
	Group, Resource, Subresource string
	Verb                         string
	// Write marks what changes the cluster; an environment may deliberately
	// lack it (production deployed by GitOps).
	Write bool
}

func (k kubeAccess) String() string {
	r := k.Resource
	if k.Subresource != "" {
		r += "/" + k.Subresource
	}
	if k.Group != "" {
		r += "." + k.Group
	}
	return k.Verb + " " + r
}

func reads(group, resource string, verbs ...string) []kubeAccess {
	out := make([]kubeAccess, 0, len(verbs))
	for _, v := range verbs {
		out = append(out, kubeAccess{Group: group, Resource: resource, Verb: v})
	}
	return out
}

// kubeStepAccess is what each Kubernetes step type does in its namespace,
// read from activities/kube and activities/flux: waiting steps list and
// watch Deployments, ReplicaSets and Pods and read a crashing container's
// log; writers patch the Deployment (image, rollback, restart and scale are
// all patches). kube.apply writes whatever its manifests hold, which only a
// run knows, so it is not checked here.
var kubeStepAccess = func() map[string][]kubeAccess {
	deployRead := reads("apps", "deployments", "get", "list", "watch")
	rsRead := reads("apps", "replicasets", "list", "watch")
	podRead := append(reads("", "pods", "list", "watch"), kubeAccess{Resource: "pods", Subresource: "log", Verb: "get"})
	wait := slices.Concat(deployRead, rsRead, podRead)
	patch := kubeAccess{Group: "apps", Resource: "deployments", Verb: "patch", Write: true}
	return map[string][]kubeAccess{
		"kube.getImage":    reads("apps", "deployments", "get"),
		"kube.setImage":    {{Group: "apps", Resource: "deployments", Verb: "get"}, patch},
		"kube.waitRollout": wait,
		"kube.checkPods":   wait,
		"kube.events":      slices.Concat(reads("apps", "deployments", "get"), reads("apps", "replicasets", "list"), reads("", "events", "list")),
		"kube.rollback":    append(slices.Clone(wait), patch),
		"kube.restart":     append(slices.Clone(wait), patch),
		"kube.scale":       append(slices.Clone(wait), patch),
		"flux.waitImage":   slices.Concat(deployRead, reads("image.toolkit.fluxcd.io", "imagepolicies", "get", "list", "watch")),
	}
}()

// kubeStepTypes lists the Kubernetes step types the loaded runbooks use
// (steps, parallel groups and onFailure), sorted.
func (a *App) kubeStepTypes() []string {
	seen := map[string]bool{}
	var walk func([]runbooks.Step)
	walk = func(steps []runbooks.Step) {
		for _, s := range steps {
			if _, ok := kubeStepAccess[s.Uses]; ok {
				seen[s.Uses] = true
			}
			walk(s.Parallel)
		}
	}
	for _, name := range a.Library.Names() {
		src, err := a.Library.Source(name)
		if err != nil {
			continue
		}
		// The library parsed every source when it loaded.
		rb, err := runbooks.Parse(src.File, src.Data, a.Catalogue)
		if err != nil {
			continue
		}
		walk(rb.Steps)
		walk(rb.OnFailure)
	}
	return slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	})
}

// checkClusters contacts every environment's cluster as the worker's
// identity: the server's version, the namespace and Deployment, and a
// SelfSubjectAccessReview for each permission the loaded runbooks' kube
// steps need there. Missing reads fail the check; missing writes are
// reported (a read-only production, deployed by GitOps, is intended), with
// the step types that would be refused.
func (a *App) checkClusters(ctx context.Context, timeout time.Duration) []BackendCheck {
	var out []BackendCheck
	stepTypes := a.kubeStepTypes()
	for _, name := range a.Config.EnvironmentNames() {
		env := a.Config.Environments[name]
		if !env.InCluster && env.Kubeconfig == "" && env.Context == "" {
			continue
		}
		what := "cluster " + name
		c := a.Kube.Clusters[name]
		if c == nil {
			out = append(out, BackendCheck{What: what, Err: fmt.Errorf("no client: kubeconfig %s is missing", a.Config.ResolvePath(env.Kubeconfig))})
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		detail, err := checkClusterReach(cctx, c, env.Namespace, env.Deployment)
		out = append(out, BackendCheck{What: what, Err: err, Detail: detail})
		if err == nil && env.Namespace != "" && len(stepTypes) > 0 {
			policyNS := env.Namespace
			if ns, _, ok := strings.Cut(env.ImagePolicy, "/"); ok {
				policyNS = ns
			}
			detail, err := checkClusterAccess(cctx, c, env.Namespace, policyNS, stepTypes)
			out = append(out, BackendCheck{What: what + " permissions", Err: err, Detail: detail})
		}
		cancel()
	}
	return out
}

// checkClusterReach asks for the server version (reachable, credentials
// accepted), then the namespace and the Deployment.
func checkClusterReach(ctx context.Context, c *kube.Cluster, namespace, deployment string) (string, error) {
	raw, err := c.Client.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return "", fmt.Errorf("server version: %w", err)
	}
	var v version.Info
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Errorf("server version: %w", err)
	}
	detail := "Kubernetes " + v.GitVersion
	if namespace == "" {
		return detail, nil
	}
	_, err = c.Client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	switch {
	case err == nil:
		detail += ", namespace " + namespace
	case apierrors.IsForbidden(err):
		// Least privilege grants nothing cluster-scoped; the Deployment
		// below shows the namespace exists.
		detail += ", namespace " + namespace + " (not readable cluster-wide)"
	case apierrors.IsNotFound(err):
		return "", fmt.Errorf("namespace %s not found", namespace)
	default:
		return "", fmt.Errorf("namespace %s: %w", namespace, err)
	}
	if deployment != "" {
		if _, err := c.Client.AppsV1().Deployments(namespace).Get(ctx, deployment, metav1.GetOptions{}); err != nil {
			return "", fmt.Errorf("deployment %s/%s: %w", namespace, deployment, err)
		}
		detail += ", deployment " + deployment
	}
	return detail, nil
}

// checkClusterAccess runs one SelfSubjectAccessReview per permission.
func checkClusterAccess(ctx context.Context, c *kube.Cluster, namespace, policyNS string, stepTypes []string) (string, error) {
	type need struct {
		access kubeAccess
		steps  []string
	}
	var needs []*need
	byKey := map[string]*need{}
	for _, st := range stepTypes {
		for _, acc := range kubeStepAccess[st] {
			n := byKey[acc.String()]
			if n == nil {
				n = &need{access: acc}
				byKey[acc.String()] = n
				needs = append(needs, n)
			}
			n.steps = append(n.steps, st)
		}
	}
	var allowed, deniedReads, deniedWrites []string
	var refusedSteps []string
	for _, n := range needs {
		ns := namespace
		if n.access.Resource == "imagepolicies" {
			ns = policyNS
		}
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: n.access.Verb, Group: n.access.Group,
				Resource: n.access.Resource, Subresource: n.access.Subresource,
			},
		}}
		res, err := c.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return "", fmt.Errorf("access review (%s in %s): %w", n.access, ns, err)
		}
		label := n.access.String() + " in " + ns
		switch {
		case res.Status.Allowed:
			allowed = append(allowed, label)
		case n.access.Write:
			deniedWrites = append(deniedWrites, label)
			refusedSteps = append(refusedSteps, n.steps...)
		default:
			deniedReads = append(deniedReads, fmt.Sprintf("%s (needed by %s)", label, strings.Join(n.steps, ", ")))
		}
	}
	if len(deniedReads) > 0 {
		return "", fmt.Errorf("the worker may not %s", strings.Join(deniedReads, "; "))
	}
	detail := fmt.Sprintf("%d permissions of %s allowed", len(allowed), strings.Join(stepTypes, ", "))
	if len(deniedWrites) > 0 {
		slices.Sort(refusedSteps)
		detail += fmt.Sprintf("; read-only: may not %s, so %s will be Forbidden here",
			strings.Join(deniedWrites, ", "), strings.Join(slices.Compact(refusedSteps), ", "))
	}
	return detail, nil
}
