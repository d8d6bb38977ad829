package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stagehand-dev/stagehand/internal/patchlab"
	"github.com/stagehand-dev/stagehand/workflows"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// finalStatus waits for the run and returns the status it ended with.
func finalStatus(t *testing.T, id string) (workflows.Status, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var st workflows.Status
	err := temporalSrv.Client.GetWorkflow(ctx, id, "").Get(ctx, &st)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.HasDetails() {
			require.NoError(t, appErr.Details(&st))
		}
	}
	return st, err
}

// The scenarios share the audit check at the end, so they run as subtests.
func TestPatch(t *testing.T) {
	runScenarios(t, "patch", []scenario{
		{"happy", happyPath},
		{"crashloop", crashLoopingImage},
		{"rejected", rejectedAtGate},
		{"gate-timeout", gateTimeout},
		{"smoke-failing", smokeFailing},
		{"worker-killed", workerKilled},
	}, auditListsRuns)
}

// happyPath: sandbox, checks, approval through the real `temporal workflow
// signal`, merge, CI + Flux stand-in, production verified.
func happyPath(t *testing.T, id string) {
	l := newLab(t)
	l.startWorker()
	l.start(id, nil)
	st := waitFor(t, id, 2*time.Minute, "the merge gate", func(s workflows.Status) bool { return s.State == workflows.RunWaitingApproval })
	require.NotNil(t, st.PendingGate)
	assert.Equal(t, []string{"bob", "carol"}, st.PendingGate.Approvers)
	assert.Contains(t, st.PendingGate.Message, "PR #42 ("+l.prImage+") is healthy on sandbox")
	assert.Contains(t, st.PendingGate.Message, "2 updated pods")
	assert.Equal(t, l.prImage, l.deploymentImage(l.sandbox))
	assert.Equal(t, 0, l.merges(), "nothing merged before the approval")

	signal(t, id, `{"gate":"merge","decision":"approve","by":"carol","comment":"sandbox is fine"}`)
	final, err := finalStatus(t, id)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, final.State)
	for _, s := range final.Steps {
		assert.Contains(t, []workflows.StepState{workflows.StepSucceeded, workflows.StepApproved, workflows.StepSkipped}, s.State, "%s: %s", s.ID, s.Error)
	}
	assert.Equal(t, 1, l.merges())
	head, err := l.remote.MainHead()
	require.NoError(t, err)
	prodImage := l.deploymentImage(l.prod)
	assert.True(t, hasPrefixTag(prodImage, "prod-"+head[:8]+"-"), "production runs %s, want the merge %s", prodImage, head[:8])
	for _, s := range final.Steps {
		if s.ID == "prod_image" {
			assert.Equal(t, prodImage, s.Outputs["image"])
		}
	}
	recordHistory(t, id, "patch-approved.json")
}

// recordHistory saves the run's history for the replay test when
// STAGEHAND_RECORD_HISTORY names a directory (workflows/testdata).
func recordHistory(t *testing.T, id, name string) {
	dir := os.Getenv("STAGEHAND_RECORD_HISTORY")
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := temporalSrv.Command(ctx, "workflow", "show", "--workflow-id", id, "--output", "json").Output()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), out, 0o644))
}

