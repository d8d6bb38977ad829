// Package upgradelab prepares, on one machine, the outside world the upgrade
// runbook acts on: a git remote of a Backstage portal whose bump really
// changes a plugin's version, the release manifests the offline bump command
// reads (tools/stagehand-portal-bump stands in for `yarn backstage-cli
// versions:bump`, which needs the network), the portal's first image built
// and pushed for real, and the worker configuration that ties the cluster,
// the databases, the image engine and the registry together. The end-to-end
// tests and `make dev-upgrade` both use it, so the demo runs what the tests
// test.
//
// What is simulated: pods (internal/podsim plays the kubelet) and what runs
// in them — internal/portalsim reads each pod's image from the registry and
// runs the real Backstage backend of the version the image's package.json
// names against the environment's real database, so an upgrade really
// migrates and old code really refuses a migrated schema. The image build,
// the registry, git, the databases, Temporal and Kubernetes are real.
package upgradelab

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/stagehand-dev/stagehand/internal/patchlab"
)

// The Backstage releases the lab knows. FromRelease is what the portal runs
// at first; ToRelease upgrades the catalog backend 3.9.1 → 4.0.0, which
// applies two Knex migrations; BrokenRelease names a catalog backend that is
// not installed, so the upgraded backend crashes at start-up before it
// touches the database.
const (
	FromRelease   = "1.44.0"
	ToRelease     = "1.45.0"
	BrokenRelease = "1.46.0-next.1"
)

// Manifest is a Backstage release manifest (the shape of the published
// ones): every package of the release and its version.
type Manifest struct {
	ReleaseVersion string    `json:"releaseVersion"`
	Packages       []Package `json:"packages"`
}

// Package is one package of a release.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Releases are the manifests the lab writes. Only the packages the test
// backend (tools/backstage) installs are listed: catalog 3.9.1 and 4.0.0.
var Releases = []Manifest{
	{FromRelease, []Package{
		{"@backstage/backend-defaults", "0.18.0"},
		{"@backstage/plugin-catalog-backend", "3.9.1"},
		{"@backstage/plugin-auth-backend", "0.30.1"},
		{"@backstage/plugin-auth-backend-module-guest-provider", "0.2.23"},
	}},
	{ToRelease, []Package{
		{"@backstage/backend-defaults", "0.18.0"},
		{"@backstage/plugin-catalog-backend", "4.0.0"},
		{"@backstage/plugin-auth-backend", "0.30.1"},
		{"@backstage/plugin-auth-backend-module-guest-provider", "0.2.23"},
	}},
	{BrokenRelease, []Package{
		{"@backstage/backend-defaults", "0.18.0"},
		{"@backstage/plugin-catalog-backend", "4.1.0-next.1"},
		{"@backstage/plugin-auth-backend", "0.30.1"},
		{"@backstage/plugin-auth-backend-module-guest-provider", "0.2.23"},
	}},
}

