package workflows_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// upgradeWorld fakes every step type the built-in upgrade runbook uses, so
// these tests check the runbook's own decisions — what runs, in which
// environment, with which arguments, and above all which way back it takes
// after a failure — in the unit tier. The step types themselves are tested
// against real systems in their packages, and the whole runbook in e2e/.
type upgradeWorld struct {
	mu    sync.Mutex
	calls []string
	args  map[string]map[string]any
	// failAt makes that step fail (non-retryable, type Injected).
	failAt string
	// migrated is what db.verifyMigrations finds: new migrations since the
	// snapshot (rollbackSafe false).
	migrated bool
}

func (w *upgradeWorld) called(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.args[id]
	return ok
}

func (w *upgradeWorld) handle(ctx context.Context, uses string, req activities.StepRequest) (activities.StepResult, error) {
	w.mu.Lock()
	w.calls = append(w.calls, req.StepID)
	w.args[req.StepID] = req.With
	w.mu.Unlock()
	if req.StepID == w.failAt {
		return activities.StepResult{}, temporal.NewNonRetryableApplicationError(req.StepID+" failed on purpose", "Injected", nil)
	}
	out := map[string]any{}
	switch uses {
	case "git.checkout":
		out = map[string]any{"dir": "/work/trees/run/portal", "sha": "1111111111111111", "shortSha": "11111111", "branch": req.With["branch"]}
	case "portal.versions":
		v := "1.44.0"
		if req.StepID == "versions_after" {
			v = "1.45.0"
		}
		out = map[string]any{"backstage": v, "summary": "backstage " + v}
	case "git.commitPush":
		out = map[string]any{"sha": "2222222222222222", "shortSha": "22222222", "branch": "upgrade-1.45.0", "committed": true}
	case "image.build":
		out = map[string]any{"built": true, "tags": req.With["tags"]}
	case "image.push":
		out = map[string]any{"image": req.With["image"], "digest": "sha256:abc"}
	case "kube.getImage":
		out = map[string]any{"container": "backstage", "image": "reg/portal:prod-old", "replicas": 2, "readAt": "2026-11-30T00:00:00Z"}
	case "kube.setImage":
		out = map[string]any{"container": "backstage", "image": req.With["image"], "changedAt": "2026-11-30T00:00:01Z"}
	case "kube.waitRollout":
		out = map[string]any{"updatedReplicas": 2}
	case "kube.events":
		out = map[string]any{"warnings": 0}
	case "db.snapshot":
		out = map[string]any{"database": req.With["database"], "plugins": map[string]any{"catalog": map[string]any{"count": 43}}}
	case "db.backup":
		out = map[string]any{"key": req.With["to"], "dir": "/backups/" + fmt.Sprint(req.With["to"]),
			"files": []any{map[string]any{"file": "catalog.dump", "size": 100, "sha256": "feed"}}}
	case "db.verifyMigrations":
		if req.With["expectUnchanged"] == true {
			out = map[string]any{"rollbackSafe": true}
			break
		}
		plugins := map[string]any{"catalog": map[string]any{"newMigrations": []any{}}}
		reason := "no plugin migrated"
		if w.migrated {
			plugins = map[string]any{"catalog": map[string]any{"newMigrations": []any{map[string]any{"name": "a.js"}, map[string]any{"name": "b.js"}},
				"tablesAdded": []any{"refresh_keys"}, "tablesRemoved": nil, "columnsAdded": []any{"final_entities.hash"}, "columnsRemoved": nil,
				"columnsChanged": nil, "indexesAdded": nil, "indexesRemoved": nil}}
			reason = "catalog applied 2 migrations"
		}
		out = map[string]any{"rollbackSafe": !w.migrated, "rollbackReason": reason, "plugins": plugins,
			"summary": []any{"catalog: +" + fmt.Sprint(len(plugins["catalog"].(map[string]any)["newMigrations"].([]any)))}}
	case "web.smoke":
		out = map[string]any{"passed": 1}
	case "git.merge":
		out = map[string]any{"mergeCommit": "3333333333333333", "shortSha": "33333333"}
	case "flux.waitImage":
		out = map[string]any{"image": "reg/portal:prod-33333333-1"}
	case "noop":
		out = map[string]any{"echo": req.With["echo"]}
	case "log":
		out = map[string]any{"message": req.With["message"]}
	}
	return activities.StepResult{Outputs: out, Attempt: 1}, nil
}

