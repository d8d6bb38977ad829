package workflows

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// registerApprovalHandlers wires both ways of deciding a gate. The update
// validates before anything reaches history, so a refused approval never
// shows up as an event: the worker logs it instead ("approval refused").
// The signal (which the Temporal UI can send without tooling) cannot be
// validated in advance, so refused signals are logged too and recorded in
// Status.Decisions (the last MaxRefusedDecisions of them) and otherwise
// ignored.
func (r *run) registerApprovalHandlers(ctx workflow.Context) error {
	err := workflow.SetUpdateHandlerWithOptions(ctx, ApproveUpdate,
		func(ctx workflow.Context, d ApprovalDecision) (DecisionRecord, error) {
			id := updateIdentity(ctx)
			if err := r.checkDecision(d, id); err != nil {
				// The state may have changed between validation and now.
				return DecisionRecord{}, err
			}
			return r.applyDecision(ctx, d, id), nil
		},
		workflow.UpdateHandlerOptions{
			Validator: func(ctx workflow.Context, d ApprovalDecision) error {
				id := updateIdentity(ctx)
				err := r.checkDecision(d, id)
				if err != nil {
					r.logRefused(ctx, "update", d, id, err)
				}
				return err
			},
			Description: `Decide the waiting gate: {"gate":"merge","decision":"approve"|"reject","by":"you","comment":"..."}; refused if invalid`,
		})
	if err != nil {
		return fmt.Errorf("register approve update: %w", err)
	}
	ch := workflow.GetSignalChannelWithOptions(ctx, ApprovalSignal, workflow.SignalChannelOptions{
		Description: `Decide the waiting gate: {"gate":"merge","decision":"approve"|"reject","by":"you","comment":"..."}`,
	})
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var d ApprovalDecision
			if more := ch.Receive(ctx, &d); !more {
				return
			}
			id := nextSignalIdentity(ctx)
			if err := r.checkDecision(d, id); err != nil {
				r.logRefused(ctx, "signal", d, id, err)
				r.recordDecision(DecisionRecord{ApprovalDecision: d, Identity: id, At: workflow.Now(ctx), Refused: err.Error()})
				continue
			}
			r.applyDecision(ctx, d, id)
		}
	})
	return nil
}

// RefusedApprovalLog is the message of the worker's log line for every
// refused approval (update or signal); `stagehand audit show` points to it.
const RefusedApprovalLog = "approval refused"

// MaxRefusedDecisions bounds the refused signals kept in Status.Decisions:
// the newest are kept, Status.RefusedDropped counts the others, so a client
// sending signals in a loop cannot grow the status (the query answer and
// the run's result) without bound.
const MaxRefusedDecisions = 50

// MaxRefusedFieldLen bounds each text of a refused decision as it is
// recorded and logged (bytes, four times that for the reason; a cut value
// ends in "…"): anyone who can
// signal chooses them, and MaxRefusedDecisions records of a megabyte each
// would make the run's result and query answer too large to return.
const MaxRefusedFieldLen = 256

// clip cuts s to at most n bytes on a character boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// clipRefused bounds the caller-chosen texts of a refused decision.
func clipRefused(d ApprovalDecision) ApprovalDecision {
	d.Gate = clip(d.Gate, MaxRefusedFieldLen)
	d.Decision = clip(d.Decision, MaxRefusedFieldLen)
	d.By = clip(d.By, MaxRefusedFieldLen)
	d.Comment = clip(d.Comment, MaxRefusedFieldLen)
	return d
}

// logRefused leaves the trace a refused decision cannot leave in history.
// Replays do not log again (and do not run validators at all).
func (r *run) logRefused(ctx workflow.Context, via string, d ApprovalDecision, identity string, err error) {
	d = clipRefused(d)
	workflow.GetLogger(ctx).Warn(RefusedApprovalLog,
		"workflowId", r.workflowID, "runId", workflow.GetInfo(ctx).WorkflowExecution.RunID, "via", via, "gate", d.Gate, "decision", d.Decision,
		"by", d.By, "identity", identity, "reason", clip(err.Error(), 4*MaxRefusedFieldLen))
}