// WriteManifests writes <release>.json for every release into dir.
func WriteManifests(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, m := range Releases {
		data, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, m.ReleaseVersion+".json"), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Portal is the portal's git remote and a clone to author commits in.
type Portal struct {
	// Dir is the bare repository: the remote the runbook checks out and
	// pushes the upgrade branch to.
	Dir string
	// Work is a clone on main, to author commits as a developer would.
	Work string
}

// PackageJSON is the portal's package.json at a release: the dependencies
// its image's backend loads. withAuth false leaves the auth backend out (a
// portal whose sign-in is broken).
func PackageJSON(release string, withAuth bool) string {
	var m *Manifest
	for i := range Releases {
		if Releases[i].ReleaseVersion == release {
			m = &Releases[i]
		}
	}
	if m == nil {
		panic("upgradelab: unknown release " + release)
	}
	deps := make([]string, 0, len(m.Packages))
	for _, p := range m.Packages {
		if !withAuth && strings.HasPrefix(p.Name, "@backstage/plugin-auth-backend") {
			continue
		}
		deps = append(deps, fmt.Sprintf("    %q: %q", p.Name, p.Version))
	}
	return fmt.Sprintf(`{
  "name": "backstage-portal",
  "private": true,
  "engines": {"node": "22"},
  "dependencies": {
%s
  }
}
`, strings.Join(deps, ",\n"))
}

// Dockerfile is the portal's image recipe: the app's manifests under /app
// (what the pod simulator reads to know which Backstage runs) and a RUN
// step, as a real build has.
func Dockerfile(baseImage string) string {
	return fmt.Sprintf(`FROM %s
WORKDIR /app
COPY package.json backstage.json /app/
RUN grep -q '"@backstage/plugin-catalog-backend"' /app/package.json && echo "portal image: Backstage $(cat /app/backstage.json)"
`, baseImage)
}

// NewPortal creates root/portal.git with main at FromRelease: package.json,
// backstage.json and a Dockerfile building FROM baseImage.
func NewPortal(root, baseImage string) (*Portal, error) {
	p := &Portal{Dir: filepath.Join(root, "portal.git"), Work: filepath.Join(root, "portal-work")}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	for _, s := range [][]string{
		{root, "init", "--quiet", "--bare", "--initial-branch=main", p.Dir},
		{root, "init", "--quiet", "--initial-branch=main", p.Work},
		{p.Work, "remote", "add", "origin", p.Dir},
	} {
		if _, err := patchlab.Git(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	_, err := p.Commit("portal: Backstage "+FromRelease, map[string]string{
		"package.json":   PackageJSON(FromRelease, true),
		"backstage.json": fmt.Sprintf("{\n  \"version\": %q\n}\n", FromRelease),
		"Dockerfile":     Dockerfile(baseImage),
		".dockerignore":  ".git\n",
		"README.md":      "# backstage-portal\n",
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Commit writes files into the work clone, commits them on main and pushes;
// it returns the new commit.
func (p *Portal) Commit(message string, files map[string]string) (string, error) {
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(p.Work, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	for _, args := range [][]string{{"add", "-A"}, {"commit", "--quiet", "-m", message}, {"push", "--quiet", "origin", "main"}} {
		if _, err := patchlab.Git(p.Work, args...); err != nil {
			return "", err
		}
	}
	return patchlab.Git(p.Work, "rev-parse", "HEAD")
}

// Head is a branch's head commit on the remote ("" if it has none).
func (p *Portal) Head(branch string) string {
	sha, err := patchlab.Git(p.Dir, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch)
	if err != nil {
		return ""
	}
	return sha
}

// File reads a file at a branch of the remote.
func (p *Portal) File(branch, name string) (string, error) {
	return patchlab.Git(p.Dir, "show", branch+":"+name)
}

// BuildAndPush builds the work clone's main (as checked out) into ref and
// pushes it to its registry (plain HTTP, no credentials), as the portal's
// CI did for the image production runs before the upgrade. It returns the
// pushed digest.
func (p *Portal) BuildAndPush(ctx context.Context, cli *client.Client, ref string) (string, error) {
	return BuildAndPush(ctx, cli, p.Work, ref)
}

// BuildAndPush builds the portal tree in dir (its Dockerfile) into ref and
// pushes it to its registry, plain HTTP without credentials.
func BuildAndPush(ctx context.Context, cli *client.Client, dir, ref string) (string, error) {
	var ctxTar bytes.Buffer
	if err := tarDir(&ctxTar, dir); err != nil {
		return "", err
	}
	resp, err := cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{Tags: []string{ref}, Remove: true, Dockerfile: "Dockerfile"})
	if err != nil {
		return "", fmt.Errorf("build %s: %w", ref, err)
	}
	if _, err := drain(resp.Body); err != nil {
		return "", fmt.Errorf("build %s: %w", ref, err)
	}
	auth := base64.URLEncoding.EncodeToString([]byte("{}"))
	rc, err := cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: auth})
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	digest, err := drain(rc)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return digest, nil
}

// CIHook configures the CI + Flux stand-in for GitOps production
// (tools/upgrade-ci, run detached by the remote's post-receive hook).
type CIHook struct {
	// Bin is the upgrade-ci binary.
	Bin                    string
	ImageRepo, DockerHost  string
	Kubeconfig, Context    string
	Namespace, Deployment  string
	Container, ImagePolicy string
	Delay                  time.Duration
	// Log receives the hook's output (default <remote>/ci-sim.log).
	Log string
}

// InstallCIHook writes the post-receive hook: every push to main starts
// upgrade-ci for the new commit, detached (setsid), so the push returns at
// once and the pusher's fate (even a SIGKILL) does not touch the build.
func (p *Portal) InstallCIHook(h CIHook) error {
	if h.Log == "" {
		h.Log = filepath.Join(p.Dir, "ci-sim.log")
	}
	if h.Delay == 0 {
		h.Delay = time.Second
	}
	args := []string{
		"--git-dir", p.Dir, "--image-repo", h.ImageRepo, "--docker-host", h.DockerHost,
		"--kubeconfig", h.Kubeconfig, "--context", h.Context, "--namespace", h.Namespace,
		"--deployment", h.Deployment, "--container", h.Container, "--image-policy", h.ImagePolicy,
		"--delay", h.Delay.String(),
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	hook := fmt.Sprintf(`#!/usr/bin/env bash
# post-receive hook written by Stagehand's upgradelab: CI builds and pushes
# main's image for real and a Flux stand-in rolls it (tools/upgrade-ci).
set -u
while read -r old new ref; do
  [ "$ref" = "refs/heads/main" ] || continue
  setsid -f %s %s --sha "$new" >> %s 2>&1 </dev/null
done
`, shellQuote(h.Bin), strings.Join(quoted, " "), shellQuote(h.Log))
	return os.WriteFile(filepath.Join(p.Dir, "hooks", "post-receive"), []byte(hook), 0o755)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// drain reads a Docker JSON message stream to its end; it returns the
// stream's error, if any, and the last digest it mentioned.
func drain(r io.ReadCloser) (string, error) {
	defer r.Close()
	dec := json.NewDecoder(r)
	digest := ""
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err == io.EOF {
			return digest, nil
		} else if err != nil {
			return digest, err
		}
		if m.Error != nil {
			return digest, m.Error
		}
		if i := strings.Index(m.Status, "digest: sha256:"); i >= 0 {
			digest = strings.Fields(m.Status[i+len("digest: "):])[0]
		}
	}
}

// tarDir writes the regular files of dir (not .git) as a build context.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