func newUpgradeEnv(t *testing.T, w *upgradeWorld, deploy string) *testsuite.TestWorkflowEnvironment {
	return newUpgradeEnvWith(t, w, map[string]any{
		"git":     map[string]any{"provider": "git", "repository": "/git/portal.git", "targetBranch": "main"},
		"upgrade": map[string]any{"imageRepository": "reg/portal", "bumpCommand": "backstage-bump", "deploy": deploy},
	})
}

func newUpgradeEnvWith(t *testing.T, w *upgradeWorld, settings map[string]any) *testsuite.TestWorkflowEnvironment {
	w.args = map[string]map[string]any{}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := suite.NewTestWorkflowEnvironment()
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	envData := func(ns, db string) map[string]any {
		return map[string]any{"namespace": ns, "deployment": "backstage", "container": "backstage", "url": "http://" + ns,
			"database": db, "approvers": []any{"bob", "carol"}, "smokeChecks": []any{map[string]any{"preset": "catalog"}}, "imagePolicy": "backstage", "kind": "kubernetes"}
	}
	workflows.Register(env, &workflows.Resolver{Library: lib, Catalogue: cat,
		Environments: map[string]any{"sandbox": envData("sb", "sandbox-db"), "prod": envData("pr", "prod-db")},
		Settings:     settings})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Maybe()
	env.OnUpsertMemo(mock.Anything).Return(nil).Maybe()
	for _, spec := range cat.Specs() {
		if spec.Native {
			continue
		}
		uses := spec.Name
		env.OnActivity(uses, mock.Anything, mock.Anything).Return(
			activities.Handler(func(ctx context.Context, req activities.StepRequest) (activities.StepResult, error) {
				return w.handle(ctx, uses, req)
			})).Maybe()
	}
	return env
}

// decide sends a gate decision once that gate waits.
func decide(env *testsuite.TestWorkflowEnvironment, gate, decision, by string) {
	var poll func()
	poll = func() {
		v, err := env.QueryWorkflow(workflows.StatusQuery)
		if err == nil {
			var st workflows.Status
			if v.Get(&st) == nil && st.PendingGate != nil && st.PendingGate.Gate == gate {
				env.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: gate, Decision: decision, By: by})
				return
			}
		}
		env.RegisterDelayedCallback(poll, time.Minute)
	}
	env.RegisterDelayedCallback(poll, time.Minute)
}

func runUpgrade(t *testing.T, env *testsuite.TestWorkflowEnvironment) (*workflows.Status, error) {
	t.Helper()
	env.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{Runbook: "upgrade", RequestedBy: "alice",
		Params: map[string]any{"release": "1.45.0"}})
	h := &harness{TestWorkflowEnvironment: env}
	return h.result(t)
}

func TestUpgradeRunbookDirectHappyPath(t *testing.T) {
	w := &upgradeWorld{migrated: true}
	env := newUpgradeEnv(t, w, "direct")
	decide(env, "promote", workflows.DecisionApprove, "bob")
	st, err := runUpgrade(t, env)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, st.State)

	assert.Equal(t, []any{"--release", "1.45.0"}, w.args["bump"]["args"])
	assert.Equal(t, "/work/trees/run/portal", w.args["bump"]["dir"])
	tags := w.args["build"]["tags"].([]any)
	assert.Regexp(t, `^reg/portal:upgrade-1\.45\.0-22222222-[0-9]+$`, tags[0], "the team's tag convention")
	assert.Equal(t, "sandbox-db", w.args["sandbox_backup"]["database"])
	assert.Equal(t, "prod-db", w.args["prod_backup"]["database"])
	assert.Equal(t, tags[0], w.args["prod_apply"]["image"], "production gets the image the sandbox ran")
	assert.False(t, w.called("prod_merge"), "direct: no GitOps merge before production")
	assert.True(t, w.called("merge_branch"), "direct: the branch is merged afterwards")
	assert.False(t, w.called("failed_in"), "no compensation on success")
	before := w.args["sandbox_verify"]["before"].(map[string]any)
	assert.Equal(t, "sandbox-db", before["database"], "verify compares with the sandbox's own snapshot")

	require.NotNil(t, st.Audit)
	assert.Equal(t, "1.44.0 → 1.45.0", st.Audit.Summary["version"])
	assert.Equal(t, "sha256:abc", st.Audit.Summary["digest"])
	assert.Contains(t, st.Audit.Summary["migrations"], "prod catalog+2")
	assert.Contains(t, st.Audit.Details["backups"], "sha256 feed")
	assert.Contains(t, st.Audit.Details["schema"], "catalog: 2 new migrations a.js b.js")
	assert.Contains(t, st.Audit.Details["schema"], "tables +[refresh_keys] -[]")
	assert.Contains(t, st.Audit.Details["schema"], "columns +[final_entities.hash]")
}

