package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// Stagehand's own metrics, emitted from the interpreter through
// workflow.GetMetricsHandler: the SDK drops them while a history replays, so
// a run counts once however often its workflow task is replayed. The
// handler adds the SDK's namespace, task_queue and workflow_type tags. With
// the worker's Prometheus endpoint (worker config metrics.listen) counters
// gain a _total suffix and timers become histograms in seconds
// (stagehand_step_duration_seconds_bucket, ..._count, ..._sum).
const (
	// MetricRunsStarted counts runs whose runbook resolved, by runbook.
	MetricRunsStarted = "stagehand_runs_started"
	// MetricRunsFinished counts ended runs by runbook and outcome
	// (succeeded, failed, rejected, cancelled). A run that never resolved
	// counts under runbook "unresolved", so a caller-chosen name cannot
	// create new series.
	MetricRunsFinished = "stagehand_runs_finished"
	// MetricStepDuration times each finished step from start to end (retries
	// included), by step_type (the `uses` step type, "approval" or
	// "parallel") and outcome (the step's final state).
	MetricStepDuration = "stagehand_step_duration"
	// MetricGateWait times how long each approval gate waited for its
	// decision, by runbook, gate and outcome (approved, rejected, failed
	// for a timeout, cancelled).
	MetricGateWait = "stagehand_gate_wait"
	// MetricCompensations counts runs whose onFailure steps ran, by runbook
	// and outcome: "complete" when every compensation step succeeded,
	// "partial" otherwise.
	MetricCompensations = "stagehand_compensations"
)

// unresolvedRunbook labels runs that ended before their runbook resolved.
const unresolvedRunbook = "unresolved"

// inlineRunbook labels runs of an inline definition: its name and step ids
// are chosen by whoever starts the run, and as label values every run
// could add series to the worker's /metrics without bound.
const inlineRunbook = "inline"

// metricsRunbook is the runbook label: a loaded runbook's name once the run
// resolved.
func (r *run) metricsRunbook() string {
	if r.resolved == nil {
		return unresolvedRunbook
	}
	if r.in.Runbook == "" {
		return inlineRunbook
	}
	return r.resolved.Runbook.Name
}

// metricsGate is the gate label: the step id of a loaded runbook's gate.
func (r *run) metricsGate(id string) string {
	if r.in.Runbook == "" {
		return inlineRunbook
	}
	return id
}

// countRunStarted is called once the runbook resolved.
func (r *run) countRunStarted(ctx workflow.Context) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"runbook": r.metricsRunbook()}).
		Counter(MetricRunsStarted).Inc(1)
}

// countRunFinished is called once the run's state is final.
func (r *run) countRunFinished(ctx workflow.Context) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"runbook": r.metricsRunbook(), "outcome": string(r.status.State)}).
		Counter(MetricRunsFinished).Inc(1)
}

// recordStepMetrics times a finished step and, for a gate, its wait.
func (r *run) recordStepMetrics(ctx workflow.Context, s runbooks.Step, st *StepStatus) {
	if st.StartedAt == nil || st.EndedAt == nil {
		return
	}
	d := st.EndedAt.Sub(*st.StartedAt)
	stepType := s.Uses
	if stepType == "" {
		stepType = string(s.Kind())
	}
	h := workflow.GetMetricsHandler(ctx)
	h.WithTags(map[string]string{"step_type": stepType, "outcome": string(st.State)}).Timer(MetricStepDuration).Record(d)
	if s.Kind() == runbooks.KindApproval {
		h.WithTags(map[string]string{"runbook": r.metricsRunbook(), "gate": r.metricsGate(s.ID), "outcome": string(st.State)}).
			Timer(MetricGateWait).Record(d)
	}
}

// countCompensation is called after the onFailure steps ran.
func (r *run) countCompensation(ctx workflow.Context) {
	outcome := "complete"
	for _, s := range r.resolved.Runbook.OnFailure {
		if st := r.index[s.ID]; st == nil || (st.State != StepSucceeded && st.State != StepSkipped) {
			outcome = "partial"
		}
	}
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"runbook": r.metricsRunbook(), "outcome": outcome}).
		Counter(MetricCompensations).Inc(1)
}
