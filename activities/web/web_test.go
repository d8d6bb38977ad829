package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities"
)

// runStep runs a step type through Temporal's test activity environment,
// so the `with` decoding, heartbeats and error conversion are the real
// ones. It returns the outputs, the error, and the heartbeats recorded.
func runStep(t *testing.T, a *Activities, name string, with map[string]any) (map[string]any, error, []string) {
	t.Helper()
	return execStep(a, name, with)
}

// execStep is runStep without a *testing.T, for use off the test goroutine.
func execStep(a *Activities, name string, with map[string]any) (map[string]any, error, []string) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	var mu sync.Mutex
	var beats []string
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var s string
		if details.HasValues() && details.Get(&s) == nil {
			mu.Lock()
			beats = append(beats, s)
			mu.Unlock()
		}
	})
	for _, st := range StepTypes(a) {
		env.RegisterActivityWithOptions(st.Handler, activity.RegisterOptions{Name: st.Name})
	}
	// Round-trip `with` through JSON, as the workflow's payload would.
	b, err := json.Marshal(with)
	if err != nil {
		return nil, err, nil
	}
	var w map[string]any
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err, nil
	}
	val, err := env.ExecuteActivity(name, activities.StepRequest{StepID: "smoke", With: w})
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		return nil, err, beats
	}
	var res activities.StepResult
	if err := val.Get(&res); err != nil {
		return nil, err, beats
	}
	return res.Outputs, nil, append([]string(nil), beats...)
}

func appError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an ApplicationError", err, err)
	}
	return ae
}

func decodeSmoke(t *testing.T, m map[string]any) SmokeOutput {
	t.Helper()
	b, _ := json.Marshal(m)
	var out SmokeOutput
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStatusList(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
		ok, bad []int
	}{
		{in: `200`, ok: []int{200}, bad: []int{201, 500}},
		{in: `"2xx"`, ok: []int{200, 204, 299}, bad: []int{301, 500}},
		{in: `[200, 401]`, ok: []int{200, 401}, bad: []int{404, 503}},
		{in: `["1xx","2xx","3xx","4xx"]`, ok: []int{200, 302, 404}, bad: []int{500, 503}},
		{in: `null`, ok: []int{200}, bad: []int{204}},
		{in: `"abc"`, wantErr: true},
		{in: `99`, wantErr: true},
		{in: `200.5`, wantErr: true},
		{in: `"6xx"`, wantErr: true},
		{in: `[true]`, wantErr: true},
	}
	for _, tt := range tests {
		var s StatusList
		err := json.Unmarshal([]byte(tt.in), &s)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		for _, c := range tt.ok {
			if !s.Match(c) {
				t.Errorf("%s: %d should match", tt.in, c)
			}
		}
		for _, c := range tt.bad {
			if s.Match(c) {
				t.Errorf("%s: %d should not match", tt.in, c)
			}
		}
	}
	if got := (StatusList{"200", "401"}).String(); got != "200 or 401" {
		t.Errorf("String = %q", got)
	}
}

