package runbooks_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/runbooks"
)

func catalogue(t testing.TB) runbooks.Catalogue {
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	return cat
}

func problems(t *testing.T, src string) []runbooks.Problem {
	t.Helper()
	_, err := runbooks.Parse("rb.yaml", []byte(src), catalogue(t))
	require.Error(t, err)
	var ve *runbooks.ValidationError
	require.True(t, errors.As(err, &ve), "want a ValidationError, got %T: %v", err, err)
	return ve.Problems
}

func TestBuiltinRunbooksAreValid(t *testing.T) {
	lib, err := runbooks.NewLibrary("", catalogue(t))
	require.NoError(t, err)
	assert.Contains(t, lib.Names(), "hello")
}

func TestParseIssueExample(t *testing.T) {
	src, err := runbooks.BuiltinSources()
	require.NoError(t, err)
	var hello []byte
	for _, s := range src {
		if strings.HasSuffix(s.File, "hello.yaml") {
			hello = s.Data
		}
	}
	rb, err := runbooks.Parse("hello.yaml", hello, catalogue(t))
	require.NoError(t, err)
	assert.Equal(t, "hello", rb.Name)
	require.Len(t, rb.Steps, 3)
	assert.Equal(t, runbooks.KindApproval, rb.Steps[1].Kind())
	assert.Equal(t, []string{"bob", "carol"}, rb.Steps[1].Approval.Approvers)
	assert.Equal(t, "72h", rb.Steps[1].Approval.Timeout)
	assert.Equal(t, 3, rb.Steps[0].Retry.MaxAttempts)
	require.Len(t, rb.OnFailure, 1)
}

func TestProblemsAreLocated(t *testing.T) {
	cases := []struct {
		name, src string
		line      int
		path, msg string
	}{
		// yaml.v3 alone said line 2 (where the list starts); the loader now
		// points at the mis-indented key itself.
		{"yaml syntax", "name: x\nsteps:\n  - id: a\n   uses: log\n", 4, "", "yaml syntax"},
		{"unknown key", "name: x\nsteps:\n  - id: a\n    uses: log\n    wiht: {message: hi}\n", 5, "steps[0].wiht", `unknown field "wiht"`},
		{"unknown step type", "name: x\nsteps:\n  - id: a\n    uses: kube.frobnicate\n", 4, "steps[0].uses", `unknown step type "kube.frobnicate"`},
		{"duplicate id", "name: x\nsteps:\n  - id: a\n    uses: noop\n  - id: a\n    uses: noop\n", 5, "steps[1].id", `duplicate step id "a"`},
		{"unknown param ref", "name: x\nsteps:\n  - id: a\n    uses: log\n    with: {message: '{{ .params.nope }}'}\n", 5, "steps[0].with.message", `unknown param "nope"`},
		{"later step ref", "name: x\nsteps:\n  - id: a\n    uses: log\n    with: {message: '{{ .steps.b.outputs.x }}'}\n  - id: b\n    uses: noop\n", 5, "steps[0].with.message", `step "b", which does not finish before`},
		{"template syntax", "name: x\nsteps:\n  - id: a\n    uses: log\n    with:\n      message: '{{ .params.x '\n", 6, "steps[0].with.message", "template syntax"},
		{"bad duration", "name: x\nsteps:\n  - id: a\n    uses: noop\n    timeout: 5 minutes\n", 5, "steps[0].timeout", "invalid duration"},
		{"gate without approvers", "name: x\nsteps:\n  - id: g\n    approval:\n      message: ok?\n", 4, "steps[0].approval.approvers", "at least one approver"},
		{"bad gate timeout", "name: x\nsteps:\n  - id: g\n    approval:\n      approvers: [a]\n      timeout: soon\n", 6, "steps[0].approval.timeout", "invalid duration"},
		{"bad with key", "name: x\nsteps:\n  - id: a\n    uses: log\n    with: {mesage: hi}\n", 5, "steps[0].with.mesage", `takes no argument "mesage"`},
		{"missing required with", "name: x\nsteps:\n  - id: a\n    uses: log\n", 3, "steps[0].with", `needs argument "message"`},
		{"two forms", "name: x\nsteps:\n  - id: a\n    uses: log\n    approval: {approvers: [a]}\n", 3, "steps[0]", "exactly one of"},
		{"bad param type", "name: x\nparams:\n  n: {type: float}\nsteps:\n  - id: a\n    uses: noop\n", 3, "params.n.type", `unknown param type "float"`},
		{"bad default", "name: x\nparams:\n  e: {enum: [a, b], default: c}\nsteps:\n  - id: a\n    uses: noop\n", 3, "params.e.default", "not one of"},
		{"failedStep outside onFailure", "name: x\nsteps:\n  - id: a\n    uses: log\n    with: {message: '{{ .failedStep }}'}\n", 5, "steps[0].with.message", "only onFailure"},
		{"nested parallel", "name: x\nsteps:\n  - id: p\n    parallel:\n      - id: q\n        parallel:\n          - id: r\n            uses: noop\n", 6, "steps[0].parallel[0].parallel", "cannot be nested"},
		{"sibling ref in parallel", "name: x\nsteps:\n  - id: p\n    parallel:\n      - id: a\n        uses: noop\n      - id: b\n        uses: log\n        with: {message: '{{ .steps.a.outputs.echo }}'}\n", 9, "steps[0].parallel[1].with.message", `step "a"`},
		{"hyphen id", "name: x\nsteps:\n  - id: my-step\n    uses: noop\n", 3, "steps[0].id", "only letters, digits and _"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := problems(t, tc.src)
			var found bool
			for _, p := range ps {
				if strings.Contains(p.Message, tc.msg) {
					found = true
					assert.Equal(t, "rb.yaml", p.File)
					assert.Equal(t, tc.line, p.Line, "line of %v", p)
					if tc.path != "" {
						assert.Equal(t, tc.path, p.Path, "path of %v", p)
					}
				}
			}
			assert.True(t, found, "no problem mentions %q; got %v", tc.msg, ps)
		})
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	ps := problems(t, "name: x\nsteps:\n  - id: a\n    uses: nope\n  - id: a\n    uses: noop\n    timeout: forever\n")
	assert.GreaterOrEqual(t, len(ps), 2, "%v", ps)
}

