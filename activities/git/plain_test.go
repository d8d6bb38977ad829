package git

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/gittest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

func mergeWith(repo *gittest.Repo, extra map[string]any) map[string]any {
	with := map[string]any{"provider": "git", "remote": repo.Origin, "prBranch": "pr-42", "pr": 42}
	for k, v := range extra {
		with[k] = v
	}
	return with
}

// The core promise: one merge commit whose second parent is the PR head, and
// every later run (retry, replay, another worker with an empty cache, the
// PR branch deleted afterwards) reports that same commit without pushing.
func TestMergeExactlyOnce(t *testing.T) {
	repo := gittest.New(t)
	prHead := repo.Commit("pr-42", "add feature", map[string]string{"feature.txt": "new\n"})
	mainBefore := repo.Commit("main", "unrelated fix on main", map[string]string{"README.md": "# portal v2\n"})
	a := newActivities(t)

	out := mustStep(t, a, "git.merge", mergeWith(repo, nil))
	merge := repo.Head("main")
	if out["mergeCommit"] != merge {
		t.Fatalf("mergeCommit %v, origin main is %s", out["mergeCommit"], merge)
	}
	if out["shortSha"] != merge[:8] || out["prHead"] != prHead || out["alreadyMerged"] != false ||
		out["targetBranch"] != "main" || out["provider"] != "git" {
		t.Errorf("outputs %v", out)
	}
	if p := repo.Parents(merge); len(p) != 2 || p[0] != mainBefore || p[1] != prHead {
		t.Errorf("merge parents %v, want [%s %s]", p, mainBefore, prHead)
	}
	if subj := repo.InOrigin("log", "-1", "--format=%s|%an <%ae>", merge); subj != "Merge pull request #42 from pr-42|Stagehand <stagehand@localhost>" {
		t.Errorf("merge commit %q", subj)
	}

	again := func(name string, a *Activities, extra map[string]any) {
		t.Helper()
		out := mustStep(t, a, "git.merge", mergeWith(repo, extra))
		if out["alreadyMerged"] != true || out["mergeCommit"] != merge || out["shortSha"] != merge[:8] {
			t.Errorf("%s: outputs %v, want alreadyMerged with %s", name, out, merge)
		}
		if h := repo.Head("main"); h != merge {
			t.Errorf("%s: origin main moved to %s", name, h)
		}
		if n := repo.Count("main", "--merges"); n != 1 {
			t.Errorf("%s: %d merge commits on main, want 1", name, n)
		}
	}
	again("retry", a, nil)
	again("other worker, empty cache, pr as a string", newActivities(t), map[string]any{"pr": "42"})

	// GitHub and friends delete the branch after the merge.
	repo.Git("push", "--quiet", "origin", "--delete", "pr-42")
	again("branch deleted", a, nil)
}

func TestMergeCustomMessageAndAuthor(t *testing.T) {
	repo := gittest.New(t)
	repo.Commit("pr-7", "feature", map[string]string{"f.txt": "f\n"})
	out := mustStep(t, newActivities(t), "git.merge", map[string]any{
		"provider": "git", "remote": repo.Origin, "prBranch": "pr-7", "targetBranch": "main",
		"message": "Release 1.2\n\nApproved by alice", "authorName": "Release Bot", "authorEmail": "bot@example.com",
	})
	got := repo.InOrigin("log", "-1", "--format=%B|%an <%ae>|%cn", out["mergeCommit"].(string))
	if got != "Release 1.2\n\nApproved by alice\n|Release Bot <bot@example.com>|Release Bot" {
		t.Errorf("merge commit %q", got)
	}
}

func TestMergeConflictNamesFiles(t *testing.T) {
	repo := gittest.New(t)
	repo.Commit("pr-42", "change line 2", map[string]string{"app.txt": "line 1\nline two from PR\nline 3\n"})
	mainHead := repo.Commit("main", "change line 2 on main", map[string]string{"app.txt": "line 1\nline two from main\nline 3\n"})

	_, err := runStep(t, newActivities(t), "git.merge", mergeWith(repo, nil))
	steptest.WantAppError(t, err, activities.ErrMergeConflict, true, []string{"app.txt", "1 file"})
	if h := repo.Head("main"); h != mainHead {
		t.Errorf("origin main moved to %s after a conflict", h)
	}
}

