package workflows

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/runbooks"
)

// Error types of a run that could not start; both are non-retryable.
const (
	InvalidRunbookErrorType = activities.ErrInvalidRunbook
	InvalidParamsErrorType  = activities.ErrInvalidParams
)

// ResolvedRun is what the first activity of every run returns. Because it is
// an activity result it is recorded in the workflow history: replays and
// audits see exactly the runbook and parameters that ran, even if the files
// change later.
type ResolvedRun struct {
	Runbook runbooks.Runbook `json:"runbook"`
	// Source says where the runbook came from: a built-in file, a file in
	// the worker's runbook directory, or "inline".
	Source string         `json:"source"`
	Params map[string]any `json:"params"`
	// StepTypes holds the catalogue defaults for every step type the
	// runbook uses, so the workflow needs no catalogue of its own.
	StepTypes map[string]StepTypeOptions `json:"stepTypes"`
	// Environments is the worker's non-secret environment settings, read by
	// templates as .environments; recorded so replays see the same values.
	Environments map[string]any `json:"environments,omitempty"`
	// Settings is the worker's team-wide settings, read as .settings.
	Settings map[string]any `json:"settings,omitempty"`
	// Approvals is the worker's approval policy (identities, whether every
	// gate requires one); nil when the worker has none.
	Approvals *ApprovalPolicy `json:"approvals,omitempty"`
}

// StepTypeOptions are the per-type defaults the interpreter applies.
type StepTypeOptions struct {
	Native           bool              `json:"native,omitempty"`
	DefaultTimeout   runbooks.Duration `json:"defaultTimeout,omitempty"`
	HeartbeatTimeout runbooks.Duration `json:"heartbeatTimeout,omitempty"`
	// Irreversible: a cancel waits for the step's outcome (see stepcall.go).
	// Recorded with the run, so a run resolved before the flag existed
	// replays without it.
	Irreversible bool `json:"irreversible,omitempty"`
}

// Resolver is the activity that loads and validates a run's runbook and
// parameters before any step has a side effect.
type Resolver struct {
	Library   *runbooks.Library
	Catalogue *activities.Catalogue
	// Environments is exposed to templates as .environments.
	Environments map[string]any
	// Settings is exposed to templates as .settings.
	Settings map[string]any
	// AllowInline accepts runs that carry their runbook inline (RunInput's
	// Definition). Off by default: anyone who can start a workflow could
	// otherwise run any step, ungated, on the worker's credentials; with it
	// off a run can name only a runbook the worker loaded. The worker
	// config's allowInlineRunbooks sets it.
	AllowInline bool
	// Approvals is the worker's approval policy (worker config
	// `approvals:`), recorded with each run.
	Approvals ApprovalPolicy
}

// MaxRequestedByLen bounds RunInput.RequestedBy (bytes).
const MaxRequestedByLen = 256

// AllowInlineSetting is the worker config key that sets
// Resolver.AllowInline, named in the error a refused inline run gets.
const AllowInlineSetting = "allowInlineRunbooks"

