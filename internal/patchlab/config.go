package patchlab

import (
	"fmt"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/stagehand-dev/stagehand/worker/config"
)

// Lab describes where everything runs, to write the worker's config.
type Lab struct {
	TemporalAddress, Namespace, TaskQueue string
	Kubeconfig, Context                   string
	SandboxNamespace, ProdNamespace       string
	// Deployment and Container are the Backstage Deployment in both
	// namespaces.
	Deployment, Container string
	// SandboxURL and ProdURL serve Backstage (the pods are simulated; a real
	// backend process stands in for their service).
	SandboxURL, ProdURL string
	// ImagePolicy is the Flux ImagePolicy in the production namespace.
	ImagePolicy string
	// Remote is the git remote the merge step pushes to.
	Remote    string
	Approvers []string
	// SmokeChecks are the team's feature checks (both environments).
	SmokeChecks []map[string]any
}

// DefaultSmokeChecks are the conventions' feature checks: sign-in, catalog,
// templates and docs, as presets of web.smoke. Templates and docs are left
// out: the local backend runs no scaffolder or TechDocs plugin.
func DefaultSmokeChecks() []map[string]any {
	return []map[string]any{
		{"preset": "signin", "provider": "guest"},
		{"preset": "catalog"},
	}
}

// WorkerConfig is the worker configuration for the lab.
func (l Lab) WorkerConfig() config.Config {
	cfg := config.Defaults()
	cfg.Temporal = config.Temporal{Address: l.TemporalAddress, Namespace: l.Namespace, TaskQueue: l.TaskQueue}
	env := func(ns, url, policy string) config.Environment {
		return config.Environment{
			Kubeconfig: l.Kubeconfig, Context: l.Context, Namespace: ns,
			Deployment: l.Deployment, Container: l.Container, URL: url,
			Approvers: l.Approvers, ImagePolicy: policy, SmokeChecks: l.SmokeChecks,
		}
	}
	cfg.Environments = map[string]config.Environment{
		"sandbox": env(l.SandboxNamespace, l.SandboxURL, ""),
		"prod":    env(l.ProdNamespace, l.ProdURL, l.ImagePolicy),
	}
	cfg.Settings = map[string]any{
		"git": map[string]any{"provider": "git", "repository": l.Remote, "targetBranch": "main"},
	}
	return cfg
}

// WriteWorkerConfig writes the lab's worker configuration as YAML.
func (l Lab) WriteWorkerConfig(path string) error {
	return WriteConfig(l.WorkerConfig(), path)
}

// WriteConfig writes a worker configuration as the YAML the worker reads.
func WriteConfig(cfg config.Config, path string) error {
	data, err := yaml.Marshal(&cfg)
	if err != nil {
		return fmt.Errorf("encode worker config: %w", err)
	}
	header := "# Written by Stagehand's patchlab for the local patch demo; see internal/patchlab.\n"
	return os.WriteFile(path, append([]byte(header), data...), 0o644)
}
