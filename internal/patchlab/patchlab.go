// Package patchlab prepares, on one machine, the outside world the patch
// runbook acts on: a git remote of the portal with a pull request branch, a
// CI + Flux stand-in on that remote, and the worker configuration that ties
// them to a Kubernetes control plane and a Backstage URL. The end-to-end tests
// and the local demo (`make dev`) both use it, so the demo runs what the
// tests test.
//
// What is simulated, and how: no container runtime runs here, so pods are
// played by the pod simulator (internal/podsim) and the "image build" is a
// tag name. CI and Flux are a real git post-receive hook on the remote: a push
// to main "builds" registry/…:prod-<sha8>-<unix seconds> (the conventions'
// tag) and, after a short CI delay, sets it on the production Deployment and
// on the Flux ImagePolicy's status with kubectl, as Flux's image automation
// would. Everything else — git, the Kubernetes controllers, Temporal, the
// Backstage backend — is real.
package patchlab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// ImageRepo is the conventions' image repository, under a local registry name.
const ImageRepo = "registry.local/backstage-portal/backend"

// PRImage is the tag CI gives a pull request build:
// <repo>:pr-<PR number>-<commit sha, 8 chars>-<unix seconds>.
func PRImage(repo string, pr int, head string, at time.Time) string {
	return fmt.Sprintf("%s:pr-%d-%s-%d", repo, pr, short(head), at.Unix())
}

// ProdImage is the tag CI gives a build of main: <repo>:prod-<sha8>-<unix>.
func ProdImage(repo, sha string, at time.Time) string {
	return fmt.Sprintf("%s:prod-%s-%d", repo, short(sha), at.Unix())
}

func short(sha string) string {
	if len(sha) > 8 {
		return sha[:8]
	}
	return sha
}

// Remote is a bare git repository of the portal with a pull request branch.
type Remote struct {
	// Dir is the bare repository: the remote the merge step pushes to.
	Dir string
	// Work is a clone used to author commits.
	Work string
	// PR is the pull request number; PRBranch its branch (pr-<PR>).
	PR       int
	PRBranch string
	// PRHead is the branch's head commit: the commit the PR image was
	// built from.
	PRHead string
}

// Git runs git in dir with the lab's isolated configuration, for other
// labs and tests that author commits on a lab remote.
func Git(dir string, args ...string) (string, error) { return git(dir, args...) }

// git runs git with an isolated configuration, so neither the machine's
// settings nor a developer's identity leak into the lab.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Portal Developer", "GIT_AUTHOR_EMAIL=dev@portal.local",
		"GIT_COMMITTER_NAME=Portal Developer", "GIT_COMMITTER_EMAIL=dev@portal.local")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// NewRemote creates root/portal.git with a main branch (a Backstage app's
// package.json) and a branch pr-<pr> that bumps a plugin version, the kind
// of change a patch PR carries. An existing remote in root is reused as is.
func NewRemote(root string, pr int) (*Remote, error) {
	r := &Remote{Dir: filepath.Join(root, "portal.git"), Work: filepath.Join(root, "portal-work"), PR: pr, PRBranch: fmt.Sprintf("pr-%d", pr)}
	if _, err := os.Stat(filepath.Join(r.Dir, "HEAD")); err == nil {
		head, err := git(r.Dir, "rev-parse", "refs/heads/"+r.PRBranch)
		if err != nil {
			return nil, fmt.Errorf("existing remote %s has no branch %s: %w", r.Dir, r.PRBranch, err)
		}
		r.PRHead = head
		return r, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	steps := [][]string{
		{root, "init", "--quiet", "--bare", "--initial-branch=main", r.Dir},
		{root, "init", "--quiet", "--initial-branch=main", r.Work},
		{r.Work, "remote", "add", "origin", r.Dir},
	}
	for _, s := range steps {
		if _, err := git(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	write := func(name, content string) error {
		return os.WriteFile(filepath.Join(r.Work, name), []byte(content), 0o644)
	}
	if err := write("package.json", packageJSON("3.9.1")); err != nil {
		return nil, err
	}
	if err := write("README.md", "# backstage-portal\n"); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"add", "."}, {"commit", "--quiet", "-m", "portal: initial app"}, {"push", "--quiet", "origin", "main"},
		{"checkout", "--quiet", "-b", r.PRBranch},
	} {
		if _, err := git(r.Work, args...); err != nil {
			return nil, err
		}
	}
	if err := write("package.json", packageJSON("3.9.2")); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"commit", "--quiet", "-am", fmt.Sprintf("Bump catalog backend plugin (#%d)", pr)},
		{"push", "--quiet", "origin", r.PRBranch},
	} {
		if _, err := git(r.Work, args...); err != nil {
			return nil, err
		}
	}
	head, err := git(r.Work, "rev-parse", "HEAD")
	if err != nil {
		return nil, err
	}
	r.PRHead = head
	return r, nil
}

