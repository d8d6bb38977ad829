// Package app builds a Stagehand worker from its configuration: the
// Temporal client, the Kubernetes clusters of every environment, the runbook
// library and the step catalogue, all registered on one Temporal worker,
// after checking that the namespace has every search attribute runs set.
// worker/main.go runs it; integration tests start it in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/command"
	"github.com/stagehand-dev/stagehand/activities/db"
	"github.com/stagehand-dev/stagehand/activities/git"
	"github.com/stagehand-dev/stagehand/activities/image"
	"github.com/stagehand-dev/stagehand/activities/kube"
	"github.com/stagehand-dev/stagehand/activities/notify"
	"github.com/stagehand-dev/stagehand/activities/portal"
	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/activities/server"
	"github.com/stagehand-dev/stagehand/activities/web"
	"github.com/stagehand-dev/stagehand/internal/temporalconn"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

// App is a configured worker, ready to run.
type App struct {
	Config    config.Config
	Client    client.Client
	Worker    worker.Worker
	Catalogue *activities.Catalogue
	Library   *runbooks.Library
	Logger    *slog.Logger
	// DB and Image are the database and image steps' adapters, kept for
	// CheckBackends.
	DB    *db.Activities
	Image *image.Activities
	// SearchAttributesVerified is false when the server would not list the
	// namespace's search attributes, so the start-up check could not run.
	SearchAttributesVerified bool
	ownClient                bool
	// Metrics is the Prometheus endpoint, nil when metrics.listen is empty.
	Metrics *Metrics
	// Kube holds every environment's cluster, for CheckBackends.
	Kube *kube.Activities
	// Identity is the worker's name in Temporal and in its steps' status.
	Identity string
	// steps counts the step handlers under way, for a graceful Stop.
	steps *activities.Worker
}