// crashLoopingImage: the PR image crash-loops; the run fails in the sandbox
// within seconds, rolls the sandbox back, and merges nothing.
func crashLoopingImage(t *testing.T, id string) {
	l := newLab(t)
	l.startWorker()
	image := l.prImage + "-crashloop"
	l.start(id, map[string]any{"image": image})
	final, err := finalStatus(t, id)
	require.Error(t, err)
	recordHistory(t, id, "patch-crashloop-rolled-back.json")
	assert.Equal(t, workflows.RunFailed, final.State)
	assert.Equal(t, "sandbox_rollout", final.FailedStep)
	assert.Contains(t, final.Error, "CrashLoopBackOff")
	assert.Contains(t, final.Error, "backstage", "names the container")
	var rollout workflows.StepStatus
	for _, s := range final.Steps {
		if s.ID == "sandbox_rollout" {
			rollout = s
		}
	}
	require.NotNil(t, rollout.StartedAt)
	require.NotNil(t, rollout.EndedAt)
	assert.Less(t, rollout.EndedAt.Sub(*rollout.StartedAt), 60*time.Second, "failed fast, not at the progress deadline")
	assert.Contains(t, final.Compensated, "rollback_sandbox")
	assert.Equal(t, initialImage, l.deploymentImage(l.sandbox), "sandbox rolled back")
	assert.Equal(t, 0, l.merges())
	assert.Equal(t, initialImage, l.deploymentImage(l.prod))
}

// rejectedAtGate: a reviewer rejects; the sandbox goes back, nothing merges.
func rejectedAtGate(t *testing.T, id string) {
	l := newLab(t)
	l.startWorker()
	l.start(id, nil)
	waitFor(t, id, 2*time.Minute, "the merge gate", func(s workflows.Status) bool { return s.State == workflows.RunWaitingApproval })
	signal(t, id, `{"gate":"merge","decision":"reject","by":"bob","comment":"catalog looks empty"}`)
	final, err := finalStatus(t, id)
	require.Error(t, err)
	assert.Equal(t, workflows.RunRejected, final.State)
	assert.Contains(t, final.Error, "rejected by bob: catalog looks empty")
	assert.Contains(t, final.Compensated, "rollback_sandbox")
	assert.Equal(t, initialImage, l.deploymentImage(l.sandbox))
	assert.Equal(t, 0, l.merges())
}

// gateTimeout: nobody decides in time; the run is rejected with that reason.
func gateTimeout(t *testing.T, id string) {
	l := newLab(t)
	l.startWorker()
	l.start(id, map[string]any{"gateTimeout": "3s"})
	final, err := finalStatus(t, id)
	require.Error(t, err)
	assert.Equal(t, workflows.RunRejected, final.State)
	assert.Contains(t, final.Error, "approval gate merge timed out after 3s with no decision")
	assert.Equal(t, initialImage, l.deploymentImage(l.sandbox))
	assert.Equal(t, 0, l.merges())
}

// smokeFailing: a team check fails against the real backend; the error names
// the check and carries the response snippet.
func smokeFailing(t *testing.T, id string) {
	l := newLab(t, func(spec *patchlab.Lab) {
		spec.SmokeChecks = append(patchlab.DefaultSmokeChecks(), map[string]any{
			"name": "templates", "path": "/api/catalog/entities?filter=kind=template", "bodyContains": "backstage-portal-template",
		})
	})
	l.startWorker()
	l.start(id, map[string]any{"smokeTimeout": "4s"})
	final, err := finalStatus(t, id)
	require.Error(t, err)
	assert.Equal(t, workflows.RunFailed, final.State)
	assert.Equal(t, "sandbox_smoke", final.FailedStep)
	assert.Contains(t, final.Error, "templates")
	assert.Contains(t, final.Error, "/api/catalog/entities?filter=kind=template")
	assert.Contains(t, final.Error, "[]", "the response snippet (an empty entity list) is in the error")
	assert.Equal(t, initialImage, l.deploymentImage(l.sandbox))
	assert.Equal(t, 0, l.merges())
}

