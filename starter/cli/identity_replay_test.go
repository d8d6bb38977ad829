package cli

import (
	"context"
	"sync"
	"testing"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/workflows"
)

// updateHeaders records the identity header each executed update and each
// approval signal carries.
type updateHeaders struct {
	interceptor.WorkerInterceptorBase
	mu      sync.Mutex
	ids     []string
	signals []string
}

func (u *updateHeaders) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	i := &updateHeadersInbound{u: u}
	i.Next = next
	return i
}

type updateHeadersInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	u *updateHeaders
}

func headerID(ctx workflow.Context) string {
	var id string
	if p := interceptor.WorkflowHeader(ctx)[workflows.IdentityHeader]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &id)
	}
	return id
}

func (i *updateHeadersInbound) ExecuteUpdate(ctx workflow.Context, in *interceptor.UpdateInput) (any, error) {
	i.u.mu.Lock()
	i.u.ids = append(i.u.ids, headerID(ctx))
	i.u.mu.Unlock()
	return i.Next.ExecuteUpdate(ctx, in)
}

func (i *updateHeadersInbound) HandleSignal(ctx workflow.Context, in *interceptor.HandleSignalInput) error {
	if in.SignalName == workflows.ApprovalSignal {
		i.u.mu.Lock()
		i.u.signals = append(i.u.signals, headerID(ctx))
		i.u.mu.Unlock()
	}
	return i.Next.HandleSignal(ctx, in)
}

// replayWithIdentity replays a finished run's history the way a worker
// that lost its cache would: the identities must come back from history
// (signal and update headers), or the run's decisions would replay
// differently (a refused signal accepted) and the replay fails.
func replayWithIdentity(t *testing.T, srv *devserver.Server, id string) (updates, signals []string) {
	t.Helper()
	hist := &historypb.History{}
	iter := srv.Client.GetWorkflowHistory(context.Background(), id, "", false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		hist.Events = append(hist.Events, ev)
	}
	capture := &updateHeaders{}
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{
		Interceptors: append([]interceptor.WorkerInterceptor{capture}, workflows.WorkerInterceptors()...),
	})
	if err != nil {
		t.Fatal(err)
	}
	r.RegisterWorkflowWithOptions(workflows.RunbookWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowType})
	if err := r.ReplayWorkflowHistory(nil, hist); err != nil {
		t.Fatalf("replay of %s: %v", id, err)
	}
	return capture.ids, capture.signals
}
