package workflows

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// everChangeIDs is the append-only record of change ids as strings: a
// constant renamed or deleted in the code must not silently take its id
// along. Add a line for each new change; never delete one.
var everChangeIDs = []string{
	"resolve-local-activity",
	"irreversible-wait-for-cancellation",
	"gate-reminder-pacing",
	"resume-interrupted-step",
}

// TestChangeIDsAreKept enforces the never-remove rule: every id ever used
// is still listed and still passed to a GetVersion call in this package,
// and every GetVersion call uses a listed id.
func TestChangeIDsAreKept(t *testing.T) {
	assert.Equal(t, everChangeIDs, ChangeIDs, "ChangeIDs (versioning.go) must list every id in everChangeIDs, in order")
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	consts := map[string]string{}
	constRE := regexp.MustCompile(`(?m)^\s*(?:const\s+)?(\w+)\s*=\s*"([a-z0-9-]+)"`)
	callRE := regexp.MustCompile(`workflow\.GetVersion\(\w+,\s*(\w+|"[^"]+")`)
	var used []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		// Comments (the package doc shows the call) do not count.
		src := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(string(raw), "")
		for _, m := range constRE.FindAllStringSubmatch(src, -1) {
			consts[m[1]] = m[2]
		}
		for _, m := range callRE.FindAllStringSubmatch(src, -1) {
			used = append(used, m[1])
		}
	}
	var ids []string
	for _, u := range used {
		id := strings.Trim(u, `"`)
		if v, ok := consts[u]; ok {
			id = v
		}
		ids = append(ids, id)
		assert.Contains(t, everChangeIDs, id, "GetVersion change id %q is not recorded in everChangeIDs", id)
	}
	for _, id := range everChangeIDs {
		assert.True(t, slices.Contains(ids, id), "change id %q is no longer passed to workflow.GetVersion: keep the call (raise its minimum version instead of deleting it)", id)
	}
}

// reorderedWorkflow is the interpreter with one change that alters the
// order of commands: compensation steps run last to first. Guarded, it is
// the rule followed; unguarded, the rule broken.
func reorderedWorkflow(guarded bool) func(workflow.Context, RunInput) (*Status, error) {
	return func(ctx workflow.Context, in RunInput) (*Status, error) {
		r := newRun(ctx, in)
		if err := r.registerHandlers(ctx); err != nil {
			return nil, err
		}
		resolved, err := resolveRun(ctx, in)
		if err != nil {
			return r.failToStart(ctx, err)
		}
		r.begin(ctx, resolved)
		reverse := true
		if guarded {
			reverse = workflow.GetVersion(ctx, "test-reverse-compensation", workflow.DefaultVersion, 1) == 1
		}
		if reverse {
			slices.Reverse(resolved.Runbook.OnFailure)
		}
		failure := r.runSteps(ctx, resolved.Runbook.Steps)
		return r.settle(ctx, failure)
	}
}

func replay(t *testing.T, fn func(workflow.Context, RunInput) (*Status, error), file string) error {
	t.Helper()
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(fn, workflow.RegisterOptions{Name: WorkflowType})
	return r.ReplayWorkflowHistoryFromJSONFile(nil, file)
}

// TestReplayCatchesUnguardedChange shows the replay tests can fail: the
// same change to the order of compensation breaks the replay of a run
// whose compensation ran in the old order when unguarded, and replays
// every recorded history when guarded by GetVersion.
func TestReplayCatchesUnguardedChange(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		assert.NoError(t, replay(t, reorderedWorkflow(true), f), "guarded change must replay %s", f)
	}
	// restore-onfailure-gate-audit ran its compensation gate, then do_restore.
	err = replay(t, reorderedWorkflow(false), "testdata/restore-onfailure-gate-audit.json")
	require.Error(t, err, "an unguarded reorder of compensation must not replay")
	// TMPRL1100 is the SDK's code for a nondeterministic replay.
	assert.Contains(t, err.Error(), "TMPRL1100")
}
