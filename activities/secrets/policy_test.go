package secrets

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
)

// counting is an inner Resolver that records every reference it was asked
// for, so a test can assert that a refused use never read the value.
type counting struct {
	values map[string]string
	asked  []string
}

func (c *counting) resolve(_ context.Context, ref string) (string, error) {
	c.asked = append(c.asked, ref)
	if v, ok := c.values[ref]; ok {
		return v, nil
	}
	return "", errors.New("not set")
}

func stepCtx(typ, runbook, id string) context.Context {
	return activities.WithStepUse(context.Background(), activities.StepUse{Type: typ, Runbook: runbook, StepID: id})
}

func mustPolicy(t *testing.T, rules ...Rule) *Policy {
	t.Helper()
	p, err := NewPolicy(rules)
	require.NoError(t, err)
	return p
}

const tokenValue = "ghp_policy-test-token-value"

func TestGuard(t *testing.T) {
	p := mustPolicy(t,
		Rule{Ref: "env:GITHUB_TOKEN", Steps: []string{"git.merge", "git.checkout"}, Hosts: []string{"github.com", "api.github.com"}},
		Rule{Ref: "env:REGISTRY_PASSWORD", Steps: []string{"image.push"}, Hosts: []string{"registry.example.com:5000"}},
		Rule{Ref: "secret:portal-db/*", Steps: []string{"db.*"}, Hosts: []string{"db.example.com"}},
		Rule{Ref: "env:NPM_TOKEN", Steps: []string{"upgrade/install"}},
		Rule{Ref: "env:SLACK_WEBHOOK", Steps: []string{"notify.send"}, Hosts: []string{"hooks.slack.com"}},
	)
	values := map[string]string{
		"env:GITHUB_TOKEN": tokenValue, "env:REGISTRY_PASSWORD": "reg-pw-value", "secret:portal-db/password": "db-pw-value",
		"env:NPM_TOKEN": "npm-token-value", "env:SLACK_WEBHOOK": "https://hooks.slack.com/services/T0/B0/xyzzy-secret-path",
		"env:EVIL_WEBHOOK": "https://evil.example.net/hook/secret-path", "env:AWS_SECRET_ACCESS_KEY": "aws-secret-value",
	}

	cases := []struct {
		name    string
		ctx     context.Context
		ref     string
		use     Use
		allowed bool
		// want are substrings of the refusal.
		want []string
	}{
		{"allowed step and host", stepCtx("git.merge", "patch", "merge_pr"), "env:GITHUB_TOKEN", Use{Host: "api.github.com:443"}, true, nil},
		{"host without port matches any port", stepCtx("git.checkout", "", "co"), "env:GITHUB_TOKEN", Use{Host: "GitHub.com:8443"}, true, nil},
		{"token to another host", stepCtx("git.merge", "patch", "merge_pr"), "env:GITHUB_TOKEN", Use{Host: "evil.example.net:443"}, false,
			[]string{"env:GITHUB_TOKEN may not be sent to evil.example.net:443", `step "merge_pr" (git.merge) of runbook patch`, "github.com, api.github.com",
				"secrets.allow: [{ref: env:GITHUB_TOKEN, steps: [git.merge], hosts: [evil.example.net:443]}]", "patch/merge_pr"}},
		{"token for another step type", stepCtx("exec.run", "upgrade", "bump"), "env:GITHUB_TOKEN", Use{Local: true}, false,
			[]string{"secret env:GITHUB_TOKEN is not allowed for step \"bump\" (exec.run) of runbook upgrade", "steps: [exec.run]"}},
		{"unlisted reference", stepCtx("exec.run", "", "dump"), "env:AWS_SECRET_ACCESS_KEY", Use{Local: true}, false,
			[]string{"env:AWS_SECRET_ACCESS_KEY is not allowed", "{ref: env:AWS_SECRET_ACCESS_KEY, steps: [exec.run]}"}},
		{"host:port rule needs that port", stepCtx("image.push", "", "push"), "env:REGISTRY_PASSWORD", Use{Host: "registry.example.com:5001"}, false,
			[]string{"may not be sent to registry.example.com:5001", "registry.example.com:5000"}},
		{"host:port rule", stepCtx("image.push", "", "push"), "env:REGISTRY_PASSWORD", Use{Host: "registry.example.com:5000"}, true, nil},
		{"prefix ref and step prefix", stepCtx("db.backup", "", "b"), "secret:portal-db/password", Use{Host: "db.example.com"}, true, nil},
		{"prefix ref, other step", stepCtx("web.get", "", "g"), "secret:portal-db/password", Use{Host: "db.example.com"}, false, []string{"not allowed"}},
		{"runbook/step rule", stepCtx("exec.run", "upgrade", "install"), "env:NPM_TOKEN", Use{Local: true}, true, nil},
		{"runbook/step rule, other step", stepCtx("exec.run", "upgrade", "bump"), "env:NPM_TOKEN", Use{Local: true}, false, []string{"not allowed"}},
		{"runbook/step rule, inline definition", stepCtx("exec.run", "", "install"), "env:NPM_TOKEN", Use{Local: true}, false, []string{"not allowed"}},
		{"network use of a rule without hosts", stepCtx("exec.run", "upgrade", "install"), "env:NPM_TOKEN", Use{Host: "registry.npmjs.org"}, false,
			[]string{"may not be sent to registry.npmjs.org", "(hosts allowed for it there: none)"}},
		{"webhook value on an allowed host", stepCtx("notify.send", "", "n"), "env:SLACK_WEBHOOK", Use{HostInValue: true}, true, nil},
		{"undeclared use", stepCtx("git.merge", "", "m"), "env:GITHUB_TOKEN", Use{}, false, []string{"did not declare where the value goes"}},
		{"outside any step", context.Background(), "env:GITHUB_TOKEN", Use{Host: "github.com"}, false, []string{"the worker (outside any step)"}},
		{"configured by the worker config", context.Background(), "env:AWS_SECRET_ACCESS_KEY", Use{Host: "db.internal", Configured: true}, true, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inner := &counting{values: values}
			v, err := ResolveFor(c.ctx, Guard(p, inner.resolve), c.ref, c.use)
			if c.allowed {
				require.NoError(t, err)
				assert.Equal(t, values[c.ref], v)
				return
			}
			require.Error(t, err)
			var na *NotAllowedError
			require.True(t, errors.As(err, &na), "want a *NotAllowedError, got %T: %v", err, err)
			assert.Empty(t, inner.asked, "a refused use must not read the secret")
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
			for _, val := range values {
				assert.NotContains(t, err.Error(), val)
			}
			refusal := Refusal(err)
			var ae *temporal.ApplicationError
			require.True(t, errors.As(refusal, &ae))
			assert.Equal(t, activities.ErrSecretNotAllowed, ae.Type())
			assert.True(t, ae.NonRetryable())
		})
	}

	// A webhook whose value points elsewhere is read (the host is in the
	// value) but refused before it is returned, and the refusal names the
	// host only.
	inner := &counting{values: values}
	guarded := Guard(mustPolicy(t, Rule{Ref: "env:EVIL_WEBHOOK", Steps: []string{"notify.send"}, Hosts: []string{"hooks.slack.com"}}), inner.resolve)
	v, err := ResolveFor(stepCtx("notify.send", "", "n"), guarded, "env:EVIL_WEBHOOK", Use{HostInValue: true})
	require.Error(t, err)
	assert.Empty(t, v)
	assert.Contains(t, err.Error(), "may not be sent to evil.example.net:443")
	assert.NotContains(t, err.Error(), "secret-path")
	assert.NotNil(t, Refusal(err))

	// No policy allows nothing.
	_, err = ResolveFor(stepCtx("git.merge", "", "m"), Guard(nil, inner.resolve), "env:GITHUB_TOKEN", Use{Host: "github.com"})
	assert.NotNil(t, Refusal(err))

	// Other errors are not refusals.
	assert.Nil(t, Refusal(errors.New("x")))
	assert.Nil(t, Refusal(nil))
}

