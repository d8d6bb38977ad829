// Package gittest builds real git repositories on disk for tests: a bare
// "origin" that merge steps push to, and a work clone that plays the
// developers who open pull requests and push to main.
//
// Everything runs the real git binary with argv and an isolated
// configuration (HOME and global config point into the test's temp dir), so
// tests neither read nor change the machine's git settings.
package gittest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/localenv"
)

// Repo is a bare origin with a main branch, and a clone to author commits in.
type Repo struct {
	t testing.TB
	// Origin is the bare repository's path: the remote a step is given.
	Origin string
	// Work is a non-bare clone of Origin.
	Work string
	home string
}

// New creates a bare origin whose main branch has one commit (README.md and
// app.txt), and a work clone of it. It fails the test when git is missing;
// under -short (the unit tier) it skips the test instead.
func New(t testing.TB) *Repo {
	t.Helper()
	localenv.SkipIfShort(t, "git remotes")
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is not installed: install it (apt-get install git); .ci/run does")
	}
	root := t.TempDir()
	r := &Repo{t: t, Origin: filepath.Join(root, "origin.git"), Work: filepath.Join(root, "work"), home: filepath.Join(root, "home")}
	if err := os.MkdirAll(r.home, 0o700); err != nil {
		t.Fatal(err)
	}
	r.Run(root, "init", "--bare", "--quiet", "--initial-branch=main", r.Origin)
	r.Run(root, "init", "--quiet", "--initial-branch=main", r.Work)
	r.Git("remote", "add", "origin", r.Origin)
	r.WriteFile("README.md", "# portal\n")
	r.WriteFile("app.txt", "line 1\nline 2\nline 3\n")
	r.Git("add", ".")
	r.Git("commit", "--quiet", "-m", "initial commit")
	r.Git("push", "--quiet", "origin", "main")
	return r
}

// Env is the environment git runs with in these repositories.
func (r *Repo) Env() []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+r.home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+filepath.Join(r.home, ".gitconfig"),
		"GIT_AUTHOR_NAME=Dev", "GIT_AUTHOR_EMAIL=dev@example.com",
		"GIT_COMMITTER_NAME=Dev", "GIT_COMMITTER_EMAIL=dev@example.com",
		"GIT_TERMINAL_PROMPT=0", "LC_ALL=C",
	)
}

// Run runs git in dir and returns its trimmed stdout; failure ends the test.
func (r *Repo) Run(dir string, args ...string) string {
	r.t.Helper()
	out, err := r.TryRun(dir, args...)
	if err != nil {
		r.t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// TryRun runs git in dir and returns stdout, or an error with stderr.
func (r *Repo) TryRun(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = r.Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", &runError{err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return strings.TrimSpace(stdout.String()), nil
}

type runError struct {
	err    error
	stderr string
}

func (e *runError) Error() string { return e.err.Error() + ": " + e.stderr }

// Git runs git in the work clone.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	return r.Run(r.Work, args...)
}

// InOrigin runs git in the bare origin.
func (r *Repo) InOrigin(args ...string) string {
	r.t.Helper()
	return r.Run(r.Origin, args...)
}

// WriteFile writes a file in the work clone.
func (r *Repo) WriteFile(name, content string) {
	r.t.Helper()
	p := filepath.Join(r.Work, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// Commit commits files on branch (created from origin's main when new) and
// pushes the branch to origin. It returns the new commit.
func (r *Repo) Commit(branch, msg string, files map[string]string) string {
	r.t.Helper()
	r.Git("fetch", "--quiet", "origin")
	if _, err := r.TryRun(r.Work, "rev-parse", "--verify", "--quiet", "refs/remotes/origin/"+branch); err == nil {
		r.Git("checkout", "--quiet", "-B", branch, "origin/"+branch)
	} else {
		r.Git("checkout", "--quiet", "-B", branch, "origin/main")
	}
	for name, content := range files {
		r.WriteFile(name, content)
	}
	r.Git("add", ".")
	r.Git("commit", "--quiet", "-m", msg)
	r.Git("push", "--quiet", "origin", branch)
	return r.Git("rev-parse", "HEAD")
}

// Head returns the commit a branch points to in origin.
func (r *Repo) Head(branch string) string {
	r.t.Helper()
	return r.InOrigin("rev-parse", "refs/heads/"+branch)
}

// Parents returns a commit's parents in origin.
func (r *Repo) Parents(commit string) []string {
	r.t.Helper()
	f := strings.Fields(r.InOrigin("rev-list", "--parents", "-n", "1", commit))
	return f[1:]
}

// Count returns how many commits of origin's branch match `git log` args,
// e.g. Count("main", "--merges").
func (r *Repo) Count(branch string, args ...string) int {
	r.t.Helper()
	out := r.InOrigin(append(append([]string{"rev-list", "--count"}, args...), "refs/heads/"+branch)...)
	n, err := strconv.Atoi(out)
	if err != nil {
		r.t.Fatalf("count commits: %v", err)
	}
	return n
}
