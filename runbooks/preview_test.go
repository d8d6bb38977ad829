package runbooks

import (
	"reflect"
	"slices"
	"testing"
)

func TestPreview(t *testing.T) {
	noConfig := PreviewInput{
		Params:  map[string]any{"image": "reg/app:pr-1", "replicas": int64(3), "env": "sandbox", "prod": false},
		Runbook: "rb", RequestedBy: "alice",
	}
	withConfig := noConfig
	withConfig.ConfigKnown = true
	withConfig.Settings = map[string]any{"git": map[string]any{"provider": "git", "tokenRef": "env:TOKEN"}}
	withConfig.Environments = map[string]any{"sandbox": map[string]any{"namespace": "ns", "url": "http://sb"}}

	cases := []struct {
		name      string
		mode      previewMode
		text      string
		in        PreviewInput
		wantState PreviewState
		wantValue any
		wantNeeds []string
	}{
		{"plain string", modeValue, "hello", noConfig, PreviewLiteral, "hello", nil},
		{"param keeps its type", modeValue, "{{ .params.replicas }}", noConfig, PreviewRendered, int64(3), nil},
		{"param in text", modeString, "deploy {{ .params.image }}", noConfig, PreviewRendered, "deploy reg/app:pr-1", nil},
		{"requester and runbook", modeString, "{{ .run.runbook }} by {{ .run.requestedBy }}", noConfig, PreviewRendered, "rb by alice", nil},
		{"run id is runtime", modeString, "run {{ .run.id }} of {{ .params.image }}", noConfig, PreviewRuntime,
			"run {{ .run.id }} of reg/app:pr-1", []string{"run.id"}},
		{"step output is runtime", modeValue, "{{ .steps.build.outputs.tag }}", noConfig, PreviewRuntime,
			"{{ .steps.build.outputs.tag }}", []string{"steps.build.outputs.tag"}},
		{"setting without config", modeValue, "{{ .settings.git.provider }}", noConfig, PreviewNeedsConfig,
			"<from worker config: settings.git.provider>", []string{"settings.git.provider"}},
		{"index setting without config", modeValue, `{{ index .settings.git "tokenRef" }}`, noConfig, PreviewNeedsConfig,
			"<from worker config: settings.git.tokenRef>", []string{"settings.git"}},
		{"environment by param without config", modeValue, "{{ (index .environments .params.env).namespace }}", noConfig, PreviewNeedsConfig,
			"<from worker config: environments.sandbox.namespace>", []string{"environments"}},
		{"environment by param with config", modeValue, "{{ (index .environments .params.env).namespace }}", withConfig, PreviewRendered, "ns", nil},
		{"setting with config", modeValue, "{{ .settings.git.provider }}", withConfig, PreviewRendered, "git", nil},
		{"if on a known value picks its branch", modeString,
			`{{ if eq .settings.git.provider "git" }}branch {{ .params.image }}{{ else }}PR{{ end }} after {{ .steps.a.outputs.x }}`, withConfig,
			PreviewRuntime, "branch reg/app:pr-1 after {{ .steps.a.outputs.x }}", []string{"steps.a.outputs.x"}},
		{"if on an unknown value is kept", modeString, `{{ if .steps.a.outputs.ok }}yes{{ end }}`, noConfig,
			PreviewRuntime, `{{if .steps.a.outputs.ok}}yes{{end}}`, []string{"steps.a.outputs.ok"}},
		{"condition known", modeCondition, `{{ eq .params.env "sandbox" }}`, noConfig, PreviewRendered, true, nil},
		{"condition false", modeCondition, `{{ .params.prod }}`, noConfig, PreviewRendered, false, nil},
		{"condition at run time", modeCondition, `{{ eq .steps.a.state "succeeded" }}`, noConfig, PreviewRuntime,
			`{{ eq .steps.a.state "succeeded" }}`, []string{"steps.a.state"}},
		{"root reached only inside a range body", modeString, `{{ range .params.image }}{{ $.steps.a }}{{ end }}`, noConfig,
			PreviewError, `{{ range .params.image }}{{ $.steps.a }}{{ end }}`, nil},
		{"missing setting key with config fails", modeValue, "{{ .settings.nope.x }}", withConfig, PreviewError, "{{ .settings.nope.x }}", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := previewText(c.text, c.in, c.mode)
			if got.State != c.wantState || !reflect.DeepEqual(got.Value, c.wantValue) {
				t.Errorf("got %s %#v (error %q), want %s %#v", got.State, got.Value, got.Error, c.wantState, c.wantValue)
			}
			if c.wantNeeds != nil && !slices.Equal(got.Needs, c.wantNeeds) {
				t.Errorf("needs %v, want %v", got.Needs, c.wantNeeds)
			}
			if got.State == PreviewError && got.Error == "" {
				t.Error("error state without an error")
			}
		})
	}
}

// A range body that reads $.steps over a known list is found at render
// time to need the run.
func TestPreviewRangeReadsRunData(t *testing.T) {
	in := PreviewInput{Params: map[string]any{"list": []any{"a"}}}
	got := PreviewString(`{{ range .params.list }}{{ $.steps.a }}{{ end }}`, in)
	if got.State != PreviewRuntime {
		t.Errorf("state %s (%q), want runtime", got.State, got.Error)
	}
}

// Maps and lists take the state of their least known member, and keep the
// known members rendered.
func TestPreviewValueNested(t *testing.T) {
	in := PreviewInput{Params: map[string]any{"n": int64(2)}}
	got := PreviewValue(map[string]any{
		"count": "{{ .params.n }}",
		"args":  []any{"--n", "{{ .params.n }}", "{{ .steps.a.outputs.dir }}"},
		"fixed": true,
	}, in)
	want := map[string]any{
		"count": int64(2),
		"args":  []any{"--n", int64(2), "{{ .steps.a.outputs.dir }}"},
		"fixed": true,
	}
	if got.State != PreviewRuntime || !reflect.DeepEqual(got.Value, want) || !slices.Equal(got.Needs, []string{"steps.a.outputs.dir"}) {
		t.Errorf("got %s %#v %v", got.State, got.Value, got.Needs)
	}
	if lit := PreviewValue(map[string]any{"a": []any{1, "x"}}, in); lit.State != PreviewLiteral {
		t.Errorf("literal map: %s", lit.State)
	}
}
