package workflows

import (
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/activities"
)

// Error types the interpreter itself gives a step (beside the types its
// activities raise); they appear in status, audit and `retry.nonRetryable`.
// Their one home, with meanings, is activities/errortypes.go.
const (
	errTypeTemplate         = activities.ErrTemplateError
	errTypeInvalidArguments = activities.ErrInvalidArguments
	errTypeUnknownStepType  = activities.ErrUnknownStepType
	errTypeTimeout          = activities.ErrTimeout
)

// stepError is why one call of a step type did not succeed.
type stepError struct {
	message   string
	errType   string
	attempts  int32
	cancelled bool
	// worker is the identity of the worker whose attempt failed last.
	worker string
}

// stepFailure says why a step (and so the run) did not succeed.
type stepFailure struct {
	step      string
	message   string
	rejected  bool
	cancelled bool
}

// fail records a failed (or cancelled) call in the step's status and
// returns the failure that stops the run.
func (st *StepStatus) fail(stepID string, e *stepError) *stepFailure {
	if e.cancelled {
		st.State = StepCancelled
		return &stepFailure{step: stepID, message: e.message, cancelled: true}
	}
	st.State = StepFailed
	st.Error = e.message
	st.ErrorType = e.errType
	if e.worker != "" {
		st.Worker = e.worker
	}
	if e.attempts > 0 {
		st.Attempts = e.attempts
	}
	return &stepFailure{step: stepID, message: e.message}
}

// describeActivityError turns an activity failure into the message, error
// type and attempt count shown in status and the audit.
func describeActivityError(err error, ao workflow.ActivityOptions) *stepError {
	e := &stepError{message: causeMessage(err)}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		e.errType = appErr.Type()
		var d activities.StepFailureDetails
		if appErr.HasDetails() && appErr.Details(&d) == nil {
			e.attempts = d.Attempt
		}
	}
	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		e.errType = errTypeTimeout
		switch timeoutErr.TimeoutType() {
		case enumspb.TIMEOUT_TYPE_HEARTBEAT:
			e.message = fmt.Sprintf("no heartbeat for %s (worker lost or step hung)", ao.HeartbeatTimeout)
		default:
			e.message = fmt.Sprintf("timed out after %s", ao.StartToCloseTimeout)
		}
	}
	var actErr *temporal.ActivityError
	if errors.As(err, &actErr) {
		// The server records who reported the failure; a timeout has no
		// reporter (the worker was lost).
		e.worker = actErr.Identity()
		if actErr.RetryState() == enumspb.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED && ao.RetryPolicy != nil {
			e.attempts = ao.RetryPolicy.MaximumAttempts
		}
	}
	return e
}

// causeMessage strips Temporal's wrapping ("activity error (type: ...)")
// down to the message a person wants to read.
func causeMessage(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr == err {
			break
		}
		err = next
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return activities.CleanMessage(errors.New(appErr.Message()))
	}
	return activities.CleanMessage(err)
}
