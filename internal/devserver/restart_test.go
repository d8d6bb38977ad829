package devserver

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/stagehand-dev/stagehand/internal/localenv"
)

// A server stopped and started again on the same DBFilename and Port is the
// same server to its clients: a workflow started before the outage is still
// there, running, at the same address. The fault suite restarts a server
// under a live run this way.
func TestRestartKeepsState(t *testing.T) {
	localenv.SkipIfShort(t, "a Temporal dev server (bin/temporal)")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{DBFilename: filepath.Join(t.TempDir(), "temporal.db"), Port: port}
	first, err := StartWith(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:" + strconv.Itoa(port); first.Address != want {
		_ = first.Stop()
		t.Fatalf("address %s, want %s", first.Address, want)
	}
	// No worker polls this queue: the run stays open across the restart.
	run, err := first.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "outlives-the-server", TaskQueue: "nobody-polls"}, "SomeWorkflow")
	if err != nil {
		_ = first.Stop()
		t.Fatal(err)
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	second, err := StartWith(ctx, opts)
	if err != nil {
		t.Fatalf("restart on the same database: %v", err)
	}
	defer func() { _ = second.Stop() }()
	if second.Address != first.Address {
		t.Errorf("restarted on %s, was %s", second.Address, first.Address)
	}
	desc, err := second.Client.DescribeWorkflowExecution(ctx, run.GetID(), "")
	if err != nil {
		t.Fatalf("the run started before the restart: %v", err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetExecution().GetRunId() != run.GetRunID() || info.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Errorf("after the restart: run %s status %s, want run %s running", info.GetExecution().GetRunId(), info.GetStatus(), run.GetRunID())
	}
}
