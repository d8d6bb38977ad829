package secrets

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResolve(t *testing.T) {
	ctx := context.Background()
	t.Setenv("STAGEHAND_SECRETS_TEST", "s3cr3t-value")
	v, err := Resolve(ctx, nil, "env:STAGEHAND_SECRETS_TEST")
	require.NoError(t, err)
	assert.Equal(t, "s3cr3t-value", v)

	_, err = Resolve(ctx, nil, "env:STAGEHAND_SECRETS_UNSET")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "STAGEHAND_SECRETS_UNSET is not set")

	_, err = Resolve(ctx, nil, "secret:portal/token")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "only env:NAME")

	leaky := func(context.Context, string) (string, error) { return "", errors.New("backend down") }
	_, err = Resolve(ctx, leaky, "secret:portal/token")
	assert.EqualError(t, err, "resolve secret:portal/token: backend down")

	empty := func(context.Context, string) (string, error) { return "", nil }
	_, err = Resolve(ctx, empty, "secret:portal/token")
	assert.EqualError(t, err, "secret secret:portal/token is empty")

	fixed := func(context.Context, string) (string, error) { return "v", nil }
	v, err = Resolve(ctx, fixed, "secret:portal/token")
	require.NoError(t, err)
	assert.Equal(t, "v", v)
}

func TestSchemes(t *testing.T) {
	ctx := context.Background()
	t.Setenv("STAGEHAND_SCHEMES_TEST", "from-env")
	kube := func(_ context.Context, ref string) (string, error) { return "from-kube:" + ref, nil }
	r := Schemes(map[string]Resolver{"env": Env, "secret": kube})
	v, err := r(ctx, "env:STAGEHAND_SCHEMES_TEST")
	require.NoError(t, err)
	assert.Equal(t, "from-env", v)
	v, err = r(ctx, "secret:db/password")
	require.NoError(t, err)
	assert.Equal(t, "from-kube:secret:db/password", v)
	_, err = r(ctx, "vault:x")
	assert.EqualError(t, err, `cannot resolve "vault:x": this worker resolves only env:, secret: references`)

	envOnly := Schemes(map[string]Resolver{"env": Env, "secret": nil})
	_, err = envOnly(ctx, "secret:db/password")
	assert.EqualError(t, err, `cannot resolve "secret:db/password": this worker resolves only env: references (secret:NAME/KEY needs `+"`secrets.kubernetes`"+` in the worker config)`)
	_, err = envOnly(ctx, "no-scheme")
	assert.ErrorContains(t, err, `cannot resolve "no-scheme"`)
}

func TestParseSecretRef(t *testing.T) {
	name, key, err := ParseSecretRef("secret:portal-db/password")
	require.NoError(t, err)
	assert.Equal(t, "portal-db", name)
	assert.Equal(t, "password", key)
	_, key, err = ParseSecretRef("secret:registry.creds/.dockerconfig_json-1")
	require.NoError(t, err)
	assert.Equal(t, ".dockerconfig_json-1", key)
	for ref, want := range map[string]string{
		"env:X":               "not a secret:NAME/KEY reference",
		"secret:portal":       "want secret:NAME/KEY",
		"secret:/key":         "want secret:NAME/KEY",
		"secret:portal/":      "want secret:NAME/KEY",
		"secret:a/b/c":        "want secret:NAME/KEY",
		"secret:Portal/key":   "not a valid Secret name",
		"secret:portal/k e y": "not a valid Secret key",
	} {
		_, _, err := ParseSecretRef(ref)
		assert.ErrorContains(t, err, want, ref)
	}
}
