package config

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/activities/command"
	"github.com/stagehand-dev/stagehand/activities/db"
	"github.com/stagehand-dev/stagehand/activities/server"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "worker.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func TestLoadAndOverride(t *testing.T) {
	p := write(t, `temporal: {address: temporal:7233, namespace: ops}
environments:
  sandbox: {kubeconfig: ~/.kube/config, context: sb, namespace: backstage, deployment: backstage, url: "https://sb.example"}
`)
	cfg, err := Load(p)
	require.NoError(t, err)
	assert.Equal(t, "temporal:7233", cfg.Temporal.Address)
	assert.Equal(t, "ops", cfg.Temporal.Namespace)
	assert.Equal(t, "stagehand", cfg.Temporal.TaskQueue, "defaults fill what the file leaves out")

	env := map[string]string{"TEMPORAL_ADDRESS": "10.0.0.1:7233", "STAGEHAND_TASK_QUEUE": "ops-q"}
	cfg.ApplyEnv(func(k string) string { return env[k] })
	assert.Equal(t, "10.0.0.1:7233", cfg.Temporal.Address)
	assert.Equal(t, "ops-q", cfg.Temporal.TaskQueue)
	require.NoError(t, cfg.Validate())

	data := cfg.TemplateData()
	assert.Equal(t, "https://sb.example", data["sandbox"].(map[string]any)["url"])
	home, _ := os.UserHomeDir()
	assert.Equal(t, filepath.Join(home, ".kube/config"), cfg.ResolvePath(cfg.Environments["sandbox"].Kubeconfig))
}