func TestUpgradeRunbookGitOpsProduction(t *testing.T) {
	w := &upgradeWorld{}
	env := newUpgradeEnv(t, w, "gitops")
	decide(env, "promote", workflows.DecisionApprove, "carol")
	st, err := runUpgrade(t, env)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, st.State)
	assert.Equal(t, "upgrade-1.45.0", w.args["prod_merge"]["prBranch"])
	assert.Equal(t, "2222222222222222", w.args["prod_merge"]["expectHead"], "only the tested commit is merged")
	assert.True(t, w.called("prod_image"))
	assert.False(t, w.called("prod_apply"))
	assert.False(t, w.called("merge_branch"))
	assert.Equal(t, "reg/portal:prod-33333333-1", w.args["prod_pods"]["image"])
}

func TestUpgradeRunbookFailedBuildTouchesNothing(t *testing.T) {
	w := &upgradeWorld{failAt: "build"}
	env := newUpgradeEnv(t, w, "direct")
	st, err := runUpgrade(t, env)
	require.Error(t, err)
	assert.Equal(t, "build", st.FailedStep)
	for _, id := range []string{"sandbox_snapshot", "sandbox_backup", "sandbox_apply", "migrations", "rollback", "restore_db"} {
		assert.False(t, w.called(id), "%s must not run after a failed build", id)
	}
	assert.Equal(t, workflows.StepSkipped, step(st, "restore").State)
}

func TestUpgradeRunbookRollsBackWhenNoMigrationRan(t *testing.T) {
	w := &upgradeWorld{failAt: "sandbox_rollout"}
	env := newUpgradeEnv(t, w, "direct")
	st, err := runUpgrade(t, env)
	require.Error(t, err)
	assert.Equal(t, "sandbox_rollout", st.FailedStep)
	require.True(t, w.called("rollback"), "rollbackSafe: the image is rolled back automatically")
	assert.Equal(t, "reg/portal:prod-old", w.args["rollback"]["toImage"])
	assert.Equal(t, "sb", w.args["rollback"]["namespace"])
	assert.False(t, w.called("evidence"))
	assert.Equal(t, workflows.StepSkipped, step(st, "restore").State, "no restore gate when nothing migrated")
}

