package cli

import (
	"fmt"
	"sort"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"

	"github.com/stagehand-dev/stagehand/workflows"
)

// TimelineEntry is one thing that happened in a run, read from its history.
type TimelineEntry struct {
	At time.Time `json:"at"`
	// Step is the step id (an activity's id), or "" for run-level events.
	Step string `json:"step,omitempty"`
	// What is the kind of event: started, step, wait, approval, refused,
	// ended.
	What string `json:"what"`
	// Uses is the step type of an activity.
	Uses     string `json:"uses,omitempty"`
	Attempts int32  `json:"attempts,omitempty"`
	// Worker is the identity of the worker that ran the step's last
	// attempt (the history's ActivityTaskStarted identity).
	Worker   string        `json:"worker,omitempty"`
	Duration time.Duration `json:"durationNs,omitempty"`
	Outcome  string        `json:"outcome,omitempty"`
	Detail   string        `json:"detail,omitempty"`
}

// Timeline is a run's history as a person reads it.
type Timeline struct {
	Entries []TimelineEntry `json:"entries"`
}

func payloadInto(p *commonpb.Payloads, v any) error {
	if p == nil || len(p.GetPayloads()) == 0 {
		return fmt.Errorf("no payload")
	}
	return converter.GetDefaultDataConverter().FromPayload(p.GetPayloads()[0], v)
}

