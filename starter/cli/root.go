package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Main runs the stagehand command line with args (without the program name)
// and returns the process exit code. Errors are printed to f.IO.ErrOut.
func Main(ctx context.Context, args []string, f *Factory) int {
	root := NewRootCmd(f)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitCode(err)
	var ee *ExitError
	switch {
	case errors.As(err, &ee) && ee.Err == nil:
		// Already reported.
	case errors.As(err, &ee):
		fmt.Fprintf(f.IO.ErrOut, "error: %v\n", ee.Err)
	default:
		// Cobra's own argument and flag errors.
		fmt.Fprintf(f.IO.ErrOut, "error: %v\n", err)
		cmd, _, ferr := root.Find(args)
		if ferr != nil || cmd == nil {
			cmd = root
		}
		fmt.Fprintf(f.IO.ErrOut, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// NewRootCmd builds the stagehand command tree.
func NewRootCmd(f *Factory) *cobra.Command {
	g := defaultGlobals(f.Getenv)
	root := &cobra.Command{
		Use:   "stagehand",
		Short: "Run Backstage operations as durable Temporal workflows",
		Long: `stagehand starts, approves, watches and audits runbook runs.

A runbook is a YAML procedure (patch, upgrade, plugin-install, ...) that the
Stagehand worker executes as the Temporal workflow RunbookWorkflow. This CLI
talks to the same Temporal server as the worker and the Temporal UI.

Connection flags can also be set with TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and
STAGEHAND_TASK_QUEUE.

` + exitCodeHelp,
		Example: `  # Check a runbook before committing it
  stagehand validate runbooks/builtin/patch.yaml

  # What runbooks and step types are there, and what would a patch run do?
  stagehand runbooks
  stagehand explain patch --param image=registry/backend:pr-42-1a2b3c4d-1763779501 --param pr=42

  # Start a patch run, follow it, approve its gate
  stagehand start patch --param image=registry/backend:pr-42-1a2b3c4d-1763779501 --param pr=42
  stagehand watch patch-20261122-024501
  stagehand approve patch-20261122-024501 --gate merge --comment "sandbox looks good"

  # Runs of the last day that failed
  stagehand list --since 24h --outcome failed`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Bare `stagehand` prints help rather than failing.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	root.CompletionOptions.DisableDefaultCmd = true

	pf := root.PersistentFlags()
	pf.StringVar(&g.Address, "address", g.Address, "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	pf.StringVar(&g.Namespace, "namespace", g.Namespace, "Temporal namespace (env TEMPORAL_NAMESPACE)")
	pf.StringVar(&g.TaskQueue, "task-queue", g.TaskQueue, "task queue the Stagehand worker polls (env STAGEHAND_TASK_QUEUE)")
	pf.StringVar(&g.TLSCert, "tls-cert", g.TLSCert, "client certificate (PEM) for mutual TLS (env TEMPORAL_TLS_CLIENT_CERT_PATH)")
	pf.StringVar(&g.TLSKey, "tls-key", g.TLSKey, "client key (PEM) for mutual TLS (env TEMPORAL_TLS_CLIENT_KEY_PATH)")
	pf.StringVar(&g.TLSCA, "tls-ca", g.TLSCA, "CA (PEM) the server's certificate must chain to (env TEMPORAL_TLS_SERVER_CA_CERT_PATH)")
	pf.StringVar(&g.TLSServerName, "tls-server-name", g.TLSServerName, "name expected in the server's certificate (env TEMPORAL_TLS_SERVER_NAME)")
	pf.StringVar(&g.TLS, "tls", g.TLS, "force TLS on or off: true or false (env TEMPORAL_TLS; default: on when a TLS flag or API key is set)")
	pf.StringVar(&g.APIKeyRef, "api-key-ref", g.APIKeyRef, "secret reference to a Temporal API key, e.g. env:MY_KEY (TEMPORAL_API_KEY set means env:TEMPORAL_API_KEY)")
	pf.StringVar(&g.CodecKeys, "codec-keys", g.CodecKeys, "payload codec keys, newest first: ID=REF,... (env STAGEHAND_CODEC_KEYS)")

	root.AddCommand(
		newValidateCmd(f, &g),
		newStartCmd(f, &g),
		newApproveCmd(f, &g, decisionApprove),
		newApproveCmd(f, &g, decisionReject),
		newStatusCmd(f, &g),
		newWatchCmd(f, &g),
		newListCmd(f, &g),
		newCatalogueCmd(f, &g),
		newExplainCmd(f, &g),
		newCodecServerCmd(f, &g),
	)
	return root
}

// checkOutput validates an --output value against the allowed formats.
func checkOutput(value string, allowed ...string) error {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return usageError("invalid --output %q: want one of %s", value, strings.Join(allowed, ", "))
}

// commandPrefix is how hints spell the stagehand command, repeating the
// connection flags the user set explicitly so a copied command reaches the
// same server.
func commandPrefix(cmd *cobra.Command, g *GlobalOptions) string {
	parts := []string{"stagehand"}
	for _, name := range []string{"address", "namespace"} {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			parts = append(parts, "--"+name, shellQuote(fl.Value.String()))
		}
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@=,+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
