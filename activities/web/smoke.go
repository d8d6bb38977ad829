package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// SmokeInput is the `with` of a web.smoke step.
type SmokeInput struct {
	// URL is the base URL the checks' paths are appended to.
	URL    string  `json:"url"`
	Checks []Check `json:"checks"`
	// Timeout bounds the whole step (default "2m"): checks that have not
	// passed by then fail it.
	Timeout string `json:"timeout,omitempty"`
	// Interval is the pause between attempts of a failing check (default "2s").
	Interval string `json:"interval,omitempty"`
	// RequestTimeout bounds one request (default "10s").
	RequestTimeout string `json:"requestTimeout,omitempty"`
	// TokenRef is the default tokenRef of every check that sets none.
	TokenRef string `json:"tokenRef,omitempty"`
}

// Check is one smoke check.
type Check struct {
	// Name identifies the check in outputs and errors; defaults to the
	// preset name, else the path.
	Name string `json:"name,omitempty"`
	// Preset fills path and expectations for a Backstage endpoint:
	// readiness, catalog, signin, templates, docs. Fields set on the
	// check override the preset's; catalog and templates also require a
	// JSON list body (an array, or an object with an items array).
	Preset string `json:"preset,omitempty"`
	// Provider is the sign-in provider of the signin preset (default guest).
	Provider string `json:"provider,omitempty"`
	// Path (with optional query) under the base URL.
	Path string `json:"path,omitempty"`
	// Method defaults to GET.
	Method       string     `json:"method,omitempty"`
	ExpectStatus StatusList `json:"expectStatus,omitempty"`
	// BodyContains must appear in the response body.
	BodyContains string `json:"bodyContains,omitempty"`
	// BodyMatches is a regular expression (Go syntax) the body must match.
	BodyMatches string `json:"bodyMatches,omitempty"`
	// Headers are extra, non-secret request headers; credentials belong
	// in tokenRef (Authorization and Cookie are refused).
	Headers map[string]string `json:"headers,omitempty"`
	// TokenRef names a secret sent as "Authorization: Bearer <token>",
	// e.g. "env:BACKSTAGE_TOKEN" (resolved from the worker's environment).
	TokenRef string `json:"tokenRef,omitempty"`
}

// SmokeOutput is the step's outputs.
type SmokeOutput struct {
	Checks []CheckResult `json:"checks"`
	// Passed counts the checks that passed.
	Passed int `json:"passed"`
}

// CheckResult is one check's outcome.
type CheckResult struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Status is the last HTTP status seen (0: no response).
	Status int `json:"status"`
	// ElapsedMs is the time from the step's start to the check passing
	// (or to its last attempt).
	ElapsedMs int64 `json:"elapsedMs"`
	Attempts  int   `json:"attempts"`
	OK        bool  `json:"ok"`
}

// preset is what a preset contributes to a check.
type preset struct {
	path   string
	expect StatusList
	// jsonList: the body must be a JSON array, or an object with an
	// "items" array (the catalog's paginated /entities/by-query shape).
	jsonList bool
	headers  map[string]string
}

// presetFor returns a Backstage preset. The paths are the ones the
// Backstage backend (backend-defaults 0.18, catalog 3.9) serves.
func presetFor(name, provider string) (preset, error) {
	switch name {
	case "readiness":
		// 503 until every plugin has initialised (migrations included).
		return preset{path: "/.backstage/health/v1/readiness", expect: StatusList{"200"}}, nil
	case "catalog":
		return preset{path: "/api/catalog/entities?limit=1", expect: StatusList{"200"}, jsonList: true}, nil
	case "signin":
		if provider == "" {
			provider = "guest"
		}
		if strings.ContainsAny(provider, "/?#") {
			return preset{}, fmt.Errorf("provider %q: not a provider id", provider)
		}
		// A smoke check has no signed-in user, so it cannot complete a
		// sign-in; what it can prove is that the provider is wired. The
		// refresh endpoint of a configured provider answers: the guest
		// provider with 200 and an identity, an OAuth provider (Microsoft,
		// GitHub, ...) with 401 because there is no session cookie. An
		// unconfigured or unknown provider answers 404 ("Unknown auth
		// provider"), and a broken auth backend 5xx — those fail. The
		// X-Requested-With header is what Backstage's frontend sends; OAuth
		// refresh refuses requests without it.
		return preset{
			path:    "/api/auth/" + provider + "/refresh",
			expect:  StatusList{"200", "401"},
			headers: map[string]string{"X-Requested-With": "XMLHttpRequest"},
		}, nil
	case "templates":
		return preset{path: "/api/catalog/entities?filter=kind=template", expect: StatusList{"200"}, jsonList: true}, nil
	case "docs":
		// TechDocs serves nothing at its root (404 there is normal when it
		// is mounted), so only a server error counts as broken.
		return preset{path: "/api/techdocs/", expect: StatusList{"1xx", "2xx", "3xx", "4xx"}}, nil
	}
	return preset{}, fmt.Errorf("unknown preset %q (want readiness, catalog, signin, templates or docs)", name)
}

