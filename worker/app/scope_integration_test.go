package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/command"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/internal/enginetest"
	"github.com/stagehand-dev/stagehand/internal/gittest"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

// scopeRunbook checks a repository out and runs a command and a build in a
// directory: its own checkout, unless the run names another one.
const scopeRunbook = `name: scoped
description: a command and a build in a checkout
params:
  remote: {type: string, required: true}
  image: {type: string, required: true}
  dir: {type: string, default: ""}
steps:
  - id: checkout
    uses: git.checkout
    with: {remote: '{{ .params.remote }}'}
  - id: mark
    uses: exec.run
    continueOnError: true
    with: {command: mark, dir: '{{ default .steps.checkout.outputs.dir .params.dir }}'}
  - id: build
    uses: image.build
    continueOnError: true
    with: {context: '{{ default .steps.checkout.outputs.dir .params.dir }}', tags: ['{{ .params.image }}']}
`

// TestCommandsAndBuildsStayInTheRunsCheckout: with the default roots (the
// worker's git checkouts), a run may run commands in and build from only
// its own work trees; naming another run's checkout is refused before the
// command runs or the engine is called.
func TestCommandsAndBuildsStayInTheRunsCheckout(t *testing.T) {
	srv := devserver.Shared(t)
	engine := enginetest.Shared(t)
	repo := gittest.New(t)
	repo.Commit("main", "a Dockerfile", map[string]string{"Dockerfile": "FROM " + engine.BaseImage + "\nCOPY app.txt /app.txt\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	runbooksDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(runbooksDir, "scoped.yaml"), []byte(scopeRunbook), 0o644))
	stamp := fmt.Sprint(time.Now().UnixNano())
	cfg := config.Defaults()
	cfg.Temporal.Address = srv.Address
	cfg.Temporal.Namespace = srv.Namespace
	cfg.Temporal.TaskQueue = "it-scope-" + stamp
	cfg.RunbooksDir = runbooksDir
	cfg.WorkDir = t.TempDir()
	cfg.Docker = config.Docker{Host: engine.Host} // contextRoots default: the checkouts
	cfg.Commands = map[string]command.Command{"mark": {Argv: []string{"touch", "marker"}}}
	a, err := app.New(ctx, cfg, app.Options{Client: srv.Client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, a.Start())
	t.Cleanup(a.Stop)

	start := func(id, dir string) map[string]workflows.StepStatus {
		t.Helper()
		run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: cfg.Temporal.TaskQueue},
			workflows.WorkflowType, workflows.RunInput{Runbook: "scoped", RequestedBy: "alice",
				Params: map[string]any{"remote": repo.Origin, "image": "localhost/scoped/" + id + ":1", "dir": dir}})
		require.NoError(t, err)
		var st workflows.Status
		require.NoError(t, run.Get(ctx, &st))
		steps := map[string]workflows.StepStatus{}
		for _, s := range st.Steps {
			steps[s.ID] = s
		}
		return steps
	}

	own := start("scope-a-"+stamp, "")
	require.Equal(t, workflows.StepSucceeded, own["mark"].State, own["mark"].Error)
	require.Equal(t, workflows.StepSucceeded, own["build"].State, own["build"].Error)
	dirA, _ := own["checkout"].Outputs["dir"].(string)
	require.FileExists(t, filepath.Join(dirA, "marker"))
	require.NoError(t, os.Remove(filepath.Join(dirA, "marker")))

	other := start("scope-b-"+stamp, dirA)
	assert.Equal(t, workflows.StepSucceeded, other["checkout"].State)
	assert.Equal(t, activities.ErrCommandNotAllowed, other["mark"].ErrorType, other["mark"].Error)
	assert.Contains(t, other["mark"].Error, "outside the directories")
	assert.Equal(t, activities.ErrImageContextNotAllowed, other["build"].ErrorType, other["build"].Error)
	assert.NoFileExists(t, filepath.Join(dirA, "marker"), "the command ran in the other run's checkout")
}
