package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// Activities runs the server.* steps for the worker's server environments.
type Activities struct {
	// Servers maps an environment's name to its process; a run may name
	// only these.
	Servers map[string]Config
	// Resolve resolves the secret references of a Config's Env; nil
	// resolves env:NAME only.
	Resolve secrets.Resolver
	// HTTP asks the health URLs; nil uses a client with a 5 s timeout that
	// does not follow redirects (a redirect is not "ready").
	HTTP *http.Client
	// Logger records starts and stops; nil drops them.
	Logger *slog.Logger
	// PollInterval is how often start and stop look at the process and the
	// health URL; default 250 ms.
	PollInterval time.Duration
	// HeartbeatInterval is how often a waiting step heartbeats; default 5 s.
	HeartbeatInterval time.Duration
	// RunTool runs systemctl and journalctl for Systemd environments; nil
	// runs the programs.
	RunTool ToolRunner

	mu sync.Mutex
	// envLocks serialises the steps of one environment in this worker
	// (a file lock next to the pid file does it across workers).
	envLocks map[string]*sync.Mutex
	// procs are the processes this worker started, reaped by a goroutine
	// so that an exit is seen at once with its status (and leaves no
	// zombie) while the worker lives.
	procs map[int]*child
}

// child is a process this worker started.
type child struct {
	done  chan struct{}
	state *os.ProcessState
	err   error
}

// New checks every environment's config (all problems at once) and
// returns the Activities for them.
func New(servers map[string]Config, resolve secrets.Resolver) (*Activities, error) {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(servers)) {
		if err := servers[name].Validate(name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Activities{Servers: maps.Clone(servers), Resolve: resolve}, nil
}

// StepTypes binds the server steps to their specs in activities/steps. a
// may be a zero Activities (tests that only need the catalogue).
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{
		activities.Implement(steps.Spec("server.start"), a.Start),
		activities.Implement(steps.Spec("server.stop"), a.Stop),
		activities.Implement(steps.Spec("server.restart"), a.Restart),
		activities.Implement(steps.Spec("server.status"), a.Status),
		activities.Implement(steps.Spec("server.logs"), a.Logs),
	}
}

// StartInput is the `with` of server.start.
type StartInput struct {
	Environment string `json:"environment"`
	Timeout     string `json:"timeout,omitempty"`
}

// StartOutput is what server.start returns.
type StartOutput struct {
	Pid            int    `json:"pid"`
	StartedAt      string `json:"startedAt"`
	AlreadyRunning bool   `json:"alreadyRunning"`
	ReadyAfter     string `json:"readyAfter"`
	URL            string `json:"url"`
}

// StopInput is the `with` of server.stop.
type StopInput struct {
	Environment string `json:"environment"`
	Timeout     string `json:"timeout,omitempty"`
}

// StopOutput is what server.stop returns.
type StopOutput struct {
	WasRunning   bool   `json:"wasRunning"`
	Pid          int    `json:"pid"`
	Signal       string `json:"signal"`
	StoppedAfter string `json:"stoppedAfter"`
	Note         string `json:"note"`
}

// RestartInput is the `with` of server.restart.
type RestartInput = StartInput

// RestartOutput is what server.restart returns.
type RestartOutput struct {
	StoppedPid     int    `json:"stoppedPid"`
	WasRunning     bool   `json:"wasRunning"`
	StopSignal     string `json:"stopSignal"`
	Pid            int    `json:"pid"`
	StartedAt      string `json:"startedAt"`
	AlreadyRunning bool   `json:"alreadyRunning"`
	ReadyAfter     string `json:"readyAfter"`
	URL            string `json:"url"`
}

// StatusInput is the `with` of server.status.
type StatusInput struct {
	Environment string `json:"environment"`
	Expect      string `json:"expect,omitempty"`
}

// StatusOutput is what server.status returns.
type StatusOutput struct {
	Running    bool   `json:"running"`
	Pid        int    `json:"pid"`
	Healthy    bool   `json:"healthy"`
	HTTPStatus int    `json:"httpStatus"`
	Uptime     string `json:"uptime"`
	StartedAt  string `json:"startedAt"`
	Note       string `json:"note"`
}

// LogsInput is the `with` of server.logs.
type LogsInput struct {
	Environment   string   `json:"environment"`
	Lines         int      `json:"lines,omitempty"`
	SinceStart    *bool    `json:"sinceStart,omitempty"`
	ErrorPatterns []string `json:"errorPatterns,omitempty"`
}

// LogsOutput is what server.logs returns.
type LogsOutput struct {
	Tail    []string `json:"tail"`
	Matches []string `json:"matches"`
	File    string   `json:"file"`
}

// Progress is the heartbeat detail of a waiting step.
type Progress struct {
	Environment string `json:"environment"`
	Phase       string `json:"phase"`
	Pid         int    `json:"pid,omitempty"`
	ElapsedMs   int64  `json:"elapsedMs"`
	Last        string `json:"last,omitempty"`
}

func nonRetryable(errType, msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, errType, nil)
}

func retryable(errType, msg string) error {
	return temporal.NewApplicationError(msg, errType)
}

func serverErr(env, format string, args ...any) error {
	return nonRetryable(activities.ErrServerError, fmt.Sprintf("server environment %q: ", env)+fmt.Sprintf(format, args...))
}