// checkSpec is a Check with its preset applied and everything parsed.
type checkSpec struct {
	name     string
	method   string
	url      *url.URL
	expect   StatusList
	contains string
	matches  *regexp.Regexp
	jsonList bool
	headers  map[string]string
	tokenRef string
	// gate: a readiness check; the other checks wait until it passes.
	gate bool
}

type smokePlan struct {
	checks         []checkSpec
	timeout        time.Duration
	interval       time.Duration
	requestTimeout time.Duration
}

// plan validates the input before any request: a bad runbook fails at
// once, not after the timeout.
func plan(in SmokeInput) (smokePlan, error) {
	var p smokePlan
	base, err := parseBase(in.URL)
	if err != nil {
		return p, err
	}
	if len(in.Checks) == 0 {
		return p, errors.New("checks: at least one check is required")
	}
	if p.timeout, err = parseDuration("timeout", in.Timeout, 2*time.Minute); err != nil {
		return p, err
	}
	if p.interval, err = parseDuration("interval", in.Interval, 2*time.Second); err != nil {
		return p, err
	}
	if p.requestTimeout, err = parseDuration("requestTimeout", in.RequestTimeout, 10*time.Second); err != nil {
		return p, err
	}
	seen := map[string]bool{}
	for i, c := range in.Checks {
		spec, err := buildCheck(base, c, in.TokenRef)
		if err != nil {
			return p, fmt.Errorf("checks[%d]: %w", i, err)
		}
		if seen[spec.name] {
			return p, fmt.Errorf("checks[%d]: duplicate name %q", i, spec.name)
		}
		seen[spec.name] = true
		p.checks = append(p.checks, spec)
	}
	return p, nil
}

func buildCheck(base *url.URL, c Check, defaultTokenRef string) (checkSpec, error) {
	s := checkSpec{
		name:     c.Name,
		method:   strings.ToUpper(c.Method),
		expect:   c.ExpectStatus,
		contains: c.BodyContains,
		headers:  map[string]string{},
		tokenRef: c.TokenRef,
	}
	path := c.Path
	if c.Preset != "" {
		ps, err := presetFor(c.Preset, c.Provider)
		if err != nil {
			return s, err
		}
		if path == "" {
			path = ps.path
		}
		if len(s.expect) == 0 {
			s.expect = ps.expect
		}
		s.jsonList = ps.jsonList
		for k, v := range ps.headers {
			s.headers[k] = v
		}
		if s.name == "" {
			s.name = c.Preset
		}
		s.gate = c.Preset == "readiness"
	}
	if c.Provider != "" && c.Preset != "signin" {
		return s, errors.New("provider: only meaningful with preset: signin")
	}
	if path == "" {
		return s, errors.New("path or preset is required")
	}
	if s.name == "" {
		s.name = path
	}
	switch s.method {
	case "":
		s.method = http.MethodGet
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return s, fmt.Errorf("method %q: want GET, HEAD, OPTIONS, POST, PUT, PATCH or DELETE", c.Method)
	}
	if s.tokenRef == "" {
		s.tokenRef = defaultTokenRef
	}
	if err := checkHeaders(c.Headers); err != nil {
		return s, err
	}
	for k, v := range c.Headers {
		s.headers[k] = v
	}
	if c.BodyMatches != "" {
		re, err := regexp.Compile(c.BodyMatches)
		if err != nil {
			return s, fmt.Errorf("bodyMatches: %w", err)
		}
		s.matches = re
	}
	u, err := join(base, path)
	if err != nil {
		return s, err
	}
	s.url = u
	return s, nil
}

// attempt is the outcome of one request.
type attempt struct {
	status int
	ok     bool
	// problem says why a failed attempt failed, snippet included.
	problem string
}

