package upgradelab

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReleasesChangeTheCatalogBackend(t *testing.T) {
	versions := map[string]string{}
	for _, m := range Releases {
		for _, p := range m.Packages {
			if p.Name == "@backstage/plugin-catalog-backend" {
				versions[m.ReleaseVersion] = p.Version
			}
		}
	}
	assert.Equal(t, "3.9.1", versions[FromRelease])
	assert.Equal(t, "4.0.0", versions[ToRelease], "the upgrade applies catalog 4.0.0's migrations")
	assert.NotContains(t, []string{"3.9.1", "4.0.0"}, versions[BrokenRelease], "the broken release names a backend tools/backstage does not have")
}

func TestPortalAndManifests(t *testing.T) {
	root := t.TempDir()
	p, err := NewPortal(root, "localhost/base:1")
	require.NoError(t, err)
	bs, err := p.File("main", "backstage.json")
	require.NoError(t, err)
	assert.Contains(t, bs, FromRelease)
	df, err := p.File("main", "Dockerfile")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(df, "FROM localhost/base:1\n"))
	assert.NotEmpty(t, p.Head("main"))
	assert.Empty(t, p.Head("upgrade-"+ToRelease))

	var pkg struct{ Dependencies map[string]string }
	require.NoError(t, json.Unmarshal([]byte(PackageJSON(FromRelease, false)), &pkg))
	assert.NotContains(t, pkg.Dependencies, "@backstage/plugin-auth-backend")
	assert.Equal(t, "3.9.1", pkg.Dependencies["@backstage/plugin-catalog-backend"])

	dir := filepath.Join(root, "manifests")
	require.NoError(t, WriteManifests(dir))
	data, err := os.ReadFile(filepath.Join(dir, ToRelease+".json"))
	require.NoError(t, err)
	var m Manifest
	require.NoError(t, json.Unmarshal(data, &m))
	assert.Equal(t, ToRelease, m.ReleaseVersion)
}

func TestCIHookStartsTheBuildForMainOnly(t *testing.T) {
	root := t.TempDir()
	p, err := NewPortal(filepath.Join(root, "lab"), "localhost/base:1")
	require.NoError(t, err)
	// A stand-in for upgrade-ci that records how it was called.
	record := filepath.Join(root, "calls")
	bin := filepath.Join(root, "fake-ci")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" >> "+record+"\n"), 0o755))
	require.NoError(t, p.InstallCIHook(CIHook{Bin: bin, ImageRepo: "reg/portal", DockerHost: "unix:///x.sock",
		Kubeconfig: "/k'c", Namespace: "prod", Deployment: "backstage", Container: "backstage", ImagePolicy: "backstage"}))
	sha, err := p.Commit("bump", map[string]string{"README.md": "# portal 2\n"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(record)
		return err == nil && strings.Contains(string(b), "--sha "+sha)
	}, 10*time.Second, 50*time.Millisecond, "the hook starts the CI build for the new main commit")
	b, _ := os.ReadFile(record)
	assert.Contains(t, string(b), "--kubeconfig /k'c --context  --namespace prod")
	assert.Equal(t, 1, strings.Count(string(b), "--sha"), "one build per push to main")
}