func packageJSON(catalog string) string {
	return fmt.Sprintf(`{
  "name": "backstage-portal",
  "private": true,
  "engines": {"node": "22"},
  "packageManager": "yarn@4.5.0",
  "dependencies": {
    "@backstage/backend-defaults": "0.18.0",
    "@backstage/plugin-catalog-backend": "%s"
  }
}
`, catalog)
}

// MainHead is the remote's main branch head.
func (r *Remote) MainHead() (string, error) { return git(r.Dir, "rev-parse", "refs/heads/main") }

// Merges counts the merge commits on main whose second parent is the PR
// head: exactly one after a successful patch, however often it was retried.
func (r *Remote) Merges() (int, error) {
	out, err := git(r.Dir, "rev-list", "--merges", "--parents", "refs/heads/main")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == r.PRHead {
			n++
		}
	}
	return n, nil
}

// CIHook configures the CI + Flux stand-in.
type CIHook struct {
	Kubeconfig, Context string
	// Namespace, Deployment and Container are production's.
	Namespace, Deployment, Container string
	// ImagePolicy, if set, gets status.latestImage like Flux's would.
	ImagePolicy string
	// ImageRepo defaults to ImageRepo.
	ImageRepo string
	// Delay is the simulated CI build time (default 2s).
	Delay time.Duration
	// Log receives the hook's output (default <remote>/ci-sim.log).
	Log string
	// Kubectl is the kubectl binary (default: from PATH).
	Kubectl string
}

var hookTemplate = template.Must(template.New("hook").Parse(`#!/usr/bin/env bash
# post-receive hook written by Stagehand's patchlab: a stand-in for CI and
# Flux. A push to main "builds" {{ .Repo }}:prod-<sha8>-<unix seconds>; the
# build runs detached (setsid), like a CI system that merely watches the
# remote, so the push returns at once and the pusher's fate (even a SIGKILL)
# does not touch it.
set -u
while read -r old new ref; do
  [ "$ref" = "refs/heads/main" ] || continue
  image="{{ .Repo }}:prod-${new:0:8}-$(date +%s)"
  echo "ci-sim: main moved to ${new:0:8}; building $image"
  setsid -f "$(dirname "$0")/ci-sim-job" "$image" >> {{ .Log }} 2>&1 </dev/null
done
`))

var jobTemplate = template.Must(template.New("job").Parse(`#!/usr/bin/env bash
# The CI + Flux stand-in's job: after a simulated build time, set the image
# where Flux's image automation would: the ImagePolicy's status and the
# production Deployment.
set -eu
image="$1"
sleep {{ .DelaySeconds }}
k() { {{ .Kubectl }} --kubeconfig {{ .Kubeconfig }}{{ if .Context }} --context {{ .Context }}{{ end }} -n {{ .Namespace }} "$@"; }
echo "$(date -u +%FT%TZ) ci-sim: pushed $image"
{{- if .ImagePolicy }}
k patch imagepolicy {{ .ImagePolicy }} --type merge --subresource status \
  -p "{\"status\":{\"latestImage\":\"$image\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"Succeeded\",\"message\":\"Latest image tag resolved to ${image##*:}\",\"lastTransitionTime\":\"$(date -u +%FT%TZ)\"}]}}"
{{- end }}
k set image deployment/{{ .Deployment }} {{ .Container }}="$image"
echo "$(date -u +%FT%TZ) flux-sim: rolled $image to {{ .Namespace }}/{{ .Deployment }}"
`))

// InstallCIHook writes the post-receive hook into the remote.
func (r *Remote) InstallCIHook(h CIHook) error {
	if h.ImageRepo == "" {
		h.ImageRepo = ImageRepo
	}
	if h.Delay == 0 {
		h.Delay = 2 * time.Second
	}
	if h.Log == "" {
		h.Log = filepath.Join(r.Dir, "ci-sim.log")
	}
	if h.Kubectl == "" {
		p, err := exec.LookPath("kubectl")
		if err != nil {
			return fmt.Errorf("the CI + Flux stand-in needs kubectl: %w", err)
		}
		h.Kubectl = p
	}
	data := map[string]any{
		"Repo": h.ImageRepo, "DelaySeconds": fmt.Sprintf("%.1f", h.Delay.Seconds()), "Kubectl": h.Kubectl,
		"Kubeconfig": h.Kubeconfig, "Context": h.Context, "Namespace": h.Namespace, "Deployment": h.Deployment,
		"Container": h.Container, "ImagePolicy": h.ImagePolicy, "Log": h.Log,
	}
	for name, tmpl := range map[string]*template.Template{"post-receive": hookTemplate, "ci-sim-job": jobTemplate} {
		var b bytes.Buffer
		if err := tmpl.Execute(&b, data); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(r.Dir, "hooks", name), b.Bytes(), 0o755); err != nil {
			return err
		}
	}
	return nil
}
