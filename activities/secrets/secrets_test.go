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
