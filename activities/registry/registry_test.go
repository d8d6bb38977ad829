package registry_test

import (
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/activities/steps"
	"github.com/stagehand-dev/stagehand/workflows"
)

// registrations records what a worker would register.
type registrations struct{ activities []string }

func (r *registrations) RegisterWorkflowWithOptions(any, workflow.RegisterOptions) {}
func (r *registrations) RegisterActivityWithOptions(_ any, o activity.RegisterOptions) {
	r.activities = append(r.activities, o.Name)
}

// Every described step type is implemented, with Go types that agree with
// its spec, and the worker registers an activity for each one that is not
// native.
func TestCatalogueBindsEverySpec(t *testing.T) {
	cat, err := registry.Catalogue(registry.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, s := range steps.All() {
		bound, ok := cat.Lookup(s.Name)
		if !ok {
			t.Errorf("%s is not in the catalogue", s.Name)
			continue
		}
		if !s.Native {
			want = append(want, s.Name)
			if bound.Handler == nil {
				t.Errorf("%s has no handler", s.Name)
			}
		}
	}
	if got := len(cat.Names()); got != len(steps.All()) {
		t.Errorf("catalogue has %d step types, steps describes %d", got, len(steps.All()))
	}
	var reg registrations
	workflows.RegisterSteps(&reg, cat)
	registered := map[string]bool{}
	for _, n := range reg.activities {
		registered[n] = true
	}
	for _, n := range want {
		if !registered[n] {
			t.Errorf("%s is not registered as an activity", n)
		}
	}
	if len(reg.activities) != len(want) {
		t.Errorf("registered %v, want %v", reg.activities, want)
	}
}
