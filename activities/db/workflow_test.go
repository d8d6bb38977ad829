package db

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
	"github.com/stagehand-dev/stagehand/workflows"
)

// The database part of an upgrade as a runbook author writes it, run by
// the real interpreter: the snapshot's whole outputs map reaches
// verifyMigrations' `before` through a template, and the backup's files
// reach db.restore's `files`.
const upgradeDB = `
name: upgrade-db
params:
  key: {type: string, required: true}
steps:
  - id: snap
    uses: db.snapshot
    with: {database: main}
  - id: backup
    uses: db.backup
    with: {database: main, to: "{{ .params.key }}"}
  - id: verify
    uses: db.verifyMigrations
    with:
      database: main
      before: "{{ .steps.snap.outputs }}"
      expect: {catalog: "{{ .steps.snap.outputs.plugins.catalog.latest }}"}
  - id: restore
    uses: db.restore
    with:
      database: main
      files: "{{ .steps.backup.outputs.files }}"
`

func TestUpgradeRunbook(t *testing.T) {
	e := upgraded(t, "mariadb")
	a := e.acts(t)
	var specs []activities.StepSpec
	for _, s := range steps.All() {
		if strings.HasPrefix(s.Name, "db.") {
			specs = append(specs, s)
		}
	}
	cat, err := activities.Bind(specs, StepTypes(a)...)
	if err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(5 * time.Minute)
	// Inline definition, no library: the built-in runbooks need every
	// adapter, and this package binds only its own.
	workflows.Register(env, &workflows.Resolver{Catalogue: cat, AllowInline: true})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil)
	env.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{Definition: upgradeDB, RequestedBy: "alice", Params: map[string]any{"key": "run-1"}})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	var st workflows.Status
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.Steps) != 4 {
		t.Fatalf("%d steps ran", len(st.Steps))
	}
	v := decode[VerifyOutput](t, st.Steps[2].Outputs)
	if !v.RollbackSafe || v.After.Plugins["catalog"].Count != 45 {
		t.Errorf("verify: rollbackSafe %v, catalog %d migrations", v.RollbackSafe, v.After.Plugins["catalog"].Count)
	}
	r := decode[RestoreOutput](t, st.Steps[3].Outputs)
	if len(r.Restored) < 2 {
		t.Errorf("restore: %+v", r)
	}
	b, _ := json.Marshal(st)
	if strings.Contains(string(b), e.my.Password) {
		t.Error("the run's status contains the database password")
	}
	snapJSON, _ := json.Marshal(st.Steps[0].Outputs)
	t.Logf("snapshot outputs: %d bytes for %d plugins; run status %d bytes", len(snapJSON), len(v.After.Plugins), len(b))
}
