package cli

import (
	"context"
	"errors"
	"fmt"
	enumspb "go.temporal.io/api/enums/v1"
	"log/slog"
	"os"
	"os/user"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
	"github.com/stagehand-dev/stagehand/workflows"
)

// Client is the part of the Temporal client the CLI uses. client.Client and
// go.temporal.io/sdk/mocks.Client both satisfy it.
type Client interface {
	ExecuteWorkflow(ctx context.Context, options client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error)
	GetWorkflow(ctx context.Context, workflowID, runID string) client.WorkflowRun
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
	QueryWorkflow(ctx context.Context, workflowID, runID, queryType string, args ...any) (converter.EncodedValue, error)
	UpdateWorkflow(ctx context.Context, options client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error)
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
	ListWorkflow(ctx context.Context, request *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error)
	GetWorkflowHistory(ctx context.Context, workflowID, runID string, isLongPoll bool, filterType enumspb.HistoryEventFilterType) client.HistoryEventIterator
	Close()
}

// Factory holds what commands need from the outside world. NewFactory
// returns the real one; tests build their own with fakes.
type Factory struct {
	IO     *IOStreams
	Getenv func(string) string
	Now    func() time.Time
	// Dial connects to Temporal. It must fail within the context's deadline
	// when the server is unreachable.
	Dial func(ctx context.Context, opts client.Options) (Client, error)
	// DialTimeout bounds Dial, so an unreachable server is reported in
	// seconds rather than hanging.
	DialTimeout time.Duration
	// RPCTimeout bounds calls that need a worker to answer (queries,
	// updates), so a missing worker is reported instead of hanging.
	RPCTimeout time.Duration
	// Catalogue returns the step specs runbooks are validated against: the
	// descriptions only, so the CLI links no adapter's client library.
	Catalogue func() (*activities.Specs, error)
	// LoadRunbook parses and validates one runbook file.
	LoadRunbook RunbookLoader
	// OSUser names the account running the CLI, for when $USER is unset
	// (containers, cron).
	OSUser func() string
	// Hostname names this machine in the CLI's Temporal identity.
	Hostname func() (string, error)
}

// NewFactory returns the factory the stagehand binary uses.
func NewFactory(io *IOStreams) *Factory {
	return &Factory{
		IO:          io,
		Getenv:      os.Getenv,
		Now:         time.Now,
		Dial:        dialTemporal,
		DialTimeout: 5 * time.Second,
		RPCTimeout:  15 * time.Second,
		Catalogue:   steps.Catalogue,
		LoadRunbook: loadRunbookFile,
		Hostname:    os.Hostname,
		OSUser: func() string {
			if u, err := user.Current(); err == nil {
				return u.Username
			}
			return ""
		},
	}
}

func dialTemporal(ctx context.Context, opts client.Options) (Client, error) {
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// GlobalOptions are the persistent flags every command shares.
type GlobalOptions struct {
	Address   string
	Namespace string
	TaskQueue string
}

// defaultGlobals reads the environment for the flags' defaults.
func defaultGlobals(getenv func(string) string) GlobalOptions {
	g := GlobalOptions{Address: "127.0.0.1:7233", Namespace: "default", TaskQueue: workflows.DefaultTaskQueue}
	if v := getenv("TEMPORAL_ADDRESS"); v != "" {
		g.Address = v
	}
	if v := getenv("TEMPORAL_NAMESPACE"); v != "" {
		g.Namespace = v
	}
	if v := getenv("STAGEHAND_TASK_QUEUE"); v != "" {
		g.TaskQueue = v
	}
	return g
}

// connect dials Temporal with a short timeout and turns failure into an
// actionable exit-3 error.
func (f *Factory) connect(ctx context.Context, g *GlobalOptions) (Client, error) {
	dctx, cancel := context.WithTimeout(ctx, f.DialTimeout)
	defer cancel()
	c, err := f.Dial(dctx, workflows.WithIdentityHeader(client.Options{
		HostPort:  g.Address,
		Namespace: g.Namespace,
		// The SDK logs every retry to stderr by default; the CLI reports
		// errors itself.
		Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
		// Who is on this end of the connection, recorded with approval
		// decisions apart from --as (a connection with a client
		// certificate uses workflows.CertIdentity instead).
		Identity: f.identity(),
	}))
	if err != nil {
		if errors.Is(dctx.Err(), context.DeadlineExceeded) && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s: %w", f.DialTimeout, err)
		}
		return nil, exitf(ExitTemporal, "cannot reach Temporal at %s: %v (is the dev server running? try `make dev`)", g.Address, err)
	}
	return c, nil
}

// identity is the CLI's Temporal identity: stagehand-cli:<user>@<host>.
func (f *Factory) identity() string {
	host := ""
	if f.Hostname != nil {
		host, _ = f.Hostname()
	}
	return workflows.CLIIdentity(f.currentUser(), host)
}

// currentUser is who the CLI acts as when --requested-by / --as is not given.
func (f *Factory) currentUser() string {
	for _, k := range []string{"USER", "LOGNAME"} {
		if v := f.Getenv(k); v != "" {
			return v
		}
	}
	if f.OSUser != nil {
		return f.OSUser()
	}
	return ""
}
