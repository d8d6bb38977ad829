package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// GetInput is the `with` of a web.get step.
type GetInput struct {
	// URL is the absolute URL to request.
	URL string `json:"url"`
	// Method defaults to GET.
	Method       string     `json:"method,omitempty"`
	ExpectStatus StatusList `json:"expectStatus,omitempty"`
	// Headers are extra, non-secret headers (credentials go in tokenRef).
	Headers map[string]string `json:"headers,omitempty"`
	// TokenRef names a Bearer token, e.g. "env:BACKSTAGE_TOKEN".
	TokenRef string `json:"tokenRef,omitempty"`
	// RequestTimeout bounds the request (default "30s").
	RequestTimeout string `json:"requestTimeout,omitempty"`
}

// GetOutput is the step's outputs.
type GetOutput struct {
	Status int `json:"status"`
	// Body is a sanitized snippet of the response (first ~300 bytes).
	Body      string `json:"body"`
	ElapsedMs int64  `json:"elapsedMs"`
}

// Get makes one request. An unexpected status or no response is a
// retryable error (type UnexpectedStatus / RequestFailed), so the runbook's
// retry policy decides how long to keep trying; web.smoke is the step for
// waiting until something comes up.
func (a *Activities) Get(ctx context.Context, in GetInput) (GetOutput, error) {
	bad := func(err error) (GetOutput, error) {
		return GetOutput{}, temporal.NewNonRetryableApplicationError("web.get: "+err.Error(), activities.ErrInvalidArguments, nil)
	}
	u, err := parseBase(in.URL)
	if err != nil {
		return bad(err)
	}
	rt, err := parseDuration("requestTimeout", in.RequestTimeout, 30*time.Second)
	if err != nil {
		return bad(err)
	}
	if err := checkHeaders(in.Headers); err != nil {
		return bad(err)
	}
	token, err := a.resolveToken(ctx, in.TokenRef, u)
	if refused := secrets.Refusal(err); refused != nil {
		return GetOutput{}, refused
	}
	if err != nil {
		return GetOutput{}, temporal.NewNonRetryableApplicationError("web.get: "+err.Error(), activities.ErrSecretNotFound, nil)
	}
	method := strings.ToUpper(in.Method)
	if method == "" {
		method = http.MethodGet
	}
	spec := checkSpec{name: "get", method: method, url: u, expect: in.ExpectStatus, headers: in.Headers}
	start := time.Now()
	res, body := a.do(ctx, spec, token, rt)
	out := GetOutput{Status: res.status, Body: Snippet(body, token), ElapsedMs: time.Since(start).Milliseconds()}
	if err := ctx.Err(); err != nil {
		return GetOutput{}, err
	}
	if !res.ok {
		typ := activities.ErrUnexpectedStatus
		if res.status == 0 {
			typ = activities.ErrRequestFailed
		}
		return out, temporal.NewApplicationError(fmt.Sprintf("web.get: %s %s: want %s, %s", method, displayURL(u), spec.expect, res.problem), typ)
	}
	return out, nil
}
