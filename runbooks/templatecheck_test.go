package runbooks_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/runbooks"
)

func TestMissingConfigKey(t *testing.T) {
	data := map[string]any{
		"params":       map[string]any{"env": "sandbox"},
		"settings":     map[string]any{"git": map[string]any{"provider": "git"}},
		"environments": map[string]any{"sandbox": map[string]any{"url": "http://sb"}},
		"steps":        map[string]any{"a": map[string]any{"outputs": map[string]any{}}},
	}
	for _, tc := range []struct {
		text, key string
	}{
		{"{{ .settings.notify.channel }}", "notify"},
		{"{{ .settings.git.remote }}", "remote"},
		{"x {{ (index .environments .params.env).namespace }}", "namespace"},
		{"{{ index .settings.upgrade \"deploy\" }}", "upgrade"},
		// Read from a step (stubbed at resolve): not the config's.
		{"{{ .steps.a.outputs.url }}", ""},
		// The same name read from a step and from config: not claimed.
		{"{{ .steps.a.outputs.namespace }} {{ (index .environments .params.env).namespace }}", ""},
		// index on a missing key is optional access, no error at all.
		{"{{ index .settings \"notify\" }}", ""},
	} {
		t.Run(tc.text, func(t *testing.T) {
			_, err := runbooks.RenderValue(tc.text, data)
			key, ok := runbooks.MissingConfigKey(tc.text, err)
			assert.Equal(t, tc.key != "", ok, "err: %v", err)
			assert.Equal(t, tc.key, key)
		})
	}
	roots, err := runbooks.TemplateRoots("{{ (index .environments .params.env).url }} {{ .steps.a.state }}")
	require.NoError(t, err)
	assert.Equal(t, []string{"environments", "params", "steps"}, roots)
}

func TestConfigGuard(t *testing.T) {
	roots := []string{"params", "settings", "environments"}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`{{ and (ne (index .environments .params.p).kind "server") (eq .steps.x.state "succeeded") }}`, []string{`{{ ne (index .environments .params.p).kind "server" }}`}},
		{`{{ and .params.a (eq .steps.x.state "ok") .settings.b }}`, []string{`{{ .params.a }}`, `{{ .settings.b }}`}},
		{`{{ and .steps.a .steps.b }}`, nil},
		{`{{ and .run.id .steps.b }}`, nil},
		{`{{ or .params.a .steps.b }}`, nil},
		{`{{ if .params.a }}true{{ end }}`, nil},
		{`x {{ and .params.a .steps.b }}`, nil},
	} {
		assert.Equal(t, tc.want, runbooks.ConfigGuard(tc.in, roots), tc.in)
	}
}
