package workflows

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The audit summary is what people open a finished run for: it comes
// right after the headline, before the error and the step list.
func TestDetailsShowAuditSummaryNearTheTop(t *testing.T) {
	r := &run{workflowID: "upgrade-1", targets: map[string]string{}, status: &Status{
		Runbook: "upgrade", State: RunFailed, Error: "smoke failed",
		Steps:        []StepStatus{{ID: "smoke", State: StepFailed, Error: "smoke failed"}},
		Compensation: []StepStatus{{ID: "restore", Kind: "approval", State: StepRejected, Error: "rejected by bob"}},
		Audit:        &AuditRecord{Summary: map[string]string{"version": "1.44.0 → 1.45.0", "digest": "sha256:abc"}},
	}}
	lines := strings.Split(r.details(), "\n")
	assert.Equal(t, "- **digest**: sha256:abc", lines[2])
	assert.Equal(t, "- **version**: 1.44.0 → 1.45.0", lines[3])
	assert.Contains(t, lines[5], "Error: smoke failed")
	assert.Contains(t, r.details(), "- ❌ `restore`: rejected by bob")
}

// A compensation gate that waits is the current step, and the details say
// how to decide it.
func TestDetailsShowWaitingCompensationGate(t *testing.T) {
	r := &run{workflowID: "upgrade-1", targets: map[string]string{}, status: &Status{
		Runbook: "upgrade", State: RunWaitingApproval,
		Compensation: []StepStatus{{ID: "restore", Kind: "approval", State: StepWaitingApproval}},
		PendingGate:  &GateStatus{Gate: "restore", Approvers: []string{"bob"}, Message: "Restore?"},
	}}
	r.status.CurrentStep = "restore"
	d := r.details()
	assert.Contains(t, d, "at `restore`")
	assert.Contains(t, d, "`stagehand approve upgrade-1 --gate restore`")
}
