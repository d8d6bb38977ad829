package workflows

import (
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Search attributes make runs findable for audit (see contract.go for the
// names). Each upsert is one command in history, so the interpreter makes
// few: one at the start, one per gate state change, one at the end.

func (r *run) upsertStart(ctx workflow.Context) {
	updates := []temporal.SearchAttributeUpdate{
		SearchRunbook.ValueSet(r.status.Runbook),
		SearchOutcome.ValueSet(string(RunRunning)),
	}
	if r.status.Environment != "" {
		updates = append(updates, SearchEnvironment.ValueSet(r.status.Environment))
	}
	if r.status.Image != "" {
		updates = append(updates, SearchImage.ValueSet(r.status.Image))
	}
	if r.in.RequestedBy != "" {
		updates = append(updates, SearchRequestedBy.ValueSet(r.in.RequestedBy))
	}
	if pr, ok := r.resolved.Params["pr"]; ok && fmt.Sprint(pr) != "" && fmt.Sprint(pr) != "0" {
		updates = append(updates, SearchPR.ValueSet(fmt.Sprint(pr)))
	}
	upsert(ctx, updates...)
}

func (r *run) upsertOutcome(ctx workflow.Context) {
	updates := []temporal.SearchAttributeUpdate{SearchOutcome.ValueSet(string(r.status.State))}
	// One upsert, so the number of commands does not depend on the outcome.
	if r.status.FailedStep != "" {
		updates = append(updates, SearchFailedStep.ValueSet(r.status.FailedStep))
	}
	upsert(ctx, updates...)
}

// upsertApprovers records everyone who approved a gate of this run so far.
func (r *run) upsertApprovers(ctx workflow.Context, by string) {
	seen := map[string]bool{}
	var uniq []string
	for _, rec := range r.status.Decisions {
		if rec.Refused == "" && rec.Decision == DecisionApprove && !seen[rec.By] {
			seen[rec.By] = true
			uniq = append(uniq, rec.By)
		}
	}
	if !seen[by] {
		uniq = append(uniq, by)
	}
	upsert(ctx, SearchApprovers.ValueSet(slices.Sorted(slices.Values(uniq))))
}

func upsert(ctx workflow.Context, updates ...temporal.SearchAttributeUpdate) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		// Visibility is for audit; a failed upsert must not fail the run.
		workflow.GetLogger(ctx).Warn("upsert search attributes failed", "error", err)
	}
}
