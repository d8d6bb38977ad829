package portalsim

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/stagehand-dev/stagehand/internal/backstagetest"
)

// State is where one image's backend is.
type State string

const (
	// StateResolving: the image is being read from the registry.
	StateResolving State = "Resolving"
	// StatePullFailed: the image cannot be read (missing, registry down,
	// malformed); it is read again after a back-off.
	StatePullFailed State = "PullFailed"
	// StateStarting: the process runs and readiness is not 200 yet (or no
	// longer: a failed migration keeps the process up, answering 503).
	StateStarting State = "Starting"
	// StateReady: readiness answers 200.
	StateReady State = "Ready"
	// StateExited: the process ended; it is started again after a back-off
	// while pods with the image remain.
	StateExited State = "Exited"
	// StateStopping: no pod has the image any more; the process is being
	// stopped.
	StateStopping State = "Stopping"
)

// BackendStatus describes one image's backend, for logs and test failures.
type BackendStatus struct {
	Namespace, Deployment string
	Image                 string
	Info                  ImageInfo
	State                 State
	// Message explains the state: the pull error, the exit, the last
	// readiness answer.
	Message string
	// URL is the running process's base URL ("" when none runs).
	URL string
	// Pid is the running process's id (0 when none runs).
	Pid      int
	ExitCode int
	// Starts counts processes started for the image.
	Starts int
	// LogTail is the end of the current (or last) process's output.
	LogTail string
}

// backend supervises the real Backstage process for one image of one
// portal: reads the image, starts the process, follows its readiness,
// restarts it after an exit and stops it when cancelled.
type backend struct {
	sim    *Sim
	portal *Portal
	image  string
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	state    State
	message  string
	info     ImageInfo
	srv      *backstagetest.Server
	exitCode int
	starts   int
	logTail  string
}

func (b *backend) set(state State, msg string) {
	b.mu.Lock()
	b.state, b.message = state, msg
	b.mu.Unlock()
}

func (b *backend) status() BackendStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := BackendStatus{
		Namespace: b.portal.Namespace, Deployment: b.portal.Deployment, Image: b.image, Info: b.info,
		State: b.state, Message: b.message, ExitCode: b.exitCode, Starts: b.starts, LogTail: b.logTail,
	}
	if b.srv != nil {
		st.URL, st.Pid = b.srv.URL, b.srv.Pid()
		st.LogTail = b.srv.LogTail(logTailBytes)
	}
	return st
}

const logTailBytes = 4000

func (b *backend) logf(format string, args ...any) {
	b.sim.opts.Logf("portalsim: %s/%s image %s: "+format,
		append([]any{b.portal.Namespace, b.portal.Deployment, b.image}, args...)...)
}

func (b *backend) run(ctx context.Context) {
	defer close(b.done)
	info, ok := b.resolve(ctx)
	if !ok {
		return
	}
	version := info.CatalogVersion
	if version == "" {
		version = "(none)"
	}
	if !info.HasPackageJSON {
		// Not a portal image: whatever it runs has no Backstage to start.
		b.mu.Lock()
		b.state, b.exitCode = StateExited, 1
		b.message = "Error: Cannot find module '/app/package.json': the image has no /app/package.json"
		b.mu.Unlock()
		b.logf("exited: no /app/package.json in the image (digest %s)", info.Digest)
		<-ctx.Done()
		b.set(StateStopping, "no pod has the image")
		return
	}
	backOff := b.sim.opts.RestartBackOff
	for {
		err := b.runOnce(ctx, info, version)
		if ctx.Err() != nil {
			return
		}
		b.logf("catalog %s exited (%v); restarting in %s", version, err, backOff)
		select {
		case <-ctx.Done():
			b.set(StateStopping, "no pod has the image")
			b.logf("stopped catalog %s (it had exited; not restarted)", version)
			return
		case <-time.After(backOff):
		}
		backOff = min(2*backOff, b.sim.opts.MaxRestartBackOff)
	}
}