func TestUpgradeRunbookNeverRollsBackAMigratedSchema(t *testing.T) {
	for _, tc := range []struct {
		name, failAt, decision string
		wantRestore            bool
	}{
		{"sandbox, restore approved", "sandbox_smoke", workflows.DecisionApprove, true},
		{"sandbox, restore rejected", "sandbox_smoke", workflows.DecisionReject, false},
		{"production, restore approved", "prod_smoke", workflows.DecisionApprove, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &upgradeWorld{failAt: tc.failAt, migrated: true}
			env := newUpgradeEnv(t, w, "direct")
			if strings.HasPrefix(tc.failAt, "prod") {
				decide(env, "promote", workflows.DecisionApprove, "bob")
			}
			decide(env, "restore", tc.decision, "carol")
			st, err := runUpgrade(t, env)
			require.Error(t, err)
			assert.Equal(t, workflows.RunFailed, st.State, "a failed upgrade stays failed whatever the restore gate decides")
			assert.False(t, w.called("rollback"), "never roll the image back alone onto a migrated schema")
			require.True(t, w.called("evidence"))
			msg := fmt.Sprint(w.args["evidence"]["message"])
			assert.Contains(t, msg, "catalog applied 2 migrations")
			assert.Contains(t, msg, "sha256 feed")
			assert.Contains(t, msg, "scale deploy/backstage --replicas=0")

			env2, db, ns, key := "sandbox", "sandbox-db", "sb", "-sandbox"
			if strings.HasPrefix(tc.failAt, "prod") {
				env2, db, ns, key = "prod", "prod-db", "pr", "-prod"
			}
			assert.Equal(t, db, w.args["migrations"]["database"])
			if !tc.wantRestore {
				assert.Equal(t, workflows.StepRejected, step(st, "restore").State)
				for _, id := range []string{"restore_scale_down", "restore_db", "restore_image", "restore_scale_up"} {
					assert.False(t, w.called(id), id)
				}
				assert.Equal(t, "restore declined", st.Audit.Summary["rollback"])
				return
			}
			assert.Equal(t, workflows.StepApproved, step(st, "restore").State)
			order := []string{}
			for _, c := range w.calls {
				if strings.HasPrefix(c, "restore_") {
					order = append(order, c)
				}
			}
			assert.Equal(t, []string{"restore_scale_down", "restore_db", "restore_image", "restore_scale_up", "restore_verify", "restore_ready"}, order)
			assert.EqualValues(t, 0, w.args["restore_scale_down"]["replicas"])
			assert.Equal(t, ns, w.args["restore_scale_down"]["namespace"])
			assert.Equal(t, env2, w.args["restore_scale_down"]["cluster"])
			assert.True(t, strings.HasSuffix(fmt.Sprint(w.args["restore_db"]["from"]), key), "%v", w.args["restore_db"]["from"])
			assert.Equal(t, db, w.args["restore_db"]["database"])
			assert.Equal(t, "reg/portal:prod-old", w.args["restore_image"]["image"])
			assert.EqualValues(t, 2, w.args["restore_scale_up"]["replicas"])
			assert.Equal(t, true, w.args["restore_verify"]["expectUnchanged"])
			assert.Equal(t, "database restored", st.Audit.Summary["rollback"])
		})
	}
}

func TestUpgradeRunbookAuditReadsWell(t *testing.T) {
	w := &upgradeWorld{migrated: true}
	env := newUpgradeEnv(t, w, "direct")
	decide(env, "promote", workflows.DecisionApprove, "bob")
	st, err := runUpgrade(t, env)
	require.NoError(t, err)
	assert.Equal(t, "prod catalog+2; sandbox catalog+2", st.Audit.Summary["migrations"])
	assert.Equal(t, "none", st.Audit.Summary["rollback"])
	assert.Equal(t, "sandbox:\n  catalog: 2 new migrations a.js b.js; tables +[refresh_keys] -[]; columns +[final_entities.hash] -[] ~[]; indexes +[] -[]\n"+
		"prod:\n  catalog: 2 new migrations a.js b.js; tables +[refresh_keys] -[]; columns +[final_entities.hash] -[] ~[]; indexes +[] -[]",
		strings.TrimSpace(st.Audit.Details["schema"]))
	assert.Equal(t, "sandbox: /backups/upgrade-default-test-workflow-id-sandbox\n  catalog.dump 100 bytes sha256 feed\n"+
		"prod: /backups/upgrade-default-test-workflow-id-prod\n  catalog.dump 100 bytes sha256 feed", strings.TrimSpace(st.Audit.Details["backups"]))
}

func TestUpgradeRunbookNeedsItsSettingsBeforeAnything(t *testing.T) {
	w := &upgradeWorld{}
	env := newUpgradeEnvWith(t, w, map[string]any{"git": map[string]any{"provider": "git", "repository": "/git/portal.git"}})
	st, err := runUpgrade(t, env)
	require.Error(t, err)
	// The run fails when it resolves, before any step (resolvecheck.go);
	// the preflight step stays as a second line for runs resolved earlier.
	assert.Empty(t, st.FailedStep)
	assert.Contains(t, st.Error, `"upgrade": step preflight reads it in with.echo.imageRepository: {{ .settings.upgrade.imageRepository }}`)
	assert.False(t, w.called("checkout"), "nothing is checked out, built or changed")
	assert.False(t, w.called("build"))
}