// NewLogger builds the slog logger the worker and the Temporal SDK share.
func NewLogger(cfg config.Log, out io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch cfg.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// secretResolver resolves env:NAME from the worker's environment and, when
// the config has secrets.kubernetes, secret:NAME/KEY from that
// environment's cluster.
func secretResolver(cfg config.Config, kubeActs *kube.Activities) (secrets.Resolver, error) {
	byScheme := map[string]secrets.Resolver{"env": secrets.Env, "secret": nil}
	if k := cfg.Secrets.Kubernetes; k != nil {
		cluster := kubeActs.Clusters[k.Environment]
		if cluster == nil {
			return nil, fmt.Errorf("secrets.kubernetes: environment %s has no usable cluster (its kubeconfig is missing?)", k.Environment)
		}
		byScheme["secret"] = cluster.SecretResolver(k.Namespace)
	}
	// Every step resolves through the policy: only the references the
	// config allows for that step, sent only to the hosts it allows.
	policy, err := cfg.SecretPolicy()
	if err != nil {
		return nil, err
	}
	return secrets.Guard(policy, secrets.Schemes(byScheme)), nil
}

// Options tune New; zero values are fine.
type Options struct {
	// Client, if set, is used instead of dialing cfg.Temporal.
	Client client.Client
	// Logger defaults to one built from cfg.Log writing to stderr.
	Logger *slog.Logger
	// DialTimeout bounds the first connection to Temporal (default 10s).
	DialTimeout time.Duration
}

// New validates the configuration, builds every client and registers the
// workflow and the step catalogue. Nothing is polled until Run or Start.
func New(ctx context.Context, cfg config.Config, opts Options) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = NewLogger(cfg.Log, os.Stderr)
	}
	identity := cfg.Worker.EffectiveIdentity()
	logger = logger.With("worker", identity)
	kubeActs := &kube.Activities{Clusters: map[string]*kube.Cluster{}}
	for _, name := range cfg.EnvironmentNames() {
		env := cfg.Environments[name]
		var (
			cluster *kube.Cluster
			err     error
		)
		switch {
		case env.InCluster:
			cluster, err = kube.NewInClusterCluster(name)
		case env.Kubeconfig != "" || env.Context != "":
			path := cfg.ResolvePath(env.Kubeconfig)
			if path != "" {
				if _, statErr := os.Stat(path); statErr != nil {
					// A missing kubeconfig leaves the environment without a
					// cluster rather than stopping the worker: runbooks that
					// need no cluster keep working, and kube steps for it fail
					// with an error naming the configured clusters.
					logger.Warn("environment has no usable kubeconfig; its Kubernetes steps will fail until it exists",
						"environment", name, "kubeconfig", path)
					continue
				}
			}
			cluster, err = kube.NewClusterFromKubeconfig(name, path, env.Context)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", name, err)
		}
		kubeActs.Clusters[name] = cluster
	}
	workDir := cfg.WorkDirPath()
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	commands, err := cfg.ResolvedCommands()
	if err != nil {
		return nil, err
	}
	resolve, err := secretResolver(cfg, kubeActs)
	if err != nil {
		return nil, err
	}
	// The single-server environments' directories are work trees the
	// portal and local git steps may read and edit, besides a run's own
	// checkouts.
	gitActs := &git.Activities{WorkDir: cfg.GitWorkDir(), Secrets: resolve, LocalDirs: cfg.ServerDirs()}
	// Commands and builds allowed in the git checkouts may use only the
	// current run's own work trees.
	checkouts := cfg.CheckoutsDir()
	scope := func(ctx context.Context, root string) string {
		if root == checkouts {
			return gitActs.RunTreesDir(ctx)
		}
		return root
	}
	dbActs := &db.Activities{Databases: cfg.Databases, BackupDir: cfg.BackupDir(), Resolve: resolve}
	imageActs := &image.Activities{Host: cfg.Docker.Host, APIVersion: cfg.Docker.APIVersion, Scope: scope,
		ContextRoots: cfg.DockerContextRoots(), Resolve: resolve, Logger: logger.With("component", "image")}
	serverActs, err := server.New(cfg.Servers(), resolve)
	if err != nil {
		return nil, err
	}
	serverActs.Logger = logger.With("component", "server")
	cat, err := registry.Catalogue(registry.Deps{
		Kube:   kubeActs,
		Git:    gitActs,
		Notify: &notify.Activities{Secrets: resolve},
		Web:    &web.Activities{Secrets: resolve},
		Command: &command.Activities{Commands: commands, Resolve: resolve, Scope: scope,
			Logger: logger.With("component", "exec.run")},
		DB:     dbActs,
		Image:  imageActs,
		Portal: &portal.Activities{Tree: gitActs.RunTree, LocalDirs: cfg.ServerDirs(), ConfigKeys: cfg.PluginConfigKeys()},
		Server: serverActs,
	})
	if err != nil {
		return nil, fmt.Errorf("build step catalogue: %w", err)
	}
	lib, err := runbooks.NewLibrary(cfg.ResolvePath(cfg.RunbooksDir), cat)
	if err != nil {
		return nil, fmt.Errorf("load runbooks: %w", err)
	}

	var metrics *Metrics
	if cfg.Metrics.Listen != "" {
		// The SDK takes the metrics handler from the client, so a client
		// passed in Options keeps its own.
		if metrics, err = StartMetrics(cfg.Metrics.Listen, logger); err != nil {
			return nil, err
		}
	}
	c := opts.Client
	own := false
	if c == nil {
		timeout := opts.DialTimeout
		if timeout == 0 {
			timeout = 10 * time.Second
		}
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		// TLS, API key and payload codec come from temporal.* (shared with
		// the CLI); secret references resolve like the steps' do.
		conn := cfg.Conn()
		// The API key and codec keys are references the config itself
		// names, so they resolve as such (no step asks for them).
		configured := func(ctx context.Context, ref string) (string, error) {
			return secrets.ResolveFor(ctx, resolve, ref, secrets.Use{Configured: true})
		}
		copts, err := conn.ClientOptions(dctx, configured, temporalconn.ForWorker)
		if err != nil {
			metrics.close()
			return nil, fmt.Errorf("temporal connection settings: %w", err)
		}
		copts.Logger = tlog.NewStructuredLogger(logger)
		copts.Identity = identity
		copts.MetricsHandler = metrics.handler()
		c, err = client.DialContext(dctx, copts)
		if err != nil {
			metrics.close()
			hint := conn.DialHint(err)
			if hint == "" {
				hint = "is the server running? `make dev` starts a local one"
			}
			return nil, fmt.Errorf("connect to Temporal at %s: %w (%s)", conn.Describe(), err, hint)
		}
		own = true
	}
	verified, err := checkSearchAttributes(ctx, c, cfg, opts, logger)
	if err != nil {
		if own {
			c.Close()
		}
		metrics.close()
		return nil, err
	}
	wo := cfg.Worker
	stepWorker := activities.NewWorker(identity)
	// The sticky cache is one per process: every worker in it shares it.
	worker.SetStickyWorkflowCacheSize(wo.WorkflowCacheSize)
	w := worker.New(c, cfg.Temporal.TaskQueue, worker.Options{
		Interceptors:                           workflows.WorkerInterceptors(),
		Identity:                               identity,
		MaxConcurrentActivityExecutionSize:     wo.MaxConcurrentActivities,
		MaxConcurrentWorkflowTaskExecutionSize: wo.MaxConcurrentWorkflowTasks,
		MaxConcurrentActivityTaskPollers:       wo.ActivityPollers,
		MaxConcurrentWorkflowTaskPollers:       wo.WorkflowTaskPollers,
		WorkerStopTimeout:                      drainTimeout(wo.StopTimeout.D()),
		BackgroundActivityContext:              stepWorker.Context(context.Background()),
	})
	workflows.Register(w, &workflows.Resolver{Library: lib, Catalogue: cat, Environments: cfg.TemplateData(), Settings: cfg.SettingsData(), AllowInline: cfg.AllowInlineRunbooks, Approvals: cfg.Approvals})
	logger.Info("worker configured",
		"address", cfg.Temporal.Address, "namespace", cfg.Temporal.Namespace, "taskQueue", cfg.Temporal.TaskQueue,
		"runbooks", strings.Join(lib.Names(), ","), "stepTypes", len(cat.Names()),
		"environments", strings.Join(cfg.EnvironmentNames(), ","),
		"workflowCacheSize", wo.WorkflowCacheSize, "maxConcurrentActivities", wo.MaxConcurrentActivities,
		"maxConcurrentWorkflowTasks", wo.MaxConcurrentWorkflowTasks, "activityPollers", wo.ActivityPollers,
		"workflowTaskPollers", wo.WorkflowTaskPollers, "stopTimeout", wo.StopTimeout.D())
	return &App{Config: cfg, Client: c, Worker: w, Catalogue: cat, Library: lib, Logger: logger, DB: dbActs, Image: imageActs,
		SearchAttributesVerified: verified, ownClient: own, Metrics: metrics, Kube: kubeActs, Identity: identity, steps: stepWorker}, nil
}

