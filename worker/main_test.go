package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/internal/enginetest"
	"github.com/stagehand-dev/stagehand/internal/mysqltest"
	"github.com/stagehand-dev/stagehand/worker/config"
)

func noEnv(string) string { return "" }

func TestRunReportsBadInput(t *testing.T) {
	dir := t.TempDir()
	badRunbook := filepath.Join(dir, "runbooks")
	assert.NoError(t, os.Mkdir(badRunbook, 0o755))
	assert.NoError(t, os.WriteFile(filepath.Join(badRunbook, "x.yaml"), []byte("name: x\nsteps:\n  - id: a\n    uses: nope\n"), 0o644))
	typo := filepath.Join(dir, "typo.yaml")
	assert.NoError(t, os.WriteFile(typo, []byte("temporal: {adress: x}\n"), 0o644))

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, 0, "stagehand-worker runs"},
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"missing config", []string{"--config", filepath.Join(dir, "missing.yaml")}, 2, "read config"},
		{"config typo", []string{"--config", typo}, 2, `field adress not found`},
		{"bad runbook dir", []string{"--runbooks-dir", badRunbook, "--address", "127.0.0.1:1"}, 1, `x.yaml:4:5: steps[0].uses: unknown step type "nope"`},
		{"unreachable temporal", []string{"--address", "127.0.0.1:1"}, 1, "connect to Temporal at 127.0.0.1:1"},
		{"bad log level", []string{"--log-level", "loud"}, 1, `log.level "loud"`},
		{"cache size zero", []string{"--workflow-cache-size", "0"}, 2, `invalid value "0" for flag -workflow-cache-size: 0 is outside 1..100000`},
		{"cache size not a number", []string{"--workflow-cache-size", "lots"}, 2, `"lots" is not a whole number`},
		{"stop timeout not a duration", []string{"--stop-timeout", "soon"}, 2, `invalid value "soon" for flag -stop-timeout`},
		{"one workflow poller", []string{"--workflow-task-pollers", "1"}, 2, `1 is outside 2..100`},
		{"stop timeout too long", []string{"--stop-timeout", "2h"}, 1, `worker.stopTimeout 2h0m0s: want 1s..1h0m0s`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(tc.args, &stderr, noEnv)
			assert.Equal(t, tc.code, code, stderr.String())
			assert.Contains(t, stderr.String(), tc.want)
		})
	}
}

// Worker options come from the file, then STAGEHAND_* variables, then
// flags; an unusable variable is named in the error.
func TestWorkerOptionsPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "worker.yaml")
	require.NoError(t, os.WriteFile(file, []byte("worker: {workflowCacheSize: 0, stopTimeout: 10s}\n"), 0o644))
	env := func(vars map[string]string) config.Getenv { return func(k string) string { return vars[k] } }

	var stderr bytes.Buffer
	code := run([]string{"--config", file, "--log-level", "loud"}, &stderr, noEnv)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "worker.workflowCacheSize 0: want 1..100000", "the file's value is checked")

	stderr.Reset()
	code = run([]string{"--config", file, "--log-level", "loud"}, &stderr, env(map[string]string{"STAGEHAND_WORKFLOW_CACHE_SIZE": "250"}))
	assert.Equal(t, 1, code)
	assert.NotContains(t, stderr.String(), "workflowCacheSize", "the variable overrides the file")

	stderr.Reset()
	code = run([]string{"--log-level", "loud"}, &stderr, env(map[string]string{"STAGEHAND_MAX_CONCURRENT_ACTIVITIES": "-3"}))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "STAGEHAND_MAX_CONCURRENT_ACTIVITIES: -3 is outside 1..10000")

	stderr.Reset()
	code = run([]string{"--log-level", "loud", "--stop-timeout", "20s"}, &stderr, env(map[string]string{"STAGEHAND_STOP_TIMEOUT": "3h"}))
	assert.Equal(t, 1, code)
	assert.NotContains(t, stderr.String(), "stopTimeout", "the flag overrides the variable")
}

// runReturns runs the command as main does, failing the test if it has not
// returned within a minute: a worker that got past its start-up checks would
// poll until signalled.
func runReturns(t *testing.T, args ...string) (int, string) {
	t.Helper()
	type result struct {
		code int
		out  string
	}
	done := make(chan result, 1)
	go func() {
		var stderr bytes.Buffer
		code := run(args, &stderr, noEnv)
		done <- result{code, stderr.String()}
	}()
	select {
	case r := <-done:
		return r.code, r.out
	case <-time.After(time.Minute):
		t.Fatalf("stagehand-worker %s did not return within a minute: it started polling", strings.Join(args, " "))
		return 0, ""
	}
}