// Another writer pushes to main between our fetch and our push: the push is
// rejected, the activity fetches again and merges onto the new head, once.
func TestMergePushRace(t *testing.T) {
	repo := gittest.New(t)
	prHead := repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})
	a := newActivities(t)
	var hotfix string
	var attempts []int
	a.beforePush = func(attempt int) {
		attempts = append(attempts, attempt)
		if attempt == 1 {
			hotfix = repo.Commit("main", "hotfix", map[string]string{"hotfix.txt": "fix\n"})
		}
	}
	out := mustStep(t, a, "git.merge", mergeWith(repo, nil))
	merge := repo.Head("main")
	if out["mergeCommit"] != merge || out["alreadyMerged"] != false {
		t.Fatalf("outputs %v, origin main %s", out, merge)
	}
	if p := repo.Parents(merge); len(p) != 2 || p[0] != hotfix || p[1] != prHead {
		t.Errorf("merge parents %v, want [hotfix %s, pr %s]", p, hotfix, prHead)
	}
	if len(attempts) != 2 {
		t.Errorf("push attempts %v, want [1 2]", attempts)
	}
	if n := repo.Count("main", "--merges"); n != 1 {
		t.Errorf("%d merge commits, want 1", n)
	}
}

// The other writer is a person merging the same PR by hand: our push loses,
// and the retry inside the activity finds their merge instead of adding a
// second one.
func TestMergePushRaceLostToSameMerge(t *testing.T) {
	repo := gittest.New(t)
	prHead := repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})
	a := newActivities(t)
	a.beforePush = func(attempt int) {
		if attempt == 1 {
			repo.Git("checkout", "--quiet", "main")
			repo.Git("pull", "--quiet", "origin", "main")
			repo.Git("merge", "--quiet", "--no-ff", "-m", "Merged by hand", "origin/pr-42")
			repo.Git("push", "--quiet", "origin", "main")
		}
	}
	out := mustStep(t, a, "git.merge", mergeWith(repo, nil))
	merge := repo.Head("main")
	if out["mergeCommit"] != merge || out["alreadyMerged"] != true || out["prHead"] != prHead {
		t.Errorf("outputs %v, want the hand merge %s as alreadyMerged", out, merge)
	}
	if n := repo.Count("main", "--merges"); n != 1 {
		t.Errorf("%d merge commits, want 1", n)
	}
}

func TestMergePushRaceGivesUp(t *testing.T) {
	repo := gittest.New(t)
	repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})
	a := newActivities(t)
	a.MaxPushAttempts = 2
	a.beforePush = func(attempt int) {
		repo.Commit("main", "busy", map[string]string{"busy.txt": strings.Repeat("x", attempt) + "\n"})
	}
	_, err := runStep(t, a, "git.merge", mergeWith(repo, nil))
	steptest.WantAppError(t, err, activities.ErrBranchMoving, false, []string{"rejected 2 times"})
	if n := repo.Count("main", "--merges"); n != 0 {
		t.Errorf("%d merge commits, want 0", n)
	}
}

// A PR that was fast-forwarded in (no merge commit) is merged: its head is
// the commit that brought it in.
func TestMergeAlreadyFastForwarded(t *testing.T) {
	repo := gittest.New(t)
	prHead := repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})
	repo.Git("push", "--quiet", "origin", prHead+":refs/heads/main")
	later := repo.Commit("main", "later", map[string]string{"later.txt": "l\n"})
	out := mustStep(t, newActivities(t), "git.merge", mergeWith(repo, nil))
	if out["alreadyMerged"] != true || out["mergeCommit"] != prHead {
		t.Errorf("outputs %v, want alreadyMerged at the PR head %s", out, prHead)
	}
	if repo.Head("main") != later {
		t.Error("origin main moved")
	}
}

