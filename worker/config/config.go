// Package config reads the worker's configuration: one YAML file (Temporal
// connection, runbook directory, logging, environments), overridden by
// environment variables and then by flags. It holds references to secrets
// (environment variable names, Secret names), never secret values.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/stagehand-dev/stagehand/activities/command"
	"github.com/stagehand-dev/stagehand/activities/db"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/activities/server"
	"github.com/stagehand-dev/stagehand/internal/temporalconn"
	"github.com/stagehand-dev/stagehand/worker/environment"
	"github.com/stagehand-dev/stagehand/workflows"
)

// Config is the whole worker configuration.
type Config struct {
	Temporal    Temporal `yaml:"temporal"`
	RunbooksDir string   `yaml:"runbooksDir,omitempty"`
	// WorkDir holds the worker's caches (e.g. git mirrors of the repositories
	// it merges in); default: the user cache directory's stagehand folder.
	WorkDir      string                 `yaml:"workDir,omitempty"`
	Log          Log                    `yaml:"log,omitempty"`
	Environments map[string]Environment `yaml:"environments,omitempty"`
	// Settings are team-wide, non-secret values runbooks read as .settings
	// (git remote and provider, notification webhooks by reference, ...).
	Settings map[string]any `yaml:"settings,omitempty"`
	// Secrets says where secret:NAME/KEY references are read from; env:NAME
	// references always come from the worker's environment.
	Secrets Secrets `yaml:"secrets,omitempty"`
	// Commands are the only programs exec.run may start, by the name runbooks
	// use; a run cannot name anything else. A command without `dirs` may run
	// in the worker's git checkouts (what git.checkout makes).
	Commands map[string]command.Command `yaml:"commands,omitempty"`
	// Databases are the servers holding portals' plugin databases, by the
	// name db steps (and environments' `database`) use.
	Databases map[string]db.Database `yaml:"databases,omitempty"`
	// Backups says where db.backup writes.
	Backups Backups `yaml:"backups,omitempty"`
	// Docker is the engine the image steps drive.
	Docker Docker `yaml:"docker,omitempty"`
	// AllowInlineRunbooks accepts runs that send their runbook inline (the
	// CLI's --file, RunInput.definition). Off by default: then a run can
	// name only a runbook this worker loaded (built-in or runbooksDir).
	AllowInlineRunbooks bool `yaml:"allowInlineRunbooks,omitempty"`
	// Approvals says who may decide approval gates beyond the runbook's
	// approvers list: which connection identities map to which approver.
	Approvals workflows.ApprovalPolicy `yaml:"approvals,omitempty"`
	// Metrics serves Prometheus metrics; off unless listen is set.
	Metrics Metrics `yaml:"metrics,omitempty"`
	// Worker sizes the Temporal worker (cache, concurrency, pollers, stop
	// timeout, identity).
	Worker WorkerOptions `yaml:"worker,omitempty"`
	// workerEnvProblems keeps unusable STAGEHAND_* worker variables from
	// ApplyEnv for Validate to report with everything else.
	workerEnvProblems []string
	// path is where the file was read from; relative paths in it are
	// resolved against its directory.
	path string
}

// Backups configures db.backup and db.restore.
type Backups struct {
	// Dir is the directory backups are written to; a step's `to` is a key
	// inside it. Default: <workDir>/backups.
	Dir string `yaml:"dir,omitempty"`
}

// Docker says which Docker Engine API the image steps use: Docker itself,
// podman's service (`podman system service`) or a remote engine.
type Docker struct {
	// Host is the engine's address (unix:///run/podman/podman.sock,
	// tcp://builder:2375); empty uses DOCKER_HOST and the client's default.
	Host string `yaml:"host,omitempty"`
	// APIVersion pins the API version; empty negotiates with the engine.
	APIVersion string `yaml:"apiVersion,omitempty"`
	// ContextRoots are the directories image.build may send as a build
	// context; default: the git checkouts (what git.checkout makes). A run
	// naming any other directory is refused before the engine is called.
	ContextRoots []string `yaml:"contextRoots,omitempty"`
}

// Metrics configures the worker's Prometheus endpoint.
type Metrics struct {
	// Listen is the host:port serving GET /metrics (127.0.0.1:9090;
	// :9090 in a pod, for the cluster's Prometheus); empty turns it off.
	Listen string `yaml:"listen,omitempty"`
}

