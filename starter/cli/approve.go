package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/workflows"
)

type decisionVerb struct {
	decision string // workflows.DecisionApprove or DecisionReject
	past     string
}

var (
	decisionApprove = decisionVerb{workflows.DecisionApprove, "approved"}
	decisionReject  = decisionVerb{workflows.DecisionReject, "rejected"}
)

// ApproveOptions are the inputs of `stagehand approve` and `stagehand reject`.
type ApproveOptions struct {
	Run     string
	Gate    string
	As      string
	Comment string
	// Signal sends the approval signal instead of the update: fire and
	// forget, for when the workflow cannot validate synchronously.
	Signal bool
}

func newApproveCmd(f *Factory, g *GlobalOptions, verb decisionVerb) *cobra.Command {
	opts := &ApproveOptions{}
	short := "Approve the gate a run is waiting at"
	outcome := "The run continues with the next step."
	if verb == decisionReject {
		short = "Reject the gate a run is waiting at"
		outcome = "The run stops, runs its onFailure compensation and ends as rejected."
	}
	cmd := &cobra.Command{
		Use:   verb.decision + " RUN [--gate GATE] [--as USER] [--comment TEXT]",
		Short: short,
		Long: short + `. ` + outcome + `

The decision is sent as the workflow's "approve" update, so it is checked
before it is recorded: an unknown gate, a gate that is not waiting, a user who
is not one of the gate's approvers, or approving your own run is refused with
the reason, and the command exits 2.

The connection's identity (stagehand-cli:<user>@<host>, or the client
certificate's subject) is sent with the decision and recorded apart from
--as; where the worker maps identities to approvers, a decision whose
identity belongs to someone else is refused, and a gate with
requireIdentity accepts only mapped identities.

--gate may be omitted when the run is waiting at a gate (status tells which).
--signal sends the "approval" signal instead; signals are not checked before
they land, so confirm with ` + "`stagehand status RUN`" + `.`,
		Example: fmt.Sprintf(`  stagehand %[1]s patch-20261122-024501 --gate merge --comment "sandbox checks passed"
  stagehand %[1]s patch-20261122-024501 --as alice
  stagehand %[1]s patch-20261122-024501 --gate merge --signal`, verb.decision),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Run = args[0]
			return runApprove(cmd.Context(), f, g, opts, verb, commandPrefix(cmd, g))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.Gate, "gate", "g", "", "approval gate (step id); default: the gate the run waits at")
	fl.StringVar(&opts.As, "as", f.currentUser(), "who decides (from $USER)")
	fl.StringVarP(&opts.Comment, "comment", "m", "", "why; kept in the run's audit trail")
	fl.BoolVar(&opts.Signal, "signal", false, "send the approval signal (fire and forget) instead of the checked update")
	return cmd
}

func runApprove(ctx context.Context, f *Factory, g *GlobalOptions, opts *ApproveOptions, verb decisionVerb, prefix string) error {
	if opts.As == "" {
		return usageError("say who decides with --as USER ($USER is not set)")
	}
	c, err := f.connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.Close()

	gate := opts.Gate
	if gate == "" {
		_, st, err := loadStatus(ctx, f, g, c, opts.Run)
		if err != nil {
			return err
		}
		if st.PendingGate == nil {
			return usageError("run %s is not waiting at an approval gate (state %s); see `%s status %s`", opts.Run, st.State, prefix, shellQuote(opts.Run))
		}
		gate = st.PendingGate.Gate
	}
	decision := workflows.ApprovalDecision{Gate: gate, Decision: verb.decision, By: opts.As, Comment: opts.Comment}

	if opts.Signal {
		if err := c.SignalWorkflow(ctx, opts.Run, "", workflows.ApprovalSignal, decision); err != nil {
			return g.rpcError(err, opts.Run, "signal run "+opts.Run)
		}
		fmt.Fprintf(f.IO.Out, "Sent %s signal for gate %s of run %s as %s.\n", verb.decision, gate, opts.Run, opts.As)
		fmt.Fprintf(f.IO.Out, "Signals are not checked before they land; confirm with `%s status %s`.\n", prefix, shellQuote(opts.Run))
		return nil
	}

	uctx, cancel := context.WithTimeout(ctx, f.RPCTimeout)
	defer cancel()
	handle, err := c.UpdateWorkflow(uctx, client.UpdateWorkflowOptions{
		WorkflowID:   opts.Run,
		UpdateName:   workflows.ApproveUpdate,
		Args:         []any{decision},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var rec workflows.DecisionRecord
	if err == nil {
		err = handle.Get(uctx, &rec)
	}
	if err != nil {
		return updateError(g, err, opts.Run, gate, verb, prefix)
	}
	fmt.Fprintf(f.IO.Out, "%s gate %s of run %s as %s.\n", capitalize(verb.past), gate, opts.Run, opts.As)
	if rec.Identity != "" {
		fmt.Fprintf(f.IO.Out, "Recorded with connection identity %s.\n", rec.Identity)
	}
	fmt.Fprintf(f.IO.Out, "Follow the run: %s watch %s\n", prefix, shellQuote(opts.Run))
	return nil
}

// updateError explains why an approval did not go through.
func updateError(g *GlobalOptions, err error, run, gate string, verb decisionVerb, prefix string) *ExitError {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		// The update's validator (or handler) said no: the input is wrong.
		return usageError("%s of gate %s refused by run %s: %s (see `%s status %s`)", verb.decision, gate, run, appErr.Message(), prefix, shellQuote(run))
	}
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return exitf(ExitNotFound, "run %q not found or already ended in namespace %q: %v (list runs with `%s list`)", run, g.Namespace, serviceMessage(err), prefix)
	}
	var timeout *client.WorkflowUpdateServiceTimeoutOrCanceledError
	var deadline *serviceerror.DeadlineExceeded
	if errors.As(err, &timeout) || errors.As(err, &deadline) || errors.Is(err, context.DeadlineExceeded) {
		return exitf(ExitTemporal, "no worker answered the approval of run %s (is the Stagehand worker running on task queue %q?); it may still be applied when a worker picks the run up, check with `%s status %s`", run, g.TaskQueue, prefix, shellQuote(run))
	}
	return g.rpcError(err, run, verb.decision+" run "+run)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
