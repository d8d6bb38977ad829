// Command faultworker is stagehand-worker for the fault suite (e2e
// TestFaults): the same configuration, step catalogue, runbooks and
// workflow, built by the same worker/app, plus one planted fault.
//
// With STAGEHAND_FAULT_KILL_AT=<step id> the process SIGKILLs itself at the
// boundary before that step: when the workflow, running live (not
// replaying), is about to schedule the step's activity. The step before it
// is complete in history, the step itself is not scheduled, and the workflow
// task that would have scheduled it is lost with the process, which is the
// crash a worker on a node that dies between two steps suffers. A worker
// started afterwards replays the history and carries on.
//
// The hook is a worker interceptor on the client (the SDK applies a client
// interceptor that also intercepts workers to every worker of that client),
// so neither the production worker binary nor the workflow code has a test
// switch in it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
)

// EnvKillAt names the step before which the worker kills itself.
const EnvKillAt = "STAGEHAND_FAULT_KILL_AT"

// KilledMarker starts the line the worker writes to stderr just before the
// kill, so a test can tell the planted crash from any other death.
const KilledMarker = "faultworker: SIGKILL before step "

func main() {
	configPath := flag.String("config", "", "worker config file (YAML)")
	flag.Parse()
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "faultworker: --config is required")
		os.Exit(2)
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "faultworker: %v\n", err)
		os.Exit(2)
	}
	cfg.ApplyEnv(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := app.NewLogger(cfg.Log, os.Stderr)

	opts := client.Options{
		HostPort:  cfg.Temporal.Address,
		Namespace: cfg.Temporal.Namespace,
		Logger:    tlog.NewStructuredLogger(logger),
	}
	if step := os.Getenv(EnvKillAt); step != "" {
		opts.Interceptors = []interceptor.ClientInterceptor{&killer{step: step}}
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := client.DialContext(dctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "faultworker: connect to Temporal at %s: %v\n", cfg.Temporal.Address, err)
		os.Exit(1)
	}
	defer c.Close()
	a, err := app.New(ctx, cfg, app.Options{Client: c, Logger: logger})
	if err != nil {
		fmt.Fprintf(os.Stderr, "faultworker: %v\n", err)
		os.Exit(1)
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "faultworker: %v\n", err)
		os.Exit(1)
	}
}

// killer is a client interceptor that also intercepts the worker's
// workflows.
type killer struct {
	interceptor.InterceptorBase
	step string
}

func (k *killer) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &killIn{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, step: k.step}
}

type killIn struct {
	interceptor.WorkflowInboundInterceptorBase
	step string
}

func (i *killIn) Init(out interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&killOut{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, step: i.step})
}

type killOut struct {
	interceptor.WorkflowOutboundInterceptorBase
	step string
}

// ExecuteActivity dies before scheduling the step's activity (the
// interpreter uses the step id as the activity id). During replay the
// activity was scheduled by an earlier worker, so nothing happens.
func (o *killOut) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	if !workflow.IsReplaying(ctx) && workflow.GetActivityOptions(ctx).ActivityID == o.step {
		fmt.Fprintf(os.Stderr, "%s%s (%s)\n", KilledMarker, o.step, activityType)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		// The signal is on its way; never let the workflow go on.
		for {
			time.Sleep(time.Second)
		}
	}
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}