// Secrets configures the secret:NAME/KEY references.
type Secrets struct {
	// Kubernetes reads them from Kubernetes Secrets; nil leaves secret:
	// references unresolvable (they fail at use with a message saying so).
	Kubernetes *KubernetesSecrets `yaml:"kubernetes,omitempty"`
	// Allow says which step may resolve which reference and to which
	// hosts it may send the value; everything else is refused (see
	// SecretPolicy for the rules the rest of the config implies).
	Allow []secrets.Rule `yaml:"allow,omitempty"`
}

// KubernetesSecrets names the cluster and namespace whose Secrets back
// secret:NAME/KEY: NAME is a Secret in Namespace, KEY one key of its data.
type KubernetesSecrets struct {
	// Environment whose cluster holds the Secrets (its kubeconfig/context
	// or inCluster settings are used).
	Environment string `yaml:"environment"`
	// Namespace of the Secrets, typically the worker's own namespace.
	Namespace string `yaml:"namespace"`
}

// Temporal says where the worker connects and listens.
type Temporal struct {
	Address   string `yaml:"address,omitempty"`
	Namespace string `yaml:"namespace,omitempty"`
	TaskQueue string `yaml:"taskQueue,omitempty"`
	// TLS turns on TLS or mutual TLS to the frontend (~ and relative file
	// paths resolve like the config's other paths).
	TLS temporalconn.TLS `yaml:"tls,omitempty"`
	// APIKeyRef is a secret reference (env:NAME, secret:NAME/KEY) to an API
	// key sent as a bearer token (Temporal Cloud); it implies TLS.
	APIKeyRef string `yaml:"apiKeyRef,omitempty"`
	// Codec encrypts payloads (AES-256-GCM); keys newest first.
	Codec temporalconn.Codec `yaml:"codec,omitempty"`

	// envErr keeps an unparsable connection variable from ApplyEnv for
	// Validate to report with everything else.
	envErr error
}

// Conn returns the connection settings with file paths resolved.
func (c *Config) Conn() temporalconn.Options {
	t := c.Temporal.TLS
	t.CertFile, t.KeyFile, t.CAFile = c.ResolvePath(t.CertFile), c.ResolvePath(t.KeyFile), c.ResolvePath(t.CAFile)
	return temporalconn.Options{Address: c.Temporal.Address, Namespace: c.Temporal.Namespace,
		TLS: t, APIKeyRef: c.Temporal.APIKeyRef, Codec: c.Temporal.Codec}
}

// Log configures the worker's structured log.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level,omitempty"`
	// Format is text or json.
	Format string `yaml:"format,omitempty"`
}

// Environment is one place runbooks act on (worker/environment, which the
// CLI reads too without linking what this package links).
type Environment = environment.Environment

// The kinds of environment.
const (
	KindKubernetes = environment.KindKubernetes
	KindServer     = environment.KindServer
)

// Servers are the single-server environments' processes by name, for the
// server steps.
func (c *Config) Servers() map[string]server.Config {
	out := map[string]server.Config{}
	for name, e := range c.Environments {
		if e.Kind == KindServer && e.Server != nil {
			out[name] = *e.Server
		}
	}
	return out
}

// ServerDirs are the single-server environments' directories: steps that
// read or edit a portal work tree may use them besides a run's checkout.
func (c *Config) ServerDirs() []string {
	var dirs []string
	for _, name := range c.EnvironmentNames() {
		if e := c.Environments[name]; e.Kind == KindServer && e.Server != nil && e.Server.Dir != "" {
			dirs = append(dirs, e.Server.Dir)
		}
	}
	return dirs
}

// PluginConfigKeys is settings.plugin.configKeys: the app-config subtrees
// (dotted prefixes) portal.setConfig may write; empty means any key but
// the ones it always refuses unless listed (backend, auth, integrations,
// proxy, permission).
func (c *Config) PluginConfigKeys() []string {
	plugin, _ := c.Settings["plugin"].(map[string]any)
	list, _ := plugin["configKeys"].([]any)
	var keys []string
	for _, v := range list {
		if s, ok := v.(string); ok && s != "" {
			keys = append(keys, s)
		}
	}
	return keys
}

// Defaults match `make dev`: a local dev server and the default task queue.
func Defaults() Config {
	return Config{
		Temporal: Temporal{Address: "127.0.0.1:7233", Namespace: "default", TaskQueue: workflows.DefaultTaskQueue},
		Log:      Log{Level: "info", Format: "text"},
		Worker:   DefaultWorkerOptions(),
	}
}

// Load reads a config file over the defaults. Unknown keys are errors, so a
// typo does not silently fall back to a default.
func Load(path string) (Config, error) {
	cfg := Defaults()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// io.EOF means an empty file: an empty config is the defaults.
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.path = path
	return cfg, nil
}

// Getenv is os.Getenv, injectable for tests.
type Getenv func(string) string

