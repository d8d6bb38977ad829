package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/command"
	"github.com/stagehand-dev/stagehand/activities/db"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/internal/enginetest"
	"github.com/stagehand-dev/stagehand/internal/mysqltest"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

// scanRunbook uses every step type that takes a credential — a command with
// a secret in its environment, a password-protected database (snapshot and
// backup), a registry behind basic auth — and then the same with wrong
// credentials, whose failures are recorded (continueOnError) so that their
// error texts land in the history too.
const scanRunbook = `name: secrets-scan
description: every credential-taking step, succeeding and failing
params:
  context: {type: string, required: true}
  image: {type: string, required: true}
steps:
  - id: run
    uses: exec.run
    with: {command: echo-token}
  - id: snap
    uses: db.snapshot
    with: {database: portal}
  - id: backup
    uses: db.backup
    with: {database: portal, to: 'scan-{{ .run.id }}'}
  - id: build
    uses: image.build
    with: {context: '{{ .params.context }}', tags: ['{{ .params.image }}'], revision: scan-rev}
  - id: push
    uses: image.push
    with: {image: '{{ .params.image }}', username: stagehand, passwordRef: env:SCAN_REGISTRY_PASSWORD}
  - id: badPush
    uses: image.push
    continueOnError: true
    retry: {maxAttempts: 1}
    with: {image: '{{ .params.image }}', username: stagehand, passwordRef: env:SCAN_WRONG_REGISTRY_PASSWORD}
  - id: badDB
    uses: db.snapshot
    continueOnError: true
    retry: {maxAttempts: 1}
    with: {database: wrong}
  - id: badRun
    uses: exec.run
    continueOnError: true
    retry: {maxAttempts: 1}
    with: {command: fail-with-token}
`

