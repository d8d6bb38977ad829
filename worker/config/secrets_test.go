package config

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// The commented secrets.allow example of config/local.yaml, uncommented,
// loads and validates: what the file shows an operator works.
func TestShippedSecretsAllowExample(t *testing.T) {
	raw, err := os.ReadFile("../../config/local.yaml")
	require.NoError(t, err)
	text := string(raw)
	start := strings.Index(text, "# secrets:\n")
	require.GreaterOrEqual(t, start, 0, "config/local.yaml lost its secrets example")
	var lines []string
	for _, l := range strings.Split(text[start:], "\n") {
		l = strings.TrimPrefix(l, "# ")
		if strings.HasPrefix(strings.TrimSpace(l), "#") || l == "" {
			continue
		}
		lines = append(lines, l)
	}
	example := strings.Join(lines, "\n")
	// The example names a cluster for secret:; keep only allow.
	example = regexp.MustCompile(`(?m)^  kubernetes:.*\n`).ReplaceAllString(example, "")
	path := filepath.Join(t.TempDir(), "worker.yaml")
	require.NoError(t, os.WriteFile(path, []byte("temporal: {address: 127.0.0.1:7233}\n"+example+"\n"), 0o644))
	cfg, err := Load(path)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Len(t, cfg.Secrets.Allow, 3)
	assert.Equal(t, secrets.Rule{Ref: "env:GITHUB_TOKEN", Steps: []string{"git.checkout", "git.commitPush", "git.merge"},
		Hosts: []string{"github.com", "api.github.com"}}, cfg.Secrets.Allow[0])
	assert.Equal(t, []string{"upgrade/install"}, cfg.Secrets.Allow[1].Steps)
}

func TestValidateSecretsAllow(t *testing.T) {
	cfg := Defaults()
	cfg.Secrets.Allow = []secrets.Rule{
		{Ref: "env:GITHUB_TOKEN", Steps: []string{"git.merge"}, Hosts: []string{"github.com"}},
		{Ref: "GITHUB_TOKEN"},
		{Ref: "env:X", Steps: []string{"exec.run"}, Hosts: []string{"https://github.com/"}},
	}
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{"secrets.allow[1]: ref \"GITHUB_TOKEN\": want SCHEME:NAME", "secrets.allow[1]: ref GITHUB_TOKEN: steps is empty",
		`secrets.allow[2]: ref env:X: host "https://github.com/"`} {
		assert.Contains(t, err.Error(), want)
	}
}

// The settings' own references are allowed for the steps the built-in
// runbooks pass them to, and only towards the hosts the settings name.
func TestImpliedSecretRules(t *testing.T) {
	cfg := Defaults()
	cfg.Settings = map[string]any{
		"git": map[string]any{"provider": "git", "repository": "https://git.example.com/platform/portal.git", "tokenRef": "env:GIT_TOKEN"},
		"upgrade": map[string]any{"imageRepository": "registry.example.com:5000/portal/backend",
			"registryPasswordRef": "secret:registry/password"},
		"notify": map[string]any{"webhooks": []any{map[string]any{"urlRef": "env:SLACK_WEBHOOK"}, map[string]any{"url": "https://x"}}},
	}
	assert.Equal(t, []secrets.Rule{
		{Ref: "env:GIT_TOKEN", Steps: gitSteps, Hosts: []string{"git.example.com"}, Origin: "settings.git.tokenRef"},
		{Ref: "secret:registry/password", Steps: []string{"image.push"}, Hosts: []string{"registry.example.com:5000"}, Origin: "settings.upgrade.registryPasswordRef"},
		{Ref: "env:SLACK_WEBHOOK", Steps: []string{"notify.send"}, Hosts: []string{"*"}, Origin: "settings.notify.webhooks[0].urlRef"},
	}, cfg.impliedSecretRules())

	cfg.Settings = map[string]any{
		"git":     map[string]any{"provider": "github", "repository": "platform/portal", "tokenRef": "env:GITHUB_TOKEN", "apiURL": "https://ghe.example.com/api/v3/"},
		"upgrade": map[string]any{"imageRepository": "backstage/backend", "registryPasswordRef": "env:HUB"},
	}
	rules := cfg.impliedSecretRules()
	require.Len(t, rules, 2)
	assert.Equal(t, []string{"ghe.example.com", "github.com"}, rules[0].Hosts)
	assert.Equal(t, []string{"docker.io"}, rules[1].Hosts)

	cfg.Settings = nil
	cfg.Environments = map[string]Environment{"sandbox": {URL: "https://portal.sandbox.example.com", SmokeChecks: []map[string]any{
		{"preset": "catalog"}, {"path": "/api/x", "tokenRef": "env:SMOKE_TOKEN"}}}}
	assert.Equal(t, []secrets.Rule{{Ref: "env:SMOKE_TOKEN", Steps: []string{"web.smoke", "web.get"}, Hosts: []string{"portal.sandbox.example.com"},
		Origin: "environments.sandbox.smokeChecks[1].tokenRef"}}, cfg.impliedSecretRules())

	// No settings, no implied rules: every reference a run names is refused.
	cfg.Environments = nil
	cfg.Settings = nil
	assert.Empty(t, cfg.impliedSecretRules())
	p, err := cfg.SecretPolicy()
	require.NoError(t, err)
	assert.Empty(t, p.Rules())
}

// A config that names an http:// repository, API or environment chose
// clear text for it: the implied rule names host:port, the form the
// policy needs to send a value over plain http (a bare host allows TLS
// only).
func TestImpliedSecretRulesPlainHTTP(t *testing.T) {
	cfg := Defaults()
	cfg.Settings = map[string]any{
		"git": map[string]any{"provider": "github", "repository": "http://git.internal/platform/portal.git", "tokenRef": "env:GIT_TOKEN",
			"apiURL": "http://ghe.internal/api/v3/"},
	}
	cfg.Environments = map[string]Environment{"sandbox": {URL: "http://portal.sandbox.internal", SmokeChecks: []map[string]any{
		{"path": "/api/x", "tokenRef": "env:SMOKE_TOKEN"}}}}
	rules := cfg.impliedSecretRules()
	require.Len(t, rules, 2)
	assert.Equal(t, []string{"git.internal:80", "ghe.internal:80", "github.com"}, rules[0].Hosts)
	assert.Equal(t, []string{"portal.sandbox.internal:80"}, rules[1].Hosts)

	p, err := cfg.SecretPolicy()
	require.NoError(t, err)
	ctx := activities.WithStepUse(context.Background(), activities.StepUse{Type: "web.smoke", StepID: "smoke"})
	_, err = secrets.ResolveFor(ctx, secrets.Guard(p, func(context.Context, string) (string, error) { return "v", nil }),
		"env:SMOKE_TOKEN", secrets.Use{Host: "portal.sandbox.internal:80", Plaintext: true})
	assert.NoError(t, err)
}