// ApplyEnv overrides the file with the Temporal SDK's connection variables
// (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS,
// TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH,
// TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME,
// TEMPORAL_API_KEY), STAGEHAND_CODEC_KEYS, STAGEHAND_TASK_QUEUE,
// STAGEHAND_RUNBOOKS_DIR, STAGEHAND_LOG_LEVEL, STAGEHAND_METRICS_LISTEN
// and the worker options' variables (WorkerOptionTable).
// (DOCKER_HOST is the default of docker.host, not an override: the image
// steps' client reads it when docker.host is empty.)
func (c *Config) ApplyEnv(getenv Getenv) {
	set := func(dst *string, key string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	conn := temporalconn.Options{Address: c.Temporal.Address, Namespace: c.Temporal.Namespace,
		TLS: c.Temporal.TLS, APIKeyRef: c.Temporal.APIKeyRef, Codec: c.Temporal.Codec}
	c.Temporal.envErr = conn.ApplyEnv(getenv)
	c.Temporal.Address, c.Temporal.Namespace = conn.Address, conn.Namespace
	c.Temporal.TLS, c.Temporal.APIKeyRef, c.Temporal.Codec = conn.TLS, conn.APIKeyRef, conn.Codec
	set(&c.Temporal.TaskQueue, "STAGEHAND_TASK_QUEUE")
	set(&c.RunbooksDir, "STAGEHAND_RUNBOOKS_DIR")
	set(&c.Log.Level, "STAGEHAND_LOG_LEVEL")
	set(&c.Metrics.Listen, "STAGEHAND_METRICS_LISTEN")
	c.workerEnvProblems = c.Worker.applyEnv(getenv)
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var problems []string
	if c.Temporal.Address == "" {
		problems = append(problems, "temporal.address is empty")
	}
	if c.Temporal.Namespace == "" {
		problems = append(problems, "temporal.namespace is empty")
	}
	if c.Temporal.TaskQueue == "" {
		problems = append(problems, "temporal.taskQueue is empty")
	}
	if c.Temporal.envErr != nil {
		problems = append(problems, c.Temporal.envErr.Error())
	}
	problems = append(problems, c.Conn().Validate()...)
	problems = append(problems, c.workerEnvProblems...)
	problems = append(problems, c.Worker.Problems()...)
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		problems = append(problems, fmt.Sprintf("log.level %q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		problems = append(problems, fmt.Sprintf("log.format %q: want text or json", c.Log.Format))
	}
	if l := c.Metrics.Listen; l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			problems = append(problems, fmt.Sprintf("metrics.listen %q: want host:port (127.0.0.1:9090, :9090)", l))
		}
	}
	for _, name := range c.EnvironmentNames() {
		e := c.Environments[name]
		if e.InCluster && (e.Kubeconfig != "" || e.Context != "") {
			problems = append(problems, fmt.Sprintf("environments.%s: inCluster excludes kubeconfig and context", name))
		}
		switch e.Kind {
		case "", KindKubernetes:
			if e.Server != nil {
				problems = append(problems, fmt.Sprintf("environments.%s: server is only for kind: server (kind is %q)", name, e.KindOrDefault()))
			}
		case KindServer:
			if e.Server == nil {
				problems = append(problems, fmt.Sprintf("environments.%s: kind server needs a server block (dir, command, healthURL)", name))
			} else if err := e.Server.Validate(name); err != nil {
				problems = append(problems, fmt.Sprintf("environments.%s.server: %v", name, err))
			}
			if e.InCluster || e.Kubeconfig != "" || e.Context != "" || e.Namespace != "" || e.Deployment != "" {
				problems = append(problems, fmt.Sprintf("environments.%s: a server environment has no cluster (drop kubeconfig, context, inCluster, namespace, deployment)", name))
			}
		default:
			problems = append(problems, fmt.Sprintf("environments.%s.kind %q: want kubernetes (the default) or server", name, e.Kind))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Databases)) {
		if err := c.Databases[name].Validate(); err != nil {
			problems = append(problems, fmt.Sprintf("databases.%s: %v", name, err))
		}
	}
	for _, name := range c.EnvironmentNames() {
		if d := c.Environments[name].Database; d != "" {
			if _, ok := c.Databases[d]; !ok {
				problems = append(problems, fmt.Sprintf("environments.%s.database %q is not one of the databases (%s)",
					name, d, strings.Join(slices.Sorted(maps.Keys(c.Databases)), ", ")))
			}
		}
	}
	if plugin, ok := c.Settings["plugin"].(map[string]any); ok {
		if v, set := plugin["configKeys"]; set {
			list, isList := v.([]any)
			valid := isList
			for _, e := range list {
				if s, ok := e.(string); !ok || strings.TrimSpace(s) == "" {
					valid = false
				}
			}
			if !valid {
				// Ignoring a malformed allowlist would quietly widen it.
				problems = append(problems, "settings.plugin.configKeys: want a list of dotted app-config prefixes, e.g. [search, catalog.providers]")
			}
		}
	}
	if k := c.Secrets.Kubernetes; k != nil {
		env, ok := c.Environments[k.Environment]
		switch {
		case k.Environment == "":
			problems = append(problems, "secrets.kubernetes.environment is empty: name the environment whose cluster holds the Secrets")
		case !ok:
			problems = append(problems, fmt.Sprintf("secrets.kubernetes.environment %q is not one of the environments (%s)", k.Environment, strings.Join(c.EnvironmentNames(), ", ")))
		case !env.InCluster && env.Kubeconfig == "" && env.Context == "":
			problems = append(problems, fmt.Sprintf("secrets.kubernetes.environment %q has no cluster (set its kubeconfig, context or inCluster)", k.Environment))
		}
		if k.Namespace == "" {
			problems = append(problems, "secrets.kubernetes.namespace is empty")
		}
	}
	if _, err := c.SecretPolicy(); err != nil {
		problems = append(problems, err.Error())
	}
	problems = append(problems, c.Approvals.Problems()...)
	if _, err := c.ResolvedCommands(); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid config: %s", strings.Join(problems, "; "))
	}
	return nil
}