// The merge commit is the one where the PR entered main's first-parent
// line, even when it came in through another branch.
func TestMergeCommitOfIndirectMerge(t *testing.T) {
	repo := gittest.New(t)
	prHead := repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})
	repo.Git("checkout", "--quiet", "-B", "release", "origin/main")
	repo.Git("merge", "--quiet", "--no-ff", "-m", "pr-42 into release", "origin/pr-42")
	repo.Git("push", "--quiet", "origin", "release")
	repo.Commit("main", "main moves", map[string]string{"m.txt": "m\n"})
	repo.Git("checkout", "--quiet", "main")
	repo.Git("merge", "--quiet", "--no-ff", "-m", "release into main", "origin/release")
	repo.Git("push", "--quiet", "origin", "main")
	releaseMerge := repo.Head("main")

	out := mustStep(t, newActivities(t), "git.merge", mergeWith(repo, nil))
	if out["alreadyMerged"] != true || out["mergeCommit"] != releaseMerge || out["prHead"] != prHead {
		t.Errorf("outputs %v, want the release merge %s", out, releaseMerge)
	}
}

func TestMergeExpectHead(t *testing.T) {
	repo := gittest.New(t)
	prHead := repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})
	mainHead := repo.Head("main")
	_, err := runStep(t, newActivities(t), "git.merge", mergeWith(repo, map[string]any{"expectHead": "0123abcd"}))
	steptest.WantAppError(t, err, activities.ErrHeadMoved, true, []string{prHead[:8], "0123abcd"})
	if repo.Head("main") != mainHead {
		t.Error("merged despite HeadMoved")
	}
	out := mustStep(t, newActivities(t), "git.merge", mergeWith(repo, map[string]any{"expectHead": prHead[:8]}))
	if out["prHead"] != prHead || out["alreadyMerged"] != false {
		t.Errorf("outputs %v", out)
	}
}

func TestMergeMissingBranches(t *testing.T) {
	repo := gittest.New(t)
	_, err := runStep(t, newActivities(t), "git.merge", mergeWith(repo, nil))
	steptest.WantAppError(t, err, activities.ErrBranchNotFound, true, []string{"pr-42", repo.Origin})

	repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})
	_, err = runStep(t, newActivities(t), "git.merge", mergeWith(repo, map[string]any{"targetBranch": "develop"}))
	steptest.WantAppError(t, err, activities.ErrBranchNotFound, true, []string{"target branch develop"})
}

func TestMergeUnreachableRemote(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-repo.git")
	_, err := runStep(t, newActivities(t), "git.merge", map[string]any{"provider": "git", "remote": missing, "prBranch": "pr-1"})
	steptest.WantAppError(t, err, activities.ErrRemoteNotFound, true, []string{"fetch refs/heads/main from " + missing, "does not appear to be a git repository"})

	// Nothing listens on port 1: a network failure is worth retrying.
	_, err = runStep(t, newActivities(t), "git.merge", map[string]any{
		"provider": "git", "remote": "http://127.0.0.1:1/org/portal.git", "prBranch": "pr-1"})
	steptest.WantAppError(t, err, activities.ErrGitUnavailable, false, []string{"127.0.0.1:1"})
}

// A remote with credentials in its URL puts them in the run's history:
// every step that takes a remote refuses it before contacting it, and the
// error does not repeat the credential.
func TestRemoteWithCredentialsRefused(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "denied", http.StatusUnauthorized)
	}))
	defer srv.Close()
	for _, c := range []struct{ name, userinfo, secret string }{
		{"user and password", "ci:pw-in-url-456@", "pw-in-url-456"},
		{"token as user name", "ghp_0123456789abcdefghij@", "ghp_0123456789abcdefghij"},
	} {
		remote := strings.Replace(srv.URL, "http://", "http://"+c.userinfo, 1) + "/org/portal.git"
		for step, with := range map[string]map[string]any{
			"git.merge":      {"provider": "git", "remote": remote, "prBranch": "pr-1"},
			"git.checkout":   {"remote": remote, "ref": "main"},
			"git.headCommit": {"remote": remote},
		} {
			t.Run(c.name+"/"+step, func(t *testing.T) {
				_, err := runStep(t, newActivities(t), step, with)
				steptest.WantAppError(t, err, activities.ErrInvalidArguments, true,
					[]string{"carries credentials in its URL", "tokenRef"}, c.secret)
			})
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the remote got %d requests; want none", n)
	}
}

