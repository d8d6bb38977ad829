package workflows_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/workflows"
)

// approveCapturing approves gate once it waits, keeping the message the
// approver was shown.
func approveCapturing(env *testsuite.TestWorkflowEnvironment, gate, by string, msg *string) {
	var poll func()
	poll = func() {
		v, err := env.QueryWorkflow(workflows.StatusQuery)
		if err == nil {
			var st workflows.Status
			if v.Get(&st) == nil && st.PendingGate != nil && st.PendingGate.Gate == gate {
				*msg = st.PendingGate.Message
				env.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: gate, Decision: workflows.DecisionApprove, By: by})
				return
			}
		}
		env.RegisterDelayedCallback(poll, time.Minute)
	}
	env.RegisterDelayedCallback(poll, time.Minute)
}

// The approver sees where the merge lands: which branch, into which
// branch, of which repository (params that could redirect it included).
func TestGateMessagesShowWhereTheMergeGoes(t *testing.T) {
	w := &upgradeWorld{}
	env := newUpgradeEnv(t, w, "gitops")
	var msg string
	approveCapturing(env, "merge", "bob", &msg)
	env.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{Runbook: "patch", RequestedBy: "alice",
		Params: map[string]any{"image": "reg/portal:pr-42-0123abcd-1763700000", "pr": 42, "prBranch": "feature/x"}})
	st, err := (&harness{TestWorkflowEnvironment: env}).result(t)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, st.State)
	assert.Contains(t, msg, "Merge it (branch feature/x into main of /git/portal.git)")
	assert.Equal(t, "feature/x", w.args["merge_pr"]["prBranch"], "the gate shows what the merge does")
	assert.Equal(t, "/git/portal.git", w.args["merge_pr"]["remote"])

	w = &upgradeWorld{}
	env = newUpgradeEnv(t, w, "gitops")
	approveCapturing(env, "promote", "bob", &msg)
	st, err = runUpgrade(t, env)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, st.State)
	assert.Contains(t, msg, "by merging upgrade-1.45.0 into main of /git/portal.git?")
}
