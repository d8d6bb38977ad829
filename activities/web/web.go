// Package web holds the HTTP step types: `web.smoke` checks a set of URLs
// under one base URL until they all answer as expected (or a timeout runs
// out), with presets for the endpoints that prove a Backstage portal works
// (readiness, catalog, sign-in, templates, docs); `web.get` fetches one URL.
//
// Secrets never travel through workflow history: a check names a token by
// reference (tokenRef: "env:BACKSTAGE_TOKEN"), the activity resolves it
// from the worker's environment, sends it as a Bearer token, and keeps it
// out of logs, outputs and errors (response snippets are also scrubbed of
// the token and of anything shaped like a JWT, since Backstage's sign-in
// endpoints answer with identity tokens in their bodies).
package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// Activities holds the web steps' clients.
type Activities struct {
	// Client sends the requests; nil uses defaultClient. Each request is
	// bounded by the step's requestTimeout, not by the client.
	Client *http.Client
	// LookupEnv resolves "env:NAME" token references; nil uses
	// os.LookupEnv. Tests inject their own.
	LookupEnv func(string) (string, bool)
	// Secrets resolves the other schemes (secret:NAME/KEY); nil allows
	// env:NAME only.
	Secrets secrets.Resolver
}

// StepTypes binds the web steps to their specs in activities/steps.
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{
		activities.Implement(steps.Spec("web.smoke"), a.Smoke),
		activities.Implement(steps.Spec("web.get"), a.Get),
	}
}

// defaultClient does not follow redirects: a check sees the answer of the
// URL it names. A portal behind SSO answers its pages with a redirect to
// the identity provider, and following it would test the provider (often
// unreachable from the worker) instead of the portal; a check that wants
// to accept it says expectStatus: [200, 302].
var defaultClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (a *Activities) client() *http.Client {
	if a != nil && a.Client != nil {
		return a.Client
	}
	return defaultClient
}

func (a *Activities) lookupEnv(name string) (string, bool) {
	if a != nil && a.LookupEnv != nil {
		return a.LookupEnv(name)
	}
	return os.LookupEnv(name)
}

// resolveToken turns a secret reference into its value: env:NAME from the
// worker's environment (a Kubernetes Secret mounted as env, a systemd
// EnvironmentFile), or, where the worker resolves it, secret:NAME/KEY.
// With a worker's Resolver every reference goes through it, so its secret
// policy decides whether this step may send the token to u's host; a
// refusal comes back as a *secrets.NotAllowedError (see secrets.Refusal).
// Errors name the reference, never a value.
func (a *Activities) resolveToken(ctx context.Context, ref string, u *url.URL) (string, error) {
	if ref == "" {
		return "", nil
	}
	scheme, name, ok := strings.Cut(ref, ":")
	if a != nil && a.Secrets != nil {
		v, err := secrets.ResolveFor(ctx, a.Secrets, ref, secrets.Use{Host: hostOf(u), Plaintext: u != nil && u.Scheme == "http"})
		if err != nil {
			if secrets.Refusal(err) != nil {
				return "", err
			}
			return "", fmt.Errorf("tokenRef %q: %v", ref, err)
		}
		return strings.TrimSpace(v), nil
	}
	if !ok || scheme != "env" || name == "" {
		return "", fmt.Errorf("tokenRef %q: want env:NAME (a variable in the worker's environment)", ref)
	}
	v, found := a.lookupEnv(name)
	if !found || strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("tokenRef %q: %s is not set in the worker's environment", ref, name)
	}
	return strings.TrimSpace(v), nil
}

// hostOf is where a request to u goes, with the scheme's default port.
func hostOf(u *url.URL) string {
	if u == nil {
		return ""
	}
	h, _ := secrets.URLHost(u.String())
	return h
}

// parseDuration reads an optional Go duration with a default.
func parseDuration(field, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s: must be positive, got %s", field, s)
	}
	return d, nil
}

// parseBase validates a base URL: absolute http(s).
func parseBase(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("url is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url %q: want an absolute http:// or https:// URL", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("url %q: no host", raw)
	}
	return u, nil
}

// join appends a check's path (which may carry a query) to the base URL,
// keeping the base's own path prefix (a portal served under /backstage).
func join(base *url.URL, path string) (*url.URL, error) {
	if strings.Contains(path, "://") {
		return nil, fmt.Errorf("path %q: want a path under url, not an absolute URL", path)
	}
	ref, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", path, err)
	}
	u := *base
	u.Path = strings.TrimSuffix(base.Path, "/") + "/" + strings.TrimPrefix(ref.Path, "/")
	u.RawPath = ""
	u.RawQuery = ref.RawQuery
	u.Fragment = ""
	return &u, nil
}

// displayURL is a URL fit for outputs and errors: any user:password in it
// is dropped, since outputs land in workflow history.
func displayURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// forbiddenHeaders carry credentials; they would be recorded in workflow
// history as plain `with` values, so checks must use tokenRef instead.
var forbiddenHeaders = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
}

func checkHeaders(h map[string]string) error {
	for k := range h {
		if forbiddenHeaders[strings.ToLower(k)] {
			return fmt.Errorf("header %q carries credentials and would be stored in workflow history; use tokenRef instead", k)
		}
	}
	return nil
}