func TestRuleCheck(t *testing.T) {
	cases := []struct {
		rule Rule
		want string
	}{
		{Rule{Steps: []string{"git.merge"}}, "ref is empty"},
		{Rule{Ref: "GITHUB_TOKEN", Steps: []string{"git.merge"}}, "want SCHEME:NAME"},
		{Rule{Ref: "env:*TOKEN", Steps: []string{"git.merge"}}, "* may only end"},
		{Rule{Ref: "env:GITHUB_TOKEN"}, "steps is empty"},
		{Rule{Ref: "env:GITHUB_TOKEN", Steps: []string{"*"}}, `step "*"`},
		{Rule{Ref: "env:GITHUB_TOKEN", Steps: []string{"patch/*"}}, "want runbook/stepId"},
		{Rule{Ref: "env:GITHUB_TOKEN", Steps: []string{"a/b/c"}}, "want runbook/stepId"},
		{Rule{Ref: "env:GITHUB_TOKEN", Steps: []string{"git.*.x*"}}, "* may only end a step type"},
		{Rule{Ref: "env:GITHUB_TOKEN", Steps: []string{"git.merge"}, Hosts: []string{"https://github.com"}}, "want a host name or host:port"},
		{Rule{Ref: "env:GITHUB_TOKEN", Steps: []string{"git.merge"}, Hosts: []string{"user@github.com"}}, "want a host name or host:port"},
		{Rule{Ref: "env:GITHUB_TOKEN", Steps: []string{"git.merge"}, Hosts: []string{""}}, "want a host name or host:port"},
	}
	for _, c := range cases {
		_, err := NewPolicy([]Rule{{Ref: "env:OK", Steps: []string{"exec.run"}}, c.rule})
		if assert.Error(t, err, "%+v", c.rule) {
			assert.Contains(t, err.Error(), c.want)
			assert.True(t, strings.HasPrefix(err.Error(), "secrets.allow[1]: "), err.Error())
		}
	}
	_, err := NewPolicy([]Rule{{Ref: "secret:portal-db/*", Steps: []string{"db.*", "upgrade/install"}, Hosts: []string{"db.example.com", "10.0.0.1:5432", "*"}}})
	assert.NoError(t, err)
}