func TestSnippet(t *testing.T) {
	long := strings.Repeat("x", 1000)
	if s := Snippet([]byte(long)); len(s) > snippetLimit+len("…") || !strings.HasSuffix(s, "…") {
		t.Errorf("long body: len %d, %q...", len(s), s[:20])
	}
	if s := Snippet([]byte("a\x00b\r\n\tc\x1b[31m  d")); s != "a b c [31m d" {
		t.Errorf("control chars: %q", s)
	}
	// A multi-byte rune at the cut must not be split.
	multi := strings.Repeat("é", 400)
	if s := Snippet([]byte(multi)); !utf8.ValidString(s) {
		t.Errorf("cut inside a rune: %q", s)
	}
	if s := Snippet([]byte("bad \xff\xfe utf8")); !utf8.ValidString(s) || !strings.Contains(s, "bad ?? utf8") {
		t.Errorf("invalid utf-8: %q", s)
	}
	jwt := "eyJ0eXAiOiJ2bmQuYmFja3N0YWdlLnVzZXIiLCJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyOmRldmVsb3BtZW50L2d1ZXN0In0.c2lnbmF0dXJl"
	s := Snippet([]byte(`{"backstageIdentity":{"token":"` + jwt + `"}}`))
	if strings.Contains(s, "eyJ") || !strings.Contains(s, "[redacted token]") {
		t.Errorf("JWT not redacted: %q", s)
	}
	// A JWT that straddles the cut must not leave a prefix behind.
	s = Snippet([]byte(strings.Repeat("y", 280) + jwt))
	if strings.Contains(s, "eyJ") {
		t.Errorf("JWT prefix left at the cut: %q", s)
	}
	if s := Snippet([]byte("echo s3cr3t-token here"), "s3cr3t-token"); strings.Contains(s, "s3cr3t") {
		t.Errorf("secret not redacted: %q", s)
	}
	if s := Snippet(nil); s != "" {
		t.Errorf("empty body: %q", s)
	}
}

func TestPlanRejectsBadInput(t *testing.T) {
	ok := Check{Name: "x", Path: "/x"}
	tests := []struct {
		name string
		in   SmokeInput
		want string
	}{
		{"no url", SmokeInput{Checks: []Check{ok}}, "url is required"},
		{"relative url", SmokeInput{URL: "portal.local", Checks: []Check{ok}}, "absolute http"},
		{"no checks", SmokeInput{URL: "http://h"}, "at least one check"},
		{"bad timeout", SmokeInput{URL: "http://h", Timeout: "soon", Checks: []Check{ok}}, "timeout"},
		{"negative interval", SmokeInput{URL: "http://h", Interval: "-1s", Checks: []Check{ok}}, "interval: must be positive"},
		{"unknown preset", SmokeInput{URL: "http://h", Checks: []Check{{Preset: "search"}}}, `unknown preset "search"`},
		{"no path", SmokeInput{URL: "http://h", Checks: []Check{{Name: "x"}}}, "path or preset is required"},
		{"bad regex", SmokeInput{URL: "http://h", Checks: []Check{{Path: "/", BodyMatches: "("}}}, "bodyMatches"},
		{"credential header", SmokeInput{URL: "http://h", Checks: []Check{{Path: "/", Headers: map[string]string{"authorization": "Bearer x"}}}}, "use tokenRef"},
		{"cookie header", SmokeInput{URL: "http://h", Checks: []Check{{Path: "/", Headers: map[string]string{"Cookie": "s=1"}}}}, "use tokenRef"},
		{"duplicate", SmokeInput{URL: "http://h", Checks: []Check{{Preset: "catalog"}, {Preset: "catalog"}}}, `duplicate name "catalog"`},
		{"absolute path", SmokeInput{URL: "http://h", Checks: []Check{{Path: "http://other/x"}}}, "not an absolute URL"},
		{"provider without signin", SmokeInput{URL: "http://h", Checks: []Check{{Path: "/", Provider: "github"}}}, "provider"},
		{"provider on catalog", SmokeInput{URL: "http://h", Checks: []Check{{Preset: "catalog", Provider: "github"}}}, "provider"},
		{"bad method", SmokeInput{URL: "http://h", Checks: []Check{{Path: "/", Method: "FETCH"}}}, `method "FETCH"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := plan(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("plan = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestPresetsAndJoin(t *testing.T) {
	p, err := plan(SmokeInput{URL: "https://portal.example.com/backstage/", Checks: []Check{
		{Preset: "readiness"},
		{Preset: "catalog"},
		{Preset: "signin", Provider: "microsoft"},
		{Preset: "templates"},
		{Preset: "docs"},
		{Name: "custom", Preset: "catalog", Path: "/api/catalog/entities?filter=kind=system", ExpectStatus: StatusList{"2xx"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, url, expect string }{
		{"readiness", "https://portal.example.com/backstage/.backstage/health/v1/readiness", "200"},
		{"catalog", "https://portal.example.com/backstage/api/catalog/entities?limit=1", "200"},
		{"signin", "https://portal.example.com/backstage/api/auth/microsoft/refresh", "200 or 401"},
		{"templates", "https://portal.example.com/backstage/api/catalog/entities?filter=kind=template", "200"},
		{"docs", "https://portal.example.com/backstage/api/techdocs/", "1xx, 2xx, 3xx or 4xx"},
		{"custom", "https://portal.example.com/backstage/api/catalog/entities?filter=kind=system", "2xx"},
	}
	for i, w := range want {
		c := p.checks[i]
		if c.name != w.name || c.url.String() != w.url || c.expect.String() != w.expect {
			t.Errorf("check %d = %s %s want %s; want %s %s want %s", i, c.name, c.url, c.expect, w.name, w.url, w.expect)
		}
	}
	if p.checks[2].headers["X-Requested-With"] != "XMLHttpRequest" {
		t.Errorf("signin preset lacks X-Requested-With: %v", p.checks[2].headers)
	}
}

// flaky answers 503 for the first n requests, then 200.
func flaky(n int32, okBody string) (http.Handler, *atomic.Int32) {
	var count atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1) <= n {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":{"name":"ServiceUnavailableError","message":"not ready"}}`)
			return
		}
		fmt.Fprint(w, okBody)
	}), &count
}

