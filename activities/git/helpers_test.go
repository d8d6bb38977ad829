package git

import (
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/internal/steptest"
)

func newActivities(t testing.TB) *Activities {
	return &Activities{WorkDir: t.TempDir(), CommandTimeout: time.Minute}
}

// runStep runs a step type the way a worker does (see steptest).
func runStep(t testing.TB, a *Activities, name string, with map[string]any) (map[string]any, error) {
	t.Helper()
	run := steptest.RunStep(t, StepTypes(a), name, with, steptest.StepID("merge"))
	return run.Outputs, run.Err
}

func mustStep(t testing.TB, a *Activities, name string, with map[string]any) map[string]any {
	t.Helper()
	return steptest.MustStep(t, StepTypes(a), name, with, steptest.StepID("merge")).Outputs
}
