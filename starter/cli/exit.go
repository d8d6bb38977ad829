package cli

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
)

// Exit codes, documented in `stagehand --help`. Scripts rely on them; do
// not renumber.
const (
	// ExitOK: the command did what was asked (for --wait and watch: the run
	// succeeded).
	ExitOK = 0
	// ExitRunFailed: the run failed, was rejected or was cancelled.
	ExitRunFailed = 1
	// ExitUsage: bad flags or arguments, an invalid runbook or bad params,
	// or an approval the workflow refused.
	ExitUsage = 2
	// ExitTemporal: Temporal is unreachable or an RPC failed.
	ExitTemporal = 3
	// ExitNotFound: no run with that id.
	ExitNotFound = 4
	// ExitWaitingApproval: the run stopped at an approval gate.
	ExitWaitingApproval = 5
)

const exitCodeHelp = `Exit codes:
  0  success (with --wait and for watch: the run succeeded)
  1  the run failed, was rejected or was cancelled (start --wait, watch)
  2  usage error or invalid input: bad flags, invalid runbook, bad params,
     an approval the workflow refused
  3  Temporal is unreachable or a Temporal call failed
  4  not found: no run with that id
  5  the run is waiting for approval (watch stops at a gate)`

// ExitError is an error with the exit code the process should end with.
// A nil Err means the command already printed everything it had to say.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// exitf builds an ExitError with a formatted message.
func exitf(code int, format string, args ...any) *ExitError {
	return &ExitError{Code: code, Err: fmt.Errorf(format, args...)}
}

// silentExit ends the command with code after it has printed its output.
func silentExit(code int) *ExitError { return &ExitError{Code: code} }

// usageError reports bad input (exit 2).
func usageError(format string, args ...any) *ExitError { return exitf(ExitUsage, format, args...) }

// ExitCode maps an error returned by a command to the process exit code.
// Errors that are not *ExitError come from argument and flag parsing.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitUsage
}

// rpcError turns a failed Temporal call about run into an ExitError with a
// code and a message that says what to do next.
func (g *GlobalOptions) rpcError(err error, run, doing string) *ExitError {
	var notFound *serviceerror.NotFound
	var nsNotFound *serviceerror.NamespaceNotFound
	var unavailable *serviceerror.Unavailable
	switch {
	case errors.As(err, &nsNotFound):
		return exitf(ExitTemporal, "namespace %q does not exist on %s (set --namespace or TEMPORAL_NAMESPACE)", g.Namespace, g.Address)
	case errors.As(err, &notFound) && run != "":
		return exitf(ExitNotFound, "run %q not found in namespace %q: %v (list runs with `stagehand list`)", run, g.Namespace, serviceMessage(err))
	case errors.As(err, &notFound):
		return exitf(ExitNotFound, "%s: not found: %v", doing, serviceMessage(err))
	case errors.As(err, &unavailable):
		return exitf(ExitTemporal, "cannot reach Temporal at %s: %v (is the dev server running? try `make dev`)", g.Address, err)
	case errors.Is(err, context.Canceled):
		return exitf(ExitTemporal, "%s: interrupted", doing)
	default:
		return exitf(ExitTemporal, "%s: %v", doing, err)
	}
}

func serviceMessage(err error) string {
	var se serviceerror.ServiceError
	if errors.As(err, &se) {
		return se.Error()
	}
	return err.Error()
}
