package git

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

const (
	testToken   = "ghp_testtoken0123456789abcdef"
	testHead    = "aaaaaaaa11111111222222223333333344444444"
	testMergeSH = "bbbbbbbb55555555666666667777777788888888"
)

// fakeGitHub emulates the two endpoints go-github calls for a merge:
// GET /repos/{o}/{r}/pulls/{n} and PUT /repos/{o}/{r}/pulls/{n}/merge.
type fakeGitHub struct {
	mu        sync.Mutex
	merged    bool
	state     string
	mergeable *bool
	// getStatus/putStatus, when set, make that endpoint fail with
	// putMessage as GitHub's message.
	getStatus, putStatus int
	putMessage           string
	// mergeOnFailedPut simulates someone else merging while our PUT loses.
	mergeOnFailedPut bool
	headers          http.Header
	auths            []string
	puts             []map[string]any
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	w.Header().Set("Content-Type", "application/json")
	fail := func(code int, msg string) {
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"message":%q,"documentation_url":"https://docs.github.com/rest"}`, msg)
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/repos/o/r/pulls/42":
		if f.getStatus != 0 {
			for k, v := range f.headers {
				w.Header()[k] = v
			}
			fail(f.getStatus, f.putMessage)
			return
		}
		pr := map[string]any{
			"number": 42, "state": orDefault(f.state, "open"), "merged": f.merged,
			"mergeable": f.mergeable, "mergeable_state": "clean",
			"head": map[string]any{"sha": testHead, "ref": "pr-42"},
			"base": map[string]any{"sha": "cccc", "ref": "main"},
		}
		if f.merged {
			pr["merge_commit_sha"] = testMergeSH
			pr["state"] = "closed"
		}
		_ = json.NewEncoder(w).Encode(pr)
	case r.Method == http.MethodPut && r.URL.Path == "/repos/o/r/pulls/42/merge":
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.puts = append(f.puts, body)
		if f.putStatus != 0 {
			if f.mergeOnFailedPut {
				f.merged = true
			}
			fail(f.putStatus, f.putMessage)
			return
		}
		f.merged = true
		_ = json.NewEncoder(w).Encode(map[string]any{"sha": testMergeSH, "merged": true, "message": "Pull Request successfully merged"})
	default:
		fail(http.StatusNotFound, "Not Found")
	}
}

func newFakeGitHub(t *testing.T, f *fakeGitHub) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	t.Setenv("STAGEHAND_TEST_GITHUB_TOKEN", testToken)
	return srv.URL + "/"
}

func githubWith(apiURL string, extra map[string]any) map[string]any {
	with := map[string]any{"provider": "github", "repo": "o/r", "pr": 42, "tokenRef": "env:STAGEHAND_TEST_GITHUB_TOKEN", "apiURL": apiURL}
	for k, v := range extra {
		with[k] = v
	}
	return with
}

func TestGitHubMergeOnce(t *testing.T) {
	f := &fakeGitHub{}
	api := newFakeGitHub(t, f)
	a := newActivities(t)

	out := mustStep(t, a, "git.merge", githubWith(api, map[string]any{"method": "squash", "message": "Patch: bump backend\n\nApproved in run 7"}))
	want := map[string]any{"provider": "github", "mergeCommit": testMergeSH, "shortSha": testMergeSH[:8],
		"alreadyMerged": false, "targetBranch": "main", "prHead": testHead, "pr": float64(42)}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("output %s = %v, want %v", k, out[k], v)
		}
	}
	for k, v := range out {
		if strings.Contains(fmt.Sprint(v), testToken) {
			t.Errorf("output %s leaks the token", k)
		}
	}
	f.mu.Lock()
	if len(f.puts) != 1 {
		t.Fatalf("%d PUTs, want 1", len(f.puts))
	}
	put := f.puts[0]
	if put["merge_method"] != "squash" || put["sha"] != testHead || put["commit_title"] != "Patch: bump backend" || put["commit_message"] != "Approved in run 7" {
		t.Errorf("PUT body %v", put)
	}
	for _, auth := range f.auths {
		if auth != "Bearer "+testToken {
			t.Errorf("Authorization %q, want the token as a bearer", auth)
		}
	}
	f.mu.Unlock()

	// A retry (or replay) sees the merged PR and does not PUT again.
	out = mustStep(t, a, "git.merge", githubWith(api, nil))
	if out["alreadyMerged"] != true || out["mergeCommit"] != testMergeSH || out["shortSha"] != testMergeSH[:8] {
		t.Errorf("second run outputs %v", out)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.puts) != 1 {
		t.Errorf("%d PUTs after the retry, want 1", len(f.puts))
	}
}

func TestGitHubMergeErrors(t *testing.T) {
	no := false
	cases := []struct {
		name      string
		fake      *fakeGitHub
		with      map[string]any
		errType   string
		permanent bool
		want      []string
		puts      int
	}{
		{name: "405 not mergeable", fake: &fakeGitHub{putStatus: 405, putMessage: "Pull Request is not mergeable"},
			errType: activities.ErrMergeBlocked, permanent: true, want: []string{"405", "Pull Request is not mergeable", "o/r#42"}, puts: 1},
		{name: "409 head moved", fake: &fakeGitHub{putStatus: 409, putMessage: "Head branch was modified. Review and try the merge again."},
			errType: activities.ErrMergeBlocked, permanent: true, want: []string{"409", "Head branch was modified"}, puts: 1},
		{name: "mergeable false", fake: &fakeGitHub{mergeable: &no},
			errType: activities.ErrMergeBlocked, permanent: true, want: []string{"not mergeable"}, puts: 0},
		{name: "closed", fake: &fakeGitHub{state: "closed"},
			errType: activities.ErrMergeBlocked, permanent: true, want: []string{"closed without being merged"}, puts: 0},
		{name: "401", fake: &fakeGitHub{getStatus: 401, putMessage: "Bad credentials"},
			errType: activities.ErrGitHubAuth, permanent: true, want: []string{"401", "Bad credentials"}, puts: 0},
		{name: "403 on merge", fake: &fakeGitHub{putStatus: 403, putMessage: "Resource not accessible by integration"},
			errType: activities.ErrGitHubAuth, permanent: true, want: []string{"403", "Resource not accessible"}, puts: 1},
		{name: "rate limited", fake: &fakeGitHub{getStatus: 403, putMessage: "API rate limit exceeded",
			headers: http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Limit": {"5000"}, "X-Ratelimit-Reset": {"1"}}},
			errType: activities.ErrGitHubRateLimited, permanent: false, want: []string{"rate limit"}, puts: 0},
		{name: "404", fake: &fakeGitHub{getStatus: 404, putMessage: "Not Found"},
			errType: activities.ErrGitHubNotFound, permanent: true, want: []string{"404", "cannot see it"}, puts: 0},
		{name: "502", fake: &fakeGitHub{getStatus: 502, putMessage: "Server Error"},
			errType: activities.ErrGitHubUnavailable, permanent: false, want: []string{"502"}, puts: 0},
		// Another 4xx is GitHub refusing this request, not GitHub being
		// down: a distinct, non-retryable type (it was GitHubUnavailable).
		{name: "410", fake: &fakeGitHub{getStatus: 410, putMessage: "Gone"},
			errType: activities.ErrGitHubRejected, permanent: true, want: []string{"410", "Gone"}, puts: 0},
		{name: "expectHead", fake: &fakeGitHub{}, with: map[string]any{"expectHead": "deadbeef"},
			errType: activities.ErrHeadMoved, permanent: true, want: []string{"aaaaaaaa", "deadbeef"}, puts: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := c.fake
			api := newFakeGitHub(t, f)
			_, err := runStep(t, newActivities(t), "git.merge", githubWith(api, c.with))
			steptest.WantAppError(t, err, c.errType, c.permanent, c.want, testToken)
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.puts) != c.puts {
				t.Errorf("%d PUTs, want %d", len(f.puts), c.puts)
			}
		})
	}
}

// Our PUT loses to someone who merged the PR a moment earlier (or to our
// own earlier attempt whose reply was lost): that is a success.
func TestGitHubMergeLostToConcurrentMerge(t *testing.T) {
	f := &fakeGitHub{putStatus: 405, putMessage: "Pull Request is not mergeable", mergeOnFailedPut: true}
	api := newFakeGitHub(t, f)
	out := mustStep(t, newActivities(t), "git.merge", githubWith(api, nil))
	if out["alreadyMerged"] != true || out["mergeCommit"] != testMergeSH {
		t.Errorf("outputs %v", out)
	}
}

func TestGitHubMergeNetworkErrorIsRetryable(t *testing.T) {
	t.Setenv("STAGEHAND_TEST_GITHUB_TOKEN", testToken)
	_, err := runStep(t, newActivities(t), "git.merge", githubWith("http://127.0.0.1:1/api/v3/", nil))
	steptest.WantAppError(t, err, activities.ErrGitHubUnavailable, false, []string{"get pull request o/r#42", "connection refused"}, testToken)
}

func TestGitHubMergeInvalidArguments(t *testing.T) {
	t.Setenv("STAGEHAND_TEST_GITHUB_TOKEN", testToken)
	api := "http://127.0.0.1:1/"
	cases := []struct {
		name string
		with map[string]any
		want string
	}{
		{"repo", map[string]any{"repo": "just-a-name"}, "want owner/name"},
		{"pr", map[string]any{"pr": 0}, "needs pr"},
		{"method", map[string]any{"method": "octopus"}, `method "octopus"`},
		{"git keys", map[string]any{"prBranch": "pr-42"}, "belong to provider git"},
		{"token", map[string]any{"tokenRef": ""}, "needs tokenRef"},
		{"api url with credentials", map[string]any{"apiURL": "https://u:" + testToken + "@ghe.example.com/api/v3/"}, "without credentials"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runStep(t, newActivities(t), "git.merge", githubWith(api, c.with))
			steptest.WantAppError(t, err, activities.ErrInvalidArguments, true, []string{c.want}, testToken)
		})
	}
	_, err := runStep(t, newActivities(t), "git.merge", githubWith(api, map[string]any{"tokenRef": "env:STAGEHAND_TEST_UNSET"}))
	steptest.WantAppError(t, err, activities.ErrSecretUnavailable, true, []string{"env:STAGEHAND_TEST_UNSET"})
	_, err = runStep(t, newActivities(t), "git.merge", githubWith(api, map[string]any{"tokenRef": "secret:github/token"}))
	steptest.WantAppError(t, err, activities.ErrSecretUnavailable, true, []string{"only env:NAME"})
}

// "Already merged" before "head moved", as for plain git: a retry whose
// expectHead no longer matches the head GitHub reports (our merge landed,
// then the reply was lost) is the merge it already made, not HeadMoved.
func TestGitHubAlreadyMergedBeforeHeadMoved(t *testing.T) {
	f := &fakeGitHub{merged: true}
	api := newFakeGitHub(t, f)
	out := mustStep(t, newActivities(t), "git.merge", githubWith(api, map[string]any{"expectHead": "deadbeef"}))
	if out["alreadyMerged"] != true || out["mergeCommit"] != testMergeSH {
		t.Errorf("outputs %v, want alreadyMerged with %s", out, testMergeSH)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.puts) != 0 {
		t.Errorf("%d PUTs, want none", len(f.puts))
	}
}
