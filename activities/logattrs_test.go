package activities_test

import (
	"context"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities"
)

func TestLogAttrsNameRunAndStep(t *testing.T) {
	if got := activities.LogAttrs(context.Background()); got != nil {
		t.Fatalf("outside an activity: %v, want none", got)
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(func(ctx context.Context) (map[string]any, error) {
		kv := activities.LogAttrs(ctx)
		out := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out, nil
	}, activity.RegisterOptions{Name: "kube.setImage"})
	v, err := env.ExecuteActivity("kube.setImage")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := v.Get(&got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"workflowId", "runId", "stepId", "stepType", "attempt"} {
		if _, ok := got[k]; !ok {
			t.Errorf("LogAttrs lacks %s: %v", k, got)
		}
	}
	if got["stepType"] != "kube.setImage" {
		t.Errorf("stepType = %v, want kube.setImage", got["stepType"])
	}
	if got["runId"] == "" || got["workflowId"] == "" {
		t.Errorf("empty run ids: %v", got)
	}
}
