package activities

import (
	"context"

	"go.temporal.io/sdk/activity"
)

// LogAttrs are the slog key/value pairs that tie an adapter's own log line
// (the ones written through its *slog.Logger rather than
// activity.GetLogger, which carries Temporal's own fields) to the run and
// step it served: workflowId (what people type), runId, stepId (the
// interpreter makes the activity id the step's id), stepType and attempt.
// Outside an activity it is empty.
func LogAttrs(ctx context.Context) []any {
	if ctx == nil || !activity.IsActivity(ctx) {
		return nil
	}
	info := activity.GetInfo(ctx)
	return []any{
		"workflowId", info.WorkflowExecution.ID,
		"runId", info.WorkflowExecution.RunID,
		"stepId", info.ActivityID,
		"stepType", info.ActivityType.Name,
		"attempt", info.Attempt,
	}
}
