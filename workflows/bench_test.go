package workflows_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/internal/benchreport"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

func TestMain(m *testing.M) { devserver.Main(m) }

const benchSteps = 50

// handWritten50 is what a person would write without the interpreter: the
// same activity, called benchSteps times with the same options. It is the
// baseline the interpreter's overhead is measured against.
func handWritten50(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3, InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
	})
	for i := 0; i < benchSteps; i++ {
		var res activities.StepResult
		req := activities.StepRequest{StepID: fmt.Sprintf("s%02d", i), With: map[string]any{"echo": i}}
		if err := workflow.ExecuteActivity(ctx, "noop", req).Get(ctx, &res); err != nil {
			return err
		}
	}
	return nil
}

func fiftyStepRunbook() string {
	var b strings.Builder
	b.WriteString("name: fifty\nsteps:\n")
	for i := 0; i < benchSteps; i++ {
		fmt.Fprintf(&b, "  - id: s%02d\n    uses: noop\n    with: {echo: %d}\n", i, i)
	}
	return b.String()
}

func historyLength(ctx context.Context, c client.Client, id string) (int, error) {
	iter := c.GetWorkflowHistory(ctx, id, "", false, 0)
	n := 0
	for iter.HasNext() {
		if _, err := iter.Next(); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// BenchmarkInterpreterOverhead runs a 50-step runbook of no-op activities
// and the hand-written 50-activity workflow alternately, in one process
// against one dev server, and reports both times, both history lengths and
// their ratios (targets: ≤ 1.10 each). Run it with `make bench`.
func BenchmarkInterpreterOverhead(b *testing.B) {
	srv := devserver.Shared(b)
	ctx := context.Background()
	tq := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	cat, err := registry.Catalogue(registry.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	lib, err := runbooks.NewLibrary("", cat)
	if err != nil {
		b.Fatal(err)
	}
	w := worker.New(srv.Client, tq, worker.Options{})
	workflows.Register(w, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: true})
	w.RegisterWorkflowWithOptions(handWritten50, workflow.RegisterOptions{Name: "HandWritten50"})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	def := fiftyStepRunbook()

	runOnce := func(workflowType string, args ...any) (time.Duration, int) {
		start := time.Now()
		run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: tq}, workflowType, args...)
		if err != nil {
			b.Fatal(err)
		}
		if err := run.Get(ctx, nil); err != nil {
			b.Fatalf("%s: %v", workflowType, err)
		}
		elapsed := time.Since(start)
		n, err := historyLength(ctx, srv.Client, run.GetID())
		if err != nil {
			b.Fatal(err)
		}
		return elapsed, n
	}
	// Warm both paths (worker caches, server task queues) before timing.
	runOnce(workflows.WorkflowType, workflows.RunInput{Definition: def, RequestedBy: "alice"})
	runOnce("HandWritten50")

	var interp, hand []time.Duration
	var interpEvents, handEvents int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate which goes first so drift on a shared machine hits both.
		if i%2 == 0 {
			d, n := runOnce(workflows.WorkflowType, workflows.RunInput{Definition: def, RequestedBy: "alice"})
			interp, interpEvents = append(interp, d), n
			d, n = runOnce("HandWritten50")
			hand, handEvents = append(hand, d), n
		} else {
			d, n := runOnce("HandWritten50")
			hand, handEvents = append(hand, d), n
			d, n = runOnce(workflows.WorkflowType, workflows.RunInput{Definition: def, RequestedBy: "alice"})
			interp, interpEvents = append(interp, d), n
		}
	}
	b.StopTimer()
	mi, mh := median(interp), median(hand)
	timeRatio := float64(mi) / float64(mh)
	eventRatio := float64(interpEvents) / float64(handEvents)
	b.ReportMetric(float64(mi.Milliseconds()), "interp-ms")
	b.ReportMetric(float64(mh.Milliseconds()), "hand-ms")
	b.ReportMetric(timeRatio, "time-ratio")
	b.ReportMetric(eventRatio, "event-ratio")
	b.Logf("\n%d-step runbook vs hand-written workflow, %d runs each (median):\n"+
		"  interpreter:  %v, %d history events\n"+
		"  hand-written: %v, %d history events\n"+
		"  time ratio %.3f (target <= 1.10), event ratio %.3f (target <= 1.10)",
		benchSteps, len(interp), mi.Round(time.Millisecond), interpEvents, mh.Round(time.Millisecond), handEvents, timeRatio, eventRatio)
	benchreport.Record(b,
		benchreport.Row{Benchmark: "BenchmarkInterpreterOverhead", Metric: fmt.Sprintf("%d-step run, time (median of %d)", benchSteps, len(interp)),
			Value: float64(mi) / float64(time.Millisecond), Unit: "ms", Baseline: float64(mh) / float64(time.Millisecond),
			BaselineWhat: "hand-written workflow", Ratio: timeRatio, Target: "ratio <= 1.10"},
		benchreport.Row{Benchmark: "BenchmarkInterpreterOverhead", Metric: fmt.Sprintf("%d-step run, history events", benchSteps),
			Value: float64(interpEvents), Unit: "events", Baseline: float64(handEvents),
			BaselineWhat: "hand-written workflow", Ratio: eventRatio, Target: "ratio <= 1.10"})
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