// recordDecision appends to Status.Decisions, dropping the oldest refused
// record once there are more than MaxRefusedDecisions.
func (r *run) recordDecision(rec DecisionRecord) {
	if rec.Refused != "" {
		rec.ApprovalDecision = clipRefused(rec.ApprovalDecision)
		// The reason quotes some of them, and names the approvers.
		rec.Refused = clip(rec.Refused, 4*MaxRefusedFieldLen)
	}
	r.status.Decisions = append(r.status.Decisions, rec)
	if rec.Refused == "" {
		return
	}
	refused := 0
	for _, d := range r.status.Decisions {
		if d.Refused != "" {
			refused++
		}
	}
	if refused <= MaxRefusedDecisions {
		return
	}
	for i, d := range r.status.Decisions {
		if d.Refused != "" {
			r.status.Decisions = slices.Delete(r.status.Decisions, i, i+1)
			r.status.RefusedDropped++
			return
		}
	}
}

// normName is how names are compared: "Alice " and "alice" are one person.
func normName(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// checkDecision enforces who may decide what, and when. It must not change
// any state: it also serves as the update validator. identity is what the
// decision's connection claimed (IdentityHeader), "" if nothing.
func (r *run) checkDecision(d ApprovalDecision, identity string) error {
	if d.Decision != DecisionApprove && d.Decision != DecisionReject {
		return fmt.Errorf("decision must be %q or %q, got %q", DecisionApprove, DecisionReject, d.Decision)
	}
	by := normName(d.By)
	if by == "" {
		return errors.New(`"by" is required: say who decides`)
	}
	if r.resolved == nil {
		return errors.New("the run has not reached any approval gate yet")
	}
	if !r.gateIDs[d.Gate] {
		return fmt.Errorf("unknown gate %q (this runbook's gates: %s)", d.Gate, strings.Join(slices.Sorted(maps.Keys(r.gateIDs)), ", "))
	}
	gate := r.status.PendingGate
	if gate == nil || gate.Gate != d.Gate {
		state := "not reached yet"
		if st := r.index[d.Gate]; st != nil && st.State != StepPending {
			state = string(st.State)
		}
		return fmt.Errorf("gate %q is not waiting for a decision (it is %s)", d.Gate, state)
	}
	if r.decision != nil {
		return fmt.Errorf("gate %q was already decided by %s", d.Gate, r.decision.By)
	}
	mapped, known := r.resolved.Approvals.approverFor(identity)
	switch {
	case gate.RequireIdentity && identity == "":
		return fmt.Errorf("gate %q requires the decider's identity, and this decision's connection carried none (the stagehand CLI sends it; see the worker's approvals.identities)", d.Gate)
	case gate.RequireIdentity && !known:
		return fmt.Errorf("gate %q requires the decider's identity to map to an approver, and identity %q is not in the worker's approvals.identities", d.Gate, identity)
	case known && normName(mapped) != by:
		return fmt.Errorf("the decision is by %s, but its connection identity %q belongs to %s", strings.TrimSpace(d.By), identity, mapped)
	}
	listed := false
	for _, a := range gate.Approvers {
		if normName(a) == by {
			listed = true
		}
	}
	requester := normName(r.in.RequestedBy)
	if d.Decision == DecisionApprove {
		if by == requester {
			return fmt.Errorf("%s requested this run and cannot approve it (four-eyes rule)", strings.TrimSpace(d.By))
		}
		// requestedBy is the starter's own claim: where the worker maps the
		// identity the start's connection carried, the approver it maps to
		// is the requester too. (An unmapped identity proves nothing, as
		// for decisions: a shared account may start and approve.)
		starter := r.status.RequesterIdentity
		if m, ok := r.resolved.Approvals.approverFor(starter); ok && normName(m) == by {
			return fmt.Errorf("%s started this run (identity %q) and cannot approve it (four-eyes rule)", strings.TrimSpace(d.By), starter)
		}
		if !listed {
			return fmt.Errorf("%s is not an approver of gate %q (approvers: %s)", strings.TrimSpace(d.By), d.Gate, strings.Join(gate.Approvers, ", "))
		}
	} else if !listed && by != requester {
		return fmt.Errorf("%s may not reject gate %q: only its approvers (%s) or the requester may", strings.TrimSpace(d.By), d.Gate, strings.Join(gate.Approvers, ", "))
	}
	return nil
}

func (r *run) applyDecision(ctx workflow.Context, d ApprovalDecision, identity string) DecisionRecord {
	d.By = strings.TrimSpace(d.By)
	rec := DecisionRecord{ApprovalDecision: d, Identity: identity, At: workflow.Now(ctx)}
	r.decision = &rec
	r.recordDecision(rec)
	return rec
}

func (r *run) runGate(ctx workflow.Context, s runbooks.Step, st *StepStatus) *stepFailure {
	msg, err := runbooks.RenderString(s.Approval.Message, r.data)
	if err != nil {
		return st.fail(s.ID, &stepError{message: fmt.Sprintf("approval.message: %v", err), errType: errTypeTemplate})
	}
	var approvers []string
	for _, a := range s.Approval.Approvers {
		v, err := runbooks.RenderString(a, r.data)
		if err != nil {
			return st.fail(s.ID, &stepError{message: fmt.Sprintf("approval.approvers: %v", err), errType: errTypeTemplate})
		}
		for _, one := range strings.Split(v, ",") {
			if one = strings.TrimSpace(one); one != "" {
				approvers = append(approvers, one)
			}
		}
	}
	var timeout time.Duration
	if s.Approval.Timeout != "" {
		raw, err := runbooks.RenderString(s.Approval.Timeout, r.data)
		if err != nil {
			return st.fail(s.ID, &stepError{message: fmt.Sprintf("approval.timeout: %v", err), errType: errTypeTemplate})
		}
		d, err := runbooks.ParseDuration(raw)
		if err != nil {
			return st.fail(s.ID, &stepError{message: fmt.Sprintf("approval.timeout: %v", err), errType: errTypeInvalidArguments})
		}
		timeout = d.D()
	}
	if r.compensating && timeout <= 0 {
		// The validator refuses onFailure gates without a timeout, but a
		// template may still render "0s"; cancelling the run cannot reach
		// compensation, so such a gate could wait forever.
		return st.fail(s.ID, &stepError{message: fmt.Sprintf("approval.timeout: an onFailure gate needs a positive timeout, got %q", s.Approval.Timeout), errType: errTypeInvalidArguments})
	}
	// During compensation the run's outcome is decided already; the gate
	// shows as waiting and then gives the outcome back, whatever it decides.
	outcome := r.status.State
	if !r.compensating {
		outcome = RunRunning
	}
	opened := workflow.Now(ctx)
	gate := &GateStatus{Gate: s.ID, Message: msg, Approvers: approvers, OpenedAt: opened,
		RequireIdentity: s.Approval.RequireIdentity || r.resolved.Approvals.requireAll()}
	if timeout > 0 {
		deadline := opened.Add(timeout)
		gate.Deadline = &deadline
	}
	r.decision = nil
	r.status.PendingGate = gate
	r.status.State = RunWaitingApproval
	st.State = StepWaitingApproval
	upsert(ctx, SearchOutcome.ValueSet(string(RunWaitingApproval)))
	r.publish(ctx)

	ok, err := r.awaitDecision(ctx, s, gate, timeout)
	r.status.PendingGate = nil
	if r.status.State == RunWaitingApproval {
		r.status.State = outcome
	}
	if err != nil {
		st.State = StepCancelled
		return &stepFailure{step: s.ID, message: "cancelled while waiting for approval", cancelled: true}
	}
	upsert(ctx, SearchOutcome.ValueSet(string(outcome)))
	if !ok {
		st.State = StepRejected
		st.Error = fmt.Sprintf("approval gate %s timed out after %s with no decision", s.ID, timeout)
		return &stepFailure{step: s.ID, message: st.Error, rejected: true}
	}
	d := *r.decision
	st.Outputs = gateOutputs(d, workflow.Now(ctx).UTC().Format("2006-01-02T15:04:05Z07:00"))
	st.Attempts = 1
	if d.Decision == DecisionReject {
		st.State = StepRejected
		st.Error = fmt.Sprintf("rejected by %s", d.By)
		if d.Comment != "" {
			st.Error += ": " + d.Comment
		}
		return &stepFailure{step: s.ID, message: fmt.Sprintf("gate %s %s", s.ID, st.Error), rejected: true}
	}
	st.State = StepApproved
	r.upsertApprovers(ctx, d.By)
	return nil
}

// gateOutputs are a decided gate's outputs (.steps.<gate>.outputs); the
// resolve check stubs them with a zero DecisionRecord.
func gateOutputs(d DecisionRecord, at string) map[string]any {
	return map[string]any{"decision": d.Decision, "by": d.By, "identity": d.Identity, "comment": d.Comment, "at": at}
}

// reminderPacingChange marks the switch to paced reminders (see
// runbooks.MaxRemindersAtInterval): before it a gate reminded at its
// interval forever, one timer, one activity and their workflow tasks (about
// a dozen history events) each time.
const reminderPacingChange = "gate-reminder-pacing"

// reminderInterval is the wait before reminder n (n > MaxRemindersAtInterval):
// every doubled once per reminder past the cap, at most MaxReminderInterval
// (or every itself when that is longer).
func reminderInterval(every time.Duration, n int) time.Duration {
	if every >= runbooks.MaxReminderInterval {
		return every
	}
	wait := every
	for k := runbooks.MaxRemindersAtInterval; k < n && wait < runbooks.MaxReminderInterval; k++ {
		wait *= 2
	}
	return min(wait, runbooks.MaxReminderInterval)
}

// awaitDecision waits for a decision until the gate's timeout, running the
// gate's reminder step every interval meanwhile (paced after
// MaxRemindersAtInterval, so the history of a gate open for weeks stays
// bounded: see TestLongGateHistoryIsBounded). A wait of days is a few
// timers in history, not a polling loop. The timers carry the gate's name
// and approvers, which is what the UI shows for them.
func (r *run) awaitDecision(ctx workflow.Context, s runbooks.Step, gate *GateStatus, timeout time.Duration) (bool, error) {
	decided := func() bool { return r.decision != nil }
	timerOpts := workflow.TimerOptions{Summary: gateTimerSummary(gate)}
	remind := s.Approval.Remind
	if remind == nil || remind.Every <= 0 {
		if timeout > 0 {
			return workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{Timeout: timeout, TimerOptions: timerOpts}, decided)
		}
		return true, workflow.Await(ctx, decided)
	}
	paced := false
	for n := 1; ; n++ {
		wait := remind.Every.D()
		if n > runbooks.MaxRemindersAtInterval {
			// Asked lazily, so runs whose gates never get this far record no
			// marker; runs recorded before pacing replay with the old timers.
			if !paced && workflow.GetVersion(ctx, reminderPacingChange, workflow.DefaultVersion, 1) == 1 {
				paced = true
			}
			if paced {
				wait = reminderInterval(wait, n)
			}
		}
		if timeout > 0 {
			left := gate.OpenedAt.Add(timeout).Sub(workflow.Now(ctx))
			if left <= 0 {
				return false, nil
			}
			if left < wait {
				wait = left
			}
		}
		ok, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{Timeout: wait, TimerOptions: timerOpts}, decided)
		if ok || err != nil {
			return ok, err
		}
		if timeout > 0 && !workflow.Now(ctx).Before(gate.OpenedAt.Add(timeout)) {
			return false, nil
		}
		r.remind(ctx, s, gate, n)
	}
}

