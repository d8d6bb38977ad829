// Package parked benchmarks the worker with thousands of runs parked at an
// approval gate: the memory the worker process holds (RSS, from /proc) as
// runs pile up, and how promptly an approval completes a run that the
// worker's sticky cache has evicted (it replays from history) against one
// that is still cached. The worker is the real bin/stagehand-worker, started
// as a process of its own with its default settings, so the figures are
// what users get.
package parked

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/stagehand-dev/stagehand/internal/benchreport"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/workflows"
)

func TestMain(m *testing.M) { devserver.Main(m) }

// parkedRunbook: one step, a gate only bob may approve (the runs are
// requested by alice, who could not), one step after it.
const parkedRunbook = `name: parked
description: a no-op step, an approval gate, a no-op step
steps:
  - id: before
    uses: noop
    with: {echo: before}
  - id: gate
    approval:
      message: go on?
      approvers: [bob]
      timeout: 72h
  - id: after
    uses: noop
    with: {echo: after}
`

const (
	// EnvWorkerBin, when set, is the worker binary to measure; otherwise
	// the benchmark builds ./worker.
	EnvWorkerBin = "STAGEHAND_WORKER_BIN"
	// EnvLevels overrides the parked-run counts, e.g. "500,2000".
	EnvLevels = "STAGEHAND_BENCH_PARKED"
	// startConcurrency bounds the starts in flight from the benchmark.
	startConcurrency = 32
	// approvals is how many oldest and how many newest runs are approved
	// at each level (medians reported).
	approvals = 3
	// settle is how long the worker is left alone before RSS is read, so
	// the start-up burst's garbage is collected.
	settle = 10 * time.Second
	// stallTimeout fails the benchmark when the parked count stops growing.
	stallTimeout = 3 * time.Minute
	// approveTimeout bounds one approval's round trip to completion.
	approveTimeout = 2 * time.Minute
	mib            = 1 << 20
)

func levels(b *testing.B) []int {
	v := os.Getenv(EnvLevels)
	if v == "" {
		return []int{1000, 5000, 10000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < approvals*2 || n > 50000 || (len(out) > 0 && n <= out[len(out)-1]) {
			b.Fatalf("%s=%q: want increasing counts between %d and 50000", EnvLevels, v, approvals*2)
		}
		out = append(out, n)
	}
	return out
}

// BenchmarkParkedRuns parks 1,000, then 5,000, then 10,000 runs at a gate
// (cumulatively) on one worker process and, at each level, reports the
// worker's RSS and peak RSS against its idle RSS (target: at most 256 MiB
// with 10,000 parked), and the time from approval to completion of the
// oldest parked runs (evicted from the sticky cache once it is smaller than
// the parked count: they replay from history) against the newest (cached).
// Run it with `make bench`; -benchtime 1x (each level is one measurement).
func BenchmarkParkedRuns(b *testing.B) {
	lv := levels(b)
	srv := devserver.Shared(b)
	bin := workerBinary(b)
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "parked.yaml"), []byte(parkedRunbook), 0o644); err != nil {
		b.Fatal(err)
	}
	tq := fmt.Sprintf("parked-%d", time.Now().UnixNano())
	w := startWorker(b, bin, srv, tq, dir)
	waitForPoller(b, srv.Client, tq)
	time.Sleep(settle)
	idle, idlePeak := w.rss(b)
	fmt.Printf("\nworker %s (pid %d), task queue %s: idle RSS %.1f MiB (peak %.1f)\n", bin, w.Pid(), tq, idle/mib, idlePeak/mib)
	for _, l := range w.settings() {
		fmt.Printf("  worker log: %s\n", l)
	}

	p := &parker{b: b, c: srv.Client, tq: tq}
	defer p.terminateAll(srv)
	var rows []benchreport.Row
	b.ResetTimer()
	for iter := 0; iter < b.N; iter++ {
		for _, n := range lv {
			began := time.Now()
			p.parkUntil(n)
			fmt.Printf("%d runs parked (%d started in all) after %s; settling %s\n", n, len(p.ids), time.Since(began).Round(time.Second), settle)
			time.Sleep(settle)
			rss, peak := w.rss(b)
			var oldest, newest []time.Duration
			for range approvals {
				oldest = append(oldest, p.approve(p.oldest()))
				newest = append(newest, p.approve(p.newest()))
			}
			mo, mn := median(oldest), median(newest)
			fmt.Printf("  worker RSS %.1f MiB (%.2fx idle), peak %.1f MiB; approval -> completion: oldest %s, newest %s (median of %d)\n",
				rss/mib, rss/idle, peak/mib, mo.Round(time.Millisecond), mn.Round(time.Millisecond), approvals)
			rssRow := benchreport.Row{Benchmark: "BenchmarkParkedRuns", Metric: fmt.Sprintf("worker RSS, %d parked", n),
				Value: rss / mib, Unit: "MiB", Baseline: idle / mib, BaselineWhat: "idle worker"}
			if n == 10000 {
				rssRow.Target = "value <= 256"
			}
			rows = append(rows, rssRow,
				benchreport.Row{Benchmark: "BenchmarkParkedRuns", Metric: fmt.Sprintf("worker peak RSS, %d parked", n),
					Value: peak / mib, Unit: "MiB", Baseline: idle / mib, BaselineWhat: "idle worker"},
				benchreport.Row{Benchmark: "BenchmarkParkedRuns", Metric: fmt.Sprintf("approve oldest -> done, %d parked", n),
					Value: ms(mo), Unit: "ms", Baseline: ms(mn), BaselineWhat: "newest parked run"})
		}
	}
	b.StopTimer()
	b.ReportMetric(rows[len(rows)-3].Value, "rss-MiB")
	b.ReportMetric(rows[len(rows)-1].Value, "approve-oldest-ms")
	benchreport.Record(b, rows...)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// workerBinary is $STAGEHAND_WORKER_BIN, or ./worker built into a temp dir.