func TestResolveParams(t *testing.T) {
	rb, err := runbooks.Parse("p.yaml", []byte(`name: p
params:
  image: {type: string, required: true, pattern: '^[^:]+:[^:]+$'}
  env: {type: string, enum: [sandbox, prod], default: sandbox}
  replicas: {type: int, default: 2}
  dry: {type: bool}
  soak: {type: duration, default: 30s}
  token: {type: string, secret: true}
steps:
  - id: a
    uses: noop
`), catalogue(t))
	require.NoError(t, err)

	got, err := runbooks.ResolveParams(rb, map[string]any{"image": "r/b:1", "replicas": "3", "dry": "true", "token": "env:GITHUB_TOKEN"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"image": "r/b:1", "env": "sandbox", "replicas": int64(3), "dry": true, "soak": "30s", "token": "env:GITHUB_TOKEN"}, got)

	_, err = runbooks.ResolveParams(rb, map[string]any{"env": "qa", "replicas": "many", "extra": 1, "token": "ghp_supersecretvalue123"})
	var pe *runbooks.ParamError
	require.True(t, errors.As(err, &pe))
	msg := err.Error()
	for _, want := range []string{"image: required param missing", `env: "qa" is not one of`, `replicas: want an int, got "many"`, "extra: unknown param", "token: must be a secret reference"} {
		assert.Contains(t, msg, want)
	}
	assert.NotContains(t, msg, "supersecret", "secret values must never be echoed")
}

