package app_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
)

// cli runs the real temporal CLI against srv and fails the test on error.
func cli(t *testing.T, ctx context.Context, srv *devserver.Server, args ...string) {
	t.Helper()
	out, err := srv.Command(ctx, args...).CombinedOutput()
	require.NoError(t, err, "temporal %s: %s", strings.Join(args, " "), out)
}

// runPrintedCommands runs every `temporal ...` line of a start-up refusal, as
// a person pasting them would, proving they are right for the pinned CLI.
func runPrintedCommands(t *testing.T, ctx context.Context, srv *devserver.Server, msg string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "temporal ") {
			continue
		}
		cli(t, ctx, srv, strings.Fields(line)[1:]...)
		n++
	}
	return n
}

// newApp builds the worker the way stagehand-worker does, dialing its own
// client, so the check runs on the real start-up path.
func newApp(ctx context.Context, srv *devserver.Server) (*app.App, error) {
	cfg := config.Defaults()
	cfg.Temporal.Address = srv.Address
	cfg.Temporal.Namespace = srv.Namespace
	return app.New(ctx, cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// TestStartupRefusesNamespaceLackingSearchAttributes reproduces the server
// that wedged runs: it has the six attributes the README once listed but not
// StagehandPR and StagehandFailedStep. The worker must refuse to start,
// naming exactly those two with their create commands, and start once the
// printed commands have been run. A wrong-typed attribute is refused too.
func TestStartupRefusesNamespaceLackingSearchAttributes(t *testing.T) {
	// A server of its own: removing attributes would break other tests.
	srv := devserver.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli(t, ctx, srv, "operator", "search-attribute", "remove", "--name", "StagehandPR", "--name", "StagehandFailedStep", "--yes")

	_, err := newApp(ctx, srv)
	var sae *app.SearchAttributesError
	require.True(t, errors.As(err, &sae), "want a SearchAttributesError, got %v", err)
	assert.Equal(t, []string{"StagehandPR", "StagehandFailedStep"}, names(sae.Missing))
	assert.Empty(t, sae.WrongType)
	msg := err.Error()
	t.Logf("start-up refusal:\n%s", msg)
	assert.Contains(t, msg, "on the Temporal server at "+srv.Address)
	assert.Contains(t, msg, "temporal operator search-attribute create --namespace default --name StagehandPR --type Keyword\n")
	assert.Contains(t, msg, "temporal operator search-attribute create --namespace default --name StagehandFailedStep --type Keyword\n")
	assert.Equal(t, 2, runPrintedCommands(t, ctx, srv, msg))

	a := startsEventually(t, ctx, srv)
	assert.True(t, a.SearchAttributesVerified)
	a.Stop()

	// Registered, but as Text: upserting a keyword fails the same way.
	cli(t, ctx, srv, "operator", "search-attribute", "remove", "--name", "StagehandPR", "--yes")
	cli(t, ctx, srv, "operator", "search-attribute", "create", "--name", "StagehandPR", "--type", "Text")
	_, err = newApp(ctx, srv)
	require.True(t, errors.As(err, &sae), "want a SearchAttributesError, got %v", err)
	assert.Empty(t, sae.Missing)
	require.Len(t, sae.WrongType, 1)
	assert.Equal(t, "StagehandPR", sae.WrongType[0].Name())
	assert.Equal(t, "Text", sae.WrongType[0].Registered)
	assert.Equal(t, 2, runPrintedCommands(t, ctx, srv, err.Error()), "remove, then create")
	startsEventually(t, ctx, srv).Stop()
}

// startsEventually builds the worker until the check passes: a namespace's
// search attributes may reach the frontend's cache a moment after the
// command that changed them returned.
func startsEventually(t *testing.T, ctx context.Context, srv *devserver.Server) *app.App {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, err := newApp(ctx, srv)
		if err == nil {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker still refuses to start 30s after the printed commands ran: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
