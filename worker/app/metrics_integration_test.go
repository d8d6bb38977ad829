package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

// calm succeeds in three steps; boom fails at its second and compensates.
const (
	calmRunbook = `name: calm
steps:
  - id: first
    uses: noop
  - id: say
    uses: log
    with: {message: calm}
  - id: pause
    uses: wait
    with: {duration: 10ms}
`
	boomRunbook = `name: boom
params:
  d: {type: string, default: bogus}
steps:
  - id: first
    uses: noop
  - id: bad
    uses: wait
    with: {duration: "{{ .params.d }}"}
onFailure:
  - id: undo
    uses: log
    with: {message: "undo after {{ .failedStep }}"}
`
)

// TestMetricsAfterRealRuns runs a real worker (its own client, so the SDK
// and workflows record through its metrics handler) with the Prometheus
// endpoint on, runs three runbooks to their ends on the dev server, and
// scrapes /metrics: every run, step, gate and compensation is counted
// exactly once, next to the SDK's own temporal_* series.
func TestMetricsAfterRealRuns(t *testing.T) {
	srv := devserver.Shared(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "calm.yaml"), []byte(calmRunbook), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "boom.yaml"), []byte(boomRunbook), 0o644))
	cfg := config.Defaults()
	cfg.Temporal.Address = srv.Address
	cfg.Temporal.Namespace = srv.Namespace
	cfg.Temporal.TaskQueue = fmt.Sprintf("metrics-%d", time.Now().UnixNano())
	cfg.RunbooksDir = dir
	cfg.WorkDir = t.TempDir()
	cfg.Metrics.Listen = "127.0.0.1:0"
	logs := &metricsLogSink{}
	a, err := app.New(context.Background(), cfg, app.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	require.NoError(t, err)
	require.NoError(t, a.Start())
	t.Cleanup(a.Stop)
	require.NotNil(t, a.Metrics)
	url := "http://" + a.Metrics.Addr + "/metrics"

	ctx := context.Background()
	start := func(rb string, params map[string]any) client.WorkflowRun {
		run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: cfg.Temporal.TaskQueue},
			workflows.WorkflowType, workflows.RunInput{Runbook: rb, Params: params, RequestedBy: "alice"})
		require.NoError(t, err)
		return run
	}
	var st workflows.Status
	require.NoError(t, start("calm", nil).Get(ctx, &st))
	require.Equal(t, workflows.RunSucceeded, st.State)

	boom := start("boom", nil)
	require.Error(t, boom.Get(ctx, nil))

	hello := start("hello", map[string]any{"image": "r/b:1"})
	waitForState(t, srv.Client, hello.GetID(), workflows.RunWaitingApproval)
	h, err := srv.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: hello.GetID(), UpdateName: workflows.ApproveUpdate, WaitForStage: client.WorkflowUpdateStageCompleted,
		Args: []any{workflows.ApprovalDecision{Gate: "merge", Decision: workflows.DecisionApprove, By: "carol"}},
	})
	require.NoError(t, err)
	require.NoError(t, h.Get(ctx, nil))
	require.NoError(t, hello.Get(ctx, &st))
	require.Equal(t, workflows.RunSucceeded, st.State)

	// Structured logs carry the run and the step: the log step's line names
	// its workflow, run and step (the activity id is the step id).
	var logged bool
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "calm" {
			continue
		}
		logged = true
		assert.Equal(t, "say", rec["ActivityID"], line)
		assert.NotEmpty(t, rec["WorkflowID"], line)
		assert.NotEmpty(t, rec["RunID"], line)
	}
	assert.True(t, logged, "the calm runbook's log step wrote its line")

	families := scrape(t, url)
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		return metricValue(t, families, name, labels)
	}
	assert.Equal(t, 1.0, value("stagehand_runs_started_total", map[string]string{"runbook": "calm"}))
	assert.Equal(t, 1.0, value("stagehand_runs_started_total", map[string]string{"runbook": "boom"}))
	assert.Equal(t, 1.0, value("stagehand_runs_started_total", map[string]string{"runbook": "hello"}))
	assert.Equal(t, 1.0, value("stagehand_runs_finished_total", map[string]string{"runbook": "calm", "outcome": "succeeded"}))
	assert.Equal(t, 1.0, value("stagehand_runs_finished_total", map[string]string{"runbook": "boom", "outcome": "failed"}))
	assert.Equal(t, 1.0, value("stagehand_runs_finished_total", map[string]string{"runbook": "hello", "outcome": "succeeded"}))
	assert.Equal(t, 3.0, value("stagehand_runs_finished_total", nil), "three runs ended")
	assert.Equal(t, 1.0, value("stagehand_compensations_total", map[string]string{"runbook": "boom", "outcome": "complete"}))

	// Steps that ran: calm 3, boom first+bad and the compensation undo,
	// hello settle+merge (note is skipped outside prod, so never ran).
	assert.Equal(t, 8.0, value("stagehand_step_duration_seconds_count", nil))
	assert.Equal(t, 2.0, value("stagehand_step_duration_seconds_count", map[string]string{"step_type": "noop", "outcome": "succeeded"}))
	assert.Equal(t, 2.0, value("stagehand_step_duration_seconds_count", map[string]string{"step_type": "log", "outcome": "succeeded"}))
	assert.Equal(t, 2.0, value("stagehand_step_duration_seconds_count", map[string]string{"step_type": "wait", "outcome": "succeeded"}))
	assert.Equal(t, 1.0, value("stagehand_step_duration_seconds_count", map[string]string{"step_type": "wait", "outcome": "failed"}))
	assert.Equal(t, 1.0, value("stagehand_step_duration_seconds_count", map[string]string{"step_type": "approval", "outcome": "approved"}))
	// hello's settle waits 2s on a durable timer.
	assert.GreaterOrEqual(t, value("stagehand_step_duration_seconds_sum", map[string]string{"step_type": "wait", "outcome": "succeeded"}), 2.0)
	assert.Equal(t, 1.0, value("stagehand_gate_wait_seconds_count", map[string]string{"runbook": "hello", "gate": "merge", "outcome": "approved"}))
	assert.Greater(t, value("stagehand_gate_wait_seconds_sum", map[string]string{"runbook": "hello", "gate": "merge"}), 0.0)
	// The SDK tags workflow-side metrics with where they ran.
	assert.Equal(t, 3.0, value("stagehand_runs_finished_total", map[string]string{"task_queue": cfg.Temporal.TaskQueue, "workflow_type": workflows.WorkflowType}))

	// The SDK's own metrics share the endpoint.
	assert.Equal(t, 3.0, value("temporal_workflow_completed_total", nil)+value("temporal_workflow_failed_total", nil), "SDK workflow outcomes")
	assert.Greater(t, value("temporal_activity_execution_latency_seconds_count", nil), 0.0)

	// Every series the example Grafana dashboard plots is one the worker
	// exports (failure counters appear only after a failure).
	root, err := localenv.RepoRoot()
	require.NoError(t, err)
	dash, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "stagehand.json"))
	require.NoError(t, err)
	var board struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(dash, &board))
	seriesRE := regexp.MustCompile(`\b(?:stagehand|temporal)_[a-z_]+`)
	plotted := 0
	for _, p := range board.Panels {
		for _, tg := range p.Targets {
			for _, name := range seriesRE.FindAllString(tg.Expr, -1) {
				plotted++
				if strings.Contains(name, "failure") {
					continue
				}
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
				assert.Contains(t, families, base, "the dashboard plots %s", name)
			}
		}
	}
	assert.Greater(t, plotted, 10)
}

// metricsLogSink is a log sink the worker's goroutines write while the test
// reads it.
type metricsLogSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *metricsLogSink) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *metricsLogSink) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

// metricValue sums the samples of name (a counter, or a histogram's
// _count/_sum) whose labels include labels.
func metricValue(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	base, part := name, ""
	for _, suffix := range []string{"_count", "_sum"} {
		if strings.HasSuffix(name, suffix) {
			if _, ok := families[name]; !ok {
				base, part = strings.TrimSuffix(name, suffix), suffix
			}
		}
	}
	fam, ok := families[base]
	if !ok {
		var names []string
		for n := range families {
			if strings.HasPrefix(n, "stagehand_") || strings.HasPrefix(n, "temporal_workflow") {
				names = append(names, n)
			}
		}
		t.Fatalf("no series %s on /metrics; have %s", base, strings.Join(names, ", "))
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if !match {
			continue
		}
		switch {
		case part == "_count":
			sum += float64(m.GetHistogram().GetSampleCount())
		case part == "_sum":
			sum += m.GetHistogram().GetSampleSum()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}