func TestSmokeRetriesUntilPass(t *testing.T) {
	ready, readyCount := flaky(3, `{"status":"ok"}`)
	mux := http.NewServeMux()
	mux.Handle("/.backstage/health/v1/readiness", ready)
	mux.HandleFunc("/api/catalog/entities", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("limit") != "1" {
			http.Error(w, "want limit=1", 400)
			return
		}
		fmt.Fprint(w, `[{"kind":"Component"}]`)
	})
	mux.HandleFunc("/api/auth/guest/refresh", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401)
		fmt.Fprint(w, `{"error":{"name":"AuthenticationError"}}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	out, err, beats := runStep(t, &Activities{}, "web.smoke", map[string]any{
		"url":      srv.URL,
		"timeout":  "10s",
		"interval": "10ms",
		"checks": []any{
			map[string]any{"preset": "readiness"},
			map[string]any{"preset": "catalog"},
			map[string]any{"preset": "signin"},
			map[string]any{"name": "body", "path": "/api/catalog/entities?limit=1", "bodyMatches": `"kind":\s*"Component"`, "bodyContains": "Component"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := decodeSmoke(t, out)
	if res.Passed != 4 {
		t.Fatalf("passed = %d, want 4: %+v", res.Passed, res)
	}
	if res.Checks[0].Attempts != 4 || readyCount.Load() != 4 {
		t.Errorf("readiness attempts = %d (server saw %d), want 4", res.Checks[0].Attempts, readyCount.Load())
	}
	// Checks that passed are not asked again while others retry.
	if res.Checks[1].Attempts != 1 {
		t.Errorf("catalog attempts = %d, want 1", res.Checks[1].Attempts)
	}
	if res.Checks[1].URL != srv.URL+"/api/catalog/entities?limit=1" || res.Checks[1].Status != 200 || !res.Checks[1].OK {
		t.Errorf("catalog result = %+v", res.Checks[1])
	}
	// The other checks wait for readiness, as Backstage's routes 404
	// until their plugins are mounted.
	if want := "0/4 checks passing; readiness: 503; 3 waiting for readiness"; len(beats) == 0 || beats[0] != want {
		t.Errorf("heartbeats = %q, want the first to be %q", beats, want)
	}
}

func TestSmokeOthersWaitForReadiness(t *testing.T) {
	var catalogHits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/.backstage/health/v1/readiness", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		fmt.Fprint(w, `{"message":"Backend has not started yet","status":"error"}`)
	})
	mux.HandleFunc("/api/catalog/entities", func(w http.ResponseWriter, r *http.Request) {
		catalogHits.Add(1)
		fmt.Fprint(w, `[]`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	_, err, _ := runStep(t, &Activities{}, "web.smoke", map[string]any{
		"url": srv.URL, "timeout": "100ms", "interval": "20ms",
		"checks": []any{map[string]any{"preset": "catalog"}, map[string]any{"preset": "readiness"}},
	})
	msg := activities.CleanMessage(appError(t, err))
	for _, w := range []string{
		"2 of 2 smoke checks failed",
		"catalog: GET " + srv.URL + "/api/catalog/entities?limit=1: not tried, readiness never passed",
		"readiness: GET " + srv.URL + `/.backstage/health/v1/readiness: want 200, got 503: {"message":"Backend has not started yet","status":"error"}`,
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("message lacks %q:\n%s", w, msg)
		}
	}
	if n := catalogHits.Load(); n != 0 {
		t.Errorf("catalog asked %d times before readiness passed", n)
	}
}

func TestSmokeTimeoutNamesFailingCheck(t *testing.T) {
	body := `{"error":{"name":"ServiceUnavailableError","message":"catalog not ready"}}` + strings.Repeat(" padding", 100)
	mux := http.NewServeMux()
	mux.HandleFunc("/.backstage/health/v1/readiness", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("/api/catalog/entities", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		fmt.Fprint(w, body)
	})
	mux.HandleFunc("/api/catalog/entities/by-query", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"items":"nope"}`) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	_, err, _ := runStep(t, &Activities{}, "web.smoke", map[string]any{
		"url": srv.URL, "timeout": "300ms", "interval": "50ms",
		"checks": []any{
			map[string]any{"preset": "readiness"},
			map[string]any{"preset": "catalog"},
			map[string]any{"name": "query", "preset": "catalog", "path": "/api/catalog/entities/by-query"},
		},
	})
	ae := appError(t, err)
	if ae.Type() != "SmokeCheckFailed" || !ae.NonRetryable() {
		t.Fatalf("type %q nonRetryable %v, want SmokeCheckFailed, non-retryable", ae.Type(), ae.NonRetryable())
	}
	msg := activities.CleanMessage(ae)
	wants := []string{
		"2 of 3 smoke checks failed after",
		`catalog: GET ` + srv.URL + `/api/catalog/entities?limit=1: want 200, got 503: {"error":{"name":"ServiceUnavailableError","message":"catalog not ready"}}`,
		`query: GET ` + srv.URL + `/api/catalog/entities/by-query: want 200, got 200 but the body is not a JSON list of entities: {"items":"nope"}`,
	}
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("message lacks %q:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, "readiness:") {
		t.Errorf("message names the passing check: %s", msg)
	}
	if len(msg) > 2000 {
		t.Errorf("message is %d bytes; snippets should be truncated", len(msg))
	}
}

