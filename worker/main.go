// Command stagehand-worker runs the Stagehand Temporal worker: it registers
// RunbookWorkflow and every step type, and executes runs started from the
// Temporal UI or the stagehand CLI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stagehand-dev/stagehand/internal/payloadcodec"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

const usage = `stagehand-worker runs Stagehand's Temporal worker.

Usage:
  stagehand-worker [--config FILE] [flags]

Configuration is read from the file (default: $STAGEHAND_CONFIG, else the
built-in local defaults), then environment variables override it
(TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS,
TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH,
TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_API_KEY,
STAGEHAND_CODEC_KEYS, STAGEHAND_TASK_QUEUE, STAGEHAND_RUNBOOKS_DIR,
STAGEHAND_LOG_LEVEL, STAGEHAND_METRICS_LISTEN, and the worker options'
STAGEHAND_WORKER_IDENTITY, STAGEHAND_WORKFLOW_CACHE_SIZE,
STAGEHAND_MAX_CONCURRENT_ACTIVITIES, STAGEHAND_MAX_CONCURRENT_WORKFLOW_TASKS,
STAGEHAND_ACTIVITY_POLLERS, STAGEHAND_WORKFLOW_TASK_POLLERS,
STAGEHAND_STOP_TIMEOUT), then flags override both.

Several workers may poll one task queue: Temporal spreads the runs and
their steps over them, and each step's status names the worker that ran it
(--identity). On SIGTERM or Ctrl-C a worker stops polling, lets running
steps finish for up to --stop-timeout (watch steps hand over at once),
cancels the rest, and exits; the runs carry on on the other workers.

Examples:
  stagehand-worker --config config/local.yaml
  TEMPORAL_ADDRESS=temporal:7233 stagehand-worker --config /config/worker.yaml
  stagehand-worker --check --config config/local.yaml   # validate and exit
  stagehand-worker --metrics-listen 127.0.0.1:9090       # Prometheus at /metrics
  stagehand-worker --identity worker-b --workflow-cache-size 500 --stop-timeout 20s

Before polling, the worker checks that the namespace has every search
attribute runs set (see the README's workflow contract) and refuses to start,
printing the command that creates each, when one is missing or mistyped.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stderr, os.Getenv))
}

func run(args []string, stderr io.Writer, getenv config.Getenv) int {
	fs := flag.NewFlagSet("stagehand-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		configPath  = fs.String("config", getenv("STAGEHAND_CONFIG"), "worker config file (YAML)")
		address     = fs.String("address", "", "Temporal frontend host:port (overrides config and TEMPORAL_ADDRESS)")
		namespace   = fs.String("namespace", "", "Temporal namespace")
		taskQueue   = fs.String("task-queue", "", "task queue to poll")
		runbooksDir = fs.String("runbooks-dir", "", "directory of extra runbooks (*.yaml)")
		logLevel    = fs.String("log-level", "", "debug, info, warn or error")
		logFormat   = fs.String("log-format", "", "text or json")
		tlsCert     = fs.String("tls-cert", "", "client certificate (PEM) for mutual TLS to Temporal")
		tlsKey      = fs.String("tls-key", "", "its private key (PEM)")
		tlsCA       = fs.String("tls-ca", "", "CA certificate(s) (PEM) the Temporal server's certificate must chain to")
		tlsServer   = fs.String("tls-server-name", "", "name expected in the Temporal server's certificate")
		apiKeyRef   = fs.String("api-key-ref", "", "secret reference to a Temporal API key, e.g. env:TEMPORAL_API_KEY (implies TLS)")
		codecKeys   = fs.String("codec-keys", "", "payload codec keys, newest first: ID=REF,... e.g. k2=env:STAGEHAND_CODEC_KEY_2,k1=env:STAGEHAND_CODEC_KEY_1")
		metricsAddr = fs.String("metrics-listen", "", "host:port serving Prometheus metrics at /metrics (overrides metrics.listen and STAGEHAND_METRICS_LISTEN)")
		workerFlags = map[string]string{}
		check       = fs.Bool("check", false, "validate the config and runbooks, connect to Temporal (search attributes), every configured database, the image engine and every environment's cluster (version, namespace, deployment, the permissions the runbooks' kube steps need), then exit (1 if any fails)")
	)
	for _, opt := range config.WorkerOptionTable {
		fs.Func(opt.Flag, opt.Help+" (overrides worker."+opt.Key+" and "+opt.Env+")", func(v string) error {
			// Checked now, so a bad value is a usage error naming the flag.
			probe := config.DefaultWorkerOptions()
			if err := opt.Set(&probe, v); err != nil {
				return err
			}
			workerFlags[opt.Flag] = v
			return nil
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg := config.Defaults()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			fmt.Fprintf(stderr, "stagehand-worker: %v\n", err)
			return 2
		}
	}
	cfg.ApplyEnv(getenv)
	for dst, v := range map[*string]string{
		&cfg.Temporal.Address: *address, &cfg.Temporal.Namespace: *namespace, &cfg.Temporal.TaskQueue: *taskQueue,
		&cfg.RunbooksDir: *runbooksDir, &cfg.Log.Level: *logLevel, &cfg.Log.Format: *logFormat,
		&cfg.Metrics.Listen:        *metricsAddr,
		&cfg.Temporal.TLS.CertFile: *tlsCert, &cfg.Temporal.TLS.KeyFile: *tlsKey, &cfg.Temporal.TLS.CAFile: *tlsCA,
		&cfg.Temporal.TLS.ServerName: *tlsServer, &cfg.Temporal.APIKeyRef: *apiKeyRef,
	} {
		if v != "" {
			*dst = v
		}
	}
	for _, opt := range config.WorkerOptionTable {
		if v, ok := workerFlags[opt.Flag]; ok {
			_ = opt.Set(&cfg.Worker, v) // checked when parsed
		}
	}
	if *codecKeys != "" {
		refs, err := payloadcodec.ParseKeyRefs(*codecKeys)
		if err != nil {
			fmt.Fprintf(stderr, "stagehand-worker: --codec-keys: %v\n", err)
			return 2
		}
		cfg.Temporal.Codec.Keys = refs
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := app.NewLogger(cfg.Log, stderr)
	if *check {
		if err := cfg.Validate(); err != nil {
			fmt.Fprintf(stderr, "stagehand-worker: %v\n", err)
			return 1
		}
		// A check must not take the port of the worker it checks for.
		cfg.Metrics.Listen = ""
		a, err := app.New(ctx, cfg, app.Options{Logger: logger})
		if err != nil {
			fmt.Fprintf(stderr, "stagehand-worker: %v\n", err)
			return 1
		}
		defer a.Stop()
		failed := false
		for _, c := range a.CheckBackends(ctx, 15*time.Second) {
			if c.Err != nil {
				failed = true
				fmt.Fprintf(stderr, "stagehand-worker: %s: FAILED: %v\n", c.What, c.Err)
				continue
			}
			fmt.Fprintf(stderr, "stagehand-worker: %s: OK, %s\n", c.What, c.Detail)
		}
		if failed {
			fmt.Fprintln(stderr, "stagehand-worker: configuration loaded, but the backends above that FAILED are unreachable or refuse the worker's credentials")
			return 1
		}
		if a.SearchAttributesVerified {
			fmt.Fprintf(stderr, "stagehand-worker: configuration OK; namespace %s has all %d search attributes (%s)\n",
				cfg.Temporal.Namespace, len(workflows.SearchAttributes), strings.Join(workflows.SearchAttributeDefinitions, ", "))
		} else {
			fmt.Fprintf(stderr, "stagehand-worker: configuration OK, but the server would not list namespace %s's search attributes; make sure it has %s\n",
				cfg.Temporal.Namespace, strings.Join(workflows.SearchAttributeDefinitions, ", "))
		}
		return 0
	}
	a, err := app.New(ctx, cfg, app.Options{Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "stagehand-worker: %v\n", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "stagehand-worker: %v\n", err)
		return 1
	}
	return 0
}
