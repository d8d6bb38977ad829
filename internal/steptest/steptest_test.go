package steptest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
)

type echoIn struct {
	Say string `json:"say"`
}

type echoOut struct {
	Said   string `json:"said"`
	StepID string `json:"stepId"`
}

func types() []activities.StepType {
	return []activities.StepType{
		activities.Step("test.echo", "echoes, heartbeating once", func(ctx context.Context, in echoIn) (echoOut, error) {
			activity.RecordHeartbeat(ctx, map[string]string{"saying": in.Say})
			if in.Say == "fail" {
				return echoOut{}, temporal.NewNonRetryableApplicationError("told to fail, token s3cr3t", "EchoFailed", errors.New("the cause"))
			}
			return echoOut{Said: in.Say, StepID: activity.GetInfo(ctx).ActivityType.Name}, nil
		}),
	}
}

func TestRunStep(t *testing.T) {
	var seen int
	run := MustStep(t, types(), "test.echo", map[string]any{"say": "hi"}, StepID("s1"),
		OnHeartbeat(func(d converter.EncodedValues) { seen++ }))
	if run.Outputs["said"] != "hi" || run.Outputs["stepId"] != "test.echo" {
		t.Errorf("outputs %v", run.Outputs)
	}
	if len(run.Heartbeats) != 1 || run.Heartbeats[0] != `{"saying":"hi"}` || seen != 1 {
		t.Errorf("heartbeats %q, callback saw %d; want one {\"saying\":\"hi\"}", run.Heartbeats, seen)
	}

	failed := RunStep(t, types(), "test.echo", map[string]any{"say": "fail"})
	msg := WantAppError(t, failed.Err, "EchoFailed", true, []string{"told to fail", "the cause"}, "")
	if !strings.Contains(msg, "\n") {
		t.Errorf("FullText %q has one line, want the whole chain", msg)
	}
}

// WantAppError's checks fail when they should: run against a recorder.
func TestWantAppErrorFails(t *testing.T) {
	run := RunStep(t, types(), "test.echo", map[string]any{"say": "fail"})
	for name, check := range map[string]func(testing.TB){
		"type":      func(r testing.TB) { WantAppError(r, run.Err, "Other", true, nil) },
		"retryable": func(r testing.TB) { WantAppError(r, run.Err, "EchoFailed", false, nil) },
		"want":      func(r testing.TB) { WantAppError(r, run.Err, "EchoFailed", true, []string{"absent"}) },
		"forbidden": func(r testing.TB) { WantAppError(r, run.Err, "EchoFailed", true, nil, "s3cr3t") },
	} {
		r := &recorder{TB: t}
		func() {
			defer func() {
				if p := recover(); p != nil && p != r {
					panic(p)
				}
			}()
			check(r)
		}()
		if !r.failed {
			t.Errorf("%s: WantAppError did not fail", name)
		}
	}
}

// recorder notes failures instead of failing the test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic(r) } // stops the check, as t.Fatalf would
