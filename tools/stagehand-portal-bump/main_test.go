package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeTree(t *testing.T) (dir, manifests string) {
	t.Helper()
	dir, manifests = t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(manifests, "1.45.0.json"), []byte(`{"releaseVersion":"1.45.0","packages":[
		{"name":"@backstage/plugin-catalog-backend","version":"4.0.0"},
		{"name":"@backstage/backend-defaults","version":"0.18.0"}]}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{
  "name": "portal",
  "dependencies": {
    "@backstage/plugin-catalog-backend": "3.9.1",
    "@backstage/backend-defaults": "0.18.0",
    "left-pad": "1.0.0"
  }
}
`), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "packages", "backend"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "packages", "backend", "package.json"),
		[]byte(`{"dependencies": {"@backstage/plugin-catalog-backend": "^3.9.1"}}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "backstage.json"), []byte(`{"version":"1.44.0"}`), 0o644))
	return dir, manifests
}

func TestBumpRewritesEveryPackageJSONAndBackstageJSON(t *testing.T) {
	dir, manifests := writeTree(t)
	var out bytes.Buffer
	require.NoError(t, run([]string{"--manifests", manifests, "versions:bump", "--release", "1.45.0"}, dir, &out))

	root, _ := os.ReadFile(filepath.Join(dir, "package.json"))
	require.Contains(t, string(root), `"@backstage/plugin-catalog-backend": "4.0.0"`)
	require.Contains(t, string(root), `"left-pad": "1.0.0"`, "packages outside the release are left alone")
	backend, _ := os.ReadFile(filepath.Join(dir, "packages", "backend", "package.json"))
	require.Contains(t, string(backend), `"^4.0.0"`, "the range prefix is kept")
	bs, _ := os.ReadFile(filepath.Join(dir, "backstage.json"))
	require.Contains(t, string(bs), `"version": "1.45.0"`)
	require.Contains(t, out.String(), "2 dependencies changed")
}

func TestBumpRefusesUnknownReleaseAndBadInput(t *testing.T) {
	dir, manifests := writeTree(t)
	before, _ := os.ReadFile(filepath.Join(dir, "package.json"))
	err := run([]string{"--manifests", manifests, "versions:bump", "--release", "9.9.9"}, dir, &bytes.Buffer{})
	require.ErrorContains(t, err, "unknown Backstage release")
	err = run([]string{"--manifests", manifests, "versions:bump", "--release", "1.45; rm -rf /"}, dir, &bytes.Buffer{})
	require.ErrorContains(t, err, "not a release version")
	err = run([]string{"--manifests", manifests, "bump"}, dir, &bytes.Buffer{})
	require.ErrorContains(t, err, "usage")
	after, _ := os.ReadFile(filepath.Join(dir, "package.json"))
	require.True(t, strings.EqualFold(string(before), string(after)), "a refused bump changes nothing")
}