func workerBinary(b *testing.B) string {
	if p := os.Getenv(EnvWorkerBin); p != "" {
		if _, err := os.Stat(p); err != nil {
			b.Fatalf("%s: %v", EnvWorkerBin, err)
		}
		return p
	}
	bin := filepath.Join(b.TempDir(), "stagehand-worker")
	if out, err := exec.Command("go", "build", "-o", bin, "../../worker").CombinedOutput(); err != nil {
		b.Fatalf("build the worker: %v: %s", err, out)
	}
	return bin
}

type workerProcess struct{ *localenv.Process }

// startWorker runs the worker with nothing but the connection, task queue
// and runbooks dir set: every worker option at its default. The
// environment is passed on, so STAGEHAND_* variables can still tune it.
// It runs in its own process group and dies with the benchmark, even when
// a -timeout panic skips the cleanup (localenv.Process).
func startWorker(b *testing.B, bin string, srv *devserver.Server, tq, runbooks string) *workerProcess {
	w := &workerProcess{&localenv.Process{Name: "stagehand-worker", Path: bin,
		Args:    []string{"--address", srv.Address, "--namespace", srv.Namespace, "--task-queue", tq, "--runbooks-dir", runbooks},
		LogPath: filepath.Join(b.TempDir(), "worker.log")}}
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = w.Stop(0)
		if b.Failed() {
			// The log lives in the benchmark's temp dir, gone after this.
			b.Logf("worker log (last lines):\n%s", w.LogTail(30))
		}
	})
	return w
}

// rss reads the process's resident set (VmRSS) and its peak (VmHWM), in bytes.
func (w *workerProcess) rss(b *testing.B) (cur, peak float64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", w.Pid()))
	if err != nil {
		b.Fatalf("worker RSS: %v (has the worker exited?) log:\n%s", err, w.LogTail(30))
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			b.Fatalf("worker RSS: %s: %v", sc.Text(), err)
		}
		if k == "VmRSS" {
			cur = kb * 1024
		} else {
			peak = kb * 1024
		}
	}
	if cur == 0 || peak == 0 {
		b.Fatalf("worker RSS: no VmRSS/VmHWM in /proc/%d/status", w.Pid())
	}
	return cur, peak
}

