package kube

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagehand-dev/stagehand/activities"
)

// EventsInput is the `with` of kube.events.
type EventsInput struct {
	Cluster   string `json:"cluster,omitempty"`
	Namespace string `json:"namespace"`
	// Deployment narrows the events to the Deployment, its ReplicaSets and
	// their pods; without it every event of the namespace is in scope.
	Deployment string `json:"deployment,omitempty"`
	// Since is an RFC 3339 time (e.g. the changedAt output of setImage, or
	// the run's start) or a duration back from now ("15m"). By default the
	// time this activity was first scheduled.
	Since string `json:"since,omitempty"`
	// Allow lists regular expressions; a Warning whose reason or message
	// matches one does not fail the step (it is still reported).
	Allow []string `json:"allow,omitempty"`
}

// Event is one event as reported by kube.events.
type Event struct {
	Time    string `json:"time"`
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Object  string `json:"object"`
	Message string `json:"message"`
	Count   int32  `json:"count"`
	// Allowed marks a Warning that matched an allow pattern.
	Allowed bool `json:"allowed,omitempty"`
}

// EventsOutput lists the events in time order.
type EventsOutput struct {
	Events []Event `json:"events"`
	// Warnings counts Warning events in scope, allowed or not.
	Warnings int    `json:"warnings"`
	Since    string `json:"since"`
}

// maxReportedWarnings bounds the failure message: history must stay small.
const maxReportedWarnings = 10

// Events lists the events since a time, ordered like `kubectl get events
// --sort-by=.lastTimestamp`, and fails when a Warning concerns the
// Deployment (or, without one, the namespace) and no allow pattern matches.
func (a *Activities) Events(ctx context.Context, in EventsInput) (EventsOutput, error) {
	c, err := a.cluster(in.Cluster)
	if err != nil {
		return EventsOutput{}, err
	}
	allow, err := compileAllow(in.Allow)
	if err != nil {
		return EventsOutput{}, err
	}
	since, err := resolveSince(ctx, in.Since, time.Now())
	if err != nil {
		return EventsOutput{}, err
	}
	var scope func(corev1.ObjectReference) bool
	if in.Deployment != "" {
		ref := DeploymentRef{Namespace: in.Namespace, Deployment: in.Deployment}
		var rsNames map[string]bool
		d, err := c.Client.AppsV1().Deployments(in.Namespace).Get(ctx, in.Deployment, metav1.GetOptions{})
		switch {
		case err == nil:
			rsNames, err = replicaSetNames(ctx, c, d)
			if err != nil {
				return EventsOutput{}, err
			}
		case isNotFoundErr(err):
			// A deleted Deployment's events still tell what happened.
		default:
			return EventsOutput{}, classify(fmt.Sprintf("get deployment %s", ref), err)
		}
		scope = deploymentScope(in.Deployment, rsNames)
	}
	list, err := c.Client.CoreV1().Events(in.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return EventsOutput{}, classify(fmt.Sprintf("list events in namespace %s", in.Namespace), err)
	}
	events := selectEvents(list.Items, since, scope)
	out := EventsOutput{Events: []Event{}, Since: since.UTC().Format(time.RFC3339)}
	var bad []Event
	for _, ev := range events {
		e := Event{
			Time:    eventTime(ev).UTC().Format(time.RFC3339),
			Type:    ev.Type,
			Reason:  ev.Reason,
			Object:  ev.InvolvedObject.Kind + "/" + ev.InvolvedObject.Name,
			Message: strings.TrimSpace(ev.Message),
			Count:   eventCount(ev),
		}
		if ev.Type == corev1.EventTypeWarning {
			out.Warnings++
			if allowed(allow, ev) {
				e.Allowed = true
			} else {
				bad = append(bad, e)
			}
		}
		out.Events = append(out.Events, e)
	}
	if len(bad) > 0 {
		return EventsOutput{}, nonRetryable(activities.ErrWarningEvents, warningsMessage(in, bad), nil)
	}
	return out, nil
}

func warningsMessage(in EventsInput, bad []Event) string {
	var b strings.Builder
	scope := "namespace " + in.Namespace
	if in.Deployment != "" {
		scope = "deployment " + in.Namespace + "/" + in.Deployment
	}
	fmt.Fprintf(&b, "%d warning events for %s not matched by allow:", len(bad), scope)
	for i, e := range bad {
		if i == maxReportedWarnings {
			fmt.Fprintf(&b, "\n  ... and %d more", len(bad)-i)
			break
		}
		fmt.Fprintf(&b, "\n  %s %s %s: %s", e.Time, e.Object, e.Reason, e.Message)
		if e.Count > 1 {
			fmt.Fprintf(&b, " (x%d)", e.Count)
		}
	}
	return b.String()
}

