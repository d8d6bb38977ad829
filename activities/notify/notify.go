// Package notify holds the `notify.send` step: it tells people about a run
// (a gate waiting for approval, a failure, a success) by POSTing to webhooks,
// either a generic JSON document for any receiver or Slack's incoming-webhook
// format.
//
// Slack webhook URLs embed their secret in the path, so they are given as
// references (urlRef: env:SLACK_WEBHOOK) and resolved here, and every error
// names a webhook by its position and host only.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// Events a notification can be about.
var Events = []string{"gate_opened", "gate_reminder", "run_failed", "run_succeeded", "run_rejected", "custom"}

// Formats of webhook payloads.
const (
	FormatGeneric = "generic"
	FormatSlack   = "slack"
)

// SecretResolver turns a secret reference (env:NAME, secret:NAME/KEY) into
// its value.
type SecretResolver = secrets.Resolver

// Activities sends notifications. The zero value works: a 10 s timeout per
// POST and env:NAME references only.
type Activities struct {
	// HTTPClient posts the webhooks; default http.DefaultTransport with
	// Timeout.
	HTTPClient *http.Client
	// Timeout bounds each POST; default 10 s.
	Timeout time.Duration
	// Secrets resolves urlRef; nil resolves only env:NAME references.
	Secrets SecretResolver
	// Now is the clock for the payload's `at`; default time.Now.
	Now func() time.Time
}

// Webhook is one receiver.
type Webhook struct {
	// URL is a webhook address that is not secret; Slack's are, so they go
	// in URLRef.
	URL string `json:"url,omitempty"`
	// URLRef is a secret reference to the URL (env:SLACK_WEBHOOK).
	URLRef string `json:"urlRef,omitempty"`
	// Format is generic (default) or slack.
	Format string `json:"format,omitempty"`
}

// SendInput is the `with` of a notify.send step.
type SendInput struct {
	Webhooks  []Webhook      `json:"webhooks"`
	Event     string         `json:"event"`
	Title     string         `json:"title,omitempty"`
	Text      string         `json:"text,omitempty"`
	Run       string         `json:"run,omitempty"`
	Gate      string         `json:"gate,omitempty"`
	Approvers []string       `json:"approvers,omitempty"`
	Fields    map[string]any `json:"fields,omitempty"`
}

// SendOutput counts the webhooks that accepted the message.
type SendOutput struct {
	Sent int `json:"sent"`
}

// GenericPayload is the document POSTed to generic webhooks.
type GenericPayload struct {
	Event     string         `json:"event"`
	Title     string         `json:"title"`
	Text      string         `json:"text,omitempty"`
	Run       string         `json:"run,omitempty"`
	Gate      string         `json:"gate,omitempty"`
	Approvers []string       `json:"approvers,omitempty"`
	Fields    map[string]any `json:"fields,omitempty"`
	At        time.Time      `json:"at"`
	// ID is the same for every attempt of one step, so receivers can drop
	// the duplicates a retry may send.
	ID string `json:"id,omitempty"`
}

// sentProgress is the heartbeat detail that carries which webhooks already
// took the message to the next attempt, so a retry after one webhook
// failed does not post to the others again. Best effort: the SDK sends the
// first heartbeat at once but throttles later ones, so with three or more
// webhooks a retry can still repeat one; generic receivers can dedupe on
// the payload's id.
type sentProgress struct {
	Sent []int `json:"sent"`
}

// Send posts the notification to every webhook. Webhooks that accepted it
// in an earlier attempt of the same step are skipped.
func (a *Activities) Send(ctx context.Context, in SendInput) (SendOutput, error) {
	if len(in.Webhooks) == 0 {
		return SendOutput{}, invalid("webhooks: at least one is required")
	}
	if !slices.Contains(Events, in.Event) {
		return SendOutput{}, invalid(fmt.Sprintf("event %q: want one of %s", in.Event, strings.Join(Events, ", ")))
	}
	if in.Title == "" && in.Text == "" {
		return SendOutput{}, invalid("title or text is required")
	}
	// Resolve and check every webhook before sending to any, so a typo in
	// the third does not leave the first two notified and the step failed.
	targets := make([]target, len(in.Webhooks))
	for i, w := range in.Webhooks {
		t, err := a.resolve(ctx, i, w)
		if err != nil {
			return SendOutput{}, err
		}
		targets[i] = t
	}

	var progress sentProgress
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &progress)
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	generic := GenericPayload{
		Event: in.Event, Title: in.Title, Text: in.Text, Run: in.Run, Gate: in.Gate,
		Approvers: in.Approvers, Fields: in.Fields, At: now().UTC(), ID: idempotencyKey(ctx),
	}

	var failures []string
	allPermanent := true
	for i, t := range targets {
		if slices.Contains(progress.Sent, i) {
			continue
		}
		var body any = generic
		if t.format == FormatSlack {
			body = slackPayload(in)
		}
		if err := a.post(ctx, t, body); err != nil {
			if ctx.Err() != nil {
				return SendOutput{}, ctx.Err()
			}
			failures = append(failures, err.msg)
			allPermanent = allPermanent && err.permanent
			if activity.IsActivity(ctx) {
				activity.GetLogger(ctx).Warn("webhook failed", "webhook", t.name)
			}
			continue
		}
		progress.Sent = append(progress.Sent, i)
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, progress)
		}
	}
	if len(failures) > 0 {
		msg := fmt.Sprintf("%d of %d webhook(s) failed: %s", len(failures), len(targets), strings.Join(failures, "; "))
		if allPermanent {
			return SendOutput{}, temporal.NewNonRetryableApplicationError(msg, activities.ErrNotifyRejected, nil)
		}
		return SendOutput{}, temporal.NewApplicationError(msg, activities.ErrNotifyFailed)
	}
	return SendOutput{Sent: len(progress.Sent)}, nil
}

