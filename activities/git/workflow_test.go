package git_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities/git"
	"github.com/stagehand-dev/stagehand/activities/notify"
	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/internal/gittest"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// The tail of a patch run as a runbook author writes it: merge the PR,
// read back the target's head, name the production image the merge will
// produce and tell people. It runs through the real interpreter and the
// full catalogue, so `with` keys, templated values (pr arrives as a
// string) and outputs referenced by later steps are checked end to end.
const patchTail = `
name: patch-tail
params:
  remote: {type: string, required: true}
  pr: {type: string, required: true}
  webhook: {type: string, required: true}
steps:
  - id: merge
    uses: git.merge
    with:
      provider: git
      remote: "{{ .params.remote }}"
      prBranch: "pr-{{ .params.pr }}"
      pr: "{{ .params.pr }}"
  - id: head
    uses: git.headCommit
    with: {remote: "{{ .params.remote }}", branch: "{{ .steps.merge.outputs.targetBranch }}"}
  - id: tell
    uses: notify.send
    with:
      webhooks: [{url: "{{ .params.webhook }}"}]
      event: run_succeeded
      title: "PR #{{ .params.pr }} merged"
      text: "production image tag prefix prod-{{ .steps.merge.outputs.shortSha }}-"
      fields:
        mergeCommit: "{{ .steps.merge.outputs.mergeCommit }}"
        alreadyMerged: "{{ .steps.merge.outputs.alreadyMerged }}"
        head: "{{ .steps.head.outputs.sha }}"
`

func TestPatchTailRunbook(t *testing.T) {
	repo := gittest.New(t)
	prHead := repo.Commit("pr-42", "feature", map[string]string{"feature.txt": "new\n"})

	var mu sync.Mutex
	var posts []notify.GenericPayload
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p notify.GenericPayload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		mu.Lock()
		posts = append(posts, p)
		mu.Unlock()
	}))
	defer hook.Close()

	gitActs := &git.Activities{WorkDir: t.TempDir()}
	run := func() *workflows.Status {
		t.Helper()
		cat, err := registry.Catalogue(registry.Deps{Git: gitActs, Notify: &notify.Activities{}})
		if err != nil {
			t.Fatal(err)
		}
		lib, err := runbooks.NewLibrary("", cat)
		if err != nil {
			t.Fatal(err)
		}
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestWorkflowEnvironment()
		// The test environment's default 3 s is wall-clock time, and the
		// activities here run real git, which takes longer than that under
		// the race detector.
		env.SetTestTimeout(time.Minute)
		workflows.Register(env, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: true})
		env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil)
		env.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{Definition: patchTail, RequestedBy: "alice",
			Params: map[string]any{"remote": repo.Origin, "pr": "42", "webhook": hook.URL}})
		if !env.IsWorkflowCompleted() {
			t.Fatal("workflow did not complete")
		}
		if err := env.GetWorkflowError(); err != nil {
			t.Fatalf("workflow failed: %v", err)
		}
		var st workflows.Status
		if err := env.GetWorkflowResult(&st); err != nil {
			t.Fatal(err)
		}
		return &st
	}

	first := run()
	merge := repo.Head("main")
	if p := repo.Parents(merge); len(p) != 2 || p[1] != prHead {
		t.Fatalf("origin main %s has parents %v", merge, p)
	}
	second := run()
	if repo.Head("main") != merge || repo.Count("main", "--merges") != 1 {
		t.Errorf("the second run changed origin main")
	}

	for i, st := range []*workflows.Status{first, second} {
		out := st.Steps[0].Outputs
		if out["mergeCommit"] != merge || out["alreadyMerged"] != (i == 1) {
			t.Errorf("run %d: merge outputs %v", i+1, out)
		}
		if st.Steps[1].Outputs["sha"] != merge {
			t.Errorf("run %d: head outputs %v", i+1, st.Steps[1].Outputs)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 2 {
		t.Fatalf("%d notifications, want 2", len(posts))
	}
	if !strings.Contains(posts[0].Text, "prod-"+merge[:8]+"-") || posts[0].Fields["mergeCommit"] != merge ||
		posts[0].Title != "PR #42 merged" || posts[0].Event != "run_succeeded" {
		t.Errorf("notification %+v", posts[0])
	}
	if posts[1].Fields["alreadyMerged"] != true && posts[1].Fields["alreadyMerged"] != "true" {
		t.Errorf("second notification fields %v", posts[1].Fields)
	}
}
