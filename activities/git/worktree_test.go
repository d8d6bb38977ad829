package git

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/gittest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The upgrade path: a new branch from main, a change, one commit pushed
// with our message and author; every step retried finds its own earlier
// work instead of cloning, committing or pushing twice.
func TestCheckoutCommitPushIdempotent(t *testing.T) {
	repo := gittest.New(t)
	mainHead := repo.Head("main")
	a := newActivities(t)
	checkoutWith := map[string]any{"remote": repo.Origin, "branch": "stagehand/bump-1.45"}

	co := mustStep(t, a, "git.checkout", checkoutWith)
	dir, _ := co["dir"].(string)
	if co["sha"] != mainHead || co["shortSha"] != mainHead[:8] || co["branch"] != "stagehand/bump-1.45" ||
		!strings.HasPrefix(dir, filepath.Join(a.WorkDir, "trees")+string(filepath.Separator)) {
		t.Fatalf("checkout outputs %v, want main's %s under %s/trees", co, mainHead, a.WorkDir)
	}

	// A retried checkout reuses the tree (the marker inside .git
	// survives) and resets it (the leftover goes).
	writeFile(t, dir, ".git/stagehand-test-marker", "same repository\n")
	writeFile(t, dir, "node_modules/leftover.js", "from attempt 1\n")
	writeFile(t, dir, "app.txt", "half-made change\n")
	again := mustStep(t, a, "git.checkout", checkoutWith)
	if !reflect.DeepEqual(again, co) {
		t.Errorf("retried checkout outputs %v, want %v", again, co)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git", "stagehand-test-marker")); err != nil {
		t.Errorf("the retry cloned again: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); !os.IsNotExist(err) {
		t.Errorf("the retry left node_modules behind: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "app.txt")); string(b) != "line 1\nline 2\nline 3\n" {
		t.Errorf("the retry left app.txt changed: %q", b)
	}

	// What a command (yarn backstage-cli versions:bump) would do.
	writeFile(t, dir, "app.txt", "line 1\nline 2 bumped\nline 3\n")
	writeFile(t, dir, "packages/backend/package.json", "{}\n")
	if err := os.Remove(filepath.Join(dir, "README.md")); err != nil {
		t.Fatal(err)
	}
	pushWith := map[string]any{"dir": dir, "message": "Bump Backstage to 1.45\n\nRun by Stagehand",
		"authorName": "Upgrade Bot", "authorEmail": "bot@example.com"}
	cp := mustStep(t, a, "git.commitPush", pushWith)
	pushed := repo.Head("stagehand/bump-1.45")
	wantFiles := []any{"README.md", "app.txt", "packages/backend/package.json"}
	if cp["sha"] != pushed || cp["shortSha"] != pushed[:8] || cp["branch"] != "stagehand/bump-1.45" ||
		cp["committed"] != true || cp["pushed"] != true || !reflect.DeepEqual(cp["changedFiles"], wantFiles) || cp["changedCount"] != float64(3) {
		t.Errorf("commitPush outputs %v, want %s pushed with files %v", cp, pushed, wantFiles)
	}
	if got := repo.InOrigin("log", "-1", "--format=%B|%an <%ae>|%cn <%ce>", pushed); got != "Bump Backstage to 1.45\n\nRun by Stagehand\n|Upgrade Bot <bot@example.com>|Upgrade Bot <bot@example.com>" {
		t.Errorf("pushed commit %q", got)
	}
	if p := repo.Parents(pushed); len(p) != 1 || p[0] != mainHead {
		t.Errorf("pushed commit's parents %v, want [%s]", p, mainHead)
	}
	if repo.Head("main") != mainHead {
		t.Error("main moved")
	}

	// The push happened but its completion was lost: the retry finds the
	// commit it made and the remote having it.
	retry := mustStep(t, a, "git.commitPush", pushWith)
	if retry["sha"] != pushed || retry["committed"] != true || retry["pushed"] != false || !reflect.DeepEqual(retry["changedFiles"], wantFiles) {
		t.Errorf("retried commitPush outputs %v, want committed, not pushed again, %s", retry, pushed)
	}
	if n := repo.Count("stagehand/bump-1.45"); n != 2 {
		t.Errorf("the branch has %d commits, want 2 (initial and ours)", n)
	}

	// The checkout step run once more after the push (the branch exists
	// now, made by this run's tree): the tree stays on the pushed commit.
	after := mustStep(t, a, "git.checkout", checkoutWith)
	if after["sha"] != pushed || after["dir"] != dir || after["branch"] != "stagehand/bump-1.45" {
		t.Errorf("checkout after the push: %v, want the pushed %s", after, pushed)
	}
}

// The commit was made but the push failed (remote down): the retry pushes
// the commit it made instead of finding nothing to commit.
func TestCommitPushRetryAfterFailedPush(t *testing.T) {
	repo := gittest.New(t)
	a := newActivities(t)
	co := mustStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin, "branch": "fix"})
	dir := co["dir"].(string)
	writeFile(t, dir, "fix.txt", "fixed\n")
	gone := repo.Origin + ".away"
	if err := os.Rename(repo.Origin, gone); err != nil {
		t.Fatal(err)
	}
	_, err := runStep(t, a, "git.commitPush", map[string]any{"dir": dir, "message": "Fix"})
	steptest.WantAppError(t, err, activities.ErrRemoteNotFound, true, nil)
	if err := os.Rename(gone, repo.Origin); err != nil {
		t.Fatal(err)
	}
	out := mustStep(t, a, "git.commitPush", map[string]any{"dir": dir, "message": "Fix"})
	if out["committed"] != true || out["pushed"] != true || out["sha"] != repo.Head("fix") ||
		!reflect.DeepEqual(out["changedFiles"], []any{"fix.txt"}) {
		t.Errorf("outputs %v, want the earlier commit pushed now", out)
	}
	if got := repo.InOrigin("log", "-1", "--format=%s|%an <%ae>", "refs/heads/fix"); got != "Fix|Stagehand <stagehand@localhost>" {
		t.Errorf("pushed commit %q", got)
	}
}

