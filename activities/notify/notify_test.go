package notify

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities"
)

// receiver is a webhook endpoint that records what it was sent and answers
// with the next status in its script (200 when the script runs out).
type receiver struct {
	mu       sync.Mutex
	bodies   [][]byte
	headers  []http.Header
	statuses []int
	reply    string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, b)
	r.headers = append(r.headers, req.Header.Clone())
	status := http.StatusOK
	if len(r.statuses) > 0 {
		status, r.statuses = r.statuses[0], r.statuses[1:]
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, r.reply)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func newReceiver(t *testing.T, statuses ...int) (*receiver, string) {
	t.Helper()
	r := &receiver{statuses: statuses, reply: "ok"}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

var fixedNow = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

func newActivities() *Activities {
	return &Activities{Timeout: 5 * time.Second, Now: func() time.Time { return fixedNow }}
}

type stepEnv struct {
	env        *testsuite.TestActivityEnvironment
	mu         sync.Mutex
	heartbeats []sentProgress
}

func newStepEnv(a *Activities) *stepEnv {
	var suite testsuite.WorkflowTestSuite
	s := &stepEnv{env: suite.NewTestActivityEnvironment()}
	step := StepTypes(a)[0]
	s.env.RegisterActivityWithOptions(step.Handler, activity.RegisterOptions{Name: step.Name})
	s.env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
		var p sentProgress
		if d.HasValues() && d.Get(&p) == nil {
			s.mu.Lock()
			s.heartbeats = append(s.heartbeats, p)
			s.mu.Unlock()
		}
	})
	return s
}

func (s *stepEnv) run(t *testing.T, with map[string]any) (map[string]any, error) {
	t.Helper()
	val, err := s.env.ExecuteActivity("notify.send", activities.StepRequest{StepID: "tell", With: with})
	if err != nil {
		return nil, err
	}
	var res activities.StepResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res.Outputs, nil
}

func runStep(t *testing.T, a *Activities, with map[string]any) (map[string]any, error) {
	t.Helper()
	return newStepEnv(a).run(t, with)
}

func wantAppError(t *testing.T, err error, errType string, nonRetryable bool, want []string, forbidden ...string) {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("want a %s ApplicationError, got %v", errType, err)
	}
	if ae.Type() != errType || ae.NonRetryable() != nonRetryable {
		t.Errorf("error %v: type %q nonRetryable %v, want %q %v", err, ae.Type(), ae.NonRetryable(), errType, nonRetryable)
	}
	var msg strings.Builder
	for e := err; e != nil; e = errors.Unwrap(e) {
		msg.WriteString(e.Error() + "\n")
	}
	for _, w := range want {
		if !strings.Contains(msg.String(), w) {
			t.Errorf("error %q does not contain %q", msg.String(), w)
		}
	}
	for _, f := range forbidden {
		if strings.Contains(msg.String(), f) {
			t.Errorf("error %q leaks %q", msg.String(), f)
		}
	}
}

func gateOpened(webhooks ...map[string]any) map[string]any {
	hooks := make([]any, len(webhooks))
	for i, w := range webhooks {
		hooks[i] = w
	}
	return map[string]any{
		"webhooks": hooks, "event": "gate_opened", "title": "Approve production merge",
		"text": "PR #42 is healthy in sandbox <see checks> & waiting", "run": "patch-42-abc", "gate": "merge",
		"approvers": []any{"alice", "bob"}, "fields": map[string]any{"image": "reg/backstage-portal/backend:pr-42-1a2b3c4d-1763780000", "pr": 42},
	}
}