// checkSearchAttributes runs the start-up check before anything polls: a
// worker that started on a namespace lacking an attribute would wedge every
// run that reaches the upsert of it. It reports whether the check ran.
func checkSearchAttributes(ctx context.Context, c client.Client, cfg config.Config, opts Options, logger *slog.Logger) (bool, error) {
	timeout := opts.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := CheckSearchAttributes(cctx, c, cfg.Temporal.Namespace, cfg.Temporal.Address)
	if errors.Is(err, ErrSearchAttributesUnverified) {
		logger.Warn("could not check the namespace's search attributes; runs will wedge if any is missing",
			"namespace", cfg.Temporal.Namespace, "error", err,
			"required", strings.Join(workflows.SearchAttributeDefinitions, ","))
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// Start begins polling in the background; Stop ends it.
func (a *App) Start() error {
	if err := a.Worker.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	return nil
}

// Stop stops the worker within worker.stopTimeout: it stops polling, lets
// running steps finish (watch steps hand over at once), cancels what is
// still running when the drain part of the timeout is over, and waits for
// those steps to report their interruption before it closes the client
// (if New dialed it), so the runs carry on at once on another worker
// rather than after a heartbeat timeout.
func (a *App) Stop() {
	total := a.Config.Worker.StopTimeout.D()
	began := time.Now()
	a.Worker.Stop()
	// The SDK returns from Stop when the drain time is over, having just
	// cancelled the steps still running; their failures are reported by
	// its pollers after the handlers return, so give them that moment.
	if a.steps != nil && a.steps.Running() > 0 {
		rest := total - time.Since(began)
		if rest > 0 && a.steps.WaitIdle(rest) {
			time.Sleep(min(total-time.Since(began), reportGrace))
		} else {
			a.Logger.Warn("steps still running at the end of the stop timeout; they resume elsewhere after their heartbeat or start-to-close timeout",
				"running", a.steps.Running(), "stopTimeout", total)
		}
	}
	if a.ownClient {
		a.Client.Close()
	}
	a.Metrics.close()
}

// reportGrace is how long a stopping worker waits, after its last
// cancelled step returned, for the SDK to report that step's failure.
const reportGrace = 500 * time.Millisecond

// drainTimeout is the part of the stop timeout running steps get to
// finish; the rest is for the ones then cancelled to report it.
func drainTimeout(stop time.Duration) time.Duration {
	report := stop / 5
	if report > 5*time.Second {
		report = 5 * time.Second
	}
	return stop - report
}

// Run polls until ctx is done.
func (a *App) Run(ctx context.Context) error {
	if err := a.Start(); err != nil {
		return err
	}
	a.Logger.Info("worker started; press Ctrl-C to stop")
	<-ctx.Done()
	a.Logger.Info("worker stopping")
	a.Stop()
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}
