package workflows_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// fullEnv is an environment as worker/config's TemplateData builds it:
// every key present, some possibly empty.
func fullEnv(ns string) map[string]any {
	return map[string]any{"name": ns, "cluster": ns, "namespace": ns, "deployment": "backstage", "container": "backstage",
		"url": "http://" + ns, "approvers": []any{"bob", "carol"}, "imagePolicy": "backstage", "database": ns + "-db", "smokeChecks": []any{}, "kind": "kubernetes"}
}

func resolvePatch(t *testing.T, envs, settings map[string]any) error {
	t.Helper()
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	r := &workflows.Resolver{Library: lib, Catalogue: cat, Environments: envs, Settings: settings}
	_, err = r.Resolve(context.Background(), workflows.RunInput{Runbook: "patch", RequestedBy: "alice",
		Params: map[string]any{"image": "reg/portal:pr-42-0123abcd-1763700000", "pr": 42}})
	return err
}

func TestResolveChecksConfigKeys(t *testing.T) {
	git := map[string]any{"git": map[string]any{"provider": "git", "repository": "/git/portal.git"}}
	envs := func(mod func(sb, prod map[string]any)) map[string]any {
		sb, prod := fullEnv("sandbox"), fullEnv("prod")
		if mod != nil {
			mod(sb, prod)
		}
		return map[string]any{"sandbox": sb, "prod": prod}
	}
	// A complete config resolves: templates that read step outputs, or
	// optional settings through index (notify), are not held against it.
	require.NoError(t, resolvePatch(t, envs(nil), git))

	for _, tc := range []struct {
		name     string
		envs     map[string]any
		settings map[string]any
		want     []string
	}{
		{"no settings.git", envs(nil), map[string]any{}, []string{
			`"git": step merge reads it in approval.message`, "also steps merge_pr",
		}},
		{"sandbox without url key", envs(func(sb, _ map[string]any) { delete(sb, "url") }), git, []string{
			`"url": step sandbox_ready reads it in with.url: {{ (index .environments .params.sandbox).url }} (also steps merge)`,
		}},
		{"sandbox url empty", envs(func(sb, _ map[string]any) { sb["url"] = "" }), git, []string{
			`step sandbox_ready: with.url is required but renders empty`,
		}},
		{"production without approvers", envs(func(_, prod map[string]any) { prod["approvers"] = []any{} }), git, []string{
			`gate merge: approval.approvers ["{{ join \",\" (index .environments .params.production).approvers }}"] name nobody`,
		}},
		{"production approvers key missing", envs(func(_, prod map[string]any) { delete(prod, "approvers") }), git, []string{
			`"approvers": step merge reads it in approval.approvers[0]`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := resolvePatch(t, tc.envs, tc.settings)
			require.Error(t, err)
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(err, &appErr), "%T", err)
			assert.Equal(t, workflows.InvalidRunbookErrorType, appErr.Type())
			assert.True(t, appErr.NonRetryable())
			assert.Contains(t, err.Error(), "nothing ran")
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestResolveCheckFollowsConditions(t *testing.T) {
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	resolve := func(def string, settings map[string]any) error {
		r := &workflows.Resolver{Catalogue: cat, Settings: settings, AllowInline: true}
		_, err := r.Resolve(context.Background(), workflows.RunInput{Definition: def, RequestedBy: "alice"})
		return err
	}
	// A step whose `if` reads only config, and is false, is not checked.
	guarded := `name: g
steps:
  - id: tell
    uses: log
    if: '{{ if index .settings "notify" }}true{{ end }}'
    with: {message: '{{ .settings.notify.channel }}'}
  - id: inner
    uses: log
    with: {message: '{{ if index .settings "notify" }}{{ .settings.notify.channel }}{{ else }}quiet{{ end }}'}
`
	require.NoError(t, resolve(guarded, nil))
	require.NoError(t, resolve(guarded, map[string]any{"notify": map[string]any{"channel": "#ops"}}))
	require.NoError(t, resolve(guarded, map[string]any{"notify": map[string]any{}}), "an empty notify is false to the if")
	err = resolve(guarded, map[string]any{"notify": map[string]any{"webhook": "x"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"channel": step tell reads it in with.message: {{ .settings.notify.channel }} (also steps inner)`)

	// A step whose `if` depends on another step may run, so it is checked;
	// what it reads from steps is stubbed, never held against the config.
	dependent := `name: d
steps:
  - id: first
    uses: noop
  - id: second
    uses: log
    if: '{{ eq .steps.first.state "succeeded" }}'
    with: {message: '{{ .steps.first.outputs.echo }} {{ .settings.team }}'}
onFailure:
  - id: undo
    uses: log
    with: {message: 'after {{ .failedStep }}: {{ .error }} {{ .settings.team }}'}
`
	require.NoError(t, resolve(dependent, map[string]any{"team": "portal"}))
	// An empty param is the caller's choice, not the config's problem.
	require.NoError(t, resolve("name: p\nparams:\n  m: {type: string, default: \"\"}\nsteps:\n  - id: a\n    uses: log\n    with: {message: '{{ .params.m }}'}\n", nil))
	err = resolve(dependent, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"team": step second reads it in with.message`)
	assert.Contains(t, err.Error(), `(also steps undo)`)
}

// TestResolveCheckStubsEveryGateOutput: the check stands in for a gate's
// outputs before it opens; one it left out (identity) stopped the render
// before the missing settings key that follows it was seen.
func TestResolveCheckStubsEveryGateOutput(t *testing.T) {
	rec := &recorder{}
	r := &workflows.Resolver{Catalogue: rec.catalogue(t), AllowInline: true, Settings: map[string]any{}}
	_, err := r.Resolve(context.Background(), workflows.RunInput{RequestedBy: "alice", Definition: `name: gate
steps:
  - id: merge
    approval: {message: "ok?", approvers: [bob], timeout: 1h}
  - id: after
    uses: test.record
    with: {value: "{{ .steps.merge.outputs.identity }} {{ .settings.nokey }}"}
`})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"nokey": step after reads it in with.value`)
}

// TestSingleServerRunbooksResolveOnAServerOnlyWorker: a worker with one
// server environment and no Kubernetes, git or image settings resolves the
// single-server paths of upgrade, plugin-install and server: the
// Kubernetes steps' config reads are behind ifs the config decides.
func TestSingleServerRunbooksResolveOnAServerOnlyWorker(t *testing.T) {
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	prod := fullEnv("prod")
	prod["kind"] = "server"
	prod["namespace"], prod["deployment"], prod["container"] = "", "", ""
	prod["server"] = map[string]any{"dir": "/srv/portal", "healthURL": "http://127.0.0.1:7007/.backstage/health/v1/readiness", "logFile": ""}
	r := &workflows.Resolver{Library: lib, Catalogue: cat, Environments: map[string]any{"prod": prod}, Settings: map[string]any{}}
	for runbook, params := range map[string]map[string]any{
		"upgrade":        {"release": "1.45.0"},
		"plugin-install": {"package": "@backstage/plugin-search-backend", "version": "2.1.7", "environment": "prod"},
		"server":         {"environment": "prod", "action": "restart"},
	} {
		_, err := r.Resolve(context.Background(), workflows.RunInput{Runbook: runbook, RequestedBy: "alice", Params: params})
		assert.NoError(t, err, runbook)
	}
	// The same worker refuses the Kubernetes path with the settings it lacks.
	k8s := fullEnv("prod")
	r.Environments = map[string]any{"prod": k8s, "portal": prod}
	_, err = r.Resolve(context.Background(), workflows.RunInput{Runbook: "plugin-install", RequestedBy: "alice",
		Params: map[string]any{"package": "@backstage/plugin-search-backend", "version": "2.1.7", "environment": "prod"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"git"`)
}
