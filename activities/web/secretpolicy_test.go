package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// countingServer answers 200 and counts requests and the bearer tokens it
// saw.
type countingServer struct {
	srv    *httptest.Server
	hits   atomic.Int32
	bearer atomic.Value
}

func newCountingServer(t *testing.T) *countingServer {
	c := &countingServer{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		c.bearer.Store(r.Header.Get("Authorization"))
		w.Write([]byte("ok"))
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *countingServer) host() string { return strings.TrimPrefix(c.srv.URL, "http://") }

// web.get and web.smoke resolve a tokenRef only where the worker's policy
// allows it for the step and the URL's host; a refusal is SecretNotAllowed
// and no request reaches any server.
func TestWebSecretPolicy(t *testing.T) {
	const token = "web-policy-token-0123456789"
	t.Setenv("STAGEHAND_TEST_WEB_TOKEN", token)
	target := newCountingServer(t)
	allowedHost := newCountingServer(t) // host A, where the token may go
	p, err := secrets.NewPolicy([]secrets.Rule{
		{Ref: "env:STAGEHAND_TEST_WEB_TOKEN", Steps: []string{"web.get"}, Hosts: []string{allowedHost.host()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &Activities{Secrets: secrets.Guard(p, secrets.Env)}

	// Allowed: step web.get, host A.
	run := steptest.RunStep(t, StepTypes(a), "web.get", map[string]any{"url": allowedHost.srv.URL, "tokenRef": "env:STAGEHAND_TEST_WEB_TOKEN"}, steptest.StepID("probe"))
	if run.Err != nil {
		t.Fatal(run.Err)
	}
	if got := allowedHost.bearer.Load(); got != "Bearer "+token {
		t.Errorf("host A saw Authorization %q, want the token", got)
	}

	cases := []struct {
		name, step string
		with       map[string]any
		want       []string
	}{
		{"token allowed for host A sent to host B", "web.get",
			map[string]any{"url": target.srv.URL + "/api", "tokenRef": "env:STAGEHAND_TEST_WEB_TOKEN"},
			[]string{"may not be sent to " + target.host(), allowedHost.host(), "hosts: [" + target.host() + "]"}},
		{"token not allowed for web.smoke", "web.smoke",
			map[string]any{"url": allowedHost.srv.URL, "checks": []map[string]any{{"path": "/", "tokenRef": "env:STAGEHAND_TEST_WEB_TOKEN"}}},
			[]string{"env:STAGEHAND_TEST_WEB_TOKEN is not allowed for step \"probe\" (web.smoke)", "steps: [web.smoke]"}},
		{"unlisted worker variable", "web.get",
			map[string]any{"url": target.srv.URL, "tokenRef": "env:HOME"},
			[]string{"env:HOME is not allowed"}},
	}
	hitsA := allowedHost.hits.Load()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := steptest.RunStep(t, StepTypes(a), c.step, c.with, steptest.StepID("probe"))
			steptest.WantAppError(t, run.Err, activities.ErrSecretNotAllowed, true, c.want, token)
		})
	}
	if n := target.hits.Load(); n != 0 {
		t.Errorf("host B got %d requests; want none", n)
	}
	if n := allowedHost.hits.Load() - hitsA; n != 0 {
		t.Errorf("host A got %d requests from refused steps; want none", n)
	}
}