func TestCommitPushNothingChanged(t *testing.T) {
	repo := gittest.New(t)
	a := newActivities(t)
	co := mustStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin, "branch": "noop"})
	out := mustStep(t, a, "git.commitPush", map[string]any{"dir": co["dir"], "message": "Bump"})
	if out["committed"] != false || out["pushed"] != false || out["sha"] != co["sha"] || out["changedCount"] != float64(0) {
		t.Errorf("outputs %v, want nothing committed or pushed", out)
	}
	if _, err := repo.TryRun(repo.Origin, "rev-parse", "--verify", "--quiet", "refs/heads/noop"); err == nil {
		t.Error("the branch was pushed although nothing changed")
	}
	// allowEmpty commits and pushes anyway.
	out = mustStep(t, a, "git.commitPush", map[string]any{"dir": co["dir"], "message": "Trigger a build", "allowEmpty": true})
	if out["committed"] != true || out["pushed"] != true || out["sha"] != repo.Head("noop") || out["sha"] == co["sha"] {
		t.Errorf("allowEmpty outputs %v", out)
	}
}

func TestCheckoutRefs(t *testing.T) {
	repo := gittest.New(t)
	first := repo.Head("main")
	repo.Git("tag", "v1.0.0", first)
	repo.Git("push", "--quiet", "origin", "v1.0.0")
	second := repo.Commit("main", "second", map[string]string{"second.txt": "2\n"})
	feature := repo.Commit("feature", "feature", map[string]string{"feature.txt": "f\n"})
	a := newActivities(t)

	cases := []struct {
		name            string
		with            map[string]any
		sha, branch, in string
	}{
		{"default main", map[string]any{}, second, "main", ""},
		{"a branch", map[string]any{"ref": "feature", "name": "feature"}, feature, "feature", "feature.txt"},
		{"a tag, detached", map[string]any{"ref": "v1.0.0", "name": "tag"}, first, "", ""},
		{"a full sha, detached", map[string]any{"ref": first, "name": "sha"}, first, "", ""},
		{"a short sha", map[string]any{"ref": first[:10], "name": "short"}, first, "", ""},
		{"a new branch from a tag", map[string]any{"ref": "v1.0.0", "branch": "hotfix", "name": "hotfix"}, first, "hotfix", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			with := map[string]any{"remote": repo.Origin}
			for k, v := range c.with {
				with[k] = v
			}
			out := mustStep(t, a, "git.checkout", with)
			if out["sha"] != c.sha || out["branch"] != c.branch {
				t.Errorf("outputs %v, want sha %s branch %q", out, c.sha, c.branch)
			}
			head := repo.Run(out["dir"].(string), "rev-parse", "HEAD")
			if head != c.sha {
				t.Errorf("work tree HEAD %s, want %s", head, c.sha)
			}
			if c.in != "" {
				if _, err := os.Stat(filepath.Join(out["dir"].(string), c.in)); err != nil {
					t.Errorf("checked-out tree lacks %s: %v", c.in, err)
				}
			}
		})
	}
}

