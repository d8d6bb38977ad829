package command

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// A run's `env` may name only references the worker's policy allows for
// exec.run; the command's own env (chosen by the worker config) needs no
// rule. A refused run starts no process.
func TestEnvSecretPolicy(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	t.Setenv("STAGEHAND_TEST_POLICY_NPM", "npm-policy-token-0123")
	t.Setenv("STAGEHAND_TEST_POLICY_FIXED", "fixed-policy-token-0123")
	t.Setenv("STAGEHAND_TEST_POLICY_AWS", "aws-policy-secret-0123")
	p, err := secrets.NewPolicy([]secrets.Rule{{Ref: "env:STAGEHAND_TEST_POLICY_NPM", Steps: []string{"exec.run"}}})
	if err != nil {
		t.Fatal(err)
	}
	a := &Activities{Resolve: secrets.Guard(p, secrets.Env), Commands: map[string]Command{
		"install": {
			Argv: sh(`touch "` + marker + `"; test -n "$NPM_TOKEN" && test -n "$FIXED"; echo ok`),
			Dirs: []string{dir}, Env: map[string]string{"FIXED": "env:STAGEHAND_TEST_POLICY_FIXED"},
			AllowEnv: []string{"NPM_TOKEN"},
		},
	}}
	with := func(ref string) map[string]any {
		return map[string]any{"command": "install", "env": map[string]string{"NPM_TOKEN": ref}}
	}
	out, err := runStep(t, a, with("env:STAGEHAND_TEST_POLICY_NPM"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out["tail"].(string), "ok") {
		t.Errorf("tail %q", out["tail"])
	}

	removeMarker(t, marker)
	_, err = runStep(t, a, with("env:STAGEHAND_TEST_POLICY_AWS"))
	steptest.WantAppError(t, err, activities.ErrSecretNotAllowed, true,
		[]string{`env:STAGEHAND_TEST_POLICY_AWS is not allowed for step "bump" (exec.run)`, "secrets.allow: [{ref: env:STAGEHAND_TEST_POLICY_AWS, steps: [exec.run]}]"},
		"aws-policy-secret-0123")
	if exists(t, marker) {
		t.Error("the command ran although its env was refused")
	}
}

func removeMarker(t *testing.T, path string) {
	t.Helper()
	if exists(t, path) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}
