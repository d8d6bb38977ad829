package cli

// What Temporal itself records about a run, without asking the workflow:
// the execution's identity and state and the Stagehand search attributes.
// status, watch, show and list all read runs through these.

import (
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/stagehand-dev/stagehand/workflows"
)

// runView is what Temporal itself knows about an execution.
type runView struct {
	WorkflowID string
	RunID      string
	Execution  string
	TaskQueue  string
	Start      time.Time
	Close      time.Time
	Search     searchAttrs
	// Note explains why step details are missing, when they are.
	Note string
}

// searchAttrs are the Stagehand search attributes of one execution.
type searchAttrs struct {
	Runbook, Environment, Image, Outcome, RequestedBy, PR, FailedStep string
	Approvers                                                         []string
}

func decodeSearchAttrs(sa *commonpb.SearchAttributes) searchAttrs {
	var out searchAttrs
	if sa == nil {
		return out
	}
	dc := converter.GetDefaultDataConverter()
	str := func(key string) string {
		p, ok := sa.GetIndexedFields()[key]
		if !ok {
			return ""
		}
		var s string
		if dc.FromPayload(p, &s) == nil {
			return s
		}
		// A keyword set as a list by mistake still reads.
		var l []string
		if dc.FromPayload(p, &l) == nil {
			return strings.Join(l, ",")
		}
		return ""
	}
	out.Runbook = str(workflows.SearchRunbook.GetName())
	out.Environment = str(workflows.SearchEnvironment.GetName())
	out.Image = str(workflows.SearchImage.GetName())
	out.Outcome = str(workflows.SearchOutcome.GetName())
	out.RequestedBy = str(workflows.SearchRequestedBy.GetName())
	out.PR = str(workflows.SearchPR.GetName())
	out.FailedStep = str(workflows.SearchFailedStep.GetName())
	if p, ok := sa.GetIndexedFields()[workflows.SearchApprovers.GetName()]; ok {
		var l []string
		if dc.FromPayload(p, &l) != nil {
			var s string
			if dc.FromPayload(p, &s) == nil && s != "" {
				l = []string{s}
			}
		}
		out.Approvers = l
	}
	return out
}

// executionStatus renders Temporal's execution status as a lower-case word
// (running, completed, failed, canceled, terminated, timed_out, ...).
func executionStatus(s enumspb.WorkflowExecutionStatus) string {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED:
		return "unknown"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return "timed_out"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return "continued_as_new"
	}
	return strings.ToLower(s.String())
}