// config returns the environment's config or the error naming the known
// ones.
func (a *Activities) config(name string) (Config, error) {
	if name == "" {
		return Config{}, nonRetryable(activities.ErrInvalidArguments, "environment is required: the name of a server environment of the worker config")
	}
	c, ok := a.Servers[name]
	if !ok {
		known := "none: the worker config has no environment of kind server"
		if len(a.Servers) > 0 {
			known = strings.Join(slices.Sorted(maps.Keys(a.Servers)), ", ")
		}
		return Config{}, nonRetryable(activities.ErrServerNotConfigured,
			fmt.Sprintf("environment %q is not a server environment of this worker (known: %s)", name, known))
	}
	return c, nil
}

func (a *Activities) httpClient() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func (a *Activities) pollInterval() time.Duration {
	if a.PollInterval > 0 {
		return a.PollInterval
	}
	return 250 * time.Millisecond
}

func (a *Activities) heartbeatInterval() time.Duration {
	if a.HeartbeatInterval > 0 {
		return a.HeartbeatInterval
	}
	return 5 * time.Second
}

func (a *Activities) heartbeat(ctx context.Context, p Progress) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, p)
	}
}

func (a *Activities) log(ctx context.Context, msg string, args ...any) {
	if a.Logger != nil {
		a.Logger.With(activities.LogAttrs(ctx)...).Info(msg, args...)
	}
}

// lock serialises the steps of one environment: in this worker with a
// mutex, across workers on the host with flock on a file next to the pid
// file (released by the kernel when a worker dies).
func (a *Activities) lock(ctx context.Context, name string, c Config) (func(), error) {
	a.mu.Lock()
	if a.envLocks == nil {
		a.envLocks = map[string]*sync.Mutex{}
	}
	m := a.envLocks[name]
	if m == nil {
		m = &sync.Mutex{}
		a.envLocks[name] = m
	}
	a.mu.Unlock()
	unlockMu := func() { m.Unlock() }
	acquired := make(chan struct{})
	go func() { m.Lock(); close(acquired) }()
	// Waiting heartbeats, so an attempt Temporal gave up on learns it
	// (through the heartbeat's cancellation) instead of taking the lock
	// later and acting on a server a newer attempt already started.
	beat := time.NewTicker(a.heartbeatInterval())
	defer beat.Stop()
	for waiting := true; waiting; {
		select {
		case <-acquired:
			waiting = false
		case <-beat.C:
			a.heartbeat(ctx, Progress{Environment: name, Phase: "waiting for another step on this server"})
		case <-ctx.Done():
			go func() { <-acquired; m.Unlock() }()
			return nil, ctx.Err()
		}
	}
	if c.Systemd != nil {
		// systemd orders the jobs of a unit itself, across workers too.
		return unlockMu, nil
	}
	path := c.pidFile() + ".lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		m.Unlock()
		return nil, serverErr(name, "pid file directory: %v", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		m.Unlock()
		return nil, serverErr(name, "lock file: %v", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			m.Unlock()
			return nil, serverErr(name, "lock %s: %v", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			m.Unlock()
			return nil, ctx.Err()
		case <-beat.C:
			a.heartbeat(ctx, Progress{Environment: name, Phase: "waiting for another worker's step on this server"})
		case <-time.After(100 * time.Millisecond):
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		m.Unlock()
	}, nil
}

// probe asks the health URL once: the status code, 0 when nothing
// answered (with why).
func (a *Activities) probe(ctx context.Context, u string) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return 0, err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, resp.Status
}

// baseURL is the health URL's scheme and host.
func baseURL(health string) string {
	u, err := url.Parse(health)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// parseTimeout reads a step's timeout argument, bounded.
func parseTimeout(s string, def, bound time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("timeout %q: want a positive duration such as 5m", s))
	}
	if d > bound {
		return 0, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("timeout %s is above its bound %s", d, bound))
	}
	return d, nil
}

func roundDuration(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// supervised reads the pid file and checks its process. found is false
// when there is no pid file; id.ours says whether its process runs.
func supervised(name string, c Config) (p PidFile, found bool, id identity, err error) {
	p, found, err = readPidFile(c.pidFile())
	if err != nil {
		return p, false, identity{}, serverErr(name, "%v; nothing was signalled: check which process serves %s and remove the file", err, c.HealthURL)
	}
	if !found {
		return p, false, identity{}, nil
	}
	return p, true, identify(p), nil
}

// resolveEnv builds the server's environment and resolves the config's secret references: the values go to
// the server's environment and are redacted from anything read back.
func (a *Activities) resolveEnv(ctx context.Context, name string, c Config) (env []string, values []string, err error) {
	m := map[string]string{}
	for _, k := range c.inheritEnv() {
		if v, ok := os.LookupEnv(k); ok {
			m[k] = v
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		v := c.Env[k]
		if !isRef(v) {
			m[k] = v
			continue
		}
		// The worker config chose this reference for this server, and the
		// value goes to a local process: no rule is needed (Configured).
		val, err := secrets.ResolveFor(ctx, a.Resolve, v, secrets.Use{Local: true, Configured: true})
		if refused := secrets.Refusal(err); refused != nil {
			return nil, nil, refused
		}
		if err != nil {
			return nil, nil, nonRetryable(activities.ErrSecretUnavailable, fmt.Sprintf("server environment %q: env %s: %v", name, k, err))
		}
		m[k] = val
		values = append(values, val)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		env = append(env, k+"="+m[k])
	}
	return env, values, nil
}