// lockedBuffer is a log sink shared by the worker's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoSecretInHistoryOrLogs runs a real worker against a real Temporal
// server, MariaDB with a password, podman's Docker API and a registry with
// basic auth, then scans the run's whole history (as `temporal workflow
// show --output json` prints it) and the worker's debug log for every
// credential the run used, right and wrong.
func TestNoSecretInHistoryOrLogs(t *testing.T) {
	srv := devserver.Shared(t)
	maria := mysqltest.New(t)
	engine := enginetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	_, err := maria.Exec(ctx, `CREATE DATABASE backstage_plugin_catalog;
CREATE TABLE backstage_plugin_catalog.knex_migrations (id int AUTO_INCREMENT PRIMARY KEY, name varchar(255), batch int, migration_time datetime);
CREATE TABLE backstage_plugin_catalog.knex_migrations_lock (`+"`index`"+` int PRIMARY KEY, is_locked int);
INSERT INTO backstage_plugin_catalog.knex_migrations (name, batch, migration_time) VALUES ('20200101_init.js', 1, NOW());
INSERT INTO backstage_plugin_catalog.knex_migrations_lock VALUES (1, 0);`)
	require.NoError(t, err)

	stamp := fmt.Sprint(time.Now().UnixNano())
	planted := map[string]string{
		"SCAN_DB_PASSWORD":             maria.Password,
		"SCAN_WRONG_DB_PASSWORD":       "wrong-db-password-" + stamp,
		"SCAN_REGISTRY_PASSWORD":       engine.Password,
		"SCAN_WRONG_REGISTRY_PASSWORD": "wrong-registry-password-" + stamp,
		"SCAN_TOKEN":                   "command-token-" + stamp,
	}
	for k, v := range planted {
		t.Setenv(k, v)
	}

	buildCtx := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(buildCtx, "Dockerfile"),
		[]byte("FROM "+engine.BaseImage+"\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(buildCtx, "hello.txt"), []byte("hello\n"), 0o644))
	runbooksDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(runbooksDir, "secrets-scan.yaml"), []byte(scanRunbook), 0o644))

	cmdDir := t.TempDir()
	cfg := config.Defaults()
	cfg.Temporal.Address = srv.Address
	cfg.Temporal.Namespace = srv.Namespace
	cfg.Temporal.TaskQueue = "it-secrets-" + stamp
	cfg.RunbooksDir = runbooksDir
	cfg.WorkDir = t.TempDir()
	cfg.Log = config.Log{Level: "debug", Format: "json"}
	cfg.Docker = config.Docker{Host: engine.Host, ContextRoots: []string{buildCtx}}
	mariaDB := db.Database{Driver: db.DriverMySQL, Host: maria.Host, Port: maria.Port, User: maria.User, PasswordRef: "env:SCAN_DB_PASSWORD"}
	wrongDB := mariaDB
	wrongDB.PasswordRef = "env:SCAN_WRONG_DB_PASSWORD"
	cfg.Databases = map[string]db.Database{"portal": mariaDB, "wrong": wrongDB}
	cfg.Commands = map[string]command.Command{
		"echo-token":      {Argv: []string{"/bin/sh", "-c", `echo "token=$TOKEN"`}, Dirs: []string{cmdDir}, Env: map[string]string{"TOKEN": "env:SCAN_TOKEN"}},
		"fail-with-token": {Argv: []string{"/bin/sh", "-c", `echo "bad token $TOKEN" >&2; exit 3`}, Dirs: []string{cmdDir}, Env: map[string]string{"TOKEN": "env:SCAN_TOKEN"}},
	}
	// The runbook names the registry passwords itself, so the worker's
	// policy must allow them for image.push to that registry (the
	// databases' and commands' own references need no rule).
	cfg.Secrets.Allow = []secrets.Rule{
		{Ref: "env:SCAN_REGISTRY_PASSWORD", Steps: []string{"image.push"}, Hosts: []string{engine.AuthRegistryAddr}},
		{Ref: "env:SCAN_WRONG_REGISTRY_PASSWORD", Steps: []string{"secrets-scan/badPush"}, Hosts: []string{engine.AuthRegistryAddr}},
	}
	logs := &lockedBuffer{}
	logger := app.NewLogger(cfg.Log, logs)
	a, err := app.New(ctx, cfg, app.Options{Client: srv.Client, Logger: logger})
	require.NoError(t, err)
	require.NoError(t, a.Start())
	t.Cleanup(a.Stop)

	image := engine.AuthRegistryAddr + "/scan/app:" + stamp
	run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "secrets-scan-" + stamp, TaskQueue: cfg.Temporal.TaskQueue},
		workflows.WorkflowType, workflows.RunInput{Runbook: "secrets-scan", RequestedBy: "alice",
			Params: map[string]any{"context": buildCtx, "image": image}})
	require.NoError(t, err)
	var st workflows.Status
	require.NoError(t, run.Get(ctx, &st))
	require.Equal(t, workflows.RunSucceeded, st.State, "steps: %+v", st.Steps)

	// The run did use the credentials: right ones worked, wrong ones failed
	// with the error types that say so.
	steps := map[string]workflows.StepStatus{}
	for _, s := range st.Steps {
		steps[s.ID] = s
	}
	assert.Contains(t, steps["run"].Outputs["tail"], "token=***", "the command saw the token and its echo was scrubbed")
	assert.NotEmpty(t, steps["snap"].Outputs["plugins"], "snapshot over the password-protected connection")
	assert.NotEmpty(t, steps["backup"].Outputs["files"])
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, steps["push"].Outputs["digest"])
	assert.Equal(t, activities.ErrRegistryAuth, steps["badPush"].ErrorType, steps["badPush"].Error)
	assert.Equal(t, activities.ErrDatabaseError, steps["badDB"].ErrorType, steps["badDB"].Error)
	assert.Equal(t, activities.ErrCommandFailed, steps["badRun"].ErrorType, steps["badRun"].Error)
	assert.Contains(t, steps["badRun"].Error, "bad token ***")

	history := decodedHistory(t, temporalCLI(t, srv, "workflow", "show", "--workflow-id", run.GetID(), "--output", "json"))
	// The scan reads the payloads, not their base64: the references and the
	// scrubbed output must be visible in what it scans.
	for _, want := range []string{"EVENT_TYPE_ACTIVITY_TASK_COMPLETED", "env:SCAN_WRONG_REGISTRY_PASSWORD", "bad token ***", "Access denied"} {
		require.True(t, strings.Contains(history, want), "decoded history lacks %q", want)
	}
	logText := logs.String()
	require.True(t, strings.Contains(logText, "exec.run"), "the worker's log was captured")
	for name, value := range planted {
		assert.False(t, strings.Contains(history, value), "the history carries the value of %s", name)
		assert.False(t, strings.Contains(logText, value), "the worker log carries the value of %s", name)
	}
}

// decodedHistory is the history JSON with every base64 string (payload
// data, metadata) decoded next to its encoded form, so a secret inside a
// payload is found.
func decodedHistory(t *testing.T, raw string) string {
	t.Helper()
	var doc any
	require.NoError(t, json.Unmarshal([]byte(raw), &doc))
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				b.WriteString(k + "\n")
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case string:
			b.WriteString(v + "\n")
			if dec, err := base64.StdEncoding.DecodeString(v); err == nil {
				b.Write(dec)
				b.WriteString("\n")
			}
		default:
			fmt.Fprintln(&b, v)
		}
	}
	walk(doc)
	return b.String()
}

