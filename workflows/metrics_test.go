package workflows_test

import (
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// tagCapture records the tags of every metric the workflow emits.
type tagCapture struct {
	mu   *sync.Mutex
	tags map[string]string
	seen *[]string
}

func newTagCapture() *tagCapture {
	return &tagCapture{mu: &sync.Mutex{}, tags: map[string]string{}, seen: &[]string{}}
}

func (c *tagCapture) WithTags(t map[string]string) client.MetricsHandler {
	n := &tagCapture{mu: c.mu, tags: map[string]string{}, seen: c.seen}
	for k, v := range c.tags {
		n.tags[k] = v
	}
	for k, v := range t {
		n.tags[k] = v
	}
	return n
}

func (c *tagCapture) note(name string) {
	if !strings.HasPrefix(name, "stagehand_") {
		return
	}
	keys := make([]string, 0, len(c.tags))
	for k, v := range c.tags {
		if k == "runbook" || k == "gate" {
			keys = append(keys, k+"="+v)
		}
	}
	sort.Strings(keys)
	c.mu.Lock()
	*c.seen = append(*c.seen, name+"{"+strings.Join(keys, ",")+"}")
	c.mu.Unlock()
}

func (c *tagCapture) Counter(name string) client.MetricsCounter { c.note(name); return nopMetric{} }
func (c *tagCapture) Gauge(name string) client.MetricsGauge     { c.note(name); return nopMetric{} }
func (c *tagCapture) Timer(name string) client.MetricsTimer     { c.note(name); return nopMetric{} }

type nopMetric struct{}

func (nopMetric) Inc(int64)            {}
func (nopMetric) Update(float64)       {}
func (nopMetric) Record(time.Duration) {}

// TestInlineRunsDoNotNameMetricSeries: an inline definition's name and gate
// ids are whatever the caller wrote, so as metric labels they would let any
// client create series without bound; such runs count under "inline".
func TestInlineRunsDoNotNameMetricSeries(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	capture := newTagCapture()
	suite.SetMetricsHandler(capture)
	env := suite.NewTestWorkflowEnvironment()
	rec := &recorder{}
	cat := rec.catalogue(t)
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	workflows.Register(env, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: true})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "gatex1", Decision: "approve", By: "bob"})
	}, time.Minute)
	env.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{RequestedBy: "alice", Definition: `name: attacker-chosen-1
steps:
  - id: gatex1
    approval: {message: "ok?", approvers: [bob], timeout: 1h}
`})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	seen := strings.Join(*capture.seen, " ")
	assert.Contains(t, seen, "stagehand_runs_started{runbook=inline}")
	assert.Contains(t, seen, "stagehand_gate_wait{gate=inline,runbook=inline}")
	assert.NotContains(t, seen, "attacker-chosen-1")
	assert.NotContains(t, seen, "gatex1")
}