// maxBody bounds how much of a response is read for body checks.
const maxBody = 1 << 20

func (a *Activities) try(ctx context.Context, c checkSpec, token string, reqTimeout time.Duration) attempt {
	at, _ := a.do(ctx, c, token, reqTimeout)
	return at
}

// do makes one request and judges the answer; it also returns the body
// read (at most maxBody bytes) for web.get's snippet.
func (a *Activities) do(ctx context.Context, c checkSpec, token string, reqTimeout time.Duration) (attempt, []byte) {
	ctx, cancel := context.WithTimeout(ctx, reqTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.method, c.url.String(), nil)
	if err != nil {
		return attempt{problem: fmt.Sprintf("build request: %v", err)}, nil
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("User-Agent", "stagehand-web-smoke")
	resp, err := a.client().Do(req)
	if err != nil {
		return attempt{problem: "got no response: " + redact(requestError(err), token)}, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return attempt{status: resp.StatusCode, problem: fmt.Sprintf("got %d, reading body: %s", resp.StatusCode, redact(requestError(err), token))}, body
	}
	snip := func() string {
		if s := Snippet(body, token); s != "" {
			return ": " + s
		}
		return " (empty body)"
	}
	if !c.expect.Match(resp.StatusCode) {
		return attempt{status: resp.StatusCode, problem: fmt.Sprintf("got %d%s", resp.StatusCode, snip())}, body
	}
	if c.contains != "" && !strings.Contains(string(body), c.contains) {
		return attempt{status: resp.StatusCode, problem: fmt.Sprintf("got %d but the body does not contain %q%s", resp.StatusCode, c.contains, snip())}, body
	}
	if c.matches != nil && !c.matches.Match(body) {
		return attempt{status: resp.StatusCode, problem: fmt.Sprintf("got %d but the body does not match /%s/%s", resp.StatusCode, c.matches, snip())}, body
	}
	if c.jsonList && !isJSONList(body) {
		return attempt{status: resp.StatusCode, problem: fmt.Sprintf("got %d but the body is not a JSON list of entities%s", resp.StatusCode, snip())}, body
	}
	return attempt{status: resp.StatusCode, ok: true}, body
}

// isJSONList accepts the catalog's two list shapes: a bare array
// (/entities) or an object with an items array (/entities/by-query).
func isJSONList(body []byte) bool {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return false
	}
	switch t := v.(type) {
	case []any:
		return true
	case map[string]any:
		_, ok := t["items"].([]any)
		return ok
	}
	return false
}

// requestError drops the "Get \"url\": " prefix url.Error adds; the
// message already names the method and URL.
func requestError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "request timed out"
	}
	return err.Error()
}

