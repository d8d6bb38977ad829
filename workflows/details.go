package workflows

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"go.temporal.io/sdk/workflow"
)

// What the Temporal UI shows of a run besides its history: the current
// details (Markdown, refreshed on every step change), each activity's
// summary and each timer's summary. The UI's details box is short, so the
// current step and the pending gate come first and the step list last.

// publish refreshes the current step and the UI's current details.
func (r *run) publish(ctx workflow.Context) {
	var running []string
	for _, st := range r.status.Steps {
		if st.State == StepRunning || st.State == StepWaitingApproval {
			running = append(running, st.ID)
		}
	}
	for _, st := range r.status.Compensation {
		if st.State == StepRunning || st.State == StepWaitingApproval {
			running = append(running, st.ID)
		}
	}
	r.status.CurrentStep = strings.Join(running, ",")
	workflow.SetCurrentDetails(ctx, r.details())
}

func (r *run) details() string {
	var b strings.Builder
	done, total := 0, 0
	for _, st := range r.status.Steps {
		if st.Parent != "" {
			continue
		}
		total++
		switch st.State {
		case StepSucceeded, StepApproved, StepSkipped:
			done++
		}
	}
	fmt.Fprintf(&b, "**%s** · %s", r.status.Runbook, r.status.State)
	if r.status.CurrentStep != "" {
		fmt.Fprintf(&b, " at `%s`", r.status.CurrentStep)
	}
	if total > 0 {
		fmt.Fprintf(&b, " · %d of %d steps done", done, total)
	}
	b.WriteString("\n\n")
	if a := r.status.Audit; a != nil && len(a.Summary) > 0 {
		// The facts people look for first (versions, digests) go near the top.
		for _, k := range slices.Sorted(maps.Keys(a.Summary)) {
			fmt.Fprintf(&b, "- **%s**: %s\n", k, truncate(a.Summary[k], 200))
		}
		b.WriteString("\n")
	}
	if g := r.status.PendingGate; g != nil {
		fmt.Fprintf(&b, "⏸️ Gate `%s` waits for one of **%s**: %s\n\n", g.Gate, strings.Join(g.Approvers, ", "), truncate(g.Message, 300))
		fmt.Fprintf(&b, "Approve: signal `%s` with `{\"gate\":%q,\"decision\":\"approve\",\"by\":\"<you>\"}`, or `stagehand approve %s --gate %s`\n\n", ApprovalSignal, g.Gate, r.workflowID, g.Gate)
	}
	for _, id := range strings.Split(r.status.CurrentStep, ",") {
		if t := r.targets[id]; id != "" && t != "" {
			fmt.Fprintf(&b, "▶️ `%s`: %s\n\n", id, t)
		}
	}
	if r.status.Error != "" {
		fmt.Fprintf(&b, "Error: %s\n\n", truncate(r.status.Error, 400))
	}
	for _, st := range r.status.Steps {
		indent := ""
		if st.Parent != "" {
			indent = "  "
		}
		fmt.Fprintf(&b, "%s- %s `%s`", indent, stateMark(st.State), st.ID)
		if st.Error != "" {
			fmt.Fprintf(&b, ": %s", truncate(st.Error, 200))
		}
		b.WriteString("\n")
	}
	for i, st := range r.status.Compensation {
		if i == 0 {
			b.WriteString("\nonFailure:\n")
		}
		indent := ""
		if st.Parent != "" {
			indent = "  "
		}
		fmt.Fprintf(&b, "%s- %s `%s`", indent, stateMark(st.State), st.ID)
		if st.Error != "" {
			fmt.Fprintf(&b, ": %s", truncate(st.Error, 200))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func stateMark(s StepState) string {
	switch s {
	case StepSucceeded, StepApproved:
		return "✅"
	case StepFailed, StepRejected:
		return "❌"
	case StepRunning:
		return "▶️"
	case StepWaitingApproval:
		return "⏸️"
	case StepSkipped:
		return "⏭️"
	case StepCancelled:
		return "⏹️"
	default:
		return "◻️"
	}
}

// activitySummary is the one line the UI shows for an activity: the step
// and what it acts on, e.g. "sandbox_apply: backstage-sandbox/backstage →
// registry/backend:pr-42-…".
func activitySummary(activityID, uses, target string) string {
	if target == "" {
		return truncate(fmt.Sprintf("%s (%s)", activityID, uses), 200)
	}
	return truncate(activityID+": "+target, 200)
}

// gateTimerSummary names the timer a gate waits on, which the UI would
// otherwise call "AwaitWithTimeout".
func gateTimerSummary(g *GateStatus) string {
	return truncate(fmt.Sprintf("gate %s: waiting for %s", g.Gate, strings.Join(g.Approvers, ", ")), 200)
}

// targetKeys are the `with` arguments that say what a step acts on, most
// specific first. Step types name their arguments consistently (namespace
// and deployment for Kubernetes, url for HTTP, remote for git), so one
// list serves every adapter.
var targetKeys = []string{"database", "repo", "remote", "url", "urls", "baseURL", "environment", "message"}

// stepTarget describes what a call acts on from its rendered arguments.
// Arguments hold references, never secrets; credentials in URLs are
// redacted all the same.
func stepTarget(with map[string]any) string {
	str := func(k string) string {
		if v, ok := with[k]; ok && v != nil {
			if s := strings.TrimSpace(fmt.Sprint(v)); s != "" && s != "[]" && s != "map[]" {
				return s
			}
		}
		return ""
	}
	var target string
	switch ns, dep := str("namespace"), str("deployment"); {
	case ns != "" && dep != "":
		target = ns + "/" + dep
	case dep != "":
		target = dep
	default:
		for _, k := range targetKeys {
			if v := str(k); v != "" {
				target = v
				break
			}
		}
		if target == "" {
			target = ns
		}
	}
	if img := firstNonEmpty(str("image"), str("toImage"), str("tag")); img != "" {
		if target == "" {
			target = img
		} else {
			target += " → " + img
		}
	}
	if pr := str("pr"); pr != "" && pr != "0" {
		target += " PR " + pr
	}
	return truncate(redactUserinfo(strings.TrimSpace(target)), 160)
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

var userinfoRE = regexp.MustCompile(`://[^/@\s]+@`)

func redactUserinfo(s string) string { return userinfoRE.ReplaceAllString(s, "://***@") }

// truncate cuts s to at most n bytes without splitting a UTF-8 character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
