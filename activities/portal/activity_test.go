package portal

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/git"
	"github.com/stagehand-dev/stagehand/internal/gittest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// TestVersionsStepOnCheckout runs git.checkout and then portal.versions as
// activities, the worker's way (Tree is the git package's own check of
// this run's checkouts), and checks that a dir that is not this run's
// checkout is refused before anything is read.
func TestVersionsStepOnCheckout(t *testing.T) {
	repo := gittest.New(t)
	repo.Commit("main", "backstage app", app)
	ga := &git.Activities{WorkDir: t.TempDir(), CommandTimeout: time.Minute}
	co := steptest.MustStep(t, git.StepTypes(ga), "git.checkout", map[string]any{"remote": repo.Origin}).Outputs
	dir, _ := co["dir"].(string)
	if dir == "" {
		t.Fatalf("checkout outputs %v", co)
	}
	a := &Activities{Tree: ga.RunTree}

	out := steptest.MustStep(t, StepTypes(a), "portal.versions", map[string]any{
		"dir": dir, "packages": []any{"@backstage/plugin-catalog-backend", "@backstage/cli"},
	}).Outputs
	if out["backstage"] != "1.44.0" || out["summary"] != "backstage 1.44.0; @backstage/cli ^0.34.0; @backstage/plugin-catalog-backend 3.9.1" {
		t.Errorf("outputs %v", out)
	}
	if pk, _ := out["packages"].(map[string]any); len(pk) != 2 || pk["@backstage/plugin-catalog-backend"] != "3.9.1" {
		t.Errorf("packages %v", out["packages"])
	}
	if files, _ := out["files"].([]any); len(files) != 4 || files[1] != "packages/app/package.json" {
		t.Errorf("files %v", out["files"])
	}

	for _, bad := range []string{t.TempDir(), filepath.Join(dir, "packages"), repo.Work} {
		run := steptest.RunStep(t, StepTypes(a), "portal.versions", map[string]any{"dir": bad})
		steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"not a work tree git.checkout made in this run"})
	}
}