// settings are the worker's log lines that mention its options (cache
// size, pollers, concurrency), so the figures say what they were measured with.
func (w *workerProcess) settings() []string {
	data, err := os.ReadFile(w.LogPath)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "cache") || strings.Contains(ll, "poller") || strings.Contains(ll, "concurrent") {
			out = append(out, l)
			if len(out) == 5 {
				break
			}
		}
	}
	return out
}

// waitForPoller returns once the worker polls the workflow task queue.
func waitForPoller(b *testing.B, c client.Client, tq string) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		d, err := c.DescribeTaskQueue(context.Background(), tq, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		if err == nil && len(d.GetPollers()) > 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Fatalf("no worker polls task queue %s after a minute", tq)
}

// parker starts runs and tracks them in start order.
type parker struct {
	b        *testing.B
	c        client.Client
	tq       string
	ids      []string        // every run started, oldest first
	approved map[string]bool // runs approved (completed)
}

func (p *parker) parked() int {
	resp, err := p.c.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
		Query: fmt.Sprintf("TaskQueue = '%s' AND %s = '%s' AND ExecutionStatus = 'Running'", p.tq, workflows.SearchOutcome.GetName(), workflows.RunWaitingApproval),
	})
	if err != nil {
		p.b.Fatalf("count parked runs: %v", err)
	}
	return int(resp.GetCount())
}

// parkUntil starts runs until n are parked at the gate (approved runs no
// longer count), printing progress every 1,000.
func (p *parker) parkUntil(n int) {
	want := n + len(p.approved)
	toStart := want - len(p.ids)
	base := len(p.ids)
	ids := make([]string, toStart)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, startConcurrency)
	for range startConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= toStart {
					return
				}
				id := fmt.Sprintf("%s-%05d", p.tq, base+i)
				ids[i] = id
				_, err := p.c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: id, TaskQueue: p.tq},
					workflows.WorkflowType, workflows.RunInput{Runbook: "parked", RequestedBy: "alice"})
				if err != nil {
					errs <- fmt.Errorf("start %s: %w", id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		p.b.Fatal(err)
	}
	p.ids = append(p.ids, ids...)
	if p.approved == nil {
		p.approved = map[string]bool{}
	}
	last, lastChange, reported := -1, time.Now(), 0
	for {
		got := p.parked()
		if got >= n {
			return
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > stallTimeout {
			p.b.Fatalf("%d of %d runs parked, and no more for %s", got, n, stallTimeout)
		}
		if got/1000 > reported {
			reported = got / 1000
			fmt.Printf("  ... %d of %d parked\n", got, n)
		}
		time.Sleep(time.Second)
	}
}

func (p *parker) oldest() string {
	for _, id := range p.ids {
		if !p.approved[id] {
			return id
		}
	}
	p.b.Fatal("no parked run left to approve")
	return ""
}

func (p *parker) newest() string {
	for i := len(p.ids) - 1; i >= 0; i-- {
		if !p.approved[p.ids[i]] {
			return p.ids[i]
		}
	}
	p.b.Fatal("no parked run left to approve")
	return ""
}

// approve approves id's gate as bob and returns the time until the run
// completed. A run that does not complete fails the benchmark.
func (p *parker) approve(id string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), approveTimeout)
	defer cancel()
	start := time.Now()
	h, err := p.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: workflows.ApproveUpdate, WaitForStage: client.WorkflowUpdateStageCompleted,
		Args: []any{workflows.ApprovalDecision{Gate: "gate", Decision: workflows.DecisionApprove, By: "bob", Comment: "bench"}},
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err != nil {
		p.b.Fatalf("approve %s: %v", id, err)
	}
	if err := p.c.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		p.b.Fatalf("run %s after approval: %v", id, err)
	}
	took := time.Since(start)
	p.approved[id] = true
	return took
}

// terminateAll ends the runs still parked, as one batch operation of the
// server (the benchmark does not wait for it).
func (p *parker) terminateAll(srv *devserver.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := srv.Command(ctx, "workflow", "terminate", "--query", fmt.Sprintf("TaskQueue = '%s' AND ExecutionStatus = 'Running'", p.tq),
		"--reason", "parked-runs benchmark done", "--yes").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "terminate the parked runs: %v: %s\n", err, out)
	}
}