func compileAllow(patterns []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(patterns))
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("allow: bad pattern %q", p), err)
		}
		out = append(out, re)
	}
	return out, nil
}

func allowed(allow []*regexp.Regexp, ev corev1.Event) bool {
	for _, re := range allow {
		if re.MatchString(ev.Reason) || re.MatchString(ev.Message) {
			return true
		}
	}
	return false
}

// resolveSince parses `since`. The default, the activity's scheduled time,
// is stable across retries of the step, unlike "now".
func resolveSince(ctx context.Context, s string, now time.Time) (time.Time, error) {
	if s == "" {
		if activity.IsActivity(ctx) {
			if t := activity.GetInfo(ctx).ScheduledTime; !t.IsZero() {
				return t.Truncate(time.Second), nil
			}
		}
		return now.Add(-time.Hour).Truncate(time.Second), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		// Event timestamps have one-second resolution; an event in the
		// same second as `since` counts.
		return t.Truncate(time.Second), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).Truncate(time.Second), nil
	}
	return time.Time{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf(
		"since: %q is neither an RFC 3339 time nor a duration like 15m", s), nil)
}

// replicaSetNames lists the names of the Deployment's ReplicaSets, so that
// events of its pods are found by owner, not only by name.
func replicaSetNames(ctx context.Context, c *Cluster, d *appsv1.Deployment) (map[string]bool, error) {
	sel, err := deploymentSelector(d)
	if err != nil {
		return nil, err
	}
	list, err := c.Client.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, classify(fmt.Sprintf("list replicasets of deployment %s/%s", d.Namespace, d.Name), err)
	}
	names := map[string]bool{}
	for i := range list.Items {
		if ownedBy(&list.Items[i], d) {
			names[list.Items[i].Name] = true
		}
	}
	return names, nil
}

// deploymentScope says whether an event's object belongs to the
// Deployment. ReplicaSets are "<deployment>-<hash>" and pods
// "<replicaset>-<suffix>"; the name rule also covers ReplicaSets already
// garbage-collected, while the exact-dash count keeps deployment "web"
// from claiming "web-api"'s objects.
func deploymentScope(deployment string, rsNames map[string]bool) func(corev1.ObjectReference) bool {
	prefix := deployment + "-"
	return func(o corev1.ObjectReference) bool {
		switch o.Kind {
		case "Deployment":
			return o.Name == deployment
		case "ReplicaSet":
			if rsNames[o.Name] {
				return true
			}
			rest, ok := strings.CutPrefix(o.Name, prefix)
			return ok && rest != "" && !strings.Contains(rest, "-")
		case "Pod":
			if i := strings.LastIndex(o.Name, "-"); i > 0 && rsNames[o.Name[:i]] {
				return true
			}
			rest, ok := strings.CutPrefix(o.Name, prefix)
			return ok && strings.Count(rest, "-") == 1 && !strings.HasPrefix(rest, "-") && !strings.HasSuffix(rest, "-")
		}
		return false
	}
}

// selectEvents keeps the events in scope at or after since, in time order.
func selectEvents(items []corev1.Event, since time.Time, scope func(corev1.ObjectReference) bool) []corev1.Event {
	var out []corev1.Event
	for _, ev := range items {
		if eventTime(ev).Before(since) {
			continue
		}
		if scope != nil && !scope(ev.InvolvedObject) {
			continue
		}
		out = append(out, ev)
	}
	sortEvents(out)
	return out
}

// sortEvents orders events by when they last happened, the order of
// `kubectl get events --sort-by=.lastTimestamp` / `kubectl events`. The
// sort is stable so equal times keep the apiserver's order.
func sortEvents(events []corev1.Event) {
	sort.SliceStable(events, func(i, j int) bool {
		return eventTime(events[i]).Before(eventTime(events[j]))
	})
}

// eventTime is when an event last happened. events.k8s.io/v1 producers fill
// series and eventTime, core/v1 producers lastTimestamp; we use the first
// that is set.
func eventTime(ev corev1.Event) time.Time {
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.Time
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	}
	return ev.FirstTimestamp.Time
}

func eventCount(ev corev1.Event) int32 {
	if ev.Series != nil && ev.Series.Count > 0 {
		return ev.Series.Count
	}
	if ev.Count > 0 {
		return ev.Count
	}
	return 1
}

func isNotFoundErr(err error) bool {
	t, _ := errorType(err)
	return t == activities.ErrKubeNotFound
}
