package explain_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/stagehand-dev/stagehand/activities/steps"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/runbooks/explain"
)

const testRunbook = `name: demo
params:
  env: {type: string, default: sandbox}
  who: {type: string, required: true}
  approvers: {type: string, default: "bob, carol"}
steps:
  - id: first
    uses: kube.setImage
    timeout: 2m
    retry: {maxAttempts: 5, initialInterval: 2m, nonRetryable: [KubeForbidden]}
    with: {namespace: '{{ .params.env }}', deployment: web, image: 'app:{{ .run.startedUnix }}'}
  - id: both
    parallel:
      - id: left
        uses: wait
        with: {duration: 1s}
      - id: right
        uses: log
        if: '{{ eq .params.env "prod" }}'
        continueOnError: true
        with: {message: hi}
  - id: gate
    approval:
      message: 'ship for {{ .params.who }}? {{ .steps.first.outputs.image }}'
      approvers: ['{{ .params.approvers }}', dave, '{{ .steps.first.outputs.image }}']
      timeout: 1h
      remind: {every: 10m, uses: log, with: {message: 'waiting {{ .gate.waiting }}'}}
onFailure:
  - id: undo
    uses: log
    if: '{{ eq .steps.first.state "succeeded" }}'
    with: {message: 'failed at {{ .failedStep }}'}
audit:
  summary: {env: '{{ .params.env }}', image: '{{ .steps.first.outputs.image }}'}
`

func TestBuild(t *testing.T) {
	cat, err := steps.Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	rb, err := runbooks.Parse("demo.yaml", []byte(testRunbook), cat)
	if err != nil {
		t.Fatal(err)
	}
	given := map[string]any{"who": "erin"}
	params, err := runbooks.ResolveParams(rb, given)
	if err != nil {
		t.Fatal(err)
	}
	p := explain.Build(explain.Input{Runbook: rb, Source: "demo.yaml", Params: params, Given: given, RequestedBy: "alice", Lookup: cat.Lookup})

	if ids := explain.StepIDs(p.Steps); !slices.Equal(ids, []string{"first", "both", "left", "right", "gate"}) {
		t.Errorf("step ids %v", ids)
	}
	if ids := explain.StepIDs(p.OnFailure); !slices.Equal(ids, []string{"undo"}) {
		t.Errorf("onFailure ids %v", ids)
	}
	var from []string
	for _, prm := range p.Params {
		from = append(from, prm.Name+"="+prm.From)
	}
	if !slices.Equal(from, []string{"approvers=default", "env=default", "who=given"}) {
		t.Errorf("params %v", from)
	}

	first := p.Steps[0]
	if !first.Irreversible || first.Timeout != "2m0s" || first.TimeoutFrom != "runbook" || first.Runs != explain.RunsYes {
		t.Errorf("first: %+v", first)
	}
	if r := first.Retry; r == nil || r.MaxAttempts != 5 || r.InitialInterval != "2m0s" || r.MaximumInterval != "2m0s" ||
		!r.FromRunbook || !slices.Equal(r.NonRetryable, []string{"KubeForbidden"}) {
		t.Errorf("first retry: %+v", first.Retry)
	}
	args := map[string]runbooks.Preview{}
	for _, a := range first.With {
		args[a.Name] = a.Preview
	}
	if args["namespace"].Value != "sandbox" || args["namespace"].State != runbooks.PreviewRendered ||
		args["deployment"].State != runbooks.PreviewLiteral ||
		args["image"].State != runbooks.PreviewRuntime || args["image"].Value != "app:{{ .run.startedUnix }}" {
		t.Errorf("first with: %+v", args)
	}

	both := p.Steps[1]
	if both.Kind != "parallel" || len(both.Parallel) != 2 || both.Timeout != "" {
		t.Fatalf("both: %+v", both)
	}
	if left := both.Parallel[0]; left.Timeout != "" || left.Retry != nil {
		t.Errorf("a native wait has no activity timeout or retry: %+v", left)
	}
	if right := both.Parallel[1]; right.Runs != explain.RunsNo || !right.ContinueOnError || right.Timeout != "30s" || right.TimeoutFrom != "step type" ||
		right.Retry == nil || right.Retry.FromRunbook || right.Retry.MaxAttempts != explain.DefaultMaxAttempts {
		t.Errorf("right: %+v", right)
	}

	g := p.Steps[2].Gate
	if g == nil {
		t.Fatal("no gate")
	}
	if !slices.Equal(g.Approvers, []string{"bob", "carol", "dave"}) || len(g.ApproversUnknown) != 1 {
		t.Errorf("approvers %v, unknown %+v", g.Approvers, g.ApproversUnknown)
	}
	if g.Message.State != runbooks.PreviewRuntime || g.Message.Value != "ship for erin? {{ .steps.first.outputs.image }}" {
		t.Errorf("message %+v", g.Message)
	}
	if g.Timeout == nil || g.Timeout.Value != "1h" || g.Remind == nil || g.Remind.Every != "10m0s" || g.Remind.With[0].State != runbooks.PreviewRuntime {
		t.Errorf("gate %+v", g)
	}

	if undo := p.OnFailure[0]; undo.Runs != explain.RunsAtRunTime {
		t.Errorf("undo: %+v", undo)
	}
	if p.Audit == nil || !slices.Equal(p.Audit.Summary, []string{"env", "image"}) {
		t.Errorf("audit %+v", p.Audit)
	}

	// The JSON shape scripts read.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"runbook", "source", "requestedBy", "params", "steps", "onFailure", "audit"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("json lacks %q: %s", k, b)
		}
	}
	step := doc["steps"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "kind", "uses", "runs", "timeout", "retry", "irreversible", "with"} {
		if _, ok := step[k]; !ok {
			t.Errorf("json step lacks %q: %v", k, step)
		}
	}
	arg := step["with"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "state", "value"} {
		if _, ok := arg[k]; !ok {
			t.Errorf("json arg lacks %q: %v", k, arg)
		}
	}
}