const (
	throughputRuns  = 200
	throughputSteps = 10
)

// handWritten10 is the baseline of the throughput benchmark: ten no-op
// activities with the options the interpreter gives a noop step.
func handWritten10(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3, InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
	})
	for i := 0; i < throughputSteps; i++ {
		var res activities.StepResult
		req := activities.StepRequest{StepID: fmt.Sprintf("s%02d", i), With: map[string]any{"echo": i}}
		if err := workflow.ExecuteActivity(ctx, "noop", req).Get(ctx, &res); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkThroughput starts throughputRuns runs of a 10-step no-op runbook
// at once and waits for all, then does the same with handWritten10, on one
// dev server and one worker (same options for both), alternating which goes
// first. It reports runs per second of each and their ratio (target ≥ 0.95).
func BenchmarkThroughput(b *testing.B) {
	srv := devserver.Shared(b)
	ctx := context.Background()
	tq := fmt.Sprintf("throughput-%d", time.Now().UnixNano())
	cat, err := registry.Catalogue(registry.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	var def strings.Builder
	def.WriteString("name: ten\ndescription: ten no-op steps\nsteps:\n")
	for i := 0; i < throughputSteps; i++ {
		fmt.Fprintf(&def, "  - id: s%02d\n    uses: noop\n    with: {echo: %d}\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "ten.yaml"), []byte(def.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	lib, err := runbooks.NewLibrary(dir, cat)
	if err != nil {
		b.Fatal(err)
	}
	w := worker.New(srv.Client, tq, worker.Options{})
	workflows.Register(w, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: true})
	w.RegisterWorkflowWithOptions(handWritten10, workflow.RegisterOptions{Name: "HandWritten10"})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	batch := func(workflowType string, args ...any) time.Duration {
		start := time.Now()
		runs := make([]client.WorkflowRun, throughputRuns)
		for i := range runs {
			run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: tq}, workflowType, args...)
			if err != nil {
				b.Fatal(err)
			}
			runs[i] = run
		}
		for _, run := range runs {
			if err := run.Get(ctx, nil); err != nil {
				b.Fatalf("%s: %v", workflowType, err)
			}
		}
		return time.Since(start)
	}
	interpBatch := func() time.Duration {
		return batch(workflows.WorkflowType, workflows.RunInput{Runbook: "ten", RequestedBy: "alice"})
	}
	handBatch := func() time.Duration { return batch("HandWritten10") }
	// Warm both paths before timing.
	interpBatch()
	handBatch()

	var interp, hand []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			interp = append(interp, interpBatch())
			hand = append(hand, handBatch())
		} else {
			hand = append(hand, handBatch())
			interp = append(interp, interpBatch())
		}
	}
	b.StopTimer()
	mi, mh := median(interp), median(hand)
	interpRate := throughputRuns / mi.Seconds()
	handRate := throughputRuns / mh.Seconds()
	ratio := interpRate / handRate
	b.ReportMetric(interpRate, "interp-runs/s")
	b.ReportMetric(handRate, "hand-runs/s")
	b.ReportMetric(ratio, "throughput-ratio")
	b.Logf("\n%d concurrent %d-step runs, %d batches each (median):\n"+
		"  interpreter:  %v (%.1f runs/s)\n"+
		"  hand-written: %v (%.1f runs/s)\n"+
		"  throughput ratio %.3f (target >= 0.95)",
		throughputRuns, throughputSteps, len(interp), mi.Round(time.Millisecond), interpRate, mh.Round(time.Millisecond), handRate, ratio)
	benchreport.Record(b, benchreport.Row{Benchmark: "BenchmarkThroughput",
		Metric: fmt.Sprintf("%d concurrent %d-step runs (median of %d batches)", throughputRuns, throughputSteps, len(interp)),
		Value:  interpRate, Unit: "runs/s", Baseline: handRate, BaselineWhat: "hand-written workflow", Ratio: ratio, Target: "ratio >= 0.95"})
}