// Credentials reach git as an HTTP header through its environment: the
// server sees them, argv, errors and outputs do not.
func TestMergeHTTPCredentials(t *testing.T) {
	var mu sync.Mutex
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
		http.Error(w, "denied", http.StatusUnauthorized)
	}))
	defer srv.Close()
	t.Setenv("STAGEHAND_TEST_GIT_TOKEN", "tok-from-env-123")

	cases := []struct {
		name, remote, tokenRef, wantUser, wantPass string
	}{
		{"tokenRef", srv.URL + "/org/portal.git", "env:STAGEHAND_TEST_GIT_TOKEN", "x-access-token", "tok-from-env-123"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			auths = nil
			mu.Unlock()
			with := map[string]any{"provider": "git", "remote": c.remote, "prBranch": "pr-1"}
			if c.tokenRef != "" {
				with["tokenRef"] = c.tokenRef
			}
			_, err := runStep(t, newActivities(t), "git.merge", with)
			steptest.WantAppError(t, err, activities.ErrGitAuth, true, []string{srv.Listener.Addr().String()}, c.wantPass,
				base64.StdEncoding.EncodeToString([]byte(c.wantUser+":"+c.wantPass)))
			want := "Basic " + base64.StdEncoding.EncodeToString([]byte(c.wantUser+":"+c.wantPass))
			mu.Lock()
			defer mu.Unlock()
			if len(auths) == 0 || auths[0] != want {
				t.Errorf("server saw Authorization %q, want %q", auths, want)
			}
		})
	}
}

func TestMergeMissingSecret(t *testing.T) {
	_, err := runStep(t, newActivities(t), "git.merge", map[string]any{
		"provider": "git", "remote": "https://git.example.com/o/r.git", "prBranch": "pr-1", "tokenRef": "env:STAGEHAND_TEST_UNSET_TOKEN"})
	steptest.WantAppError(t, err, activities.ErrSecretUnavailable, true, []string{"env:STAGEHAND_TEST_UNSET_TOKEN", "not set"})
}

func TestMergeInvalidArguments(t *testing.T) {
	repo := gittest.New(t)
	cases := []struct {
		name string
		with map[string]any
		want string
	}{
		{"no provider", map[string]any{"remote": repo.Origin, "prBranch": "pr-1"}, "bad arguments"},
		{"unknown provider", map[string]any{"provider": "gitlab", "remote": repo.Origin, "prBranch": "pr-1"}, `unknown provider "gitlab"`},
		{"option as branch", map[string]any{"provider": "git", "remote": repo.Origin, "prBranch": "--upload-pack=touch /tmp/pwned"}, "not a valid branch name"},
		{"bad branch", map[string]any{"provider": "git", "remote": repo.Origin, "prBranch": "a..b"}, "not a valid branch name"},
		{"option as remote", map[string]any{"provider": "git", "remote": "--upload-pack=x", "prBranch": "pr-1"}, "must not start with '-'"},
		{"squash with git", map[string]any{"provider": "git", "remote": repo.Origin, "prBranch": "pr-1", "method": "squash"}, "method merge only"},
		{"token for a path", map[string]any{"provider": "git", "remote": repo.Origin, "prBranch": "pr-1", "tokenRef": "env:HOME"}, "needs an http(s) remote"},
		{"unknown key", map[string]any{"provider": "git", "remote": repo.Origin, "prBranch": "pr-1", "branch": "x"}, "unknown field"},
		{"bad pr", map[string]any{"provider": "git", "remote": repo.Origin, "prBranch": "pr-1", "pr": "forty-two"}, "want a pull request number"},
		{"bad expectHead", map[string]any{"provider": "git", "remote": repo.Origin, "prBranch": "pr-1", "expectHead": "main"}, "not a commit sha"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runStep(t, newActivities(t), "git.merge", c.with)
			if c.name == "no provider" {
				// The adapter passes it through; Merge says what is missing.
				steptest.WantAppError(t, err, activities.ErrInvalidArguments, true, []string{"provider is required"})
				return
			}
			steptest.WantAppError(t, err, activities.ErrInvalidArguments, true, []string{c.want})
		})
	}
}