// Resolve finds the runbook (by name or inline), validates it against the
// catalogue, and resolves the parameters. Every failure is non-retryable:
// a bad runbook does not get better by retrying.
func (r *Resolver) Resolve(_ context.Context, in RunInput) (*ResolvedRun, error) {
	var (
		file string
		data []byte
	)
	switch {
	case in.Runbook != "" && in.Definition != "":
		return nil, temporal.NewNonRetryableApplicationError("give either runbook (a name) or definition (inline YAML), not both", InvalidRunbookErrorType, nil)
	case in.Definition != "":
		if !r.AllowInline {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				`inline runbooks ("definition") are off on this worker: name a runbook it loaded (%s), or set %s: true in the worker config to accept them`,
				r.knownRunbooks(), AllowInlineSetting), InvalidRunbookErrorType, nil)
		}
		file, data = "inline", []byte(in.Definition)
	case in.Runbook != "":
		if r.Library == nil {
			return nil, temporal.NewNonRetryableApplicationError("this worker has no runbook library", InvalidRunbookErrorType, nil)
		}
		src, err := r.Library.Source(in.Runbook)
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), InvalidRunbookErrorType, nil)
		}
		file, data = src.File, src.Data
	default:
		return nil, temporal.NewNonRetryableApplicationError(`the input needs "runbook" (a name) or "definition" (inline YAML), e.g. {"runbook":"hello","params":{"image":"repo/app:1.0"}}`, InvalidRunbookErrorType, nil)
	}
	rb, err := runbooks.Parse(file, data, r.Catalogue)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), InvalidRunbookErrorType, nil)
	}
	if strings.TrimSpace(in.RequestedBy) == "" {
		// Four-eyes compares approvers with the requester: a run without
		// one would let anyone approve it, so it does not start.
		return nil, temporal.NewNonRetryableApplicationError(
			`"requestedBy" is required: say who asks for the run (the stagehand CLI sets it from --requested-by or $USER); the four-eyes rule at approval gates needs it`,
			InvalidParamsErrorType, nil)
	}
	if len(in.RequestedBy) > MaxRequestedByLen {
		// It becomes a search attribute at the start: a value past the
		// server's size limit fails every workflow task, and the run is stuck.
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			`"requestedBy" is %d bytes, longer than %d: give a user name`, len(in.RequestedBy), MaxRequestedByLen),
			InvalidParamsErrorType, nil)
	}
	envNames := make([]string, 0, len(r.Environments))
	for name := range r.Environments {
		envNames = append(envNames, name)
	}
	sort.Strings(envNames)
	params, err := runbooks.ResolveParamsIn(rb, in.Params, envNames)
	if err != nil {
		var pe *runbooks.ParamError
		if errors.As(err, &pe) {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), InvalidParamsErrorType, nil)
		}
		return nil, fmt.Errorf("resolve params: %w", err)
	}
	if err := checkConfigKeys(rb, params, r.Environments, r.Settings, r.Catalogue); err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), InvalidRunbookErrorType, nil)
	}
	types := map[string]StepTypeOptions{}
	var collect func(steps []runbooks.Step)
	collect = func(steps []runbooks.Step) {
		for _, s := range steps {
			collect(s.Parallel)
			uses := s.Uses
			if s.Approval != nil && s.Approval.Remind != nil {
				uses = s.Approval.Remind.Uses
			}
			if uses == "" {
				continue
			}
			if t, ok := r.Catalogue.Lookup(uses); ok {
				types[uses] = StepTypeOptions{
					Native:           t.Native,
					DefaultTimeout:   runbooks.Duration(t.DefaultTimeout),
					HeartbeatTimeout: runbooks.Duration(t.HeartbeatTimeout),
					Irreversible:     t.Irreversible,
				}
			}
		}
	}
	collect(rb.Steps)
	collect(rb.OnFailure)
	res := &ResolvedRun{Runbook: *rb, Source: file, Params: params, StepTypes: types, Environments: r.Environments, Settings: r.Settings}
	if !r.Approvals.isZero() {
		policy := r.Approvals
		res.Approvals = &policy
	}
	return res, nil
}

// knownRunbooks lists the library's runbooks for an error message.
func (r *Resolver) knownRunbooks() string {
	if r.Library == nil || len(r.Library.Names()) == 0 {
		return "it has none"
	}
	return "known: " + strings.Join(r.Library.Names(), ", ")
}

// resolveLocalChange marks the switch of the resolve step from a regular
// activity to a local one. Runs recorded before it (no marker in their
// history) replay through the activity; new runs resolve inside their first
// workflow task, which saves an activity round trip through the server per
// run (about a tenth of a short run's time), and record the result in a
// marker event instead, just as durably.
const resolveLocalChange = "resolve-local-activity"

// resolveTimeout bounds loading and validating a runbook; the loader's own
// size and alias limits keep it far below this.
const resolveTimeout = 30 * time.Second

// resolveRun loads the run's runbook and params through the resolve
// activity. Its result is recorded in history, so replays and audits see
// exactly what ran even if the runbook files change later.
func resolveRun(ctx workflow.Context, in RunInput) (*ResolvedRun, error) {
	retry := &temporal.RetryPolicy{MaximumAttempts: 3, NonRetryableErrorTypes: []string{InvalidRunbookErrorType, InvalidParamsErrorType}}
	var (
		resolved ResolvedRun
		err      error
	)
	if workflow.GetVersion(ctx, resolveLocalChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			ActivityID:          "resolve",
			StartToCloseTimeout: resolveTimeout,
			RetryPolicy:         retry,
		})
		err = workflow.ExecuteActivity(actx, ResolveActivity, in).Get(ctx, &resolved)
	} else {
		lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout: resolveTimeout,
			RetryPolicy:         retry,
			Summary:             "resolve the runbook and its params",
		})
		err = workflow.ExecuteLocalActivity(lctx, ResolveActivity, in).Get(ctx, &resolved)
	}
	if err != nil {
		return nil, err
	}
	normalizeParams(&resolved)
	return &resolved, nil
}

// normalizeParams restores int params to int64: the activity result went
// through JSON, which turns every number into float64, and templates such
// as printf "%d" must see the declared type.
func normalizeParams(res *ResolvedRun) {
	for name, p := range res.Runbook.Params {
		if p.Type != runbooks.ParamInt {
			continue
		}
		if f, ok := res.Params[name].(float64); ok {
			res.Params[name] = int64(f)
		}
	}
}