// remind runs the gate's reminder step. A failed reminder is logged, not
// fatal: the gate itself is still open and valid.
func (r *run) remind(ctx workflow.Context, s runbooks.Step, gate *GateStatus, n int) {
	rem := s.Approval.Remind
	data := make(map[string]any, len(r.data)+1)
	for k, v := range r.data {
		data[k] = v
	}
	data[runbooks.RootGate] = map[string]any{
		"id": gate.Gate, "message": gate.Message, "approvers": gate.Approvers,
		"waiting": workflow.Now(ctx).Sub(gate.OpenedAt).Round(time.Second).String(), "reminder": n,
	}
	if rem.If != "" {
		ok, err := runbooks.RenderCondition(rem.If, data)
		if err != nil {
			workflow.GetLogger(ctx).Warn("gate reminder: bad condition", "gate", s.ID, "error", err)
			return
		}
		if !ok {
			return
		}
	}
	_, serr := r.callStep(ctx, stepCall{
		activityID:      fmt.Sprintf("%s-remind-%d", s.ID, n),
		stepID:          s.ID + "_remind",
		uses:            rem.Uses,
		with:            rem.With,
		data:            data,
		fallbackTimeout: time.Minute,
	})
	if serr != nil {
		workflow.GetLogger(ctx).Warn("gate reminder failed", "gate", s.ID, "error", serr.message)
	}
}
