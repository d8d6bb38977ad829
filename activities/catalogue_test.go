package activities_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
)

type echoIn struct {
	Message string `json:"message"`
	Level   string `json:"level,omitempty"`
	skipped string //nolint:unused // unexported fields are not keys
	Ignored string `json:"-"`
}

type echoOut struct {
	Message string `json:"message"`
}

func echo(_ context.Context, in echoIn) (echoOut, error) { return echoOut{Message: in.Message}, nil }

type waitIn struct {
	Duration string `json:"duration"`
}

var (
	echoSpec = activities.StepSpec{
		Name: "echo",
		Args: []activities.Arg{
			{Name: "message", Type: "string", Required: true},
			{Name: "level", Type: "string"},
		},
		Outputs: []activities.Output{{Name: "message", Type: "string"}},
	}
	waitSpec = activities.StepSpec{Name: "wait", Args: []activities.Arg{{Name: "duration", Type: "duration"}}, Native: true}
)

func TestBind(t *testing.T) {
	withArgs := func(s activities.StepSpec, args ...activities.Arg) activities.StepSpec {
		s.Args = args
		return s
	}
	withOutputs := func(s activities.StepSpec, outs ...activities.Output) activities.StepSpec {
		s.Outputs = outs
		return s
	}
	cases := []struct {
		name  string
		specs []activities.StepSpec
		impls []activities.StepType
		// want are fragments of the error; none means Bind succeeds.
		want []string
	}{
		{
			name:  "every spec bound",
			specs: []activities.StepSpec{echoSpec, waitSpec},
			impls: []activities.StepType{activities.Implement(echoSpec, echo), activities.ImplementNative[waitIn](waitSpec)},
		},
		{
			name:  "a spec without a handler",
			specs: []activities.StepSpec{echoSpec, waitSpec},
			impls: []activities.StepType{activities.Implement(echoSpec, echo)},
			want:  []string{`"wait" is described but no adapter implements it`},
		},
		{
			name:  "a handler without a spec",
			specs: []activities.StepSpec{echoSpec},
			impls: []activities.StepType{activities.Implement(echoSpec, echo), activities.ImplementNative[waitIn](waitSpec)},
			want:  []string{`"wait" is implemented but not described`},
		},
		{
			name:  "the Go input has a key the spec lacks, and the spec one the Go input lacks",
			specs: []activities.StepSpec{withArgs(echoSpec, activities.Arg{Name: "message"}, activities.Arg{Name: "lvl"})},
			impls: []activities.StepType{activities.Implement(echoSpec, echo)},
			want:  []string{"echo: input", "undeclared in the spec: level", "not in the Go struct: lvl"},
		},
		{
			name:  "the Go output disagrees with the declared outputs",
			specs: []activities.StepSpec{withOutputs(echoSpec, activities.Output{Name: "msg"})},
			impls: []activities.StepType{activities.Implement(echoSpec, echo)},
			want:  []string{"echo: output", "undeclared in the spec: message", "not in the Go struct: msg"},
		},
		{
			name:  "a native spec bound to a handler",
			specs: []activities.StepSpec{func() activities.StepSpec { s := echoSpec; s.Native = true; return s }()},
			impls: []activities.StepType{activities.Implement(echoSpec, echo)},
			want:  []string{"echo: native is true in its spec, but it has a handler"},
		},
		{
			name:  "one implementation twice",
			specs: []activities.StepSpec{echoSpec},
			impls: []activities.StepType{activities.Implement(echoSpec, echo), activities.Implement(echoSpec, echo)},
			want:  []string{`"echo" implemented twice`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cat, err := activities.Bind(c.specs, c.impls...)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.Join(cat.Names(), ","); got != "echo,wait" {
					t.Errorf("names %s", got)
				}
				return
			}
			if err == nil {
				t.Fatal("Bind succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestCatalogueAsRunbookCatalogue(t *testing.T) {
	spec := echoSpec
	spec.Errors = []string{activities.ErrPodFailure, "EchoLost"}
	cat, err := activities.Bind([]activities.StepSpec{spec, waitSpec}, activities.Implement(spec, echo), activities.ImplementNative[waitIn](waitSpec))
	if err != nil {
		t.Fatal(err)
	}
	info, ok := cat.StepInfo("echo")
	if !ok || strings.Join(info.Keys, ",") != "message,level" || strings.Join(info.Required, ",") != "message" {
		t.Errorf("StepInfo = %+v, %v", info, ok)
	}
	names := cat.ErrorTypes()
	for _, want := range []string{activities.ErrPodFailure, activities.ErrTimeout, "EchoLost"} {
		if !contains(names, want) {
			t.Errorf("ErrorTypes lacks %s", want)
		}
	}
	// How a run ends is not something a step's retry policy can match.
	if contains(names, activities.ErrRunbookFailed) {
		t.Errorf("ErrorTypes lists the run-scoped %s", activities.ErrRunbookFailed)
	}
	if got := strings.Join(spec.ErrorTypeNames(), ","); got != "EchoLost,InvalidArguments,PodFailure,StepInterrupted,TemplateError,Timeout" {
		t.Errorf("ErrorTypeNames = %s", got)
	}
}

func TestErrorTypeTable(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range activities.ErrorTypes() {
		if seen[e.Name] {
			t.Errorf("%s listed twice", e.Name)
		}
		seen[e.Name] = true
		if e.Name == "" || strings.TrimSpace(e.Meaning) == "" || strings.Contains(e.Meaning, "\n") {
			t.Errorf("%q: want a name and a one-line meaning, got %q", e.Name, e.Meaning)
		}
		if e.Scope != activities.ScopeStep && e.Scope != activities.ScopeRun {
			t.Errorf("%s: scope %q", e.Name, e.Scope)
		}
		if got, ok := activities.LookupErrorType(e.Name); !ok || got != e {
			t.Errorf("LookupErrorType(%s) = %+v, %v", e.Name, got, ok)
		}
	}
	for _, n := range activities.CommonStepErrors {
		if e, ok := activities.LookupErrorType(n); !ok || e.Scope != activities.ScopeStep {
			t.Errorf("common step error %s is not a step error type of the table", n)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