func TestSendGeneric(t *testing.T) {
	rcv, url := newReceiver(t)
	out, err := runStep(t, newActivities(), gateOpened(map[string]any{"url": url + "/hooks/stagehand"}))
	if err != nil {
		t.Fatal(err)
	}
	if out["sent"] != float64(1) {
		t.Errorf("outputs %v", out)
	}
	if rcv.count() != 1 {
		t.Fatalf("%d posts", rcv.count())
	}
	if ct := rcv.headers[0].Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got GenericPayload
	if err := json.Unmarshal(rcv.bodies[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.Event != "gate_opened" || got.Title != "Approve production merge" || got.Run != "patch-42-abc" || got.Gate != "merge" ||
		strings.Join(got.Approvers, ",") != "alice,bob" || !got.At.Equal(fixedNow) || got.ID == "" ||
		got.Fields["image"] != "reg/backstage-portal/backend:pr-42-1a2b3c4d-1763780000" || got.Fields["pr"] != float64(42) ||
		got.Text != "PR #42 is healthy in sandbox <see checks> & waiting" {
		t.Errorf("payload %+v", got)
	}
}

func TestSendSlack(t *testing.T) {
	rcv, url := newReceiver(t)
	t.Setenv("STAGEHAND_TEST_SLACK_URL", url+"/services/T000/B000/XSECRETX")
	out, err := runStep(t, newActivities(), gateOpened(map[string]any{"urlRef": "env:STAGEHAND_TEST_SLACK_URL", "format": "slack"}))
	if err != nil {
		t.Fatal(err)
	}
	if out["sent"] != float64(1) || rcv.count() != 1 {
		t.Fatalf("outputs %v, %d posts", out, rcv.count())
	}
	var got SlackMessage
	if err := json.Unmarshal(rcv.bodies[0], &got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.Text, "Approve production merge: PR #42") {
		t.Errorf("fallback text %q", got.Text)
	}
	var types []string
	for _, b := range got.Blocks {
		types = append(types, b.Type)
	}
	if strings.Join(types, ",") != "header,section,section,context" {
		t.Fatalf("blocks %v", types)
	}
	if h := got.Blocks[0].Text; h.Type != "plain_text" || !strings.Contains(h.Text, "Approve production merge") {
		t.Errorf("header %+v", h)
	}
	if s := got.Blocks[1].Text; s.Type != "mrkdwn" || s.Text != "PR #42 is healthy in sandbox &lt;see checks&gt; &amp; waiting" {
		t.Errorf("section %+v (mrkdwn must be escaped)", s)
	}
	if f := got.Blocks[2].Fields; len(f) != 2 || f[0].Text != "*image*\nreg/backstage-portal/backend:pr-42-1a2b3c4d-1763780000" || f[1].Text != "*pr*\n42" {
		t.Errorf("fields %+v", f)
	}
	ctx := got.Blocks[3].Elements[0].Text
	for _, w := range []string{"patch-42-abc", "gate `merge`", "alice, bob", "gate_opened"} {
		if !strings.Contains(ctx, w) {
			t.Errorf("context %q lacks %q", ctx, w)
		}
	}
}

func TestSendFailures(t *testing.T) {
	const secretPath = "/services/T000/B000/XSECRETX"
	cases := []struct {
		name      string
		status    int
		reply     string
		errType   string
		permanent bool
	}{
		{"500", 500, "internal error", activities.ErrNotifyFailed, false},
		{"429", 429, "rate_limited", activities.ErrNotifyFailed, false},
		{"404 revoked", 404, "no_service", activities.ErrNotifyRejected, true},
		{"400 echoing the URL", 400, "invalid_payload for " + secretPath, activities.ErrNotifyRejected, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rcv, url := newReceiver(t, c.status)
			rcv.reply = c.reply
			t.Setenv("STAGEHAND_TEST_SLACK_URL", url+secretPath)
			_, err := runStep(t, newActivities(), gateOpened(map[string]any{"urlRef": "env:STAGEHAND_TEST_SLACK_URL", "format": "slack"}))
			host := strings.TrimPrefix(url, "http://")
			host = host[:strings.LastIndex(host, ":")]
			wantAppError(t, err, c.errType, c.permanent, []string{"webhook 1 (" + host + ")", "HTTP " + c.name[:3]}, "XSECRETX", secretPath)
		})
	}
}

func TestSendNetworkErrorDoesNotLeakURL(t *testing.T) {
	t.Setenv("STAGEHAND_TEST_SLACK_URL", "http://127.0.0.1:1/services/T000/B000/XSECRETX")
	_, err := runStep(t, newActivities(), gateOpened(map[string]any{"urlRef": "env:STAGEHAND_TEST_SLACK_URL", "format": "slack"}))
	wantAppError(t, err, activities.ErrNotifyFailed, false, []string{"webhook 1 (127.0.0.1)", "POST failed", "connection refused"}, "XSECRETX", "/services/")
}

func TestSendTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	a := newActivities()
	a.Timeout = 200 * time.Millisecond
	_, err := runStep(t, a, gateOpened(map[string]any{"url": srv.URL}))
	wantAppError(t, err, activities.ErrNotifyFailed, false, []string{"no answer within 200ms"})
}