// workerKilled: the worker process is SIGKILLed while the sandbox rollout is
// being watched and again after the merge; restarted, the run completes and
// the PR is merged exactly once.
func workerKilled(t *testing.T, id string) {
	l := newLab(t)
	w := l.startWorkerProcess()
	l.start(id, nil)
	waitFor(t, id, 2*time.Minute, "the sandbox rollout watch", func(s workflows.Status) bool {
		return stepState(s, "sandbox_rollout") == workflows.StepRunning
	})
	w.kill()
	w = l.startWorkerProcess()
	waitFor(t, id, 3*time.Minute, "the merge gate", func(s workflows.Status) bool { return s.State == workflows.RunWaitingApproval })
	signal(t, id, `{"gate":"merge","decision":"approve","by":"bob"}`)
	waitFor(t, id, 2*time.Minute, "the production wait after the merge", func(s workflows.Status) bool {
		return stepState(s, "merge_pr") == workflows.StepSucceeded
	})
	w.kill()
	require.Equal(t, 1, l.merges())
	l.startWorkerProcess()
	final, err := finalStatus(t, id)
	require.NoError(t, err, "%s", final.Error)
	assert.Equal(t, workflows.RunSucceeded, final.State)
	assert.Equal(t, 1, l.merges(), "merged exactly once across two worker kills")
}

// auditListsRuns reads visibility the way `stagehand audit` does.
func auditListsRuns(t *testing.T, prefix string, ids map[string]string) {
	want := map[string]struct{ outcome, approvers, failedStep string }{
		"happy":         {"succeeded", "carol", "<nil>"},
		"crashloop":     {"failed", "", "sandbox_rollout"},
		"rejected":      {"rejected", "", "merge"},
		"gate-timeout":  {"rejected", "", "merge"},
		"smoke-failing": {"failed", "", "sandbox_smoke"},
		"worker-killed": {"succeeded", "bob", "<nil>"},
	}
	ctx := context.Background()
	var out string
	require.Eventually(t, func() bool {
		cmd := temporalCLIStagehand(ctx, "audit", "--runbook", "patch", "--since", "1h", "--output", "json", "--limit", "200")
		b, err := cmd.Output()
		if err != nil {
			return false
		}
		out = string(b)
		for name, w := range want {
			if !strings.Contains(out, ids[name]) || !strings.Contains(out, w.outcome) {
				return false
			}
		}
		return true
	}, time.Minute, time.Second, "audit never listed every run: %s", out)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	seen := 0
	for _, r := range rows {
		id := fmt.Sprint(r["workflowId"])
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		name := strings.TrimPrefix(id, prefix+"-")
		w := want[name]
		seen++
		assert.Equal(t, w.outcome, fmt.Sprint(r["outcome"]), name)
		assert.Equal(t, "patch", fmt.Sprint(r["runbook"]), name)
		assert.Equal(t, "alice", fmt.Sprint(r["requestedBy"]), name)
		assert.Equal(t, "42", fmt.Sprint(r["pr"]), name)
		assert.Equal(t, w.failedStep, fmt.Sprint(r["failedStep"]), name)
		if w.approvers != "" {
			assert.Contains(t, fmt.Sprint(r["approvers"]), w.approvers, name)
		}
	}
	assert.Equal(t, len(want), seen)

	// One run's timeline, from its history.
	b, err := temporalCLIStagehand(ctx, "audit", "show", ids["happy"]).CombinedOutput()
	require.NoError(t, err, "%s", b)
	show := string(b)
	for _, want := range []string{"Run " + ids["happy"] + " (patch): succeeded", "kube.setImage", "web.smoke", "git.merge", "flux.waitImage",
		`approve by carol via signal: "sandbox is fine"`} {
		assert.Contains(t, show, want)
	}
	b, err = temporalCLIStagehand(ctx, "audit", "show", ids["worker-killed"], "--output", "json").CombinedOutput()
	require.NoError(t, err, "%s", b)
	var res struct {
		Timeline struct {
			Entries []struct {
				Step     string `json:"step"`
				Attempts int    `json:"attempts"`
			} `json:"entries"`
		} `json:"timeline"`
	}
	require.NoError(t, json.Unmarshal(b, &res))
	retried := false
	for _, e := range res.Timeline.Entries {
		if e.Step == "sandbox_rollout" && e.Attempts >= 2 {
			retried = true
		}
	}
	assert.True(t, retried, "the killed worker's rollout watch shows a second attempt")
}