// policyRunbook names worker variables in its steps' `with`: a token for a
// web check (allowed by the worker, but for another host) and a secret for
// a command's environment that no rule allows.
const policyRunbook = `name: secrets-policy
description: steps naming references the worker does not allow them
params:
  url: {type: string, required: true}
steps:
  - id: probe
    uses: web.get
    continueOnError: true
    with: {url: '{{ .params.url }}', tokenRef: env:POLICY_WEB_TOKEN}
  - id: install
    uses: exec.run
    with: {command: install, env: {NPM_TOKEN: env:POLICY_AWS_SECRET}}
`

// TestSecretPolicyRefusesRun runs a real worker against a real Temporal
// server with a secrets.allow that does not cover what the runbook asks:
// the run fails at the first attempt with SecretNotAllowed naming the
// reference, the step and the config that would allow it; no request
// reaches the web server, no process starts, and no value is anywhere.
func TestSecretPolicyRefusesRun(t *testing.T) {
	srv := devserver.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stamp := fmt.Sprint(time.Now().UnixNano())
	planted := map[string]string{
		"POLICY_WEB_TOKEN":  "policy-web-token-" + stamp,
		"POLICY_AWS_SECRET": "policy-aws-secret-" + stamp,
	}
	for k, v := range planted {
		t.Setenv(k, v)
	}
	var hits atomic.Int32
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("ok"))
	}))
	defer web.Close()

	runbooksDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(runbooksDir, "secrets-policy.yaml"), []byte(policyRunbook), 0o644))
	cmdDir := t.TempDir()
	marker := filepath.Join(cmdDir, "ran")
	cfg := config.Defaults()
	cfg.Temporal.Address = srv.Address
	cfg.Temporal.Namespace = srv.Namespace
	cfg.Temporal.TaskQueue = "it-policy-" + stamp
	cfg.RunbooksDir = runbooksDir
	cfg.WorkDir = t.TempDir()
	cfg.Log = config.Log{Level: "debug", Format: "json"}
	cfg.Commands = map[string]command.Command{
		"install": {Argv: []string{"/bin/sh", "-c", `touch "` + marker + `"`}, Dirs: []string{cmdDir}, AllowEnv: []string{"NPM_TOKEN"}},
	}
	cfg.Secrets.Allow = []secrets.Rule{{Ref: "env:POLICY_WEB_TOKEN", Steps: []string{"web.get"}, Hosts: []string{"portal.example.com"}}}
	logs := &lockedBuffer{}
	a, err := app.New(ctx, cfg, app.Options{Client: srv.Client, Logger: app.NewLogger(cfg.Log, logs)})
	require.NoError(t, err)
	require.NoError(t, a.Start())
	t.Cleanup(a.Stop)

	run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "secrets-policy-" + stamp, TaskQueue: cfg.Temporal.TaskQueue},
		workflows.WorkflowType, workflows.RunInput{Runbook: "secrets-policy", RequestedBy: "alice", Params: map[string]any{"url": web.URL}})
	require.NoError(t, err)
	require.Error(t, run.Get(ctx, nil), "the run must fail")
	var st workflows.Status
	val, err := srv.Client.QueryWorkflow(ctx, run.GetID(), "", workflows.StatusQuery)
	require.NoError(t, err)
	require.NoError(t, val.Get(&st))
	require.Equal(t, workflows.RunFailed, st.State)
	assert.Equal(t, "install", st.FailedStep)

	steps := map[string]workflows.StepStatus{}
	for _, s := range st.Steps {
		steps[s.ID] = s
	}
	webHost := strings.TrimPrefix(web.URL, "http://")
	probe, install := steps["probe"], steps["install"]
	assert.Equal(t, activities.ErrSecretNotAllowed, probe.ErrorType, probe.Error)
	assert.Contains(t, probe.Error, "secret env:POLICY_WEB_TOKEN may not be sent to "+webHost)
	assert.Contains(t, probe.Error, "portal.example.com")
	assert.Equal(t, activities.ErrSecretNotAllowed, install.ErrorType, install.Error)
	for _, want := range []string{`secret env:POLICY_AWS_SECRET is not allowed for step "install" (exec.run) of runbook secrets-policy`,
		"secrets.allow: [{ref: env:POLICY_AWS_SECRET, steps: [exec.run]}]", "secrets-policy/install"} {
		assert.Contains(t, install.Error, want)
	}
	assert.EqualValues(t, 1, install.Attempts, "a refusal is not retried")
	assert.Zero(t, hits.Load(), "no request may reach the web server")
	_, statErr := os.Stat(marker)
	assert.True(t, os.IsNotExist(statErr), "the command must not run")

	history := decodedHistory(t, temporalCLI(t, srv, "workflow", "show", "--workflow-id", run.GetID(), "--output", "json"))
	require.Contains(t, history, "env:POLICY_AWS_SECRET")
	for name, value := range planted {
		assert.NotContains(t, history, value, "the history carries the value of %s", name)
		assert.NotContains(t, logs.String(), value, "the worker log carries the value of %s", name)
	}
}
