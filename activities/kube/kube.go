// Package kube holds the Kubernetes step types: setting a Deployment's image,
// waiting for its rollout, checking its pods, reading events, rolling back,
// restarting and server-side applying manifests.
//
// Every step talks to a named cluster (one per environment) through
// client-go. Waiting steps use watches rather than polling so that a bad
// rollout (CrashLoopBackOff, ImagePullBackOff, OOMKilled, ...) fails within
// seconds instead of at the Deployment's progress deadline, and they ride out
// short kube-apiserver outages by re-listing and re-watching with a capped
// backoff while heartbeating, instead of failing the step.
//
// The step types (described, with their arguments, outputs and error types,
// in activities/steps; StepTypes binds them to the methods here, whose
// *Input and *Output structs' JSON fields must match those descriptions):
//
//	kube.setImage     set one container's image (idempotent)
//	kube.getImage     read it, e.g. to record the rollback target
//	kube.waitRollout  `kubectl rollout status`, failing fast on bad pods
//	kube.checkPods    all pods Ready on the image, no restarts during a soak
//	kube.events       events in time order; unallowed Warnings fail
//	kube.rollback     `kubectl rollout undo` (or back to an image), then wait
//	kube.apply        server-side apply of YAML manifests
//	kube.restart      `kubectl rollout restart`
//	kube.scale        set replicas, wait until reached (0: no pod left)
//
// Errors are classified at this boundary: Forbidden, Unauthorized, NotFound
// and Invalid become non-retryable ApplicationErrors with stable types
// (KubeForbidden, KubeUnauthorized, KubeNotFound, KubeInvalid) because
// retrying them cannot help; conflicts and connection problems stay
// retryable.
package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stagehand-dev/stagehand/activities"
)

// FieldManager is the server-side apply field manager for everything
// Stagehand writes, so `kubectl get -o yaml --show-managed-fields` says who
// owns a field.
const FieldManager = "stagehand"

// Cluster is one Kubernetes cluster (or one context of a kubeconfig) that
// steps can address by Name.
type Cluster struct {
	Name string
	// Client is the typed clientset used by every step.
	Client kubernetes.Interface
	// Dynamic and Mapper serve kube.apply, which handles arbitrary kinds.
	// Either may be nil; then apply reports that the cluster cannot apply.
	Dynamic dynamic.Interface
	Mapper  meta.ResettableRESTMapper
}

// NewClusterFromConfig builds a Cluster from a rest.Config.
func NewClusterFromConfig(name string, cfg *rest.Config) (*Cluster, error) {
	cfg = rest.CopyConfig(cfg)
	// client-go's default of 5 QPS throttles a step that lists, watches and
	// patches in quick succession after an apiserver restart; these are
	// kubectl's own defaults.
	if cfg.QPS == 0 {
		cfg.QPS = 50
	}
	if cfg.Burst == 0 {
		cfg.Burst = 300
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "stagehand"
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("build clientset for cluster %q: %w", name, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("build dynamic client for cluster %q: %w", name, err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("build discovery client for cluster %q: %w", name, err)
	}
	// Discovery is deferred and cached: building a worker must not need a
	// reachable cluster, and apply resets the cache when a kind is unknown
	// (e.g. a CRD installed a moment ago).
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	return &Cluster{Name: name, Client: client, Dynamic: dyn, Mapper: mapper}, nil
}

// NewClusterFromKubeconfig builds a Cluster from a kubeconfig file and a
// context in it; an empty path uses the default loading rules ($KUBECONFIG,
// ~/.kube/config) and an empty context uses the file's current context.
func NewClusterFromKubeconfig(name, kubeconfigPath, kubeContext string) (*Cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfigPath != "" {
		rules.ExplicitPath = kubeconfigPath
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig for cluster %q (context %q): %w", name, kubeContext, err)
	}
	return NewClusterFromConfig(name, cfg)
}

// NewInClusterCluster builds a Cluster from the pod's service account, for a
// worker that runs inside the cluster it operates on.
func NewInClusterCluster(name string) (*Cluster, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config for cluster %q: %w", name, err)
	}
	return NewClusterFromConfig(name, cfg)
}

// Activities holds the clusters the kube steps may address.
type Activities struct {
	// Clusters is keyed by the name runbooks use in `cluster`.
	Clusters map[string]*Cluster
	// LogLines is how many log lines a PodFailure carries (default 20).
	LogLines int64
	// LogTimeout bounds fetching those lines, so that an unreachable kubelet
	// does not delay the failure report (default 1s).
	LogTimeout time.Duration
	// RetryMaxBackoff caps the wait between attempts to re-list and re-watch
	// when the apiserver is unreachable (default 1s): a short cap means a
	// step notices the apiserver is back almost at once.
	RetryMaxBackoff time.Duration
	// HeartbeatInterval is how often waiting steps heartbeat even when
	// nothing changes (default 5s).
	HeartbeatInterval time.Duration
}

// DefaultClusterName is used when a step names no cluster and more than one
// is configured.
const DefaultClusterName = "default"

func (a *Activities) cluster(name string) (*Cluster, error) {
	if a == nil || len(a.Clusters) == 0 {
		return nil, nonRetryable(activities.ErrKubeNoCluster, "no Kubernetes cluster is configured on this worker", nil)
	}
	if name == "" {
		if len(a.Clusters) == 1 {
			for _, c := range a.Clusters {
				return c, nil
			}
		}
		name = DefaultClusterName
	}
	c, ok := a.Clusters[name]
	if !ok || c == nil || c.Client == nil {
		known := make([]string, 0, len(a.Clusters))
		for k := range a.Clusters {
			known = append(known, k)
		}
		sort.Strings(known)
		return nil, nonRetryable(activities.ErrKubeUnknownCluster,
			fmt.Sprintf("unknown cluster %q (configured: %s)", name, strings.Join(known, ", ")), nil)
	}
	return c, nil
}

func (a *Activities) logLines() int64 {
	if a.LogLines > 0 {
		return a.LogLines
	}
	return 20
}

func (a *Activities) logTimeout() time.Duration {
	if a.LogTimeout > 0 {
		return a.LogTimeout
	}
	return time.Second
}

func (a *Activities) maxBackoff() time.Duration {
	if a.RetryMaxBackoff > 0 {
		return a.RetryMaxBackoff
	}
	return time.Second
}

func (a *Activities) heartbeatInterval() time.Duration {
	if a.HeartbeatInterval > 0 {
		return a.HeartbeatInterval
	}
	return 5 * time.Second
}

// heartbeat records progress when running as an activity; plain contexts
// (unit tests calling methods directly) are tolerated.
func heartbeat(ctx context.Context, details ...any) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, details...)
	}
}

// parseDuration accepts Go durations ("30s", "5m"); empty means def.
func parseDuration(key, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("%s: %q is not a duration like 30s or 5m", key, s), nil)
	}
	return d, nil
}
