package cli

// Writing a run's Status for people: the text of `status`, also printed by
// `start --wait` when the run ends; watch reuses the approve command line.

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/stagehand-dev/stagehand/workflows"
)

// writeStatusText renders a run for people.
func writeStatusText(w io.Writer, now time.Time, v *runView, st *workflows.Status, prefix string) {
	if st == nil {
		fmt.Fprintf(w, "Run:          %s\n", v.WorkflowID)
		return
	}
	run := v.WorkflowID
	if v.RunID != "" {
		run += " (run id " + v.RunID + ")"
	}
	kv := func(k, val string) {
		if val != "" {
			fmt.Fprintf(w, "%-14s%s\n", k+":", val)
		}
	}
	kv("Run", run)
	rb := st.Runbook
	if st.Description != "" {
		rb += " — " + st.Description
	}
	kv("Runbook", rb)
	state := string(st.State)
	if v.Execution != "" && !strings.EqualFold(v.Execution, "running") && !st.State.Terminal() {
		state += " (execution " + v.Execution + ")"
	}
	kv("State", state)
	kv("Requested by", st.RequestedBy)
	kv("Environment", st.Environment)
	kv("Image", st.Image)
	if !st.StartedAt.IsZero() {
		started := fmtTime(st.StartedAt)
		if st.EndedAt != nil {
			kv("Started", started)
			kv("Ended", fmt.Sprintf("%s (took %s)", fmtTime(*st.EndedAt), fmtDuration(st.EndedAt.Sub(st.StartedAt))))
		} else {
			kv("Started", fmt.Sprintf("%s (%s ago)", started, fmtDuration(now.Sub(st.StartedAt))))
		}
	}
	if !st.State.Terminal() {
		kv("Current step", st.CurrentStep)
	}
	if st.FailedStep != "" || st.Error != "" {
		msg := st.Error
		if st.FailedStep != "" {
			msg = "step " + st.FailedStep + ": " + msg
		}
		kv("Error", msg)
	}
	if len(st.Compensated) > 0 {
		kv("Compensated", strings.Join(st.Compensated, ", "))
	}
	if st.Audit != nil {
		// The details are long; `audit show` prints them.
		kv("Audit", auditSummary(st.Audit.Summary))
	}
	if v.Note != "" {
		kv("Note", v.Note)
	}
	if g := st.PendingGate; g != nil {
		fmt.Fprintf(w, "\nWaiting for approval at gate %q\n", g.Gate)
		if g.Message != "" {
			fmt.Fprintf(w, "  message:   %s\n", strings.ReplaceAll(strings.TrimSpace(g.Message), "\n", "\n             "))
		}
		fmt.Fprintf(w, "  approvers: %s\n", orDash(strings.Join(g.Approvers, ", ")))
		if !g.OpenedAt.IsZero() {
			fmt.Fprintf(w, "  opened:    %s (%s ago)\n", fmtTime(g.OpenedAt), fmtDuration(now.Sub(g.OpenedAt)))
		}
		if g.Deadline != nil {
			then := "the run is rejected then"
			if slices.ContainsFunc(st.Compensation, func(c workflows.StepStatus) bool { return c.ID == g.Gate }) {
				// An onFailure gate: the run has failed already.
				then = "compensation goes on without it then"
			}
			fmt.Fprintf(w, "  deadline:  %s (in %s; %s)\n", fmtTime(*g.Deadline), fmtDuration(g.Deadline.Sub(now)), then)
		}
		fmt.Fprintf(w, "  approve:   %s\n", approveCommand(prefix, "approve", v.WorkflowID, g.Gate))
		fmt.Fprintf(w, "  reject:    %s\n", approveCommand(prefix, "reject", v.WorkflowID, g.Gate))
	}
	if len(st.Steps) > 0 {
		fmt.Fprintln(w)
		_ = stepTable(st.Steps, now).writeText(w)
	}
	if len(st.Compensation) > 0 {
		fmt.Fprintln(w, "\nCompensation (onFailure):")
		_ = stepTable(st.Compensation, now).writeText(w)
	}
	if len(st.Decisions) > 0 {
		fmt.Fprintln(w, "\nDecisions:")
		for _, d := range st.Decisions {
			line := fmt.Sprintf("  %s  %s  %s by %s", fmtTime(d.At), d.Gate, d.Decision, d.By)
			if d.Comment != "" {
				line += fmt.Sprintf(": %q", d.Comment)
			}
			if d.Refused != "" {
				line += " (refused: " + d.Refused + ")"
			}
			fmt.Fprintln(w, line)
		}
	}
}

func approveCommand(prefix, verb, run, gate string) string {
	return fmt.Sprintf("%s %s %s --gate %s", prefix, verb, shellQuote(run), shellQuote(gate))
}

func stepTable(steps []workflows.StepStatus, now time.Time) *table {
	t := &table{header: []string{"STEP", "USES", "STATE", "ATTEMPTS", "DURATION", "ERROR"}}
	// The worker column appears once a worker named one (runs from older
	// workers, and steps the workflow runs itself, have none).
	withWorker := slices.ContainsFunc(steps, func(s workflows.StepStatus) bool { return s.Worker != "" })
	if withWorker {
		t.header = []string{"STEP", "USES", "STATE", "ATTEMPTS", "DURATION", "WORKER", "ERROR"}
	}
	for _, s := range steps {
		id := s.ID
		if s.Parent != "" {
			id = "  " + id
		}
		uses := s.Uses
		if uses == "" {
			uses = "(" + s.Kind + ")"
		}
		attempts := "-"
		if s.Attempts > 0 {
			attempts = fmt.Sprint(s.Attempts)
		}
		if withWorker {
			t.add(id, uses, string(s.State), attempts, stepDuration(s, now), orDash(s.Worker), truncate(s.Error, 60))
			continue
		}
		t.add(id, uses, string(s.State), attempts, stepDuration(s, now), truncate(s.Error, 60))
	}
	return t
}

// stepDuration is how long the step took, or has been running.
func stepDuration(s workflows.StepStatus, now time.Time) string {
	if s.StartedAt == nil {
		return "-"
	}
	if s.EndedAt != nil {
		return fmtDuration(s.EndedAt.Sub(*s.StartedAt))
	}
	return fmtDuration(now.Sub(*s.StartedAt)) + "+"
}
