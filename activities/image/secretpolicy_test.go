package image

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

// image.push resolves passwordRef only for a registry the policy allows:
// the engine sends the credentials to the image's registry, so that host
// is checked, and a refusal reaches neither the engine nor any registry.
func TestPushSecretPolicy(t *testing.T) {
	var engineHits atomic.Int32
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		engineHits.Add(1)
		http.Error(w, "not a real engine", http.StatusInternalServerError)
	}))
	defer engine.Close()
	t.Setenv("STAGEHAND_TEST_POLICY_REGISTRY_PW", "registry-policy-pw-0123")
	p, err := secrets.NewPolicy([]secrets.Rule{
		{Ref: "env:STAGEHAND_TEST_POLICY_REGISTRY_PW", Steps: []string{"image.push"}, Hosts: []string{"registry-a.example.com:5000"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &Activities{Host: "tcp://" + strings.TrimPrefix(engine.URL, "http://"), Resolve: secrets.Guard(p, secrets.Env)}
	cases := []struct {
		name  string
		with  map[string]any
		wants []string
	}{
		{"password allowed for registry A pushed to registry B",
			map[string]any{"image": "registry-b.example.com:5000/portal/backend:1", "username": "ci", "passwordRef": "env:STAGEHAND_TEST_POLICY_REGISTRY_PW"},
			[]string{"may not be sent to registry-b.example.com:5000", "registry-a.example.com:5000"}},
		{"same host, other port",
			map[string]any{"image": "registry-a.example.com:5001/portal/backend:1", "username": "ci", "passwordRef": "env:STAGEHAND_TEST_POLICY_REGISTRY_PW"},
			[]string{"may not be sent to registry-a.example.com:5001"}},
		{"unlisted reference",
			map[string]any{"image": "registry-a.example.com:5000/portal/backend:1", "username": "ci", "passwordRef": "env:HOME"},
			[]string{"env:HOME is not allowed for step \"img\" (image.push)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := runStep(t, a, "image.push", c.with)
			steptest.WantAppError(t, run.Err, activities.ErrSecretNotAllowed, true, c.wants, "registry-policy-pw-0123")
		})
	}
	if n := engineHits.Load(); n != 0 {
		t.Errorf("the engine got %d requests; want none", n)
	}
}
