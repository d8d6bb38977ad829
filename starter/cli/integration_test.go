package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/worker"

	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// The integration tests drive the CLI in-process (Main with buffers) against
// a real Temporal dev server and a real RunbookWorkflow worker, also
// in-process, on a task queue of the test's own.

func TestMain(m *testing.M) { devserver.Main(m) }

// liveCLI runs stagehand commands against a dev server.
type liveCLI struct {
	t    *testing.T
	srv  *devserver.Server
	env  map[string]string
	stop func()
}

// newLiveCLI starts a worker on a fresh task queue and returns a CLI
// pointed at it (via the same environment variables users set).
func newLiveCLI(t *testing.T) *liveCLI {
	t.Helper()
	return newLiveCLIWith(t, workflows.ApprovalPolicy{})
}

// newLiveCLIWith is newLiveCLI with a worker approval policy.
func newLiveCLIWith(t *testing.T, policy workflows.ApprovalPolicy) *liveCLI {
	t.Helper()
	srv := devserver.Shared(t)
	tq := fmt.Sprintf("cli-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
	cat, err := registry.Catalogue(registry.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	lib, err := runbooks.NewLibrary("", cat)
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(srv.Client, tq, worker.Options{Interceptors: workflows.WorkerInterceptors()})
	workflows.Register(w, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: true, Approvals: policy})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	l := &liveCLI{t: t, srv: srv, env: map[string]string{
		"TEMPORAL_ADDRESS":     srv.Address,
		"TEMPORAL_NAMESPACE":   srv.Namespace,
		"STAGEHAND_TASK_QUEUE": tq,
		"USER":                 "alice",
	}}
	stopped := false
	l.stop = func() {
		if !stopped {
			stopped = true
			w.Stop()
		}
	}
	t.Cleanup(l.stop)
	return l
}

// run executes one command and returns its exit code, stdout and stderr.
func (l *liveCLI) run(args ...string) (int, string, string) {
	l.t.Helper()
	var out, errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	f.Getenv = func(k string) string { return l.env[k] }
	f.RPCTimeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := Main(ctx, args, f)
	return code, out.String(), errOut.String()
}

// must runs a command and fails the test unless it exits with want.
func (l *liveCLI) must(want int, args ...string) string {
	l.t.Helper()
	code, out, errOut := l.run(args...)
	if code != want {
		l.t.Fatalf("stagehand %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out + errOut
}

// waitClosed waits until Temporal reports the execution closed.
func waitClosed(t *testing.T, srv *devserver.Server, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := srv.Client.DescribeWorkflowExecution(context.Background(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		if d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still open", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runID(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
}

// TestLiveApproveFlow is the everyday path: start a built-in runbook, watch
// it stop at its gate, have a refused approval explained, approve without
// naming the gate, watch it finish, and find it in the audit list.
func TestLiveApproveFlow(t *testing.T) {
	l := newLiveCLI(t)
	id := runID(t)
	image := "registry.local/backstage-portal/backend:pr-42-0123abcd-1763700000"

	out := l.must(ExitOK, "start", "hello", "--param", "image="+image, "--param", "environment=prod", "--id", id)
	assertContains(t, out, "Started hello run "+id, "stagehand watch "+id)

	out = l.must(ExitWaitingApproval, "watch", id, "--interval", "50ms")
	assertContains(t, out, "settle", "succeeded", `waiting for approval at gate "merge"`, "approvers: bob, carol",
		"stagehand approve "+id+" --gate merge")

	out = l.must(ExitOK, "status", id)
	assertContains(t, out, "State:        waiting_approval", "Requested by: alice", `Waiting for approval at gate "merge"`,
		"Merge "+image+"?", "stagehand approve "+id+" --gate merge")

	// alice requested the run: the update's validator refuses her.
	out = l.must(ExitUsage, "approve", id, "--gate", "merge")
	assertContains(t, out, "refused", "alice")
	out = l.must(ExitUsage, "approve", id, "--gate", "nope", "--as", "bob")
	assertContains(t, out, `unknown gate "nope"`)

	out = l.must(ExitOK, "approve", id, "--as", "bob", "--comment", "sandbox is healthy")
	assertContains(t, out, "Approved gate merge of run "+id+" as bob")

	out = l.must(ExitOK, "watch", id, "--interval", "50ms")
	assertContains(t, out, "merge", "approved", "note", "Run "+id+" succeeded")

	waitClosed(t, l.srv, id)
	var st map[string]any
	if err := json.Unmarshal([]byte(l.must(ExitOK, "status", id, "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st["state"] != "succeeded" || st["execution"] != "completed" {
		t.Errorf("final status: %v", st)
	}

	// Visibility is eventually consistent.
	var rows []runRow
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := l.must(ExitOK, "audit", "--runbook", "hello", "--requested-by", "alice", "--since", "1h", "-o", "json")
		rows = nil
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) > 0 && rows[0].WorkflowID == id && rows[0].Outcome == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s not listed as succeeded: %+v", id, rows)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rows[0].Image != image || rows[0].Environment != "prod" {
		t.Errorf("row: %+v", rows[0])
	}
	out = l.must(ExitOK, "list", "--runbook", "hello", "--outcome", "succeeded", "-o", "markdown")
	assertContains(t, out, "| "+id+" |", "| succeeded |")

	// A value with quotes and backslashes is a valid, matching-nothing query.
	out = l.must(ExitOK, "list", "--requested-by", `o'brien\' OR 1=1`, "-o", "json")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("escaped query matched runs: %s", out)
	}
}

const gateRunbook = `name: gate
params:
  who: {type: string, default: world}
steps:
  - id: hello
    uses: log
    with: {message: "hello {{ .params.who }}"}
  - id: ship
    approval:
      message: "Ship it?"
      approvers: [bob]
onFailure:
  - id: tidy
    uses: noop
`

func writeGateRunbook(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "gate.yaml")
	if err := os.WriteFile(file, []byte(gateRunbook), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestLiveApproveBySignal: --signal reaches the workflow's approval signal.
func TestLiveApproveBySignal(t *testing.T) {
	l := newLiveCLI(t)
	id := runID(t)
	l.must(ExitOK, "start", "--file", writeGateRunbook(t), "--id", id, "--param", "who=team")
	l.must(ExitWaitingApproval, "watch", id, "--interval", "50ms")
	out := l.must(ExitOK, "approve", id, "--as", "bob", "--signal", "--comment", "ok")
	assertContains(t, out, "Sent approve signal for gate ship")
	out = l.must(ExitOK, "watch", id, "--interval", "50ms")
	assertContains(t, out, "ship", "approved", "succeeded")
}

// liveStatus queries a run's status directly.
func liveStatus(t *testing.T, srv *devserver.Server, id string) workflows.Status {
	t.Helper()
	v, err := srv.Client.QueryWorkflow(context.Background(), id, "", workflows.StatusQuery)
	if err != nil {
		t.Fatal(err)
	}
	var st workflows.Status
	if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLiveApprovalIdentity: through a real server, the CLI's identity
// (stagehand-cli:<user>@<host>) reaches the workflow with updates and
// signals, is recorded with the decision, and a mapped identity cannot
// decide under another name.
func TestLiveApprovalIdentity(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	alice := workflows.CLIIdentity("alice", host)
	bob := workflows.CLIIdentity("bob", host)
	l := newLiveCLIWith(t, workflows.ApprovalPolicy{Identities: map[string]string{alice: "alice", bob: "bob"}})
	id := runID(t)
	l.env["USER"] = "carol"
	l.must(ExitOK, "start", "--file", writeGateRunbook(t), "--id", id)
	l.must(ExitWaitingApproval, "watch", id, "--interval", "50ms")

	// alice's connection approving as bob: refused before history.
	l.env["USER"] = "alice"
	out := l.must(ExitUsage, "approve", id, "--as", "bob")
	assertContains(t, out, "refused", fmt.Sprintf("its connection identity %q belongs to alice", alice))
	// The same by signal: recorded as refused, with the identity.
	l.must(ExitOK, "approve", id, "--as", "bob", "--signal")
	// bob himself, by update.
	l.env["USER"] = "bob"
	l.must(ExitOK, "approve", id, "--as", "bob", "--comment", "ok")
	l.must(ExitOK, "watch", id, "--interval", "50ms")

	st := liveStatus(t, l.srv, id)
	// The start carries the identity too: the four-eyes rule binds it.
	if want := workflows.CLIIdentity("carol", host); st.RequesterIdentity != want {
		t.Errorf("requester identity %q, want %q", st.RequesterIdentity, want)
	}
	if len(st.Decisions) != 2 {
		t.Fatalf("decisions: %+v", st.Decisions)
	}
	if d := st.Decisions[0]; d.Identity != alice || !strings.Contains(d.Refused, "belongs to alice") {
		t.Errorf("refused signal recorded as %+v", d)
	}
	if d := st.Decisions[1]; d.Identity != bob || d.Refused != "" || d.By != "bob" {
		t.Errorf("approval recorded as %+v", d)
	}
	waitClosed(t, l.srv, id)
	// A worker without the run in its cache replays it: the identities
	// come back from the history's headers, so the decisions replay alike.
	updates, signals := replayWithIdentity(t, l.srv, id)
	if len(updates) != 1 || updates[0] != bob {
		t.Errorf("replayed update carried identities %q, want [%s]", updates, bob)
	}
	if len(signals) != 1 || signals[0] != alice {
		t.Errorf("replayed signal carried identities %q, want [%s]", signals, alice)
	}
}

// TestLiveRejectAndReadResultWithoutWorker: a rejected run exits 1 from
// watch, and its final status is still readable after the worker is gone.
func TestLiveRejectAndReadResultWithoutWorker(t *testing.T) {
	l := newLiveCLI(t)
	file := writeGateRunbook(t)
	id := runID(t)
	l.must(ExitOK, "start", "--file", file, "--id", id)
	l.must(ExitWaitingApproval, "watch", id, "--interval", "50ms")
	out := l.must(ExitOK, "reject", id, "--as", "bob", "--comment", "not today")
	assertContains(t, out, "Rejected gate ship of run "+id+" as bob")
	out = l.must(ExitRunFailed, "watch", id, "--interval", "50ms")
	assertContains(t, out, "Run "+id+" rejected")

	// The status query may report the end a moment before the execution
	// closes; the point here is reading a closed run with no worker.
	waitClosed(t, l.srv, id)
	l.stop()
	out = l.must(ExitOK, "status", id)
	assertContains(t, out, "State:        rejected", "ship", "rejected", "tidy", "not today")
}

func TestLiveStartWaitAndErrors(t *testing.T) {
	l := newLiveCLI(t)
	file := filepath.Join(t.TempDir(), "quick.yaml")
	if err := os.WriteFile(file, []byte("name: quick\nsteps:\n  - id: a\n    uses: noop\n    with: {echo: 1}\n  - id: b\n    uses: log\n    with: {message: done}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := runID(t)
	out := l.must(ExitOK, "start", "--file", file, "--id", id, "--wait")
	assertContains(t, out, "State:        succeeded", "a ", "noop", "b ", "log")

	out = l.must(ExitUsage, "start", "--file", file, "--id", id+"-x", "--param", "extra=1")
	assertContains(t, out, "extra")

	// A run of an unknown runbook fails in the workflow: --wait says why.
	code, out, errOut := l.run("start", "no-such-runbook", "--wait")
	if code != ExitRunFailed {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	assertContains(t, out, `unknown runbook "no-such-runbook"`)

	out = l.must(ExitNotFound, "status", "no-such-run")
	assertContains(t, out, `run "no-such-run" not found`)
	out = l.must(ExitNotFound, "approve", "no-such-run", "--gate", "merge", "--as", "bob")
	assertContains(t, out, "no-such-run")

	l.env["TEMPORAL_ADDRESS"] = "127.0.0.1:1"
	start := time.Now()
	out = l.must(ExitTemporal, "status", id)
	assertContains(t, out, "cannot reach Temporal at 127.0.0.1:1", "make dev")
	if time.Since(start) > 10*time.Second {
		t.Errorf("unreachable server took %s to report", time.Since(start))
	}
}

// restoreRunbook fails after "migrating", asks at an onFailure gate whether
// to restore, and leaves audit facts: the shape of a failed upgrade.
const restoreRunbook = `name: restore-gate
params:
  pause: {type: string, default: "not-a-duration"}
steps:
  - id: migrate
    uses: log
    with: {message: "migrated to v2"}
  - id: boom
    uses: wait
    with: {duration: "{{ .params.pause }}"}
onFailure:
  - id: restore
    approval:
      message: "{{ .failedStep }} failed; restore the backup?"
      approvers: [bob]
      timeout: 1h
  - id: do_restore
    if: '{{ eq .steps.restore.state "approved" }}'
    uses: log
    with: {message: "restoring"}
audit:
  summary:
    restore: '{{ .steps.restore.state }}'
    started: '{{ .run.startedUnix }}'
  details:
    why: 'step {{ .failedStep }}: {{ .error }}'
`

// TestLiveOnFailureGateAndAudit: a failed run waits at its compensation
// gate, approve finds and decides it, the run still ends failed, and the
// audit list and show read the facts from the memo and the result.
func TestLiveOnFailureGateAndAudit(t *testing.T) {
	l := newLiveCLI(t)
	file := filepath.Join(t.TempDir(), "restore.yaml")
	if err := os.WriteFile(file, []byte(restoreRunbook), 0o600); err != nil {
		t.Fatal(err)
	}
	id := runID(t)
	l.must(ExitOK, "start", "--file", file, "--id", id)
	out := l.must(ExitWaitingApproval, "watch", id, "--interval", "50ms")
	assertContains(t, out, `waiting for approval at gate "restore"`, "stagehand approve "+id+" --gate restore")
	out = l.must(ExitOK, "approve", id, "--as", "bob", "--comment", "restore it")
	assertContains(t, out, "Approved gate restore of run "+id+" as bob")
	out = l.must(ExitRunFailed, "watch", id, "--interval", "50ms")
	assertContains(t, out, "Run "+id+" failed", "at step boom", "Compensated: do_restore")
	waitClosed(t, l.srv, id)

	var rows []runRow
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := l.must(ExitOK, "audit", "--runbook", "restore-gate", "--since", "1h", "-o", "json")
		rows = nil
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) > 0 && rows[0].WorkflowID == id && rows[0].Outcome == "failed" && rows[0].Audit != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s not listed as failed with audit: %+v", id, rows)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rows[0].Audit["restore"] != "approved" || len(rows[0].Audit["started"]) != 10 {
		t.Errorf("audit summary: %v", rows[0].Audit)
	}
	out = l.must(ExitOK, "audit", "--runbook", "restore-gate", "--since", "1h")
	assertContains(t, out, "SUMMARY", "restore=approved · started=")

	out = l.must(ExitOK, "audit", "show", id)
	assertContains(t, out, "Audit:\n  restore: approved\n", "  why:\n    step boom: ")
}
