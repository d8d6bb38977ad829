// Package environment holds the worker config's environments (a
// Kubernetes cluster, namespace and Deployment, or a single server) and
// the view of them runbooks get as .environments. It is its own package so
// that the CLI (stagehand runbooks, explain) reads a worker config exactly
// as the worker does without linking what worker/config links (the
// database drivers).
package environment

import (
	"github.com/stagehand-dev/stagehand/activities/server"
)

// Environment is one place runbooks act on: a Kubernetes cluster context,
// namespace and Deployment, and the portal's URL. Runbooks read these
// values as .environments.<name>.<key>.
type Environment struct {
	// Kind is "kubernetes" (the default: a cluster, namespace and
	// Deployment) or "server" (a single server: a Backstage process on the
	// worker's host, described by Server). Runbooks read it as
	// .environments.<name>.kind and take the matching path.
	Kind string `yaml:"kind,omitempty" json:"kind,omitempty"`
	// Server is a single-server environment's process: its directory,
	// command, environment (secret references), log file, health URL, pid
	// file and timeouts, or a systemd unit. Only with kind: server.
	Server *server.Config `yaml:"server,omitempty" json:"server,omitempty"`
	// Kubeconfig and Context select the cluster; InCluster uses the pod's
	// service account instead.
	Kubeconfig string `yaml:"kubeconfig,omitempty" json:"kubeconfig,omitempty"`
	Context    string `yaml:"context,omitempty" json:"context,omitempty"`
	InCluster  bool   `yaml:"inCluster,omitempty" json:"inCluster,omitempty"`
	Namespace  string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	Deployment string `yaml:"deployment,omitempty" json:"deployment,omitempty"`
	Container  string `yaml:"container,omitempty" json:"container,omitempty"`
	URL        string `yaml:"url,omitempty" json:"url,omitempty"`
	// Approvers may approve gates that act on this environment.
	Approvers []string `yaml:"approvers,omitempty" json:"approvers,omitempty"`
	// ImagePolicy names the Flux ImagePolicy that picks this environment's
	// image ("name" or "namespace/name"), if Flux deploys it.
	ImagePolicy string `yaml:"imagePolicy,omitempty" json:"imagePolicy,omitempty"`
	// Database names the `databases:` entry of this environment's portal;
	// runbooks pass it to the db steps as .environments.<name>.database.
	Database string `yaml:"database,omitempty" json:"database,omitempty"`
	// SmokeChecks are the web.smoke checks for this environment's URL.
	SmokeChecks []map[string]any `yaml:"smokeChecks,omitempty" json:"smokeChecks,omitempty"`
	// Extra holds team-specific values (approvers, smoke checks, ...) that
	// runbooks may read; they must not be secrets.
	Extra map[string]any `yaml:"extra,omitempty" json:"extra,omitempty"`
}

// The kinds of environment.
const (
	KindKubernetes = "kubernetes"
	KindServer     = "server"
)

// KindOrDefault is the environment's kind, kubernetes when unset.
func (e Environment) KindOrDefault() string {
	if e.Kind == "" {
		return KindKubernetes
	}
	return e.Kind
}

// TemplateData is what runbooks see as .environments: every environment's
// non-secret settings.
func TemplateData(envs map[string]Environment) map[string]any {
	out := map[string]any{}
	for name, e := range envs {
		m := map[string]any{
			"name":        name,
			"cluster":     name,
			"namespace":   e.Namespace,
			"deployment":  e.Deployment,
			"container":   e.Container,
			"url":         e.URL,
			"approvers":   asAny(e.Approvers),
			"imagePolicy": e.ImagePolicy,
			"database":    e.Database,
			"smokeChecks": asAny(e.SmokeChecks),
			"kind":        e.KindOrDefault(),
		}
		if e.Server != nil {
			// Where the portal lives and how it is checked; the command's
			// environment (secret references) stays with the worker.
			m["server"] = map[string]any{"dir": e.Server.Dir, "healthURL": e.Server.HealthURL, "logFile": e.Server.LogFile}
		}
		for k, v := range e.Extra {
			if _, taken := m[k]; !taken {
				m[k] = v
			}
		}
		out[name] = m
	}
	return out
}

// asAny is a list as templates see it (an empty list, never nil).
func asAny[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
