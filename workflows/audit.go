package workflows

import (
	"maps"
	"slices"

	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// recordAudit renders the runbook's audit section once the outcome and
// compensation are known, keeps it in the status and puts the summary in
// the memo, where `stagehand audit` lists it without asking each run.
// Runbooks without an audit section issue no command here, so histories
// recorded before audit existed replay unchanged.
func (r *run) recordAudit(ctx workflow.Context) {
	a := r.resolved.Runbook.Audit
	if a == nil {
		return
	}
	// The data onFailure steps see; after a success .failedStep and .error
	// are "" rather than missing, so one template serves both outcomes.
	data := make(map[string]any, len(r.data)+2)
	maps.Copy(data, r.data)
	data[runbooks.RootFailedStep] = r.status.FailedStep
	data[runbooks.RootError] = r.status.Error
	rec := &AuditRecord{
		Summary: r.renderAudit(ctx, "summary", a.Summary, data, runbooks.MaxAuditSummaryLen),
		Details: r.renderAudit(ctx, "details", a.Details, data, runbooks.MaxAuditDetailLen),
	}
	r.status.Audit = rec
	summary := rec.Summary
	if summary == nil {
		summary = map[string]string{}
	}
	if err := workflow.UpsertMemo(ctx, map[string]any{MemoAudit: summary}); err != nil {
		// Audit is for people afterwards; it must never fail the run.
		workflow.GetLogger(ctx).Warn("upsert audit memo failed", "error", err)
	}
}

// renderAudit renders up to MaxAuditFields fields in sorted order (the
// validator refuses more; the cap holds for runbooks loaded without it). A
// field that fails to render is "" and logged.
func (r *run) renderAudit(ctx workflow.Context, part string, fields map[string]string, data map[string]any, limit int) map[string]string {
	if len(fields) == 0 {
		return nil
	}
	out := make(map[string]string, len(fields))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if len(out) == runbooks.MaxAuditFields {
			break
		}
		v, err := runbooks.RenderString(fields[k], data)
		if err != nil {
			workflow.GetLogger(ctx).Warn("audit field did not render", "field", part+"."+k, "error", err)
			v = ""
		}
		out[k] = truncate(v, limit)
	}
	return out
}
