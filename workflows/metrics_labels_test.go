package workflows_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// tagRecorder is a client.MetricsHandler that keeps every tag set it was
// asked for, so a test can see which label values a run produces.
type tagRecorder struct {
	mu   *sync.Mutex
	tags map[string]string
	seen *[]map[string]string
}

func newTagRecorder() *tagRecorder {
	return &tagRecorder{mu: &sync.Mutex{}, tags: map[string]string{}, seen: &[]map[string]string{}}
}

func (r *tagRecorder) WithTags(tags map[string]string) client.MetricsHandler {
	merged := map[string]string{}
	for k, v := range r.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[k] = v
	}
	r.mu.Lock()
	*r.seen = append(*r.seen, merged)
	r.mu.Unlock()
	return &tagRecorder{mu: r.mu, tags: merged, seen: r.seen}
}

func (r *tagRecorder) Counter(string) client.MetricsCounter {
	return client.MetricsNopHandler.Counter("")
}
func (r *tagRecorder) Gauge(string) client.MetricsGauge { return client.MetricsNopHandler.Gauge("") }
func (r *tagRecorder) Timer(string) client.MetricsTimer { return client.MetricsNopHandler.Timer("") }

// An inline definition's name and step ids are chosen by whoever starts
// the run; as metric labels every run could mint new series and grow the
// worker's /metrics without bound. Inline runs are labelled "inline".
func TestInlineRunMetricLabelsAreBounded(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	rec := newTagRecorder()
	suite.SetMetricsHandler(rec)
	env := suite.NewTestWorkflowEnvironment()
	cat := (&recorder{}).catalogue(t)
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	workflows.Register(env, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: true})
	env.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{Definition: `name: attacker-chosen-7f3a9c
steps:
  - id: gate_attacker_7f3a9c
    approval: {approvers: [bob], timeout: 1m}
`, RequestedBy: "alice"})
	require.True(t, env.IsWorkflowCompleted())
	rec.mu.Lock()
	defer rec.mu.Unlock()
	found, gate := false, false
	for _, tags := range *rec.seen {
		for k, v := range tags {
			require.NotContains(t, v, "7f3a9c", "metric label %s carries a name the run chose", k)
		}
		if tags["runbook"] == "inline" {
			found = true
		}
		if tags["gate"] == "inline" {
			gate = true
		}
	}
	require.True(t, found, "no metric labelled runbook=inline; tags seen: %v", *rec.seen)
	require.True(t, gate, "no gate metric labelled gate=inline; tags seen: %v", *rec.seen)
}
