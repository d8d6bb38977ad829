package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/stagehand-dev/stagehand/internal/upgradelab"
	"github.com/stagehand-dev/stagehand/workflows"
)

// TestUpgrade runs the built-in upgrade runbook against real systems: a
// real image build and push, pods that run the real Backstage their image
// names on PostgreSQL (sandbox) and MariaDB (production), real migrations,
// backups and restores. The scenarios share the audit check at the end.
func TestUpgrade(t *testing.T) {
	runScenarios(t, "upgrade", []scenario{
		{"happy", upgradeHappyPath},
		{"build-fails", upgradeBuildFails},
		{"crashloop", upgradeCrashLoopRollsBack},
		{"restore-approved", upgradeRestoreApproved},
		{"restore-rejected", upgradeRestoreRejected},
		{"worker-killed", upgradeWorkerKilled},
		{"gitops", upgradeGitOps},
	}, upgradeAuditListsRuns)
}

// update decides a gate with the real `temporal workflow update`.
func update(t *testing.T, id, payload string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := temporalSrv.Command(ctx, "workflow", "update", "execute", "--workflow-id", id,
		"--name", workflows.ApproveUpdate, "--input", payload).CombinedOutput()
	require.NoError(t, err, "temporal workflow update: %s", out)
	return string(out)
}

func outputsOf(st workflows.Status, id string) map[string]any {
	for _, s := range append(append([]workflows.StepStatus{}, st.Steps...), st.Compensation...) {
		if s.ID == id {
			return s.Outputs
		}
	}
	return nil
}

func compensationState(st workflows.Status, id string) workflows.StepState {
	for _, s := range st.Compensation {
		if s.ID == id {
			return s.State
		}
	}
	return ""
}

// waitGate polls until gate waits for a decision. Unlike waitFor it does
// not stop at a failed state: a run shows "failed" while its onFailure
// steps (the restore gate among them) still run, so only a closed workflow
// ends the wait.
func waitGate(t *testing.T, id, gate string, timeout time.Duration) workflows.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last workflows.Status
	for time.Now().Before(deadline) {
		if st, err := status(t, id); err == nil {
			last = st
			if st.PendingGate != nil && st.PendingGate.Gate == gate {
				return st
			}
		}
		desc, err := temporalSrv.Client.DescribeWorkflowExecution(context.Background(), id, "")
		if err == nil && desc.WorkflowExecutionInfo.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Fatalf("run %s closed (%s, failed step %s: %s) before gate %s", id, last.State, last.FailedStep, last.Error, gate)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("run %s: gate %s not reached within %s (state %s, current step %q)", id, gate, timeout, last.State, last.CurrentStep)
	return last
}

// upgradeHappyPath: bump 1.44.0 → 1.45.0, real build and push, sandbox
// (PostgreSQL) migrated and verified, promoted through the real `temporal
// workflow update`, production (MariaDB) migrated and verified, the branch
// merged, and the audit record filled in.
func upgradeHappyPath(t *testing.T, id string) {
	l := newUpgradeLab(t)
	l.startWorker()
	l.start(id, upgradelab.ToRelease)
	st := waitGate(t, id, "promote", 10*time.Minute)

	assert.Equal(t, 45, l.catalogMigrations("sandbox"), "the sandbox ran catalog 4.0.0's two migrations")
	assert.Equal(t, 43, l.catalogMigrations("prod"), "production untouched before the promotion")
	pushed := fmt.Sprint(outputsOf(st, "push")["image"])
	assert.Equal(t, pushed, l.image(l.sandbox))
	assert.Equal(t, l.initialImage, l.image(l.prod))
	assert.Contains(t, st.PendingGate.Message, upgradelab.FromRelease+" → "+upgradelab.ToRelease)
	assert.Contains(t, st.PendingGate.Message, "catalog")
	assert.Equal(t, []string{upgradeApprover, "carol"}, st.PendingGate.Approvers)
	verify := outputsOf(st, "sandbox_verify")
	assert.Equal(t, false, verify["rollbackSafe"], "%v", verify)
	before, after := outputsOf(st, "versions_before"), outputsOf(st, "versions_after")
	assert.Equal(t, upgradelab.FromRelease, before["backstage"])
	assert.Equal(t, upgradelab.ToRelease, after["backstage"])

	out := update(t, id, `{"gate":"promote","decision":"approve","by":"bob","comment":"sandbox is fine"}`)
	assert.Contains(t, out, "bob")
	final, err := finalStatus(t, id)
	require.NoError(t, err, "%s", final.Error)
	assert.Equal(t, workflows.RunSucceeded, final.State)
	assert.Equal(t, 45, l.catalogMigrations("prod"), "production (MariaDB) migrated")
	assert.Equal(t, pushed, l.image(l.prod))
	prodVerify := outputsOf(final, "prod_verify")
	plugins, _ := prodVerify["plugins"].(map[string]any)
	catalog, _ := plugins["catalog"].(map[string]any)
	assert.Len(t, catalog["newMigrations"], 2, "%v", prodVerify)

	bs, err := l.portal.File("main", "backstage.json")
	require.NoError(t, err)
	assert.Contains(t, bs, upgradelab.ToRelease, "the upgrade branch was merged into main")
	assert.ElementsMatch(t, []string{"upgrade-" + id + "-sandbox", "upgrade-" + id + "-prod"}, l.backups())

	require.NotNil(t, final.Audit, "the run's audit record")
	assert.Equal(t, upgradelab.FromRelease+" → "+upgradelab.ToRelease, final.Audit.Summary["version"])
	ref := strings.SplitN(strings.TrimPrefix(pushed, engine.RegistryAddr+"/"), ":", 2)
	img, err := engine.ReadImage(context.Background(), engine.RegistryAddr, ref[0], ref[1])
	require.NoError(t, err)
	assert.Equal(t, img.Digest, final.Audit.Summary["digest"], "the digest the registry holds")
	assert.Contains(t, final.Audit.Summary["migrations"], "catalog+2")
	assert.Contains(t, final.Audit.Details["backups"], "sha256")
}

