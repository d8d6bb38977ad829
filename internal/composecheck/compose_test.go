package composecheck

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/stagehand-dev/stagehand/workflows"
)

// repoRoot is two levels up: tests run in internal/composecheck.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

func loadProject(t *testing.T) *types.Project {
	t.Helper()
	root := repoRoot(t)
	// An empty environment: the file's defaults must be enough, whatever
	// the developer's shell exports.
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yaml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv([]string{}),
	)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yaml does not load: %v", err)
	}
	return project
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yaml has no service %q (has %v)", name, p.ServiceNames())
	}
	return s
}

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

func TestComposeServices(t *testing.T) {
	p := loadProject(t)
	want := []string{"postgresql", "temporal", "temporal-admin-tools", "temporal-ui", "worker"}
	got := p.ServiceNames()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}
}

// TestComposeImagesPinned: an unpinned image changes under users between two
// `docker compose up`s; a Temporal server newer than its schema breaks.
func TestComposeImagesPinned(t *testing.T) {
	p := loadProject(t)
	pinned := regexp.MustCompile(`^[a-z0-9./_-]+:[0-9][A-Za-z0-9._-]*$`)
	for name, s := range p.Services {
		if s.Build != nil {
			continue
		}
		if !pinned.MatchString(s.Image) {
			t.Errorf("service %s image %q is not pinned to a version tag", name, s.Image)
		}
	}
}

func TestComposeDependencies(t *testing.T) {
	p := loadProject(t)
	want := map[string]map[string]string{
		"postgresql":           {},
		"temporal":             {"postgresql": types.ServiceConditionHealthy},
		"temporal-admin-tools": {"temporal": types.ServiceConditionHealthy},
		"temporal-ui":          {"temporal": types.ServiceConditionHealthy},
		"worker": {
			"temporal":             types.ServiceConditionHealthy,
			"temporal-admin-tools": types.ServiceConditionCompletedSuccessfully,
		},
	}
	for name, deps := range want {
		s := service(t, p, name)
		got := map[string]string{}
		for dep, d := range s.DependsOn {
			got[dep] = d.Condition
		}
		if len(got) != len(deps) {
			t.Errorf("%s depends on %v, want %v", name, got, deps)
			continue
		}
		for dep, cond := range deps {
			if got[dep] != cond {
				t.Errorf("%s depends on %s with condition %q, want %q", name, dep, got[dep], cond)
			}
		}
	}
	// Conditions on health need a health check to be met at all.
	for _, name := range []string{"postgresql", "temporal"} {
		if s := service(t, p, name); s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s has no healthcheck, but others wait for it to be healthy", name)
		}
	}
}

func TestComposePorts(t *testing.T) {
	p := loadProject(t)
	// The same host ports as `make dev`, so docs and bookmarks work for both.
	want := map[string]map[uint32]string{
		"temporal":    {7233: "7233"},
		"temporal-ui": {8080: "8233"},
	}
	for name, ports := range want {
		s := service(t, p, name)
		got := map[uint32]string{}
		for _, port := range s.Ports {
			got[port.Target] = port.Published
		}
		for target, published := range ports {
			if got[target] != published {
				t.Errorf("%s publishes container port %d as %q, want %q (ports: %+v)", name, target, got[target], published, s.Ports)
			}
		}
	}
	if ports := service(t, p, "postgresql").Ports; len(ports) != 0 {
		t.Errorf("postgresql publishes %v; the database should stay on the compose network", ports)
	}
}

// TestComposeTemporalAddress: everything that talks to Temporal must name
// the temporal service and the port it listens on inside the network.
func TestComposeTemporalAddress(t *testing.T) {
	p := loadProject(t)
	for _, name := range []string{"worker", "temporal-ui", "temporal-admin-tools"} {
		if got := env(service(t, p, name), "TEMPORAL_ADDRESS"); got != "temporal:7233" {
			t.Errorf("%s TEMPORAL_ADDRESS = %q, want temporal:7233", name, got)
		}
	}
	cfg := readWorkerConfig(t, filepath.Join(repoRoot(t), "config", "docker.yaml"))
	if cfg.Temporal.Address != "temporal:7233" {
		t.Errorf("config/docker.yaml temporal.address = %q, want temporal:7233", cfg.Temporal.Address)
	}
}

// TestComposeSearchAttributes keeps the one-shot's list equal to the one the
// workflows use; a missing attribute makes every run fail at its first
// search attribute upsert.
func TestComposeSearchAttributes(t *testing.T) {
	p := loadProject(t)
	s := service(t, p, "temporal-admin-tools")
	got := strings.Fields(env(s, "STAGEHAND_SEARCH_ATTRIBUTES"))
	if !slices.Equal(got, workflows.SearchAttributeDefinitions) {
		t.Errorf("temporal-admin-tools STAGEHAND_SEARCH_ATTRIBUTES = %v,\nwant workflows.SearchAttributeDefinitions = %v", got, workflows.SearchAttributeDefinitions)
	}
	if s.Restart != "no" {
		t.Errorf("temporal-admin-tools restart = %q; a one-shot must not be restarted", s.Restart)
	}
	assertMountsExist(t, s)
}

