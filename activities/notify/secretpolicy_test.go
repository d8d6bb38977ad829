package notify

import (
	"net/url"
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
