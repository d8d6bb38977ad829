package cli

import (
	"context"
	"errors"
	"fmt"
	enumspb "go.temporal.io/api/enums/v1"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
	"github.com/stagehand-dev/stagehand/internal/payloadcodec"
	"github.com/stagehand-dev/stagehand/internal/temporalconn"
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
	// TLS, API key and payload codec, shared with the worker's temporal.*
	// settings (internal/temporalconn).
	TLSCert, TLSKey, TLSCA, TLSServerName string
	// TLS is "true", "false" or "" (on when a TLS setting or API key is).
	TLS       string
	APIKeyRef string
	// CodecKeys is ID=REF,... newest first (env STAGEHAND_CODEC_KEYS).
	CodecKeys string
	// envErr is an unparsable connection variable, reported on connect.
	envErr error
}

// defaultGlobals reads the environment for the flags' defaults: the
// Temporal SDK's variables (see internal/temporalconn) and Stagehand's.
func defaultGlobals(getenv func(string) string) GlobalOptions {
	conn := temporalconn.Options{Address: "127.0.0.1:7233", Namespace: "default"}
	envErr := conn.ApplyEnv(getenv)
	g := GlobalOptions{Address: conn.Address, Namespace: conn.Namespace, TaskQueue: workflows.DefaultTaskQueue,
		TLSCert: conn.TLS.CertFile, TLSKey: conn.TLS.KeyFile, TLSCA: conn.TLS.CAFile, TLSServerName: conn.TLS.ServerName,
		APIKeyRef: conn.APIKeyRef, CodecKeys: getenv(temporalconn.EnvCodecKeys), envErr: envErr}
	if conn.TLS.Enabled != nil {
		g.TLS = strconv.FormatBool(*conn.TLS.Enabled)
	}
	if v := getenv("STAGEHAND_TASK_QUEUE"); v != "" {
		g.TaskQueue = v
	}
	return g
}

// conn turns the flags into connection options.
func (g *GlobalOptions) conn() (temporalconn.Options, error) {
	if g.envErr != nil {
		return temporalconn.Options{}, g.envErr
	}
	o := temporalconn.Options{Address: g.Address, Namespace: g.Namespace, APIKeyRef: g.APIKeyRef,
		TLS: temporalconn.TLS{CertFile: g.TLSCert, KeyFile: g.TLSKey, CAFile: g.TLSCA, ServerName: g.TLSServerName}}
	if g.TLS != "" {
		on, err := strconv.ParseBool(g.TLS)
		if err != nil {
			return o, fmt.Errorf("--tls %q: want true or false", g.TLS)
		}
		o.TLS.Enabled = &on
	}
	if g.CodecKeys != "" {
		refs, err := payloadcodec.ParseKeyRefs(g.CodecKeys)
		if err != nil {
			return o, fmt.Errorf("--codec-keys: %w", err)
		}
		o.Codec.Keys = refs
	}
	return o, nil
}

// connect dials Temporal with a short timeout and turns failure into an
// actionable exit-3 error.
func (f *Factory) connect(ctx context.Context, g *GlobalOptions) (Client, error) {
	conn, err := g.conn()
	if err != nil {
		return nil, usageError("temporal connection: %v", err)
	}
	dctx, cancel := context.WithTimeout(ctx, f.DialTimeout)
	defer cancel()
	// The codec applies to the gRPC traffic (ForCLI), so the history,
	// memos and query results the commands read arrive decoded.
	opts, err := conn.ClientOptions(dctx, f.resolveSecret, temporalconn.ForCLI)
	if err != nil {
		return nil, exitf(ExitTemporal, "temporal connection settings: %v", err)
	}
	// The SDK logs every retry to stderr by default; the CLI reports
	// errors itself.
	opts.Logger = tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	// Who is on this end of the connection, recorded with approval
	// decisions apart from --as: the client certificate's subject when the
	// connection has one, else stagehand-cli:<user>@<host>.
	opts.Identity = f.identity()
	if t := opts.ConnectionOptions.TLS; t != nil && len(t.Certificates) > 0 {
		if id := workflows.CertIdentityFromTLS(t.Certificates[0]); id != "" {
			opts.Identity = id
		}
	}
	c, err := f.Dial(dctx, workflows.WithIdentityHeader(opts))
	if err != nil {
		if errors.Is(dctx.Err(), context.DeadlineExceeded) && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s: %w", f.DialTimeout, err)
		}
		hint := conn.DialHint(err)
		if hint == "" {
			hint = "is the dev server running? try `make dev`"
		}
		return nil, exitf(ExitTemporal, "cannot reach Temporal at %s: %v (%s)", g.Address, err, hint)
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

// resolveSecret resolves env:NAME references from the CLI's environment
// (f.Getenv, so tests inject it); the CLI has no other secret store.
func (f *Factory) resolveSecret(_ context.Context, ref string) (string, error) {
	name, ok := strings.CutPrefix(ref, "env:")
	if !ok || name == "" {
		return "", fmt.Errorf("the stagehand CLI resolves only env:NAME references, not %q", ref)
	}
	v := f.Getenv(name)
	if v == "" {
		return "", fmt.Errorf("environment variable %s is not set", name)
	}
	return v, nil
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