func TestComposeWorker(t *testing.T) {
	root := repoRoot(t)
	p := loadProject(t)
	s := service(t, p, "worker")
	if s.Build == nil {
		t.Fatal("worker has no build section")
	}
	if s.Build.Context != root {
		t.Errorf("worker build context = %q, want the repository root %q", s.Build.Context, root)
	}
	if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
		t.Errorf("worker Dockerfile: %v", err)
	}
	assertMountsExist(t, s)
	var configMount *types.ServiceVolumeConfig
	for i, v := range s.Volumes {
		if v.Target == "/config" {
			configMount = &s.Volumes[i]
		}
	}
	if configMount == nil || configMount.Source != filepath.Join(root, "config") || !configMount.ReadOnly {
		t.Errorf("worker must mount config/ read-only at /config; volumes: %+v", s.Volumes)
	}
	// The command's --config must name a file that the mount provides.
	i := slices.Index(s.Command, "--config")
	if i < 0 || i+1 >= len(s.Command) {
		t.Fatalf("worker command %v has no --config", s.Command)
	}
	rel, ok := strings.CutPrefix(s.Command[i+1], "/config/")
	if !ok {
		t.Fatalf("worker --config %q is not under /config", s.Command[i+1])
	}
	if _, err := os.Stat(filepath.Join(root, "config", rel)); err != nil {
		t.Errorf("worker config: %v", err)
	}
}

func assertMountsExist(t *testing.T, s types.ServiceConfig) {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if _, err := os.Stat(v.Source); err != nil {
			t.Errorf("%s mounts %s, which does not exist: %v", s.Name, v.Source, err)
		}
	}
}

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	from := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(from) < 2 {
		t.Fatalf("Dockerfile should be multi-stage; FROM lines: %v", from)
	}
	for _, f := range from {
		if !strings.Contains(f[1], ":") || strings.HasSuffix(f[1], ":latest") {
			t.Errorf("Dockerfile base image %q is not pinned", f[1])
		}
	}
	// The builder's Go must be at least the go directive's release, or
	// `go build` refuses (or downloads a toolchain, which a build box
	// without network cannot).
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goLine == nil {
		t.Fatal("no go directive in go.mod")
	}
	if builder := from[0][1]; !strings.HasPrefix(builder, "golang:"+string(goLine[1])) {
		t.Errorf("builder image %s does not match go.mod's go %s", builder, goLine[1])
	}
	for _, pkg := range []string{"./worker", "./starter"} {
		if !strings.Contains(text, pkg) {
			t.Errorf("Dockerfile does not build %s", pkg)
		}
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil || !strings.Contains(string(ignore), "bin/") {
		t.Errorf(".dockerignore must exclude bin/ (a 250 MB temporal binary lives there): %v", err)
	}
}

// workerConfig is the part of the worker's config file these examples must
// get right; the worker's own tests own the full schema.
type workerConfig struct {
	Temporal struct {
		Address   string `yaml:"address"`
		Namespace string `yaml:"namespace"`
		TaskQueue string `yaml:"taskQueue"`
	} `yaml:"temporal"`
	Environments map[string]struct {
		Kubeconfig string `yaml:"kubeconfig"`
		Context    string `yaml:"context"`
		Namespace  string `yaml:"namespace"`
		Deployment string `yaml:"deployment"`
		Container  string `yaml:"container"`
		URL        string `yaml:"url"`
	} `yaml:"environments"`
}

func readWorkerConfig(t *testing.T, path string) workerConfig {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg workerConfig
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg
}

func TestExampleConfigs(t *testing.T) {
	root := repoRoot(t)
	for _, file := range []string{"local.yaml", "docker.yaml"} {
		t.Run(file, func(t *testing.T) {
			cfg := readWorkerConfig(t, filepath.Join(root, "config", file))
			if cfg.Temporal.Namespace != "default" {
				t.Errorf("temporal.namespace = %q, want default", cfg.Temporal.Namespace)
			}
			if cfg.Temporal.TaskQueue != workflows.DefaultTaskQueue {
				t.Errorf("temporal.taskQueue = %q, want %q (where runs are started)", cfg.Temporal.TaskQueue, workflows.DefaultTaskQueue)
			}
			for _, name := range []string{"sandbox", "prod"} {
				e, ok := cfg.Environments[name]
				if !ok {
					t.Errorf("no %s environment", name)
					continue
				}
				if e.Context == "" || e.Namespace == "" || e.Deployment == "" || e.Container == "" || e.URL == "" || e.Kubeconfig == "" {
					t.Errorf("environment %s is missing fields: %+v", name, e)
				}
			}
		})
	}
	// `make dev` serves on 127.0.0.1:7233 by default; the local example
	// must point there.
	if got := readWorkerConfig(t, filepath.Join(root, "config", "local.yaml")).Temporal.Address; got != "127.0.0.1:7233" {
		t.Errorf("config/local.yaml temporal.address = %q, want 127.0.0.1:7233", got)
	}
}
