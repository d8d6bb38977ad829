package notify

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// A webhook urlRef is its own destination: the policy checks the host in
// the value before anything is posted, and a refusal names the host, not
// the URL's secret path.
func TestSendSecretPolicy(t *testing.T) {
	rcvA, urlA := newReceiver(t)
	rcvB, urlB := newReceiver(t)
	hostA := mustHost(t, urlA)
	t.Setenv("STAGEHAND_TEST_HOOK_A", urlA+"/services/T000/B000/ASECRETA")
	t.Setenv("STAGEHAND_TEST_HOOK_B", urlB+"/services/T000/B000/BSECRETB")
	p, err := secrets.NewPolicy([]secrets.Rule{
		{Ref: "env:STAGEHAND_TEST_HOOK_*", Steps: []string{"notify.send"}, Hosts: []string{hostA}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := newActivities()
	a.Secrets = secrets.Guard(p, secrets.Env)

	if _, err := runStep(t, a, gateOpened(map[string]any{"urlRef": "env:STAGEHAND_TEST_HOOK_A"})); err != nil {
		t.Fatal(err)
	}
	if rcvA.count() != 1 {
		t.Fatalf("host A got %d posts, want 1", rcvA.count())
	}

	_, err = runStep(t, a, gateOpened(map[string]any{"urlRef": "env:STAGEHAND_TEST_HOOK_B"}))
	wantAppError(t, err, activities.ErrSecretNotAllowed, true,
		[]string{"env:STAGEHAND_TEST_HOOK_B may not be sent to " + mustHost(t, urlB), hostA}, "BSECRETB")
	if rcvB.count() != 0 {
		t.Errorf("host B got %d posts; want none", rcvB.count())
	}

	// A worker variable no rule names is not read at all.
	_, err = runStep(t, a, gateOpened(map[string]any{"urlRef": "env:HOME"}))
	wantAppError(t, err, activities.ErrSecretNotAllowed, true, []string{"env:HOME is not allowed"})
}

func mustHost(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// A webhook URL from a urlRef is the secret, and the policy allowed its
// host only: a redirect from that host must not repost the message (nor
// carry the URL as Referer) to another host.
func TestSendDoesNotFollowRedirects(t *testing.T) {
	rcvB := &receiver{reply: "ok"}
	var referer atomic.Value
	referer.Store("")
	srvB := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		referer.Store(r.Header.Get("Referer"))
		rcvB.ServeHTTP(w, r)
	}))
	t.Cleanup(srvB.Close)
	srvA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srvB.URL+"/elsewhere", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srvA.Close)
	t.Setenv("STAGEHAND_TEST_HOOK_REDIRECT", srvA.URL+"/services/T000/B000/RSECRETR")
	p, err := secrets.NewPolicy([]secrets.Rule{
		{Ref: "env:STAGEHAND_TEST_HOOK_REDIRECT", Steps: []string{"notify.send"}, Hosts: []string{mustHost(t, srvA.URL)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := newActivities()
	a.Secrets = secrets.Guard(p, secrets.Env)
	_, err = runStep(t, a, gateOpened(map[string]any{"urlRef": "env:STAGEHAND_TEST_HOOK_REDIRECT"}))
	if err == nil {
		t.Error("a webhook answering with a redirect counted as sent; want a failure")
	} else if strings.Contains(err.Error(), "RSECRETR") {
		t.Errorf("the error carries the webhook URL's secret path: %v", err)
	}
	if n := rcvB.count(); n != 0 {
		t.Errorf("the host the webhook redirected to got %d posts (Referer %q); want none", n, referer.Load())
	}
}