// resolve reads the image until it succeeds or ctx ends.
func (b *backend) resolve(ctx context.Context) (ImageInfo, bool) {
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		info, err := b.sim.images.Read(rctx, b.image)
		cancel()
		if err == nil {
			b.mu.Lock()
			b.info = info
			b.mu.Unlock()
			b.logf("read: digest %s, catalog-backend %q, auth-backend %v, backstage %q",
				info.Digest, info.CatalogVersion, info.HasAuth, info.BackstageVersion)
			return info, true
		}
		if ctx.Err() != nil {
			b.set(StateStopping, "no pod has the image")
			return info, false
		}
		b.set(StatePullFailed, err.Error())
		b.logf("cannot read the image: %v", err)
		select {
		case <-ctx.Done():
			b.set(StateStopping, "no pod has the image")
			return info, false
		case <-time.After(b.sim.opts.PullRetry):
		}
	}
}

// runOnce starts one process and follows it until it exits (returning how)
// or ctx ends (stopping it).
func (b *backend) runOnce(ctx context.Context, info ImageInfo, version string) error {
	opts := backstagetest.Options{
		DB:             &b.portal.DB,
		CatalogVersion: info.CatalogVersion,
		Dir:            b.portal.BackstageDir,
		StockStart:     true, // a real portal's process, not a test harness's
	}
	switch {
	case info.CatalogVersion == "":
		opts.Fault = backstagetest.FaultNoCatalog
	case !info.HasAuth:
		opts.Fault = backstagetest.FaultNoAuth
	}
	if info.CatalogVersion == "" && !info.HasAuth {
		// Neither plugin: backend-defaults alone still starts and serves
		// health; index.js has no switch for both, so catalog goes.
		opts.Fault = backstagetest.FaultNoCatalog
	}
	srv, err := backstagetest.Launch(opts)
	if err != nil {
		b.mu.Lock()
		b.state, b.message, b.exitCode = StateExited, err.Error(), 1
		b.mu.Unlock()
		return err
	}
	b.mu.Lock()
	b.srv, b.state, b.message = srv, StateStarting, "starting"
	b.starts++
	b.mu.Unlock()
	b.logf("started catalog %s (auth %v) on %s, pid %d", version, info.HasAuth, srv.URL, srv.Pid())

	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(b.sim.opts.ReadinessInterval)
	defer tick.Stop()
	lastState, lastMsg := StateStarting, ""
	for {
		select {
		case <-srv.Exited():
			code := srv.ExitCode()
			tail := srv.LogTail(logTailBytes)
			_ = srv.Stop() // removes its config; the group may have children left
			b.mu.Lock()
			b.srv, b.state, b.exitCode, b.logTail = nil, StateExited, code, tail
			// The last line is what a person reading the pod's last
			// termination needs (the error); the exit code is beside it.
			b.message = truncate(lastLine(tail), 512)
			b.mu.Unlock()
			return fmt.Errorf("exit code %d", code)
		case <-ctx.Done():
			b.set(StateStopping, "no pod has the image")
			b.logf("stopping catalog %s (pid %d): no pod has the image", version, srv.Pid())
			_ = srv.Stop()
			b.mu.Lock()
			b.srv, b.logTail = nil, srv.LogTail(logTailBytes)
			b.mu.Unlock()
			b.logf("stopped catalog %s", version)
			return ctx.Err()
		case <-tick.C:
		}
		state, msg := readiness(ctx, client, srv.URL)
		b.mu.Lock()
		if b.state != StateStopping {
			b.state, b.message = state, msg
		}
		b.mu.Unlock()
		// A change of state or of the answer (connection refused, then
		// 503 while plugins start or after one failed) is worth a line;
		// the same answer every poll is not.
		if state != lastState || msg != lastMsg {
			b.logf("catalog %s: %s (%s)", version, state, msg)
			lastState, lastMsg = state, msg
		}
	}
}

func readiness(ctx context.Context, client *http.Client, base string) (State, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+backstagetest.ReadinessPath, nil)
	if err != nil {
		return StateStarting, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return StateStarting, "readiness: " + err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return StateReady, "readiness 200"
	}
	return StateStarting, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func lastLine(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}