// upgradeBuildFails: main's Dockerfile is broken; the run fails at the
// build with the build's output in the error, and nothing was backed up or
// deployed.
func upgradeBuildFails(t *testing.T, id string) {
	l := newUpgradeLab(t, func(l *upgradeLab) {
		_, err := l.portal.Commit("break the build", map[string]string{
			"Dockerfile": upgradelab.Dockerfile(engine.BaseImage) + "RUN echo 'yarn tsc: error TS2322 in packages/app/src/App.tsx' && exit 3\n",
		})
		require.NoError(t, err)
	})
	l.startWorker()
	l.start(id, upgradelab.ToRelease)
	final, err := finalStatus(t, id)
	require.Error(t, err)
	assert.Equal(t, workflows.RunFailed, final.State)
	assert.Equal(t, "build", final.FailedStep)
	assert.Contains(t, final.Error, "error TS2322", "the build output is in the error")
	assert.Equal(t, workflows.StepPending, stepState(final, "sandbox_snapshot"))
	assert.Empty(t, l.backups(), "nothing backed up for an image that never built")
	assert.Equal(t, l.initialImage, l.image(l.sandbox))
	assert.Equal(t, l.initialImage, l.image(l.prod))
	for _, c := range final.Compensation {
		if c.ID == "rollback" || c.ID == "restore" || c.ID == "evidence" {
			assert.Equal(t, workflows.StepSkipped, c.State, c.ID)
		}
	}
}

// upgradeCrashLoopRollsBack: the upgraded backend crashes at start-up
// before it touches the database; verify finds no migration, so the
// sandbox is rolled back to its image automatically.
func upgradeCrashLoopRollsBack(t *testing.T, id string) {
	l := newUpgradeLab(t)
	l.startWorker()
	l.start(id, upgradelab.BrokenRelease)
	final, err := finalStatus(t, id)
	require.Error(t, err)
	assert.Equal(t, workflows.RunFailed, final.State)
	assert.Contains(t, []string{"sandbox_rollout", "sandbox_pods"}, final.FailedStep, final.Error)
	assert.Equal(t, true, outputsOf(final, "migrations")["rollbackSafe"])
	assert.Equal(t, workflows.StepSucceeded, compensationState(final, "rollback"))
	assert.Equal(t, workflows.StepSkipped, compensationState(final, "restore"))
	assert.Equal(t, l.initialImage, l.image(l.sandbox), "rolled back")
	assert.Equal(t, 43, l.catalogMigrations("sandbox"), "no migration ran")
	assert.Equal(t, l.initialImage, l.image(l.prod))
}

// brokenSignIn commits a portal without the auth backend: the upgrade
// builds from it, migrates, and then fails its sign-in smoke check. The
// image production and the sandbox run was built before, with auth.
func brokenSignIn(l *upgradeLab) {
	_, err := l.portal.Commit("drop the auth backend", map[string]string{
		"package.json": upgradelab.PackageJSON(upgradelab.FromRelease, false),
	})
	require.NoError(l.t, err)
}

