package upgradelab

import (
	"github.com/stagehand-dev/stagehand/activities/command"
	"github.com/stagehand-dev/stagehand/activities/db"
	"github.com/stagehand-dev/stagehand/internal/patchlab"
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
	// SandboxURL and ProdURL are the portal simulator's service addresses.
	SandboxURL, ProdURL string
	// SandboxDB and ProdDB are the environments' database servers
	// (PostgreSQL and MariaDB in the tests and the demo).
	SandboxDB, ProdDB db.Database
	// Remote is the portal's git remote.
	Remote string
	// DockerHost is the image engine (podman's Docker-API service).
	DockerHost string
	// ImageRepo is where upgrade images are pushed, registry/repo.
	ImageRepo string
	// BumpBin is tools/stagehand-portal-bump, ManifestsDir its releases.
	BumpBin, ManifestsDir string
	// WorkDir holds the worker's checkouts; BackupDir its backups.
	WorkDir, BackupDir string
	Approvers          []string
	// Deploy is settings.upgrade.deploy: direct (default here) or gitops.
	Deploy string
	// ImagePolicy is production's Flux ImagePolicy (GitOps).
	ImagePolicy string
}

// WorkerConfig is the worker configuration for the lab.
func (l Lab) WorkerConfig() config.Config {
	cfg := config.Defaults()
	cfg.Temporal = config.Temporal{Address: l.TemporalAddress, Namespace: l.Namespace, TaskQueue: l.TaskQueue}
	cfg.WorkDir = l.WorkDir
	checks := patchlab.DefaultSmokeChecks()
	env := func(ns, url, database, policy string) config.Environment {
		return config.Environment{
			Kubeconfig: l.Kubeconfig, Context: l.Context, Namespace: ns,
			Deployment: l.Deployment, Container: l.Container, URL: url,
			Approvers: l.Approvers, Database: database, SmokeChecks: checks, ImagePolicy: policy,
		}
	}
	cfg.Environments = map[string]config.Environment{
		"sandbox": env(l.SandboxNamespace, l.SandboxURL, "sandbox-db", ""),
		"prod":    env(l.ProdNamespace, l.ProdURL, "prod-db", l.ImagePolicy),
	}
	cfg.Databases = map[string]db.Database{"sandbox-db": l.SandboxDB, "prod-db": l.ProdDB}
	cfg.Backups = config.Backups{Dir: l.BackupDir}
	cfg.Docker = config.Docker{Host: l.DockerHost}
	cfg.Commands = map[string]command.Command{
		// The offline stand-in for `yarn backstage-cli versions:bump`.
		"backstage-bump": {
			Argv:       []string{l.BumpBin, "--manifests", l.ManifestsDir, "versions:bump"},
			ArgPattern: `--release|[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?`,
			MaxArgs:    2,
		},
	}
	deploy := l.Deploy
	if deploy == "" {
		deploy = "direct"
	}
	cfg.Settings = map[string]any{
		"git": map[string]any{"provider": "git", "repository": l.Remote, "targetBranch": "main"},
		"upgrade": map[string]any{
			"imageRepository": l.ImageRepo,
			"bumpCommand":     "backstage-bump",
			"deploy":          deploy,
		},
	}
	return cfg
}
