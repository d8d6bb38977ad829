// Package generic holds step types that talk to no outside system: `log`
// writes a message to the worker's log, and `wait` is a durable timer the
// workflow runs itself.
package generic

import (
	"context"

	"go.temporal.io/sdk/activity"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// Activities holds the generic steps; it needs no clients.
type Activities struct{}

// LogInput is the `with` of a log step.
type LogInput struct {
	Message string `json:"message"`
	// Level is info (default), warn or error.
	Level string `json:"level,omitempty"`
}

// LogOutput echoes the message so later steps and the audit can read it.
type LogOutput struct {
	Message string `json:"message"`
}

// Log writes the message to the worker's structured log.
func (a *Activities) Log(ctx context.Context, in LogInput) (LogOutput, error) {
	logger := activity.GetLogger(ctx)
	switch in.Level {
	case "warn":
		logger.Warn(in.Message)
	case "error":
		logger.Error(in.Message)
	default:
		logger.Info(in.Message)
	}
	return LogOutput{Message: in.Message}, nil
}

// WaitInput is the `with` of a wait step.
type WaitInput struct {
	Duration string `json:"duration"`
}

// NoopInput is the `with` of a noop step: anything goes into Echo and comes
// back out, which makes noop useful in tests and benchmarks.
type NoopInput struct {
	Echo any `json:"echo,omitempty"`
}

// NoopOutput returns the echo.
type NoopOutput struct {
	Echo any `json:"echo,omitempty"`
}

// Noop does nothing and returns its input; it measures interpreter overhead.
func (a *Activities) Noop(_ context.Context, in NoopInput) (NoopOutput, error) {
	return NoopOutput(in), nil
}

// StepTypes binds the generic steps to their specs in activities/steps.
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{
		activities.Implement(steps.Spec("log"), a.Log),
		activities.Implement(steps.Spec("noop"), a.Noop),
		activities.ImplementNative[WaitInput](steps.Spec("wait")),
	}
}
