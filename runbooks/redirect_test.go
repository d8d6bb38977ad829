package runbooks_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// The params that say where a built-in runbook's side effects land (which
// repository a merge pushes to, which branch it merges) cannot name a URL,
// a host, an absolute path or an option: a git remote comes only from the
// worker's settings.
func TestBuiltinRedirectParamsArePatternChecked(t *testing.T) {
	lib, err := runbooks.NewLibrary("", catalogue(t))
	require.NoError(t, err)
	get := func(name string) *runbooks.Runbook {
		src, err := lib.Source(name)
		require.NoError(t, err)
		rb, err := runbooks.Parse(src.File, src.Data, catalogue(t))
		require.NoError(t, err)
		return rb
	}
	patch, upgrade := get("patch"), get("upgrade")

	base := func(extra map[string]any) map[string]any {
		p := map[string]any{"image": "reg/portal:pr-42-0123abcd-1763700000", "pr": 42}
		for k, v := range extra {
			p[k] = v
		}
		return p
	}
	for _, bad := range []map[string]any{
		{"repository": "https://evil.example/portal.git"},
		{"repository": "git@evil.example:portal.git"},
		{"repository": "/srv/git/other.git"},
		{"repository": "../other"},
		{"repository": "acme/portal/extra"},
		{"prBranch": "--upload-pack=touch /tmp/x"},
		{"prBranch": "main..evil"},
		{"prBranch": "refs/heads/x "},
		{"prBranch": "x."},
	} {
		_, err := runbooks.ResolveParams(patch, base(bad))
		assert.Error(t, err, "patch accepted %v", bad)
	}
	for _, good := range []map[string]any{
		{},
		{"repository": "acme/portal"},
		{"prBranch": "pr-42"},
		{"prBranch": "feature/v1.2-fix_3"},
	} {
		_, err := runbooks.ResolveParams(patch, base(good))
		assert.NoError(t, err, "patch refused %v", good)
	}

	_, hasRepo := upgrade.Params["repository"]
	assert.False(t, hasRepo, "upgrade pushes to settings.git.repository only")
	_, err = runbooks.ResolveParams(upgrade, map[string]any{"release": "1.45.0", "baseBranch": "-x"})
	assert.Error(t, err)
	_, err = runbooks.ResolveParams(upgrade, map[string]any{"release": "1.45.0", "baseBranch": "release/1.x"})
	assert.NoError(t, err)
}