// WorkDirPath is the worker's work directory: workDir from the file, or the
// user cache directory's stagehand folder.
func (c *Config) WorkDirPath() string {
	if d := c.ResolvePath(c.WorkDir); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "stagehand")
}

// BackupDir is backups.dir made absolute, or <workDir>/backups.
func (c *Config) BackupDir() string {
	if d := c.ResolvePath(c.Backups.Dir); d != "" {
		return d
	}
	return filepath.Join(c.WorkDirPath(), "backups")
}

// GitWorkDir is where the git steps keep mirrors and checkouts.
func (c *Config) GitWorkDir() string { return filepath.Join(c.WorkDirPath(), "git") }

// CheckoutsDir is where git.checkout makes work trees (git.Activities'
// TreesDir for GitWorkDir): the default `dirs` of a command.
func (c *Config) CheckoutsDir() string { return filepath.Join(c.GitWorkDir(), "trees") }

// DockerContextRoots is docker.contextRoots made absolute, or the git
// checkouts when none is configured.
func (c *Config) DockerContextRoots() []string {
	if len(c.Docker.ContextRoots) == 0 {
		return []string{c.CheckoutsDir()}
	}
	out := make([]string, 0, len(c.Docker.ContextRoots))
	for _, d := range c.Docker.ContextRoots {
		out = append(out, c.ResolvePath(d))
	}
	return out
}

// ResolvedCommands returns the commands with their directories made
// absolute (relative to the working directory, ~ expanded) and, where none
// is given, the git checkouts; every entry is validated, all problems
// reported at once.
func (c *Config) ResolvedCommands() (map[string]command.Command, error) {
	out := make(map[string]command.Command, len(c.Commands))
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(c.Commands)) {
		cmd := c.Commands[name]
		dirs := make([]string, 0, len(cmd.Dirs))
		for _, d := range cmd.Dirs {
			dirs = append(dirs, c.ResolvePath(d))
		}
		if len(dirs) == 0 {
			dirs = []string{c.CheckoutsDir()}
		}
		cmd.Dirs = dirs
		if err := cmd.Validate(name); err != nil {
			problems = append(problems, "commands: "+err.Error())
			continue
		}
		out[name] = cmd
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return out, nil
}

// EnvironmentNames lists the environments in sorted order.
func (c *Config) EnvironmentNames() []string {
	names := make([]string, 0, len(c.Environments))
	for n := range c.Environments {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ResolvePath makes a path from the file absolute: "~" is the home
// directory, and relative paths are relative to the working directory (so
// `make dev` from the repository root finds .stagehand/ and runbooks/).
func (c *Config) ResolvePath(p string) string {
	if p == "" {
		return ""
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, strings.TrimPrefix(p, "~"))
		}
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// TemplateData is what runbooks see as .environments: every environment's
// non-secret settings.
func (c *Config) TemplateData() map[string]any {
	return environment.TemplateData(c.Environments)
}

// SettingsData is what runbooks see as .settings.
func (c *Config) SettingsData() map[string]any {
	if c.Settings == nil {
		return map[string]any{}
	}
	return c.Settings
}