func TestCheckoutErrors(t *testing.T) {
	repo := gittest.New(t)
	other := repo.Commit("taken", "someone else's work", map[string]string{"x.txt": "x\n"})
	a := newActivities(t)

	_, err := runStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin, "ref": "no-such-branch"})
	steptest.WantAppError(t, err, activities.ErrBranchNotFound, true, []string{"no-such-branch", "not a branch, tag or commit"})

	_, err = runStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin, "ref": strings.Repeat("ab", 20), "name": "missing-sha"})
	steptest.WantAppError(t, err, activities.ErrBranchNotFound, true, []string{strings.Repeat("ab", 20)})

	_, err = runStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin, "branch": "taken", "name": "taken"})
	steptest.WantAppError(t, err, activities.ErrBranchExists, true, []string{"branch taken already exists", other[:8]})
	if repo.Head("taken") != other {
		t.Error("the existing branch moved")
	}

	// A branch that exists at the very commit asked for is fine: it is
	// what an earlier run (or a person) made of the same ref.
	out := mustStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin, "ref": "taken", "branch": "taken", "name": "same"})
	if out["sha"] != other {
		t.Errorf("outputs %v", out)
	}

	_, err = runStep(t, a, "git.checkout", map[string]any{"remote": filepath.Join(t.TempDir(), "nothing.git")})
	steptest.WantAppError(t, err, activities.ErrRemoteNotFound, true, nil)

	// One name, two remotes in one run: refused rather than mixed up.
	other2 := gittest.New(t)
	mustStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin, "name": "portal"})
	_, err = runStep(t, a, "git.checkout", map[string]any{"remote": other2.Origin, "name": "portal"})
	steptest.WantAppError(t, err, activities.ErrInvalidArguments, true, []string{`work tree "portal"`, "another name"})

	for _, with := range []map[string]any{
		{"remote": repo.Origin, "ref": "--upload-pack=touch /tmp/x"},
		{"remote": repo.Origin, "branch": "-x"},
		{"remote": repo.Origin, "branch": "bad..name"},
		{"remote": repo.Origin, "name": "../escape"},
		{"ref": "main"},
	} {
		_, err := runStep(t, a, "git.checkout", with)
		steptest.WantAppError(t, err, activities.ErrInvalidArguments, true, nil)
	}
}

// commitPush commits and pushes only trees git.checkout made in this run:
// not another repository on the worker, not the work dir itself, not a
// path that climbs out of a tree.
func TestCommitPushRefusesOtherDirectories(t *testing.T) {
	repo := gittest.New(t)
	a := newActivities(t)
	co := mustStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin, "branch": "mine"})
	dir := co["dir"].(string)
	repo.WriteFile("stray.txt", "not for pushing\n")
	writeFile(t, dir, "inside/sub.txt", "x\n")
	link := filepath.Join(a.WorkDir, "trees", "link")
	if err := os.Symlink(repo.Work, link); err != nil {
		t.Fatal(err)
	}
	mainHead := repo.Head("main")
	for _, d := range []string{
		repo.Work,
		a.WorkDir,
		filepath.Dir(dir),
		filepath.Join(dir, "inside"),
		filepath.Join(dir, "..", "..", "..", filepath.Base(repo.Work)),
		link,
		filepath.Join(a.WorkDir, "trees", "no-such-tree"),
	} {
		_, err := runStep(t, a, "git.commitPush", map[string]any{"dir": d, "message": "sneak", "branch": "main"})
		steptest.WantAppError(t, err, activities.ErrInvalidArguments, true, []string{"is not a work tree git.checkout made in this run"})
	}
	if repo.Head("main") != mainHead {
		t.Error("main moved")
	}
	if out := repo.Git("status", "--porcelain"); !strings.Contains(out, "?? stray.txt") {
		t.Errorf("the other repository was touched: status %q", out)
	}
}