func TestUnknownKeyIsAnError(t *testing.T) {
	_, err := Load(write(t, "temporal: {adress: x}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "adress")
}

func TestEmptyFileIsDefaults(t *testing.T) {
	cfg, err := Load(write(t, ""))
	require.NoError(t, err)
	assert.Equal(t, Defaults().Temporal, cfg.Temporal)
}

func TestValidateReportsEverything(t *testing.T) {
	cfg := Defaults()
	cfg.Temporal.TaskQueue = ""
	cfg.Log.Level = "loud"
	cfg.Environments = map[string]Environment{"prod": {InCluster: true, Context: "x"}}
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{"taskQueue is empty", `log.level "loud"`, "environments.prod: inCluster excludes"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestShippedConfigsLoad(t *testing.T) {
	for _, f := range []string{"../../config/local.yaml", "../../config/docker.yaml"} {
		cfg, err := Load(f)
		require.NoError(t, err, f)
		require.NoError(t, cfg.Validate(), f)
	}
}

func TestValidateSecretsKubernetes(t *testing.T) {
	cfg := Defaults()
	cfg.Environments = map[string]Environment{"sandbox": {Context: "sb"}, "bare": {URL: "http://x"}}
	cfg.Secrets.Kubernetes = &KubernetesSecrets{Environment: "sandbox", Namespace: "stagehand"}
	require.NoError(t, cfg.Validate())

	for k, want := range map[KubernetesSecrets]string{
		{Namespace: "stagehand"}:                      "secrets.kubernetes.environment is empty",
		{Environment: "prod", Namespace: "stagehand"}: `secrets.kubernetes.environment "prod" is not one of the environments (bare, sandbox)`,
		{Environment: "bare", Namespace: "stagehand"}: `secrets.kubernetes.environment "bare" has no cluster`,
		{Environment: "sandbox"}:                      "secrets.kubernetes.namespace is empty",
	} {
		cfg.Secrets.Kubernetes = &k
		assert.ErrorContains(t, cfg.Validate(), want)
	}
}

func TestCommands(t *testing.T) {
	path := write(t, `
workDir: /srv/stagehand
commands:
  yarn-install:
    argv: [sh, -c, "true"]
    timeout: 20m
  bump:
    argv: [sh]
    argPattern: '[0-9.]+'
    dirs: [/srv/portal]
`)
	cfg, err := Load(path)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	cmds, err := cfg.ResolvedCommands()
	require.NoError(t, err)
	assert.Equal(t, []string{"/srv/stagehand/git/trees"}, cmds["yarn-install"].Dirs, "no dirs: the git checkouts")
	assert.Equal(t, 20*time.Minute, cmds["yarn-install"].Timeout)
	assert.Equal(t, []string{"/srv/portal"}, cmds["bump"].Dirs)

	cfg.Commands["bad name!"] = command.Command{Argv: []string{"/nonexistent/prog"}}
	err = cfg.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `command name "bad name!"`)
	assert.Contains(t, err.Error(), `"/nonexistent/prog" is not an executable file`)
}

func TestDockerContextRoots(t *testing.T) {
	cfg, err := Load(write(t, "workDir: /srv/stagehand\ndocker: {host: unix:///run/podman/podman.sock}\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"/srv/stagehand/git/trees"}, cfg.DockerContextRoots(), "default: the git checkouts")
	cfg.Docker.ContextRoots = []string{"/srv/builds", "~/ctx"}
	home, _ := os.UserHomeDir()
	assert.Equal(t, []string{"/srv/builds", filepath.Join(home, "ctx")}, cfg.DockerContextRoots())
}

func TestDatabases(t *testing.T) {
	cfg, err := Load(write(t, `
workDir: /srv/stagehand
databases:
  portal: {driver: postgres, host: db.internal, port: 5432, user: backstage, passwordRef: env:PORTAL_DB_PASSWORD}
environments:
  sandbox: {namespace: backstage, database: portal}
`))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "/srv/stagehand/backups", cfg.BackupDir())
	assert.Equal(t, "portal", cfg.TemplateData()["sandbox"].(map[string]any)["database"])

	cfg.Databases["bad"] = db.Database{Driver: "oracle", Host: "x", User: "u", PasswordRef: "hunter2"}
	cfg.Environments["prod"] = Environment{Database: "missing"}
	err = cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{`databases.bad: `, `driver "oracle"`, "passwordRef must be a reference",
		`environments.prod.database "missing" is not one of the databases (bad, portal)`} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "hunter2", "a literal password is never echoed")
}

// TestServerEnvironments: kind server needs its server block (validated),
// a Kubernetes environment may not have one, and runbooks see kind and the
// server's directory but never its command's environment.
func TestServerEnvironments(t *testing.T) {
	dir := t.TempDir()
	cfg := Defaults()
	cfg.Environments = map[string]Environment{
		"portal": {Kind: KindServer, URL: "http://127.0.0.1:7007", Server: &server.Config{
			Dir: dir, Command: []string{"sh", "-c", "true"}, HealthURL: "http://127.0.0.1:7007/.backstage/health/v1/readiness",
			Env: map[string]string{"POSTGRES_PASSWORD": "env:PG_PASSWORD"},
		}},
		"k8s": {Namespace: "backstage", Deployment: "backstage"},
	}
	require.NoError(t, cfg.Validate())
	data := cfg.TemplateData()
	assert.Equal(t, "server", data["portal"].(map[string]any)["kind"])
	assert.Equal(t, "kubernetes", data["k8s"].(map[string]any)["kind"])
	assert.Equal(t, dir, data["portal"].(map[string]any)["server"].(map[string]any)["dir"])
	assert.NotContains(t, fmt.Sprint(data), "PG_PASSWORD")
	assert.Equal(t, []string{dir}, cfg.ServerDirs())
	assert.Len(t, cfg.Servers(), 1)

	bad := Defaults()
	bad.Environments = map[string]Environment{
		"a": {Kind: KindServer},
		"b": {Server: &server.Config{Dir: dir}},
		"c": {Kind: "vm"},
		"d": {Kind: KindServer, Namespace: "x", Server: &server.Config{Dir: "relative", Command: []string{"sh"}, HealthURL: "http://x/"}},
	}
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{
		"environments.a: kind server needs a server block",
		"environments.b: server is only for kind: server",
		`environments.c.kind "vm": want kubernetes (the default) or server`,
		"environments.d: a server environment has no cluster",
		"environments.d.server:",
	} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestPluginConfigKeys(t *testing.T) {
	cfg := Defaults()
	cfg.Settings = map[string]any{"plugin": map[string]any{"configKeys": []any{"search", "catalog.providers"}}}
	require.NoError(t, cfg.Validate())
	assert.Equal(t, []string{"search", "catalog.providers"}, cfg.PluginConfigKeys())
	cfg.Settings = map[string]any{"plugin": map[string]any{"configKeys": "search"}}
	require.ErrorContains(t, cfg.Validate(), "settings.plugin.configKeys: want a list")
}
