package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/patchlab"
)

// mergeIntoMain merges branch into the remote's main with a merge commit,
// as the patch run's git.merge step does, through the remote's work clone.
func mergeIntoMain(t *testing.T, r *patchlab.Remote, branch string) {
	t.Helper()
	for _, args := range [][]string{
		{"fetch", "--quiet", "origin"},
		{"checkout", "--quiet", "-B", "main", "origin/main"},
		{"merge", "--quiet", "--no-ff", "-m", "Merge " + branch, "origin/" + branch},
		{"push", "--quiet", "origin", "main"},
	} {
		if _, err := git(r.Work, args...); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUnmergedPRPreparesTheNextPRAfterAMerge(t *testing.T) {
	localenv.SkipIfShort(t, "git remotes")
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is needed:", err)
	}
	r, err := patchlab.NewRemote(t.TempDir(), 42)
	if err != nil {
		t.Fatal(err)
	}

	// Not merged yet: the same PR.
	got, err := unmergedPR(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.PR != 42 || got.PRHead != r.PRHead {
		t.Fatalf("unmerged pr-42: got PR #%d head %s, want #42 head %s", got.PR, got.PRHead, r.PRHead)
	}

	mergeIntoMain(t, r, "pr-42")
	next, err := unmergedPR(r)
	if err != nil {
		t.Fatal(err)
	}
	if next.PR != 43 || next.PRBranch != "pr-43" {
		t.Fatalf("after merging pr-42: got PR #%d (%s), want #43 (pr-43)", next.PR, next.PRBranch)
	}
	remoteHead, err := git(r.Dir, "rev-parse", "refs/heads/pr-43")
	if err != nil {
		t.Fatal(err)
	}
	if remoteHead != next.PRHead {
		t.Fatalf("pr-43 on the remote is %s, PRHead %s", remoteHead, next.PRHead)
	}
	// Branched from main, one commit on top, bumping the plugin version.
	mainHead, _ := git(r.Dir, "rev-parse", "refs/heads/main")
	parent, _ := git(r.Dir, "rev-parse", next.PRHead+"^")
	if parent != mainHead {
		t.Fatalf("pr-43's parent is %s, want main %s", parent, mainHead)
	}
	diff, err := git(r.Dir, "diff", mainHead, next.PRHead, "--", "package.json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(diff, "+    \"@backstage/plugin-catalog-backend\"") {
		t.Fatalf("pr-43 does not bump the catalog plugin:\n%s", diff)
	}

	// Asked again: the same pr-43, not a new branch.
	again, err := unmergedPR(r)
	if err != nil {
		t.Fatal(err)
	}
	if again.PR != 43 || again.PRHead != next.PRHead {
		t.Fatalf("second call: got PR #%d head %s, want #43 head %s", again.PR, again.PRHead, next.PRHead)
	}
	if _, err := git(r.Dir, "rev-parse", "--verify", "--quiet", "refs/heads/pr-44"); err == nil {
		t.Fatal("pr-44 was created although pr-43 is unmerged")
	}

	mergeIntoMain(t, r, "pr-43")
	third, err := unmergedPR(r)
	if err != nil {
		t.Fatal(err)
	}
	if third.PR != 44 {
		t.Fatalf("after merging pr-43: got PR #%d, want #44", third.PR)
	}
}

func TestRunWritesTheWorkerConfigAndPrintsTheImage(t *testing.T) {
	localenv.SkipIfShort(t, "git remotes")
	state := t.TempDir()
	kubeconfig := filepath.Join(state, "kube", "kubeconfig")
	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// InstallCIHook looks kubectl up; a stand-in on PATH is enough here.
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "kubectl"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	o := options{
		state: state, temporalAddress: "127.0.0.1:17233", namespace: "default", taskQueue: "stagehand",
		context: "stagehand-local", sandboxNS: "backstage-sandbox", prodNS: "backstage-prod",
		deployment: "backstage", container: "backstage", imagePolicy: "backstage",
		sandboxURL: "http://127.0.0.1:17007", prodURL: "http://127.0.0.1:17007",
		approvers: "bob, carol", pr: 42, nextPR: true,
	}
	out := captureStdout(t, func() {
		if err := run(o); err != nil {
			t.Fatal(err)
		}
	})
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
			t.Fatalf("not a quoted shell assignment: %q", line)
		}
		vars[k] = v[1 : len(v)-1]
	}
	if want := "registry.local/backstage-portal/backend:pr-42-" + vars["pr_head"][:8] + "-" + vars["now"]; vars["image"] != want {
		t.Errorf("image = %q, want %q", vars["image"], want)
	}
	if want := "patch-pr-42-" + vars["now"]; vars["run_id"] != want {
		t.Errorf("run_id = %q, want %q", vars["run_id"], want)
	}
	if vars["config_changed"] != "true" {
		t.Errorf("config_changed = %q on a first write", vars["config_changed"])
	}
	cfg, err := os.ReadFile(filepath.Join(state, "worker.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"127.0.0.1:17233", kubeconfig, "backstage-prod", "http://127.0.0.1:17007", filepath.Join(state, "git", "portal.git"), "- bob", "- carol", "preset: signin"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("worker config lacks %q:\n%s", want, cfg)
		}
	}
	// The hook (and whatever scripts it runs next to it) act on the lab's
	// production through its kubeconfig.
	if _, err := os.Stat(filepath.Join(state, "git", "portal.git", "hooks", "post-receive")); err != nil {
		t.Fatal(err)
	}
	hooks, _ := filepath.Glob(filepath.Join(state, "git", "portal.git", "hooks", "*"))
	var hook []byte
	for _, h := range hooks {
		b, _ := os.ReadFile(h)
		hook = append(hook, b...)
	}
	if !strings.Contains(string(hook), "--kubeconfig "+kubeconfig) || !strings.Contains(string(hook), "imagepolicy backstage") {
		t.Errorf("hooks do not target the lab's production:\n%s", hook)
	}

	// Same inputs again: the config is unchanged.
	out = captureStdout(t, func() {
		if err := run(o); err != nil {
			t.Fatal(err)
		}
	})
	if !strings.Contains(out, "config_changed='false'") {
		t.Errorf("second run reports a changed config:\n%s", out)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"a b": `'a b'`, "it's": `'it'\''s'`, "": `''`} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stdout = old }()
	f()
	w.Close()
	os.Stdout = old
	return <-done
}
