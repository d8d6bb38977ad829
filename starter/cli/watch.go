package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/stagehand-dev/stagehand/workflows"
)

// WatchOptions are the inputs of `stagehand watch`.
type WatchOptions struct {
	Run      string
	Interval time.Duration
}

func newWatchCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &WatchOptions{}
	cmd := &cobra.Command{
		Use:   "watch RUN",
		Short: "Follow a run live until it ends or waits for approval",
		Long: `Print a line each time a step of the run changes state, until the run ends or
stops at an approval gate.

Exits 0 when the run succeeded, 1 when it failed, was rejected or was
cancelled, and 5 when it waits for approval (the gate and the command to
approve it are printed), so a script can chain watch and approve.`,
		Example: `  stagehand watch patch-20261122-024501

  # Wait in a script; approve when it stops at the gate
  stagehand watch "$RUN"; if [ $? -eq 5 ]; then stagehand approve "$RUN"; fi`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Run = args[0]
			return runWatch(cmd.Context(), f, g, opts, commandPrefix(cmd, g))
		},
	}
	cmd.Flags().DurationVar(&opts.Interval, "interval", time.Second, "how often to poll the run's status")
	return cmd
}

func runWatch(ctx context.Context, f *Factory, g *GlobalOptions, opts *WatchOptions, prefix string) error {
	if opts.Interval <= 0 {
		return usageError("invalid --interval %s: must be positive", opts.Interval)
	}
	c, err := f.connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.Close()

	w := &watcher{out: f.IO.Out, now: f.Now, seen: map[string]workflows.StepState{}}
	announced := false
	workerWarned := false
	for {
		view, st, err := loadStatus(ctx, f, g, c, opts.Run)
		if err != nil {
			if ctx.Err() != nil {
				return exitf(ExitTemporal, "stopped watching run %s: %v", opts.Run, ctx.Err())
			}
			var ee *ExitError
			// A missing worker may come back: keep watching, say so once.
			if errors.As(err, &ee) && ee.Code == ExitTemporal && isNoWorker(ee) {
				if !workerWarned {
					fmt.Fprintf(f.IO.ErrOut, "warning: %v; still watching\n", ee.Err)
					workerWarned = true
				}
			} else {
				return err
			}
		} else {
			workerWarned = false
			if !announced {
				fmt.Fprintf(f.IO.Out, "Watching %s run %s (Ctrl-C to stop)\n", st.Runbook, opts.Run)
				announced = true
			}
			w.update(st)
			if done, code := w.finish(view, st, prefix); done {
				if code == ExitOK {
					return nil
				}
				return silentExit(code)
			}
		}
		t := time.NewTimer(opts.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return exitf(ExitTemporal, "stopped watching run %s: %v", opts.Run, ctx.Err())
		case <-t.C:
		}
	}
}

func isNoWorker(ee *ExitError) bool {
	return errors.Is(ee, errNoWorker)
}

// watcher prints step state changes between successive Status snapshots.
type watcher struct {
	out  io.Writer
	now  func() time.Time
	seen map[string]workflows.StepState
}

func (w *watcher) update(st *workflows.Status) {
	width := 0
	for _, s := range st.Steps {
		width = max(width, len(s.ID))
	}
	for _, s := range st.Compensation {
		width = max(width, len("onFailure/"+s.ID))
	}
	w.steps("", st.Steps, width)
	w.steps("onFailure/", st.Compensation, width)
}

func (w *watcher) steps(prefix string, steps []workflows.StepStatus, width int) {
	for _, s := range steps {
		key := prefix + s.ID
		prev, ok := w.seen[key]
		if (ok && prev == s.State) || (!ok && s.State == workflows.StepPending) {
			w.seen[key] = s.State
			continue
		}
		w.seen[key] = s.State
		at := w.now()
		if s.EndedAt != nil {
			at = *s.EndedAt
		} else if s.StartedAt != nil && s.State == workflows.StepRunning {
			at = *s.StartedAt
		}
		line := fmt.Sprintf("%s  %-*s  %s", at.Local().Format("15:04:05"), width, key, s.State)
		if s.StartedAt != nil && s.EndedAt != nil {
			line += fmt.Sprintf(" (%s)", fmtDuration(s.EndedAt.Sub(*s.StartedAt)))
		}
		if s.Attempts > 1 {
			line += fmt.Sprintf(" [attempt %d]", s.Attempts)
		}
		if s.Error != "" {
			line += ": " + truncate(s.Error, 120)
		}
		fmt.Fprintln(w.out, line)
	}
}

// finish reports whether watching is over and with which exit code.
func (w *watcher) finish(view *runView, st *workflows.Status, prefix string) (bool, int) {
	switch {
	case st.State == workflows.RunSucceeded:
		fmt.Fprintf(w.out, "Run %s succeeded%s.\n", view.WorkflowID, took(st))
		return true, ExitOK
	case st.State.Terminal() && st.EndedAt == nil && view.Execution == "running":
		// Failed, rejected or cancelled, but onFailure steps still run:
		// keep watching so their outcome is shown too.
		return false, 0
	case st.State.Terminal():
		msg := fmt.Sprintf("Run %s %s%s", view.WorkflowID, st.State, took(st))
		if st.FailedStep != "" {
			msg += " at step " + st.FailedStep
		}
		if st.Error != "" {
			msg += ": " + st.Error
		}
		fmt.Fprintln(w.out, msg)
		if len(st.Compensated) > 0 {
			fmt.Fprintf(w.out, "Compensated: %s\n", joinComma(st.Compensated))
		}
		return true, ExitRunFailed
	case view.Execution != "running":
		// The workflow ended without reporting a terminal state
		// (terminated, timed out).
		fmt.Fprintf(w.out, "Run %s ended: %s.\n", view.WorkflowID, view.Execution)
		if view.Note != "" {
			fmt.Fprintf(w.out, "(%s)\n", view.Note)
		}
		return true, ExitRunFailed
	case st.PendingGate != nil:
		gate := st.PendingGate
		fmt.Fprintf(w.out, "Run %s is waiting for approval at gate %q", view.WorkflowID, gate.Gate)
		if len(gate.Approvers) > 0 {
			fmt.Fprintf(w.out, " (approvers: %s)", joinComma(gate.Approvers))
		}
		fmt.Fprintln(w.out, ".")
		if gate.Message != "" {
			fmt.Fprintf(w.out, "  %s\n", gate.Message)
		}
		if gate.Deadline != nil {
			fmt.Fprintf(w.out, "  deadline: %s\n", fmtTime(*gate.Deadline))
		}
		fmt.Fprintf(w.out, "  approve: %s\n", approveCommand(prefix, "approve", view.WorkflowID, gate.Gate))
		fmt.Fprintf(w.out, "  reject:  %s\n", approveCommand(prefix, "reject", view.WorkflowID, gate.Gate))
		return true, ExitWaitingApproval
	}
	return false, 0
}

func took(st *workflows.Status) string {
	if st.EndedAt == nil || st.StartedAt.IsZero() {
		return ""
	}
	return " in " + fmtDuration(st.EndedAt.Sub(st.StartedAt))
}
