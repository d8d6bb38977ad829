package git

import (
	"encoding/base64"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/internal/gittest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// httpRemote serves repo's origin over git's smart HTTP protocol (git
// http-backend behind net/http/cgi), counting requests and recording the
// Authorization headers it saw.
type httpRemote struct {
	srv   *httptest.Server
	hits  atomic.Int32
	mu    sync.Mutex
	auths []string
}

func serveHTTP(t *testing.T, repo *gittest.Repo) *httpRemote {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is not installed: install it (apt-get install git)")
	}
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(repo.Origin), "GIT_HTTP_EXPORT_ALL=1"},
	}
	h := &httpRemote{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.hits.Add(1)
		h.mu.Lock()
		h.auths = append(h.auths, r.Header.Get("Authorization"))
		h.mu.Unlock()
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *httpRemote) url() string  { return h.srv.URL + "/origin.git" }
func (h *httpRemote) host() string { return strings.TrimPrefix(h.srv.URL, "http://") }

// The worker's policy decides, per step, which reference git may resolve
// and to which remote host it may send the token: refused uses fail with
// SecretNotAllowed before git makes any request.
func TestGitSecretPolicy(t *testing.T) {
	repo := gittest.New(t)
	remote := serveHTTP(t, repo)
	other := serveHTTP(t, repo) // "host A": where the token is allowed to go
	const token = "git-policy-token-0123456789"
	t.Setenv("STAGEHAND_TEST_POLICY_GIT_TOKEN", token)
	t.Setenv("STAGEHAND_TEST_POLICY_OTHER", "other-secret-0123456789")

	newGuarded := func(rules ...secrets.Rule) *Activities {
		p, err := secrets.NewPolicy(rules)
		if err != nil {
			t.Fatal(err)
		}
		a := newActivities(t)
		a.Secrets = secrets.Guard(p, secrets.Env)
		return a
	}
	checkout := map[string]any{"remote": remote.url(), "ref": "main", "tokenRef": "env:STAGEHAND_TEST_POLICY_GIT_TOKEN"}

	t.Run("allowed step and host", func(t *testing.T) {
		a := newGuarded(secrets.Rule{Ref: "env:STAGEHAND_TEST_POLICY_GIT_TOKEN", Steps: []string{"git.checkout"}, Hosts: []string{remote.host()}})
		mustStep(t, a, "git.checkout", checkout)
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
		remote.mu.Lock()
		defer remote.mu.Unlock()
		if len(remote.auths) == 0 || remote.auths[0] != want {
			t.Errorf("the remote saw Authorization %q, want %q", remote.auths, want)
		}
	})

	before := remote.hits.Load()
	cases := []struct {
		name  string
		a     *Activities
		step  string
		with  map[string]any
		wants []string
	}{
		{"token allowed for another host", newGuarded(secrets.Rule{Ref: "env:STAGEHAND_TEST_POLICY_GIT_TOKEN", Steps: []string{"git.checkout", "git.merge"}, Hosts: []string{other.host()}}),
			"git.checkout", checkout, []string{"may not be sent to " + remote.host(), other.host(), `step "merge" (git.checkout)`}},
		{"reference not allowed for the step", newGuarded(secrets.Rule{Ref: "env:STAGEHAND_TEST_POLICY_GIT_TOKEN", Steps: []string{"git.merge"}, Hosts: []string{remote.host()}}),
			"git.checkout", checkout, []string{"env:STAGEHAND_TEST_POLICY_GIT_TOKEN is not allowed", "steps: [git.checkout]"}},
		{"another reference", newGuarded(secrets.Rule{Ref: "env:STAGEHAND_TEST_POLICY_GIT_TOKEN", Steps: []string{"git.merge"}, Hosts: []string{remote.host()}}),
			"git.merge", map[string]any{"provider": "git", "remote": remote.url(), "prBranch": "pr-1", "tokenRef": "env:STAGEHAND_TEST_POLICY_OTHER"},
			[]string{"env:STAGEHAND_TEST_POLICY_OTHER is not allowed"}},
		{"no rules", newGuarded(), "git.headCommit", map[string]any{"remote": remote.url(), "tokenRef": "env:STAGEHAND_TEST_POLICY_GIT_TOKEN"},
			[]string{"is not allowed", "(git.headCommit)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runStep(t, c.a, c.step, c.with)
			steptest.WantAppError(t, err, activities.ErrSecretNotAllowed, true, c.wants, token, "other-secret-0123456789")
		})
	}
	if n := remote.hits.Load() - before; n != 0 {
		t.Errorf("the remote got %d requests from refused steps; want none", n)
	}
	if n := other.hits.Load(); n != 0 {
		t.Errorf("host A got %d requests; want none", n)
	}
}

