package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"go.temporal.io/sdk/temporal"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/stagehand-dev/stagehand/activities"
)

// The cause's text is folded into the message instead of being attached as
// the ApplicationError's cause: the step adapter re-wraps errors with
// err.Error() as the message and the cause again, which would print the
// apiserver's message twice in history, and a client-go error type name
// ("StatusError") tells the reader nothing.
func nonRetryable(errType, msg string, cause error) error {
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return temporal.NewNonRetryableApplicationError(msg, errType, nil)
}

func retryable(errType, msg string, cause error) error {
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return temporal.NewApplicationError(msg, errType)
}

// classify turns a client-go error into the error a step returns: msg is a
// lowercase description of what was being done ("get deployment web/api").
// The cause's text is the apiserver's Status message, which names the
// user and resource but never a credential.
func classify(msg string, err error) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	errType, permanent := errorType(err)
	if permanent {
		return nonRetryable(errType, msg, err)
	}
	return retryable(errType, msg, err)
}

// errorType names an error and says whether retrying could ever help.
func errorType(err error) (string, bool) {
	switch {
	case apierrors.IsForbidden(err):
		return activities.ErrKubeForbidden, true
	case apierrors.IsUnauthorized(err):
		return activities.ErrKubeUnauthorized, true
	case apierrors.IsNotFound(err):
		return activities.ErrKubeNotFound, true
	case isApplyConflict(err):
		// A server-side apply conflict with another field manager stays a
		// conflict however often it is retried.
		return activities.ErrKubeApplyConflict, true
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return activities.ErrKubeConflict, false
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsNotAcceptable(err), apierrors.IsUnsupportedMediaType(err), apierrors.IsRequestEntityTooLargeError(err):
		return activities.ErrKubeInvalid, true
	case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err), apierrors.IsUnexpectedServerError(err):
		return activities.ErrKubeUnavailable, false
	case isConnectionError(err):
		return activities.ErrKubeUnavailable, false
	}
	return activities.ErrKubeError, false
}

// isPermanent reports whether a list/watch error should end a waiting step
// rather than be retried inside it.
func isPermanent(err error) bool {
	_, permanent := errorType(err)
	return permanent
}

func isApplyConflict(err error) bool {
	if !apierrors.IsConflict(err) {
		return false
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	if d := status.Status().Details; d != nil {
		for _, c := range d.Causes {
			if c.Type == metav1.CauseTypeFieldManagerConflict {
				return true
			}
		}
	}
	return false
}

func isConnectionError(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err)
}