func TestHeadCommit(t *testing.T) {
	repo := gittest.New(t)
	prHead := repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})
	a := newActivities(t)
	out := mustStep(t, a, "git.headCommit", map[string]any{"remote": repo.Origin})
	if main := repo.Head("main"); out["sha"] != main || out["shortSha"] != main[:8] {
		t.Errorf("outputs %v, want main %s", out, main)
	}
	out = mustStep(t, a, "git.headCommit", map[string]any{"remote": repo.Origin, "branch": "pr-42"})
	if out["sha"] != prHead {
		t.Errorf("outputs %v, want %s", out, prHead)
	}
	_, err := runStep(t, a, "git.headCommit", map[string]any{"remote": repo.Origin, "branch": "gone"})
	steptest.WantAppError(t, err, activities.ErrBranchNotFound, true, []string{"branch gone"})
}

// A cache directory left broken by a crash is rebuilt, not fatal.
func TestCacheRepoRecoversFromCorruption(t *testing.T) {
	repo := gittest.New(t)
	repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})
	a := newActivities(t)
	dir, err := a.cacheRepo(context.Background(), remote{addr: repo.Origin, red: newRedactor()})
	if err != nil {
		t.Fatal(err)
	}
	repo.Run(dir, "config", "core.repositoryformatversion", "99")
	out := mustStep(t, a, "git.merge", mergeWith(repo, nil))
	if out["mergeCommit"] != repo.Head("main") {
		t.Errorf("outputs %v", out)
	}
}

func TestRedactURLs(t *testing.T) {
	cases := map[string]string{
		"fatal: unable to access 'https://user:ghp_abc123@github.com/o/r.git/': 403": "fatal: unable to access 'https://REDACTED@github.com/o/r.git/': 403",
		"https://ghp_tokenonly@github.com/o/r":                                       "https://REDACTED@github.com/o/r",
		"ssh://git@host/o/r and http://a:b@h:80/x":                                   "ssh://REDACTED@host/o/r and http://REDACTED@h:80/x",
		"git@github.com:o/r.git":                                                     "git@github.com:o/r.git",
		"/srv/git/origin.git":                                                        "/srv/git/origin.git",
	}
	for in, want := range cases {
		if got := RedactURLs(in); got != want {
			t.Errorf("RedactURLs(%q) = %q, want %q", in, got, want)
		}
	}
}

// Branch protection (a server-side hook saying no) is not a race: retrying
// the same push cannot succeed.
func TestMergeRemoteRejects(t *testing.T) {
	repo := gittest.New(t)
	repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})
	mainHead := repo.Head("main")
	hook := filepath.Join(repo.Origin, "hooks", "pre-receive")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho 'main is protected: merge through the review tool' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := runStep(t, newActivities(t), "git.merge", mergeWith(repo, nil))
	steptest.WantAppError(t, err, activities.ErrPushRejected, true, []string{"refs/heads/main", "pre-receive hook declined", "remote: main is protected"})
	if repo.Head("main") != mainHead {
		t.Error("origin main moved")
	}
}

func TestParseRemote(t *testing.T) {
	basic := func(user, pass string) string {
		return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	cases := []struct {
		raw, token, addr, header string
	}{
		{"/srv/git/portal.git", "", "/srv/git/portal.git", ""},
		{"git@github.com:org/portal.git", "", "git@github.com:org/portal.git", ""},
		{"https://github.com/org/portal.git", "tok-1234", "https://github.com/org/portal.git", basic("x-access-token", "tok-1234")},
		{"https://deploy@git.example.com/portal.git", "", "https://deploy@git.example.com/portal.git", ""},
	}
	for _, c := range cases {
		r, err := parseRemote(c.raw, c.token, newRedactor())
		if err != nil {
			t.Errorf("%s: %v", c.raw, err)
			continue
		}
		if r.addr != c.addr || r.authHeader != c.header {
			t.Errorf("parseRemote(%q) = %q, %q; want %q, %q", c.raw, r.addr, r.authHeader, c.addr, c.header)
		}
	}
}