// provider github: the token goes to the API URL's host, which the policy
// must allow; a run pointing apiURL elsewhere gets nothing sent.
func TestGitHubSecretPolicy(t *testing.T) {
	var hits atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "{}", http.StatusNotFound)
	}))
	defer api.Close()
	t.Setenv("STAGEHAND_TEST_POLICY_GH_TOKEN", "ghp_policy-token-0123456789")
	p, err := secrets.NewPolicy([]secrets.Rule{{Ref: "env:STAGEHAND_TEST_POLICY_GH_TOKEN", Steps: []string{"git.merge"}, Hosts: []string{"api.github.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	a := newActivities(t)
	a.Secrets = secrets.Guard(p, secrets.Env)
	_, err = runStep(t, a, "git.merge", map[string]any{"provider": "github", "repo": "o/r", "pr": 1,
		"tokenRef": "env:STAGEHAND_TEST_POLICY_GH_TOKEN", "apiURL": api.URL})
	steptest.WantAppError(t, err, activities.ErrSecretNotAllowed, true,
		[]string{"may not be sent to " + strings.TrimPrefix(api.URL, "http://"), "api.github.com"}, "ghp_policy-token-0123456789")
	if n := hits.Load(); n != 0 {
		t.Errorf("the API got %d requests; want none", n)
	}
}

// The policy checks the remote's host, and git must send the token to that
// host only: an allowed host that redirects (a compromised server, an open
// redirect, a moved repository) must not make git carry the token to
// another one. git follows the first redirect by default and then sends its
// extra headers to the new base URL.
func TestGitTokenNotSentAcrossRedirect(t *testing.T) {
	repo := gittest.New(t)
	elsewhere := serveHTTP(t, repo)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.srv.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	const token = "git-redirect-token-0123456789"
	t.Setenv("STAGEHAND_TEST_REDIRECT_GIT_TOKEN", token)
	p, err := secrets.NewPolicy([]secrets.Rule{{Ref: "env:STAGEHAND_TEST_REDIRECT_GIT_TOKEN", Steps: []string{"git.headCommit"},
		Hosts: []string{strings.TrimPrefix(redirector.URL, "http://")}}})
	if err != nil {
		t.Fatal(err)
	}
	a := newActivities(t)
	a.Secrets = secrets.Guard(p, secrets.Env)
	_, err = runStep(t, a, "git.headCommit", map[string]any{"remote": redirector.URL + "/origin.git", "tokenRef": "env:STAGEHAND_TEST_REDIRECT_GIT_TOKEN"})
	if err == nil {
		t.Error("git.headCommit through a redirect to another host succeeded; want a failure")
	} else if strings.Contains(err.Error(), token) {
		t.Errorf("the error carries the token: %v", err)
	}
	elsewhere.mu.Lock()
	defer elsewhere.mu.Unlock()
	for _, got := range elsewhere.auths {
		if got != "" {
			t.Errorf("the host the allowed remote redirected to saw Authorization %q; want none", got)
		}
	}
}

// provider github: the API client adds the token to every request it
// makes, redirects included, so a redirect from the allowed API host to
// another one must not be followed with it.
func TestGitHubTokenNotSentAcrossRedirect(t *testing.T) {
	var leaked atomic.Value
	leaked.Store("")
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			leaked.Store(a)
		}
		http.Error(w, "{}", http.StatusNotFound)
	}))
	defer elsewhere.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	defer api.Close()
	const token = "ghp_redirect-token-0123456789"
	t.Setenv("STAGEHAND_TEST_REDIRECT_GH_TOKEN", token)
	p, err := secrets.NewPolicy([]secrets.Rule{{Ref: "env:STAGEHAND_TEST_REDIRECT_GH_TOKEN", Steps: []string{"git.merge"},
		Hosts: []string{strings.TrimPrefix(api.URL, "http://")}}})
	if err != nil {
		t.Fatal(err)
	}
	a := newActivities(t)
	a.Secrets = secrets.Guard(p, secrets.Env)
	_, err = runStep(t, a, "git.merge", map[string]any{"provider": "github", "repo": "o/r", "pr": 1,
		"tokenRef": "env:STAGEHAND_TEST_REDIRECT_GH_TOKEN", "apiURL": api.URL})
	if err == nil {
		t.Error("git.merge through a redirecting API succeeded; want a failure")
	} else if strings.Contains(err.Error(), token) {
		t.Errorf("the error carries the token: %v", err)
	}
	if got := leaked.Load().(string); got != "" {
		t.Errorf("the host the API redirected to saw Authorization %q; want none", got)
	}
}
