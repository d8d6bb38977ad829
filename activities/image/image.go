// Package image implements the image steps (image.build, image.push,
// image.tag) through the Docker Engine API with the official client, so the
// same steps drive dockerd, podman's Docker-API service or a remote engine.
//
// What it guards: a build context may only come from the directories the
// worker allows (docker.contextRoots), checked after resolving symlinks and
// `..` and before anything is sent to the engine; registry credentials are
// resolved from a secret reference for the one push that needs them and
// scrubbed from every message, log line and error; a build whose revision
// is already tagged is not built again, so retries and replays are cheap.
package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// Activities holds the engine connection settings of the image steps.
type Activities struct {
	// Host is the Docker Engine API address (unix:///path.sock,
	// tcp://host:port); "" means DOCKER_HOST and the client's defaults.
	Host string
	// APIVersion pins the API version; "" negotiates (podman reports 1.41).
	APIVersion string
	// ContextRoots are the directories a build context may come from,
	// compared after resolving symlinks. Empty refuses every build.
	ContextRoots []string
	// Scope narrows a context root to what the current run may use; nil
	// keeps the roots as they are. The worker narrows the git checkouts to
	// the run's own work trees, so a run builds only what it checked out.
	Scope func(ctx context.Context, root string) string
	// Resolve resolves passwordRef; nil resolves env:NAME only.
	Resolve secrets.Resolver
	// Logger receives the full build and push output (may be nil).
	Logger *slog.Logger

	mu  sync.Mutex
	cli *client.Client
	// recordHeartbeat replaces activity.RecordHeartbeat in tests: the
	// SDK throttles heartbeats (to one per 30 s in the test environment),
	// which hides what the step sends.
	recordHeartbeat func(ctx context.Context, details any)
}

// StepTypes binds the image steps to their specs in activities/steps. a may
// be a zero Activities (tests that only need the catalogue).
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{
		activities.Implement(steps.Spec("image.build"), a.Build),
		activities.Implement(steps.Spec("image.push"), a.Push),
		activities.Implement(steps.Spec("image.tag"), a.Tag),
	}
}

// engine returns the shared client, made on first use so that a worker
// whose engine is down still starts (its image steps fail with
// EngineUnavailable and are retried).
func (a *Activities) engine() (*client.Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cli != nil {
		return a.cli, nil
	}
	opts := []client.Opt{client.FromEnv}
	if a.Host != "" {
		opts = append(opts, client.WithHost(a.Host))
	}
	if a.APIVersion != "" {
		opts = append(opts, client.WithVersion(a.APIVersion))
	} else {
		opts = append(opts, client.WithAPIVersionNegotiation())
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, retryable(activities.ErrEngineUnavailable, fmt.Sprintf("docker engine client for %q: %v", a.hostForMessages(), err))
	}
	a.cli = c
	return c, nil
}

func (a *Activities) hostForMessages() string {
	if a.Host != "" {
		return a.Host
	}
	return "DOCKER_HOST"
}

// logger is the adapter's logger with the run and step ctx serves
// (activities.LogAttrs), so a build's lines can be told apart by run.
func (a *Activities) logger(ctx context.Context) *slog.Logger {
	if a.Logger != nil {
		return a.Logger.With(activities.LogAttrs(ctx)...)
	}
	return slog.New(slog.DiscardHandler)
}

// Errors carry no cause: a cause is serialised into workflow history with
// its full text, and lower layers' texts (the engine's, the registry's) are
// where credentials could be echoed. Messages are built from scrubbed parts.

func nonRetryable(errType, msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, errType, nil)
}

func retryable(errType, msg string) error {
	return temporal.NewApplicationError(msg, errType)
}

// unavailable reports whether err means the engine could not be reached
// (as opposed to the engine answering with an error).
func unavailable(err error) bool {
	if client.IsErrConnectionFailed(err) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

// engineUnavailable is the error for an unreachable engine.
func (a *Activities) engineUnavailable(op string, err error, red *secrets.Redactor) error {
	return retryable(activities.ErrEngineUnavailable,
		fmt.Sprintf("%s: image engine at %s unreachable: %s", op, a.hostForMessages(), red.Clean(bounded(err.Error(), 1000))))
}

// newRedactor scrubs the literal values of the credentials a step resolved
// (and the encodings it sends them in) from text that reaches logs,
// outputs or errors. Very short values would blank out ordinary words.
func newRedactor() *secrets.Redactor { return secrets.NewRedactor("REDACTED", 4) }

// bounded cuts s to at most n bytes (on a rune boundary), marking the cut.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// heartbeater records progress details while a long engine call runs:
// at once when the details change (a new build step), and at least every
// interval so that a quiet RUN step does not look like a lost worker.
type heartbeater struct {
	mu      sync.Mutex
	details any
	changed chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

func (a *Activities) startHeartbeats(ctx context.Context, interval time.Duration) *heartbeater {
	h := &heartbeater{changed: make(chan struct{}, 1), done: make(chan struct{})}
	if !activity.IsActivity(ctx) {
		return h
	}
	record := a.recordHeartbeat
	if record == nil {
		record = func(ctx context.Context, d any) { activity.RecordHeartbeat(ctx, d) }
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			case <-h.changed:
			}
			h.mu.Lock()
			d := h.details
			h.mu.Unlock()
			record(ctx, d)
		}
	}()
	return h
}

// set replaces the details; urgent ones are sent without waiting for the
// next tick (the SDK throttles what reaches the server).
func (h *heartbeater) set(details any, urgent bool) {
	h.mu.Lock()
	h.details = details
	h.mu.Unlock()
	if urgent {
		select {
		case h.changed <- struct{}{}:
		default:
		}
	}
}

func (h *heartbeater) stop() {
	close(h.done)
	h.wg.Wait()
}

// Check asks the configured engine for its version, for the worker's
// --check: an engine that is not running shows up when the worker is
// configured rather than at the first build.
func (a *Activities) Check(ctx context.Context) (string, error) {
	c, err := a.engine()
	if err != nil {
		return "", a.engineUnavailable("connect", err, newRedactor())
	}
	v, err := c.ServerVersion(ctx)
	if err != nil {
		return "", a.engineUnavailable("version", err, newRedactor())
	}
	return fmt.Sprintf("%s %s (API %s)", platformName(v.Platform.Name), v.Version, v.APIVersion), nil
}

func platformName(s string) string {
	if s == "" {
		return "engine"
	}
	return s
}