func TestRenderValueKeepsTypes(t *testing.T) {
	data := map[string]any{
		"params": map[string]any{"replicas": int64(3), "image": "r/b:pr-12"},
		"steps":  map[string]any{"a": map[string]any{"outputs": map[string]any{"sha": "0123456789abcdef"}}},
	}
	v, err := runbooks.RenderValue(map[string]any{
		"n":     "{{ .params.replicas }}",
		"s":     "image {{ .params.image }}",
		"short": "{{ .steps.a.outputs.sha | short 8 }}",
		"list":  []any{"{{ .params.image }}", 4},
	}, data)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"n": int64(3), "s": "image r/b:pr-12", "short": "01234567", "list": []any{"r/b:pr-12", 4}}, v)

	_, err = runbooks.RenderValue("{{ .params.missing }}", data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing")

	ok, err := runbooks.RenderCondition(`{{ eq .params.image "r/b:pr-12" }}`, data)
	require.NoError(t, err)
	assert.True(t, ok)
}

func TestEnvironmentParams(t *testing.T) {
	rb, err := runbooks.Parse("e.yaml", []byte("name: e\nparams:\n  sandbox: {type: environment, default: sandbox}\n  production: {type: environment, default: prod}\nsteps:\n  - id: a\n    uses: noop\n"), catalogue(t))
	require.NoError(t, err)
	got, err := runbooks.ResolveParamsIn(rb, map[string]any{"production": "prod-eu"}, []string{"prod-eu", "sandbox"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"sandbox": "sandbox", "production": "prod-eu"}, got)
	_, err = runbooks.ResolveParamsIn(rb, nil, []string{"sandbox"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `production: unknown environment "prod" (configured: sandbox)`)

	// unsetIfMissing: a default the worker has no environment for resolves
	// to "" (a single-server worker has no sandbox); a name given must exist.
	rb, err = runbooks.Parse("e.yaml", []byte("name: e\nparams:\n  sandbox: {type: environment, default: sandbox, unsetIfMissing: true}\n  production: {type: environment, default: prod}\nsteps:\n  - id: a\n    uses: noop\n"), catalogue(t))
	require.NoError(t, err)
	got, err = runbooks.ResolveParamsIn(rb, nil, []string{"prod"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"sandbox": "", "production": "prod"}, got)
	_, err = runbooks.ResolveParamsIn(rb, map[string]any{"sandbox": "qa"}, []string{"prod"})
	require.ErrorContains(t, err, `sandbox: unknown environment "qa"`)
	_, err = runbooks.Parse("e.yaml", []byte("name: e\nparams:\n  s: {type: string, default: x, unsetIfMissing: true}\nsteps:\n  - id: a\n    uses: noop\n"), catalogue(t))
	require.ErrorContains(t, err, "unsetIfMissing is only allowed on environment params")
}

func TestFailFunc(t *testing.T) {
	_, err := runbooks.RenderValue(`{{ if not .params.x }}{{ fail "settings.x is not set" }}{{ end }}`, map[string]any{"params": map[string]any{"x": ""}})
	require.ErrorContains(t, err, "settings.x is not set")
}

// TestFromJSON: a param holding a JSON object becomes a map argument, and a
// malformed one fails the render naming fromJson.
func TestFromJSON(t *testing.T) {
	data := map[string]any{"params": map[string]any{"config": `{"app.title": "Portal", "n": 2}`, "bad": `{"x": `}}
	v, err := runbooks.RenderValue("{{ .params.config | fromJson }}", data)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"app.title": "Portal", "n": float64(2)}, v)
	_, err = runbooks.RenderValue("{{ .params.bad | fromJson }}", data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "fromJson")
}

func TestDictAndLast(t *testing.T) {
	data := map[string]any{"params": map[string]any{"pkg": "@backstage/plugin-notifications-backend"}, "settings": map[string]any{}}
	v, err := runbooks.RenderValue(`{{ last (split "/" .params.pkg) }}`, data)
	require.NoError(t, err)
	assert.Equal(t, "plugin-notifications-backend", v)
	v, err = runbooks.RenderValue(`{{ index (index .settings "plugin" | default dict) "addCommand" | default "plugin-add" }}`, data)
	require.NoError(t, err)
	assert.Equal(t, "plugin-add", v)
	_, err = runbooks.RenderValue(`{{ dict "a" }}`, data)
	require.ErrorContains(t, err, "key/value pairs")
}