// migratedThenFailed runs the upgrade into the restore gate.
func migratedThenFailed(t *testing.T, l *upgradeLab, id string) workflows.Status {
	l.startWorker()
	l.start(id, upgradelab.ToRelease)
	st := waitGate(t, id, "restore", 10*time.Minute)
	assert.Equal(t, workflows.RunWaitingApproval, st.State, "a failed run waiting at its onFailure gate")
	assert.Equal(t, "sandbox_smoke", st.FailedStep, st.Error)
	assert.Equal(t, workflows.StepSkipped, compensationState(st, "rollback"), "never roll the image back onto a migrated schema")
	assert.Equal(t, false, outputsOf(st, "migrations")["rollbackSafe"])
	assert.Equal(t, 45, l.catalogMigrations("sandbox"))
	assert.Equal(t, fmt.Sprint(outputsOf(st, "push")["image"]), l.image(l.sandbox), "the new version keeps running")
	assert.Contains(t, st.PendingGate.Message, "catalog")
	assert.Contains(t, fmt.Sprint(outputsOf(st, "evidence")["message"]), "sha256")
	return st
}

// upgradeRestoreApproved: approving the restore gate scales to zero,
// restores the backup (checksums verified), sets the previous image, scales
// back, and the old version starts cleanly on the restored schema.
func upgradeRestoreApproved(t *testing.T, id string) {
	l := newUpgradeLab(t, brokenSignIn)
	migratedThenFailed(t, l, id)
	update(t, id, `{"gate":"restore","decision":"approve","by":"bob","comment":"restore the sandbox"}`)
	final, err := finalStatus(t, id)
	require.Error(t, err)
	assert.Equal(t, workflows.RunFailed, final.State, "a restored upgrade is still a failed upgrade")
	for _, step := range []string{"restore_scale_down", "restore_db", "restore_image", "restore_scale_up", "restore_verify", "restore_ready"} {
		assert.Equal(t, workflows.StepSucceeded, compensationState(final, step), step)
	}
	assert.Equal(t, 43, l.catalogMigrations("sandbox"), "the migration rows are back to the pre-upgrade snapshot")
	assert.Equal(t, l.initialImage, l.image(l.sandbox))
	url := l.cfg.Environments["sandbox"].URL
	resp, err := http.Get(url + "/.backstage/health/v1/readiness")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the old version starts cleanly")
	assert.Equal(t, "database restored", final.Audit.Summary["rollback"])
}

// upgradeRestoreRejected: rejecting the restore gate leaves everything as
// it was, with the evidence in the result.
func upgradeRestoreRejected(t *testing.T, id string) {
	l := newUpgradeLab(t, brokenSignIn)
	st := migratedThenFailed(t, l, id)
	newImage := l.image(l.sandbox)
	update(t, id, `{"gate":"restore","decision":"reject","by":"alice","comment":"keep it, we fix forward"}`)
	final, err := finalStatus(t, id)
	require.Error(t, err)
	assert.Equal(t, workflows.RunFailed, final.State)
	assert.Equal(t, workflows.StepRejected, compensationState(final, "restore"))
	for _, step := range []string{"restore_scale_down", "restore_db", "restore_image"} {
		assert.Equal(t, workflows.StepSkipped, compensationState(final, step), step)
	}
	assert.Equal(t, newImage, l.image(l.sandbox))
	assert.Equal(t, 45, l.catalogMigrations("sandbox"))
	assert.Equal(t, outputsOf(st, "evidence")["message"], outputsOf(final, "evidence")["message"])
	assert.Equal(t, "restore declined", final.Audit.Summary["rollback"])
}

// upgradeWorkerKilled: the worker is SIGKILLed during the sandbox backup
// and during the rollout watch; the run completes with one backup per
// database and one pushed image.
func upgradeWorkerKilled(t *testing.T, id string) {
	l := newUpgradeLab(t)
	w := l.startWorkerProcess()
	l.start(id, upgradelab.ToRelease)
	for _, step := range []string{"sandbox_backup", "sandbox_rollout"} {
		waitFor(t, id, 8*time.Minute, step+" started", func(s workflows.Status) bool {
			st := stepState(s, step)
			return st == workflows.StepRunning || st == workflows.StepSucceeded
		})
		w.kill()
		w = l.startWorkerProcess()
	}
	waitGate(t, id, "promote", 10*time.Minute)
	update(t, id, `{"gate":"promote","decision":"approve","by":"carol"}`)
	final, err := finalStatus(t, id)
	require.NoError(t, err, "%s", final.Error)
	assert.Equal(t, workflows.RunSucceeded, final.State)
	assert.ElementsMatch(t, []string{"upgrade-" + id + "-sandbox", "upgrade-" + id + "-prod"}, l.backups(), "one backup per database")
	repo := strings.TrimPrefix(l.imageRepo, engine.RegistryAddr+"/")
	tags, err := engine.Tags(context.Background(), engine.RegistryAddr, repo)
	require.NoError(t, err)
	upgrades := 0
	for _, tag := range tags {
		if strings.HasPrefix(tag, "upgrade-") {
			upgrades++
		}
	}
	assert.Equal(t, 1, upgrades, "one upgrade image pushed: %v", tags)
	assert.Equal(t, 45, l.catalogMigrations("prod"))
}