// A retry after one webhook failed posts only to the webhooks that have not
// taken the message yet.
func TestSendRetrySkipsDelivered(t *testing.T) {
	ok, okURL := newReceiver(t)
	flaky, flakyURL := newReceiver(t, 503)
	s := newStepEnv(newActivities())
	with := gateOpened(map[string]any{"url": okURL}, map[string]any{"url": flakyURL})

	_, err := s.run(t, with)
	wantAppError(t, err, activities.ErrNotifyFailed, false, []string{"1 of 2 webhook(s) failed", "webhook 2", "HTTP 503"})
	s.mu.Lock()
	if len(s.heartbeats) == 0 {
		s.mu.Unlock()
		t.Fatal("no progress heartbeat recorded")
	}
	last := s.heartbeats[len(s.heartbeats)-1]
	s.mu.Unlock()

	// What the next attempt sees: the progress the failed one recorded.
	s.env.SetHeartbeatDetails(last)
	out, err := s.run(t, with)
	if err != nil {
		t.Fatal(err)
	}
	if out["sent"] != float64(2) {
		t.Errorf("outputs %v", out)
	}
	if ok.count() != 1 || flaky.count() != 2 {
		t.Errorf("posts: ok %d (want 1), flaky %d (want 2)", ok.count(), flaky.count())
	}
}

// One webhook rejecting for good does not stop the others; the step fails
// non-retryably only when every failure is permanent.
func TestSendMixedFailures(t *testing.T) {
	gone, goneURL := newReceiver(t, 410)
	down, downURL := newReceiver(t, 502)
	good, goodURL := newReceiver(t)
	_, err := runStep(t, newActivities(), gateOpened(map[string]any{"url": goneURL}, map[string]any{"url": downURL}, map[string]any{"url": goodURL}))
	wantAppError(t, err, activities.ErrNotifyFailed, false, []string{"2 of 3", "HTTP 410", "HTTP 502"})
	if gone.count() != 1 || down.count() != 1 || good.count() != 1 {
		t.Errorf("posts %d %d %d", gone.count(), down.count(), good.count())
	}
}

func TestSendInvalidArguments(t *testing.T) {
	t.Setenv("STAGEHAND_TEST_NOT_A_URL", "xoxb-not-a-url-SECRET")
	cases := []struct {
		name      string
		with      map[string]any
		errType   string
		want      string
		forbidden string
	}{
		{"no webhooks", map[string]any{"webhooks": []any{}, "event": "custom", "title": "x"}, activities.ErrInvalidArguments, "at least one", ""},
		{"unknown event", map[string]any{"webhooks": []any{map[string]any{"url": "http://h/x"}}, "event": "deployed", "title": "x"}, activities.ErrInvalidArguments, `event "deployed"`, ""},
		{"no title or text", map[string]any{"webhooks": []any{map[string]any{"url": "http://h/x"}}, "event": "custom"}, activities.ErrInvalidArguments, "title or text", ""},
		{"bad format", map[string]any{"webhooks": []any{map[string]any{"url": "http://h/x", "format": "teams"}}, "event": "custom", "title": "x"}, activities.ErrInvalidArguments, `format "teams"`, ""},
		{"slack URL in plain text", map[string]any{"webhooks": []any{map[string]any{"url": "https://hooks.slack.com/services/T/B/PLAINSECRET"}}, "event": "custom", "title": "x"}, activities.ErrInvalidArguments, "pass it as urlRef", "PLAINSECRET"},
		{"both url and urlRef", map[string]any{"webhooks": []any{map[string]any{"url": "http://h/x", "urlRef": "env:X"}}, "event": "custom", "title": "x"}, activities.ErrInvalidArguments, "not both", ""},
		{"ref is not a URL", map[string]any{"webhooks": []any{map[string]any{"urlRef": "env:STAGEHAND_TEST_NOT_A_URL"}}, "event": "custom", "title": "x"}, activities.ErrInvalidArguments, "not an http(s) URL", "SECRET"},
		{"unset ref", map[string]any{"webhooks": []any{map[string]any{"urlRef": "env:STAGEHAND_TEST_UNSET"}}, "event": "custom", "title": "x"}, activities.ErrSecretUnavailable, "env:STAGEHAND_TEST_UNSET", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runStep(t, newActivities(), c.with)
			var forbidden []string
			if c.forbidden != "" {
				forbidden = append(forbidden, c.forbidden)
			}
			wantAppError(t, err, c.errType, true, []string{c.want}, forbidden...)
		})
	}
}

func TestSlackPayloadLimits(t *testing.T) {
	fields := map[string]any{}
	for i := range 15 {
		fields[string(rune('a'+i))] = i
	}
	msg := slackPayload(SendInput{Event: "run_failed", Title: strings.Repeat("T", 300), Fields: fields})
	if n := len([]rune(msg.Blocks[0].Text.Text)); n > slackHeaderMax {
		t.Errorf("header of %d characters", n)
	}
	if n := len(msg.Blocks[1].Fields); n != slackFieldsMax {
		t.Errorf("%d fields, want %d", n, slackFieldsMax)
	}
}