// Resolve keeps a refusal a refusal, so call sites can pass it on.
func TestResolveKeepsRefusal(t *testing.T) {
	r := func(context.Context, string) (string, error) { return "", &NotAllowedError{msg: "no"} }
	_, err := Resolve(context.Background(), r, "env:X")
	assert.NotNil(t, Refusal(err))
	assert.EqualError(t, err, "no")
}

// A rule naming a host without a port allows its https port and any other
// port over TLS, but not plain http: a run choosing http://github.com/...
// would otherwise put the token on the wire in clear text (port 80 answers
// with a redirect only after reading it). Plain http needs the rule to
// name host:port, or a loopback host.
func TestGuardPlaintext(t *testing.T) {
	p := mustPolicy(t,
		Rule{Ref: "env:GITHUB_TOKEN", Steps: []string{"git.merge"}, Hosts: []string{"github.com", "git.internal:8080", "localhost", "127.0.0.1"}},
		Rule{Ref: "env:HOOK", Steps: []string{"notify.send"}, Hosts: []string{"hooks.example.com"}},
	)
	c := &counting{values: map[string]string{"env:GITHUB_TOKEN": tokenValue, "env:HOOK": "http://hooks.example.com/secret-path"}}
	g := Guard(p, c.resolve)
	ctx := stepCtx("git.merge", "", "merge")
	for _, ok := range []Use{
		{Host: "github.com:443"},
		{Host: "github.com:8443"},
		{Host: "git.internal:8080", Plaintext: true},
		{Host: "localhost:3000", Plaintext: true},
		{Host: "127.0.0.1:80", Plaintext: true},
	} {
		_, err := ResolveFor(ctx, g, "env:GITHUB_TOKEN", ok)
		assert.NoError(t, err, "%+v", ok)
	}
	c.asked = nil
	_, err := ResolveFor(ctx, g, "env:GITHUB_TOKEN", Use{Host: "github.com:80", Plaintext: true})
	var na *NotAllowedError
	require.ErrorAs(t, err, &na)
	assert.Contains(t, err.Error(), "plain http")
	assert.Empty(t, c.asked, "a refused plain-http use read the value")

	_, err = ResolveFor(stepCtx("notify.send", "", "tell"), g, "env:HOOK", Use{HostInValue: true})
	require.ErrorAs(t, err, &na)
	assert.Contains(t, err.Error(), "plain http")
	assert.NotContains(t, err.Error(), "secret-path")
}