func TestSmokeConnectionRefusedIsRetriedThenReported(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err, _ = runStep(t, &Activities{}, "web.smoke", map[string]any{
		"url": "http://" + addr, "timeout": "200ms", "interval": "20ms",
		"checks": []any{map[string]any{"preset": "readiness"}},
	})
	ae := appError(t, err)
	msg := activities.CleanMessage(ae)
	if ae.Type() != "SmokeCheckFailed" || !strings.Contains(msg, "readiness: GET http://"+addr+"/.backstage/health/v1/readiness: want 200, got no response: ") ||
		!strings.Contains(msg, "connection refused") {
		t.Fatalf("type %s, message %s", ae.Type(), msg)
	}
	var attempts int
	if _, err := fmt.Sscanf(msg[strings.LastIndex(msg, "(")+1:], "%d attempts", &attempts); err != nil || attempts < 2 {
		t.Errorf("want several attempts within the timeout, message %s", msg)
	}
}

func TestSmokeBodyChecksAndPresetsExpectations(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/techdocs/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	mux.HandleFunc("/api/auth/nope/refresh", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		fmt.Fprint(w, `{"error":{"name":"NotFoundError","message":"Unknown auth provider 'nope'"}}`)
	})
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>Welcome to Backstage</html>") })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	_, err, _ := runStep(t, &Activities{}, "web.smoke", map[string]any{
		"url": srv.URL, "timeout": "100ms", "interval": "20ms",
		"checks": []any{
			map[string]any{"preset": "docs"}, // 404 at the root is fine
			map[string]any{"preset": "signin", "provider": "nope"},
			map[string]any{"name": "contains", "path": "/page", "bodyContains": "Spotify"},
			map[string]any{"name": "matches", "path": "/page", "bodyMatches": "^Welcome"},
			map[string]any{"name": "ok", "path": "/page", "bodyMatches": "Welcome to \\w+"},
		},
	})
	msg := activities.CleanMessage(appError(t, err))
	for _, w := range []string{
		"3 of 5 smoke checks failed",
		`signin: GET ` + srv.URL + `/api/auth/nope/refresh: want 200 or 401, got 404: {"error":{"name":"NotFoundError","message":"Unknown auth provider 'nope'"}}`,
		`contains: GET ` + srv.URL + `/page: want 200, got 200 but the body does not contain "Spotify": <html>Welcome to Backstage</html>`,
		`matches: GET ` + srv.URL + `/page: want 200, got 200 but the body does not match /^Welcome/`,
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("message lacks %q:\n%s", w, msg)
		}
	}
	for _, not := range []string{"docs:", "ok:"} {
		if strings.Contains(msg, not) {
			t.Errorf("message names passing check %q: %s", not, msg)
		}
	}
}

