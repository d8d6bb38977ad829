package workflows

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStepTarget(t *testing.T) {
	for _, tc := range []struct {
		name string
		with map[string]any
		want string
	}{
		{"deployment and image", map[string]any{"namespace": "backstage-sandbox", "deployment": "backstage", "image": "reg/backend:pr-42"},
			"backstage-sandbox/backstage → reg/backend:pr-42"},
		{"deployment only", map[string]any{"namespace": "ns", "deployment": "d"}, "ns/d"},
		{"url", map[string]any{"url": "https://portal.example.com/api/catalog"}, "https://portal.example.com/api/catalog"},
		{"credentials in a url are redacted", map[string]any{"remote": "https://bob:hunter2@git.example.com/portal.git"}, "https://***@git.example.com/portal.git"},
		{"pull request", map[string]any{"remote": "/srv/portal.git", "pr": 42}, "/srv/portal.git PR 42"},
		{"namespace alone", map[string]any{"namespace": "ns"}, "ns"},
		{"nothing known", map[string]any{"echo": 1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, stepTarget(tc.with))
		})
	}
	long := stepTarget(map[string]any{"message": strings.Repeat("é", 200)})
	assert.LessOrEqual(t, len(long), 160+len("…"))
	assert.True(t, strings.HasSuffix(long, "…"))
}

func TestActivitySummary(t *testing.T) {
	assert.Equal(t, "sandbox_apply: ns/d → img:1", activitySummary("sandbox_apply", "kube.setImage", "ns/d → img:1"))
	assert.Equal(t, "prepare (log)", activitySummary("prepare", "log", ""))
}

// The UI's details box is short: the current step, its target and the
// pending gate must come before the step list.
func TestDetailsPutCurrentStepAndGateFirst(t *testing.T) {
	r := &run{workflowID: "patch-pr-42", targets: map[string]string{"merge": ""}, status: &Status{Runbook: "patch", State: RunWaitingApproval}}
	for i := 0; i < 30; i++ {
		r.status.Steps = append(r.status.Steps, StepStatus{ID: "step" + string(rune('a'+i%26)) + string(rune('a'+i/26)), State: StepSucceeded})
	}
	r.status.Steps = append(r.status.Steps, StepStatus{ID: "merge", State: StepWaitingApproval})
	r.status.CurrentStep = "merge"
	r.status.PendingGate = &GateStatus{Gate: "merge", Approvers: []string{"bob", "carol"}, Message: "Merge PR 42?"}
	d := r.details()
	lines := strings.Split(d, "\n")
	assert.Contains(t, lines[0], "at `merge`")
	assert.Contains(t, lines[0], "30 of 31 steps done")
	assert.Contains(t, lines[2], "Gate `merge` waits for one of **bob, carol**: Merge PR 42?")
	assert.Contains(t, d, "`stagehand approve patch-pr-42 --gate merge`")
	assert.Less(t, strings.Index(d, "Approve: signal `approval`"), strings.Index(d, "- ✅ `stepaa`"))

	r.targets["sandbox_apply"] = "ns/d → img:1"
	r.status.PendingGate = nil
	r.status.CurrentStep = "sandbox_apply"
	assert.Contains(t, strings.Split(r.details(), "\n")[2], "▶️ `sandbox_apply`: ns/d → img:1")
}

func TestRunSummary(t *testing.T) {
	assert.Equal(t, "patch: image reg/backend:pr-42-1a2b3c4d · pr 42 · requested by alice",
		RunSummary("patch", map[string]any{"image": "reg/backend:pr-42-1a2b3c4d", "pr": 42, "sandbox": "sandbox"}, "alice"))
	assert.Equal(t, "hello", RunSummary("hello", nil, ""))
	assert.Contains(t, RunDetails("patch", map[string]any{"b": 2, "a": 1}, "alice"), "- `a`: 1\n- `b`: 2\n")
}

func TestGateTimerSummary(t *testing.T) {
	assert.Equal(t, "gate merge: waiting for bob, carol", gateTimerSummary(&GateStatus{Gate: "merge", Approvers: []string{"bob", "carol"}}))
}