func invalid(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, activities.ErrInvalidArguments, nil)
}

// idempotencyKey names this step of this run, the same for every attempt.
func idempotencyKey(ctx context.Context) string {
	if !activity.IsActivity(ctx) {
		return ""
	}
	info := activity.GetInfo(ctx)
	return info.WorkflowExecution.ID + "/" + info.WorkflowExecution.RunID + "/" + info.ActivityID
}

// target is a resolved webhook. name is how errors and logs refer to it.
type target struct {
	url    string
	format string
	name   string
	secret bool
}

func (a *Activities) resolve(ctx context.Context, i int, w Webhook) (target, error) {
	label := fmt.Sprintf("webhook %d", i+1)
	t := target{format: w.Format}
	if t.format == "" {
		t.format = FormatGeneric
	}
	if t.format != FormatGeneric && t.format != FormatSlack {
		return t, invalid(fmt.Sprintf("%s: format %q: want generic or slack", label, w.Format))
	}
	switch {
	case w.URL != "" && w.URLRef != "":
		return t, invalid(label + ": give url or urlRef, not both")
	case w.URLRef != "":
		v, err := a.resolveSecret(ctx, w.URLRef)
		if refused := secrets.Refusal(err); refused != nil {
			return t, refused
		}
		if err != nil {
			return t, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", label, err), activities.ErrSecretUnavailable, nil)
		}
		t.url, t.secret = strings.TrimSpace(v), true
	case w.URL != "":
		t.url = w.URL
	default:
		return t, invalid(label + ": url or urlRef is required")
	}
	u, err := url.Parse(t.url)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// Never echo the value: it may be the secret.
		return t, invalid(label + ": not an http(s) URL")
	}
	if !t.secret && (u.User != nil || strings.HasSuffix(u.Hostname(), "hooks.slack.com")) {
		// The URL is in the workflow history already; refuse so the
		// runbook gets fixed rather than leaking on every run.
		return t, invalid(fmt.Sprintf("%s (%s): this URL carries a secret; pass it as urlRef (env:NAME), not url", label, u.Hostname()))
	}
	t.name = fmt.Sprintf("%s (%s)", label, u.Hostname())
	return t, nil
}

func (a *Activities) resolveSecret(ctx context.Context, ref string) (string, error) {
	// The value is the webhook's URL: its host is where it goes, checked
	// by the secret policy once read and before anything is posted.
	return secrets.ResolveFor(ctx, a.Secrets, ref, secrets.Use{HostInValue: true})
}

type postError struct {
	msg       string
	permanent bool
}

// post sends one payload. Its error text names the webhook by host only and
// never wraps the transport error, whose text contains the full URL.
func (a *Activities) post(ctx context.Context, t target, body any) *postError {
	b, err := json.Marshal(body)
	if err != nil {
		return &postError{msg: fmt.Sprintf("%s: encode payload: %v", t.name, err), permanent: true}
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(b))
	if err != nil {
		return &postError{msg: t.name + ": bad request", permanent: true}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "stagehand")
	client := a.HTTPClient
	if client == nil {
		client = noRedirects
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		reason := scrub(err.Error(), t.url)
		if errors.Is(err, context.DeadlineExceeded) {
			reason = fmt.Sprintf("no answer within %s", timeout)
		}
		return &postError{msg: fmt.Sprintf("%s: POST failed after %s: %s", t.name, time.Since(start).Round(time.Millisecond), reason)}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	detail := strings.TrimSpace(scrub(string(snippet), t.url))
	if len(detail) > 200 {
		detail = detail[:200] + "…"
	}
	msg := fmt.Sprintf("%s: HTTP %d", t.name, resp.StatusCode)
	if detail != "" {
		msg += ": " + strconv.Quote(detail)
	}
	permanent := resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests
	return &postError{msg: msg, permanent: permanent}
}

// scrub removes the URL, and its path alone, from a message a receiver or
// the transport produced.
func scrub(s, rawURL string) string {
	s = strings.ReplaceAll(s, rawURL, "[webhook URL]")
	if u, err := url.Parse(rawURL); err == nil && len(u.Path) > 1 {
		s = strings.ReplaceAll(s, u.Path, "[path]")
	}
	return s
}

// StepTypes binds the notify step to its spec in activities/steps. a may be
// a zero Activities (tests that only need the catalogue).
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{activities.Implement(steps.Spec("notify.send"), a.Send)}
}

// noRedirects posts without following redirects: a webhook URL from a
// urlRef is itself the secret and the policy allowed its host only, while
// Go's client would repost the body to the new host (307, 308) with the
// URL as Referer. A redirect is reported like any other non-2xx answer.
var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}