func redact(s, secret string) string {
	if len(secret) >= 4 {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}

// Smoke runs the checks until all pass or the timeout runs out. Checks are
// tried in rounds: every round tries each check that has not passed yet
// (concurrently, so one slow endpoint does not starve the others), then
// waits `interval`. A check that passed stays passed: the step asks "did
// each endpoint come up", as a person clicking through the portal would.
//
// When the step has a readiness check (preset: readiness), the others wait
// for it: while Backstage initialises plugins, routes of plugins not yet
// mounted answer 404, which the docs preset would take as a pass and which
// would otherwise fill the error with noise that only says "not ready".
func (a *Activities) Smoke(ctx context.Context, in SmokeInput) (SmokeOutput, error) {
	p, err := plan(in)
	if err != nil {
		return SmokeOutput{}, temporal.NewNonRetryableApplicationError("web.smoke: "+err.Error(), activities.ErrInvalidArguments, nil)
	}
	// Resolve every token first: a missing secret is a configuration error
	// that no amount of retrying fixes.
	tokens := make([]string, len(p.checks))
	for i, c := range p.checks {
		tokens[i], err = a.resolveToken(ctx, c.tokenRef, c.url)
		if refused := secrets.Refusal(err); refused != nil {
			return SmokeOutput{}, refused
		}
		if err != nil {
			return SmokeOutput{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("web.smoke: check %q: %v", c.name, err), activities.ErrSecretNotFound, nil)
		}
	}

	start := time.Now()
	deadline := start.Add(p.timeout)
	results := make([]CheckResult, len(p.checks))
	last := make([]attempt, len(p.checks))
	for i, c := range p.checks {
		results[i] = CheckResult{Name: c.name, URL: displayURL(c.url)}
	}

	hb := newHeartbeater(ctx)
	defer hb.stop()

	gated := func() bool {
		for i, c := range p.checks {
			if c.gate && !results[i].OK {
				return true
			}
		}
		return false
	}
	for round := 0; ; round++ {
		var wg sync.WaitGroup
		waiting := gated()
		for i := range p.checks {
			if results[i].OK || (waiting && !p.checks[i].gate) {
				continue
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				// The last round must not outlive the step's timeout.
				rt := min(p.requestTimeout, max(time.Until(deadline), time.Second))
				at := a.try(ctx, p.checks[i], tokens[i], rt)
				last[i] = at
				results[i].Attempts++
				results[i].Status = at.status
				results[i].OK = at.ok
				results[i].ElapsedMs = time.Since(start).Milliseconds()
			}(i)
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			// Cancelled or the activity's own timeout: Temporal reports
			// that; our verdict would be a guess.
			return SmokeOutput{}, err
		}
		out := SmokeOutput{Checks: append([]CheckResult(nil), results...)}
		for _, r := range results {
			if r.OK {
				out.Passed++
			}
		}
		hb.set(progress(out, p.checks, last))
		if out.Passed == len(results) {
			return out, nil
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return out, smokeFailure(out, p, last, time.Since(start))
		}
		select {
		case <-ctx.Done():
			return SmokeOutput{}, ctx.Err()
		case <-time.After(min(p.interval, remaining)):
		}
	}
}

// progress is the heartbeat line: "3/5 checks passing; catalog: 503".
func progress(out SmokeOutput, checks []checkSpec, last []attempt) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d checks passing", out.Passed, len(out.Checks))
	waiting := 0
	for i, r := range out.Checks {
		if r.OK {
			continue
		}
		if r.Attempts == 0 {
			waiting++
			continue
		}
		if last[i].status != 0 {
			fmt.Fprintf(&b, "; %s: %d", checks[i].name, last[i].status)
		} else {
			fmt.Fprintf(&b, "; %s: no response", checks[i].name)
		}
	}
	if waiting > 0 {
		fmt.Fprintf(&b, "; %d waiting for readiness", waiting)
	}
	return b.String()
}

// smokeFailure is the step's error: every failing check with its method,
// URL, expectation and what came back. Non-retryable, because the step
// already retried for its whole timeout; retrying the activity would only
// multiply the wait.
func smokeFailure(out SmokeOutput, p smokePlan, last []attempt, elapsed time.Duration) error {
	var lines []string
	for i, r := range out.Checks {
		if r.OK {
			continue
		}
		c := p.checks[i]
		if r.Attempts == 0 {
			lines = append(lines, fmt.Sprintf("%s: %s %s: not tried, readiness never passed", c.name, c.method, r.URL))
			continue
		}
		lines = append(lines, fmt.Sprintf("%s: %s %s: want %s, %s (%d attempts)",
			c.name, c.method, r.URL, c.expect, last[i].problem, r.Attempts))
	}
	msg := fmt.Sprintf("%d of %d smoke checks failed after %s: %s",
		len(lines), len(out.Checks), elapsed.Round(time.Millisecond), strings.Join(lines, "; "))
	return temporal.NewNonRetryableApplicationError(msg, activities.ErrSmokeCheckFailed, nil, out)
}

// heartbeater records the latest progress every few seconds, independent
// of how long a request or interval takes, so a slow endpoint never makes
// the worker look dead to Temporal.
type heartbeater struct {
	ctx    context.Context
	active bool
	mu     sync.Mutex
	msg    string
	done   chan struct{}
	wg     sync.WaitGroup
}

func newHeartbeater(ctx context.Context) *heartbeater {
	h := &heartbeater{ctx: ctx, active: activity.IsActivity(ctx), done: make(chan struct{})}
	if !h.active {
		return h
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				h.mu.Lock()
				msg := h.msg
				h.mu.Unlock()
				activity.RecordHeartbeat(ctx, msg)
			}
		}
	}()
	return h
}

func (h *heartbeater) set(msg string) {
	h.mu.Lock()
	h.msg = msg
	h.mu.Unlock()
	if h.active {
		// The SDK batches heartbeats, so recording every round is cheap.
		activity.RecordHeartbeat(h.ctx, msg)
	}
}

func (h *heartbeater) stop() {
	close(h.done)
	h.wg.Wait()
}
