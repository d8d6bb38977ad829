package workflows

import (
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/activities"
)

// Registry is the part of a Temporal worker (or test environment) that
// registrations need.
type Registry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
	RegisterActivityWithOptions(a any, options activity.RegisterOptions)
}

// Register registers RunbookWorkflow, the resolve activity and one activity
// per non-native step type of the resolver's catalogue, each under its
// step-type name so runbooks can call it.
func Register(reg Registry, res *Resolver) {
	reg.RegisterWorkflowWithOptions(RunbookWorkflow, workflow.RegisterOptions{Name: WorkflowType})
	reg.RegisterActivityWithOptions(res.Resolve, activity.RegisterOptions{Name: ResolveActivity})
	RegisterSteps(reg, res.Catalogue)
}

// RegisterSteps registers the catalogue's activity-backed step types.
func RegisterSteps(reg Registry, cat *activities.Catalogue) {
	for _, t := range cat.Types() {
		if t.Native || t.Handler == nil {
			continue
		}
		reg.RegisterActivityWithOptions(t.Handler, activity.RegisterOptions{Name: t.Name})
	}
}