func TestSmokeTokenRef(t *testing.T) {
	const secret = "tok-9f8e7d6c5b4a"
	mux := http.NewServeMux()
	mux.HandleFunc("/api/catalog/entities", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			w.WriteHeader(401)
			fmt.Fprintf(w, `{"error":"Illegal token %s"}`, r.Header.Get("Authorization"))
			return
		}
		fmt.Fprint(w, `[]`)
	})
	// A server that echoes the token it was sent, as some error pages do.
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		fmt.Fprintf(w, "bad request with header %s", r.Header.Get("Authorization"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	env := map[string]string{"BACKSTAGE_TOKEN": secret}
	a := &Activities{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}

	out, err, beats := runStep(t, a, "web.smoke", map[string]any{
		"url": srv.URL, "tokenRef": "env:BACKSTAGE_TOKEN",
		"checks": []any{map[string]any{"preset": "catalog"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(out); strings.Contains(string(b), secret) {
		t.Errorf("outputs leak the token: %s", b)
	}
	if strings.Contains(strings.Join(beats, "\n"), secret) {
		t.Errorf("heartbeats leak the token")
	}

	_, err, beats = runStep(t, a, "web.smoke", map[string]any{
		"url": srv.URL, "timeout": "50ms", "interval": "10ms",
		"checks": []any{map[string]any{"name": "echo", "path": "/echo", "tokenRef": "env:BACKSTAGE_TOKEN"}},
	})
	ae := appError(t, err)
	var details SmokeOutput
	_ = ae.Details(&details)
	b, _ := json.Marshal(details)
	if msg := err.Error(); strings.Contains(msg, secret) || strings.Contains(string(b), secret) || strings.Contains(strings.Join(beats, "\n"), secret) {
		t.Fatalf("token leaked: %s / %s", msg, b)
	}
	if !strings.Contains(err.Error(), "bad request with header Bearer [redacted]") {
		t.Errorf("want the echoed token redacted in the snippet: %s", err)
	}

	// Without the token the real check fails with 401, and names no value.
	_, err, _ = runStep(t, &Activities{LookupEnv: func(string) (string, bool) { return "", false }}, "web.smoke", map[string]any{
		"url": srv.URL, "checks": []any{map[string]any{"preset": "catalog", "tokenRef": "env:BACKSTAGE_TOKEN"}},
	})
	ae = appError(t, err)
	if ae.Type() != "SecretNotFound" || !ae.NonRetryable() || !strings.Contains(err.Error(), `tokenRef "env:BACKSTAGE_TOKEN": BACKSTAGE_TOKEN is not set`) {
		t.Errorf("missing secret: type %s, %v", ae.Type(), err)
	}
	_, err, _ = runStep(t, a, "web.smoke", map[string]any{
		"url": srv.URL, "checks": []any{map[string]any{"preset": "catalog", "tokenRef": "vault:secret/x"}},
	})
	if ae := appError(t, err); ae.Type() != "SecretNotFound" || !strings.Contains(err.Error(), "want env:NAME") {
		t.Errorf("bad scheme: %v", err)
	}

	// With the worker's resolver, secret:NAME/KEY works too (a Kubernetes
	// Secret on a real worker), and its failures name the reference only.
	withSecrets := &Activities{Secrets: func(_ context.Context, ref string) (string, error) {
		if ref == "secret:portal/token" {
			return secret, nil
		}
		return "", fmt.Errorf("Secret %s not found", strings.TrimPrefix(ref, "secret:"))
	}}
	if _, err, _ := runStep(t, withSecrets, "web.smoke", map[string]any{
		"url": srv.URL, "checks": []any{map[string]any{"preset": "catalog", "tokenRef": "secret:portal/token"}},
	}); err != nil {
		t.Errorf("secret: reference: %v", err)
	}
	_, err, _ = runStep(t, withSecrets, "web.smoke", map[string]any{
		"url": srv.URL, "checks": []any{map[string]any{"preset": "catalog", "tokenRef": "secret:portal/other"}},
	})
	if ae := appError(t, err); ae.Type() != "SecretNotFound" || !strings.Contains(err.Error(), `tokenRef "secret:portal/other": resolve secret:portal/other: Secret portal/other not found`) {
		t.Errorf("missing Secret: %v", err)
	}
}

func TestSmokeRejectsUnknownKeysAndBadArgs(t *testing.T) {
	_, err, _ := runStep(t, &Activities{}, "web.smoke", map[string]any{
		"url": "http://127.0.0.1:1", "checks": []any{map[string]any{"preset": "catalog", "expectStatuses": 200}},
	})
	if ae := appError(t, err); ae.Type() != "InvalidArguments" || !ae.NonRetryable() {
		t.Errorf("unknown key: %v", err)
	}
	_, err, _ = runStep(t, &Activities{}, "web.smoke", map[string]any{
		"url": "http://127.0.0.1:1", "checks": []any{map[string]any{"preset": "nope"}},
	})
	if ae := appError(t, err); ae.Type() != "InvalidArguments" || !strings.Contains(err.Error(), `checks[0]: unknown preset "nope"`) {
		t.Errorf("bad preset: %v", err)
	}
}

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(405)
		}
		fmt.Fprint(w, "hello\n\x00world")
	}))
	defer srv.Close()
	out, err, _ := runStep(t, &Activities{}, "web.get", map[string]any{"url": srv.URL + "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if out["status"] != float64(200) || out["body"] != "hello world" {
		t.Errorf("outputs = %v", out)
	}
	_, err, _ = runStep(t, &Activities{}, "web.get", map[string]any{"url": srv.URL, "method": "post", "expectStatus": []any{200, 204}})
	ae := appError(t, err)
	if ae.Type() != "UnexpectedStatus" || ae.NonRetryable() || !strings.Contains(err.Error(), "POST "+srv.URL+": want 200 or 204, got 405") {
		t.Errorf("unexpected status: %v", err)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			http.Redirect(w, r, "https://login.example.invalid/authorize", http.StatusFound)
			return
		}
		t.Errorf("unexpected request %s", r.URL)
	}))
	defer srv.Close()
	out, err, _ := runStep(t, &Activities{}, "web.smoke", map[string]any{
		"url": srv.URL, "checks": []any{map[string]any{"name": "home", "path": "/", "expectStatus": []any{200, 302}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := decodeSmoke(t, out); res.Checks[0].Status != 302 {
		t.Errorf("status %d, want the redirect itself (302)", res.Checks[0].Status)
	}
}