// BuildTimeline turns history events into a timeline: each step with its
// attempts, duration and error; waits; every approval decision with who,
// when and comment; the start and the end of the run.
func BuildTimeline(events []*historypb.HistoryEvent) Timeline {
	type sched struct {
		id, uses string
		at       time.Time
		attempt  int32
		worker   string
	}
	scheduled := map[int64]*sched{}
	timers := map[int64]time.Time{}
	var tl Timeline
	add := func(e TimelineEntry) { tl.Entries = append(tl.Entries, e) }
	for _, ev := range events {
		at := ev.GetEventTime().AsTime()
		switch {
		case ev.GetWorkflowExecutionStartedEventAttributes() != nil:
			a := ev.GetWorkflowExecutionStartedEventAttributes()
			var in workflows.RunInput
			detail := ""
			if err := payloadInto(a.GetInput(), &in); err == nil {
				name := in.Runbook
				if name == "" {
					name = "inline runbook"
				}
				detail = fmt.Sprintf("%s requested by %s with %s", name, orDash(in.RequestedBy), formatParams(in.Params))
			}
			add(TimelineEntry{At: at, What: "started", Detail: detail})
		case ev.GetActivityTaskScheduledEventAttributes() != nil:
			a := ev.GetActivityTaskScheduledEventAttributes()
			scheduled[ev.GetEventId()] = &sched{id: a.GetActivityId(), uses: a.GetActivityType().GetName(), at: at}
		case ev.GetActivityTaskStartedEventAttributes() != nil:
			a := ev.GetActivityTaskStartedEventAttributes()
			if s := scheduled[a.GetScheduledEventId()]; s != nil {
				s.attempt = a.GetAttempt()
				s.worker = a.GetIdentity()
			}
		case ev.GetActivityTaskCompletedEventAttributes() != nil:
			if s := scheduled[ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()]; s != nil {
				add(stepEntry(s.id, s.uses, s.worker, s.at, at, s.attempt, "succeeded", ""))
			}
		case ev.GetActivityTaskFailedEventAttributes() != nil:
			a := ev.GetActivityTaskFailedEventAttributes()
			if s := scheduled[a.GetScheduledEventId()]; s != nil {
				add(stepEntry(s.id, s.uses, s.worker, s.at, at, s.attempt, "failed", failureMessage(a.GetFailure().GetMessage())))
			}
		case ev.GetActivityTaskTimedOutEventAttributes() != nil:
			a := ev.GetActivityTaskTimedOutEventAttributes()
			if s := scheduled[a.GetScheduledEventId()]; s != nil {
				add(stepEntry(s.id, s.uses, s.worker, s.at, at, s.attempt, "timed out", failureMessage(a.GetFailure().GetMessage())))
			}
		case ev.GetActivityTaskCanceledEventAttributes() != nil:
			a := ev.GetActivityTaskCanceledEventAttributes()
			if s := scheduled[a.GetScheduledEventId()]; s != nil {
				add(stepEntry(s.id, s.uses, s.worker, s.at, at, s.attempt, "cancelled", ""))
			}
		case ev.GetTimerStartedEventAttributes() != nil:
			timers[ev.GetEventId()] = at
		case ev.GetTimerFiredEventAttributes() != nil:
			if started, ok := timers[ev.GetTimerFiredEventAttributes().GetStartedEventId()]; ok {
				add(TimelineEntry{At: started, What: "wait", Duration: at.Sub(started), Outcome: "elapsed"})
			}
		case ev.GetWorkflowExecutionSignaledEventAttributes() != nil:
			a := ev.GetWorkflowExecutionSignaledEventAttributes()
			if a.GetSignalName() != workflows.ApprovalSignal {
				continue
			}
			var d workflows.ApprovalDecision
			if err := payloadInto(a.GetInput(), &d); err == nil {
				add(decisionEntry(at, d, "signal"))
			}
		case ev.GetWorkflowExecutionUpdateAcceptedEventAttributes() != nil:
			a := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes()
			if a.GetAcceptedRequest().GetInput().GetName() != workflows.ApproveUpdate {
				continue
			}
			var d workflows.ApprovalDecision
			if err := payloadInto(a.GetAcceptedRequest().GetInput().GetArgs(), &d); err == nil {
				add(decisionEntry(at, d, "update"))
			}
		case ev.GetWorkflowExecutionCompletedEventAttributes() != nil:
			add(TimelineEntry{At: at, What: "ended", Outcome: "succeeded"})
		case ev.GetWorkflowExecutionFailedEventAttributes() != nil:
			add(TimelineEntry{At: at, What: "ended", Outcome: "failed", Detail: failureMessage(ev.GetWorkflowExecutionFailedEventAttributes().GetFailure().GetMessage())})
		case ev.GetWorkflowExecutionCanceledEventAttributes() != nil:
			add(TimelineEntry{At: at, What: "ended", Outcome: "cancelled"})
		case ev.GetWorkflowExecutionTerminatedEventAttributes() != nil:
			add(TimelineEntry{At: at, What: "ended", Outcome: "terminated", Detail: ev.GetWorkflowExecutionTerminatedEventAttributes().GetReason()})
		case ev.GetWorkflowExecutionTimedOutEventAttributes() != nil:
			add(TimelineEntry{At: at, What: "ended", Outcome: "timed out"})
		}
	}
	// Steps are listed where they started, so parallel steps interleave as
	// they ran.
	sort.SliceStable(tl.Entries, func(i, j int) bool { return tl.Entries[i].At.Before(tl.Entries[j].At) })
	return tl
}

func stepEntry(id, uses, worker string, scheduled, ended time.Time, attempt int32, outcome, detail string) TimelineEntry {
	what := "step"
	if uses == workflows.ResolveActivity {
		what = "resolve"
	}
	if attempt == 0 {
		attempt = 1
	}
	return TimelineEntry{At: scheduled, Step: id, What: what, Uses: uses, Worker: worker, Attempts: attempt, Duration: ended.Sub(scheduled), Outcome: outcome, Detail: detail}
}

func decisionEntry(at time.Time, d workflows.ApprovalDecision, via string) TimelineEntry {
	detail := fmt.Sprintf("%s by %s via %s", d.Decision, orDash(d.By), via)
	if d.Comment != "" {
		detail += fmt.Sprintf(": %q", d.Comment)
	}
	return TimelineEntry{At: at, Step: d.Gate, What: "approval", Outcome: d.Decision, Detail: detail}
}

// failureMessage drops Temporal's "(type: X, retryable: false)" noise.
func failureMessage(s string) string {
	if i := strings.Index(s, " (type: "); i > 0 {
		return s[:i]
	}
	return s
}

func formatParams(p map[string]any) string {
	if len(p) == 0 {
		return "no params"
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, p[k])
	}
	return strings.Join(parts, " ")
}