// upgradeGitOps: production by GitOps — the upgrade branch is merged, the
// CI stand-in really builds and pushes prod-<merge sha8>-<unix> from main,
// the Flux stand-in sets it on the ImagePolicy and the Deployment, and the
// run verifies production (MariaDB) migrated.
func upgradeGitOps(t *testing.T, id string) {
	l := newUpgradeLab(t, func(l *upgradeLab) { l.gitops = true })
	l.startWorker()
	l.start(id, upgradelab.ToRelease)
	waitGate(t, id, "promote", 10*time.Minute)
	update(t, id, `{"gate":"promote","decision":"approve","by":"carol"}`)
	final, err := finalStatus(t, id)
	require.NoError(t, err, "%s", final.Error)
	assert.Equal(t, workflows.RunSucceeded, final.State)
	assert.Equal(t, workflows.StepSkipped, stepState(final, "prod_apply"))
	assert.Equal(t, workflows.StepSkipped, stepState(final, "merge_branch"))
	head := l.portal.Head("main")
	prodImage := l.image(l.prod)
	assert.True(t, hasPrefixTag(prodImage, "prod-"+head[:8]+"-"), "production runs %s, want the merge %s", prodImage, head[:8])
	assert.Equal(t, prodImage, outputsOf(final, "prod_image")["image"])
	assert.Equal(t, 45, l.catalogMigrations("prod"), "production (MariaDB) migrated by the image CI built from main")
	bs, err := l.portal.File("main", "backstage.json")
	require.NoError(t, err)
	assert.Contains(t, bs, upgradelab.ToRelease)
}

// upgradeAuditListsRuns: `stagehand audit --runbook upgrade` lists every
// run with its outcome, approvers and the versions; `audit show` has the
// schema diff and the backups.
func upgradeAuditListsRuns(t *testing.T, prefix string, ids map[string]string) {
	want := map[string]struct{ outcome, approvers string }{
		"happy":            {"succeeded", "bob"},
		"build-fails":      {"failed", ""},
		"crashloop":        {"failed", ""},
		"restore-approved": {"failed", "bob"},
		"restore-rejected": {"failed", ""},
		"worker-killed":    {"succeeded", "carol"},
		"gitops":           {"succeeded", "carol"},
	}
	ctx := context.Background()
	var rows []map[string]any
	require.Eventually(t, func() bool {
		b, err := temporalCLIStagehand(ctx, "audit", "--runbook", "upgrade", "--since", "2h", "--output", "json", "--limit", "200").Output()
		if err != nil {
			return false
		}
		rows = nil
		if json.Unmarshal(b, &rows) != nil {
			return false
		}
		seen := 0
		for _, r := range rows {
			if strings.HasPrefix(fmt.Sprint(r["workflowId"]), prefix) && r["outcome"] != nil && r["audit"] != nil {
				seen++
			}
		}
		return seen == len(want)
	}, time.Minute, time.Second, "audit never listed every upgrade run with its summary: %v", rows)
	for _, r := range rows {
		id := fmt.Sprint(r["workflowId"])
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		name := strings.TrimPrefix(id, prefix+"-")
		w := want[name]
		assert.Equal(t, w.outcome, fmt.Sprint(r["outcome"]), name)
		if w.approvers != "" {
			assert.Contains(t, fmt.Sprint(r["approvers"]), w.approvers, name)
		}
		summary := fmt.Sprint(r["audit"])
		assert.Contains(t, summary, upgradelab.FromRelease, name)
	}
	b, err := temporalCLIStagehand(ctx, "audit", "--runbook", "upgrade", "--since", "2h").CombinedOutput()
	require.NoError(t, err, "%s", b)
	assert.Contains(t, string(b), upgradelab.FromRelease+" → "+upgradelab.ToRelease)

	b, err = temporalCLIStagehand(ctx, "audit", "show", ids["happy"]).CombinedOutput()
	require.NoError(t, err, "%s", b)
	show := string(b)
	for _, want := range []string{"catalog: 2 new migrations", "sha256", "digest"} {
		assert.Contains(t, show, want)
	}
}