// Someone pushed to the branch after our checkout: never forced over.
func TestCommitPushNeverForces(t *testing.T) {
	repo := gittest.New(t)
	a := newActivities(t)
	co := mustStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin, "ref": "main"})
	theirs := repo.Commit("main", "theirs", map[string]string{"theirs.txt": "t\n"})
	writeFile(t, co["dir"].(string), "ours.txt", "o\n")
	_, err := runStep(t, a, "git.commitPush", map[string]any{"dir": co["dir"], "message": "ours"})
	steptest.WantAppError(t, err, activities.ErrPushRejected, true, []string{"branch main", "never force-pushes"})
	if repo.Head("main") != theirs {
		t.Error("main was overwritten")
	}
}

// A command run in the tree (a dependency's install script) can rewrite
// .git: the remote commitPush pushes to (and sends the token to) comes
// from what checkout recorded outside the tree, not from .git/config.
func TestCommitPushIgnoresRewrittenRemote(t *testing.T) {
	repo, evil := gittest.New(t), gittest.New(t)
	a := newActivities(t)
	co := mustStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin, "branch": "bump"})
	dir := co["dir"].(string)
	writeFile(t, dir, "bump.txt", "bumped\n")
	repo.Run(dir, "config", "stagehand.remote", evil.Origin)
	mustStep(t, a, "git.commitPush", map[string]any{"dir": dir, "message": "Bump"})
	if _, err := evil.TryRun(evil.Origin, "rev-parse", "--verify", "--quiet", "refs/heads/bump"); err == nil {
		t.Error("commitPush pushed to the remote a command wrote into .git/config")
	}
	if n := repo.Count("bump"); n != 2 {
		t.Errorf("the checked-out remote's branch has %d commits, want 2", n)
	}
}

// Settings a command adds to .git/config (here one that redirects the
// push, token and all, to another host) make commitPush and a retried
// checkout refuse the tree instead of running git with them.
func TestTamperedTreeGitRefused(t *testing.T) {
	repo, evil := gittest.New(t), gittest.New(t)
	a := newActivities(t)
	with := map[string]any{"remote": repo.Origin, "branch": "bump"}
	co := mustStep(t, a, "git.checkout", with)
	dir := co["dir"].(string)
	writeFile(t, dir, "bump.txt", "bumped\n")
	repo.Run(dir, "config", "url."+evil.Origin+".insteadOf", repo.Origin)
	_, err := runStep(t, a, "git.commitPush", map[string]any{"dir": dir, "message": "Bump"})
	steptest.WantAppError(t, err, activities.ErrGitError, true, []string{"url." + evil.Origin + ".insteadof"})
	_, err = runStep(t, a, "git.checkout", with)
	steptest.WantAppError(t, err, activities.ErrGitError, true, []string{"settings Stagehand did not write"})
	if _, err := evil.TryRun(evil.Origin, "rev-parse", "--verify", "--quiet", "refs/heads/bump"); err == nil {
		t.Error("the push went where the tree's config redirected it")
	}

	repo.Run(dir, "config", "--unset", "url."+evil.Origin+".insteadOf")
	if err := os.WriteFile(filepath.Join(dir, ".git", "commondir"), []byte(evil.Origin+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = runStep(t, a, "git.commitPush", map[string]any{"dir": dir, "message": "Bump"})
	steptest.WantAppError(t, err, activities.ErrGitError, true, []string{".git/commondir exists"})
}

// Hooks a command writes into the tree never run, with any git command:
// fetch runs reference-transaction with the token in its environment.
func TestTreeHooksNeverRun(t *testing.T) {
	repo := gittest.New(t)
	a := newActivities(t)
	co := mustStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin})
	dir := co["dir"].(string)
	marker := filepath.Join(t.TempDir(), "hook-ran")
	hook := filepath.Join(dir, ".git", "hooks", "reference-transaction")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	repo.Commit("main", "moved on", map[string]string{"new.txt": "n\n"})
	mustStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin})
	if _, err := os.Stat(marker); err == nil {
		t.Error("a hook in the work tree's .git ran")
	}
}
