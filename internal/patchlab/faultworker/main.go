// Command faultworker is stagehand-worker for the fault suite (e2e
// TestFaults): the same configuration, step catalogue, runbooks and
// workflow, built by the same worker/app, plus one planted fault.
//
// With STAGEHAND_FAULT_KILL_AT=<step id>[,<step id>...] the process
// SIGKILLs itself at the boundary before the first of those steps the run
// reaches: when the workflow, running live (not replaying), is about to
// schedule the step's activity. The step before it is complete in history,
// the step itself is not scheduled, and the workflow task that would have
// scheduled it is lost with the process, which is the crash a worker on a
// node that dies between two steps suffers. A worker started afterwards
// (with the points not yet reached) replays the history and carries on.
// The pseudo step <end> is the boundary after the last step: the workflow
// function has returned and its completion is not yet recorded.
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
	"strings"
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

// EndOfRun is the kill point after the workflow function returns.
const EndOfRun = "<end>"

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
	if list := os.Getenv(EnvKillAt); list != "" {
		k := &killer{at: map[string]bool{}}
		for _, step := range strings.Split(list, ",") {
			if step = strings.TrimSpace(step); step != "" {
				k.at[step] = true
			}
		}
		opts.Interceptors = []interceptor.ClientInterceptor{k}
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
	at map[string]bool
}

func (k *killer) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &killIn{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, at: k.at}
}

type killIn struct {
	interceptor.WorkflowInboundInterceptorBase
	at map[string]bool
}

func (i *killIn) Init(out interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&killOut{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, at: i.at})
}

// ExecuteWorkflow dies after the workflow function returned, before the
// worker reports the completion, when <end> is a kill point.
func (i *killIn) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	res, err := i.Next.ExecuteWorkflow(ctx, in)
	if i.at[EndOfRun] && !workflow.IsReplaying(ctx) {
		die(EndOfRun, "workflow returned")
	}
	return res, err
}

type killOut struct {
	interceptor.WorkflowOutboundInterceptorBase
	at map[string]bool
}

// ExecuteActivity dies before scheduling a kill point's activity (the
// interpreter uses the step id as the activity id). During replay the
// activity was scheduled by an earlier worker, so nothing happens.
func (o *killOut) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	if id := workflow.GetActivityOptions(ctx).ActivityID; o.at[id] && !workflow.IsReplaying(ctx) {
		die(id, activityType)
	}
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

func die(step, what string) {
	fmt.Fprintf(os.Stderr, "%s%s (%s)\n", KilledMarker, step, what)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	// The signal is on its way; never let the workflow go on.
	for {
		time.Sleep(time.Second)
	}
}