// TestStartupNeedsEverySearchAttribute: against a real server whose
// namespace has six of the eight search attributes (the six the README once
// listed), both `--check` and a plain start exit 1 before polling, naming
// exactly the two missing ones with the command that creates each; once
// they exist, --check passes.
func TestStartupNeedsEverySearchAttribute(t *testing.T) {
	srv := devserver.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	temporal := func(args ...string) {
		t.Helper()
		out, err := srv.Command(ctx, args...).CombinedOutput()
		require.NoError(t, err, "temporal %s: %s", strings.Join(args, " "), out)
	}
	temporal("operator", "search-attribute", "remove", "--name", "StagehandPR", "--name", "StagehandFailedStep", "--yes")

	createPR := "temporal operator search-attribute create --namespace default --name StagehandPR --type Keyword"
	createFailedStep := "temporal operator search-attribute create --namespace default --name StagehandFailedStep --type Keyword"
	for _, args := range [][]string{
		{"--address", srv.Address, "--check"},
		{"--address", srv.Address, "--task-queue", "never-polled"},
	} {
		code, out := runReturns(t, args...)
		t.Logf("stagehand-worker %s → exit %d:\n%s", strings.Join(args, " "), code, out)
		assert.Equal(t, 1, code)
		assert.Contains(t, out, "stagehand-worker: namespace \"default\" on the Temporal server at "+srv.Address+" lacks 2 of the 8 search attributes")
		assert.Equal(t, []string{"StagehandPR (Keyword)", "StagehandFailedStep (Keyword)"}, linesAfter(out, "  missing:    "))
		assert.Empty(t, linesAfter(out, "  wrong type: "))
		assert.Contains(t, out, "\n  "+createPR+"\n")
		assert.Contains(t, out, "\n  "+createFailedStep+"\n")
		assert.NotContains(t, out, "worker started")
	}

	temporal(strings.Fields(createPR)[1:]...)
	temporal(strings.Fields(createFailedStep)[1:]...)
	// The frontend may serve the namespace's attributes from a cache for a
	// moment after the create returned.
	deadline := time.Now().Add(30 * time.Second)
	code, out := runReturns(t, "--address", srv.Address, "--check")
	for code != 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		code, out = runReturns(t, "--address", srv.Address, "--check")
	}
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "stagehand-worker: configuration OK; namespace default has all 8 search attributes")
}

func linesAfter(out, prefix string) []string {
	var got []string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			got = append(got, rest)
		}
	}
	return got
}

// TestCheckConnectsToDatabasesAndEngine: --check connects to every
// configured database with its resolved password and to the image engine,
// reports each, and exits 1 naming the one that refuses the worker — without
// ever printing a password.
func TestCheckConnectsToDatabasesAndEngine(t *testing.T) {
	srv := devserver.New(t)
	maria := mysqltest.New(t)
	engine := enginetest.Shared(t)
	_, err := maria.Exec(context.Background(), "CREATE DATABASE backstage_plugin_catalog; CREATE DATABASE backstage_plugin_auth;")
	require.NoError(t, err)
	t.Setenv("CHECK_DB_PASSWORD", maria.Password)
	t.Setenv("CHECK_WRONG_PASSWORD", "wrong-check-password")
	cfg := filepath.Join(t.TempDir(), "worker.yaml")
	write := func(body string) {
		require.NoError(t, os.WriteFile(cfg, []byte(body), 0o600))
	}
	good := fmt.Sprintf(`docker: {host: %q}
databases:
  portal: {driver: mysql, host: %s, port: %d, user: %s, passwordRef: env:CHECK_DB_PASSWORD}
`, engine.Host, maria.Host, maria.Port, maria.User)
	write(good)
	code, out := runReturns(t, "--config", cfg, "--address", srv.Address, "--check")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "database portal: OK, 2 plugin databases (backstage_plugin_auth, backstage_plugin_catalog)")
	assert.Regexp(t, `image engine: OK, .*API 1\.\d+`, out)

	write(good + fmt.Sprintf("  wrong: {driver: mysql, host: %s, port: %d, user: %s, passwordRef: env:CHECK_WRONG_PASSWORD}\n", maria.Host, maria.Port, maria.User))
	code, out = runReturns(t, "--config", cfg, "--address", srv.Address, "--check")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "database wrong: FAILED")
	assert.Contains(t, out, "Access denied")
	assert.Contains(t, out, "database portal: OK")
	assert.NotContains(t, out, "wrong-check-password")
	assert.NotContains(t, out, maria.Password)
}
